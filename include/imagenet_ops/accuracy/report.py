"""The accuracy check's report: the pair, the figures, the verdict, the worst classes and misclassified samples.

The picture shows misclassified images as the model saw them: each tensor read back from the set
and undone as the set's config declares (:func:`imagenet_ops.preprocessed.viewable.viewable`),
captioned with the true and the predicted label. A wrong-layout or wrong-mean set looks wrong there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from imagenet_ops.accuracy.scoring import Row, Summary, Verdict
from imagenet_ops.core.report import Report, spread

log = logging.getLogger(__name__)

SAMPLES = 8
"""Misclassified images shown (spread over the set)."""


def accuracy_report(*, pair: Any, summary: Summary, verdict: Verdict, rows: Sequence[Row], store: Any) -> Report:
    """The report of one check (``pair`` is :class:`imagenet_ops.accuracy.pipeline.Pair`)."""
    from imagenet_ops.accuracy.pipeline import load_tensor
    from imagenet_ops.core.charts import contact_sheet
    from imagenet_ops.preprocessed.viewable import viewable

    report = Report(f"imagenet_accuracy: {pair.model.variant_id} on {pair.data.tags or pair.data.location}")
    report.facts(
        {
            "Model": pair.model.describe(),
            "Set": pair.data.describe(),
            "Images scored": f"{summary.images:,}"
            + (f" ({len(pair.data.missing)} listed without a file)" if pair.data.missing else ""),
            "Class offset": f"label = model class - {pair.model.offset}" if pair.model.offset else "none (1000 classes)",
            "Top-1": f"{summary.top1:.4f}% ({summary.top1_correct:,})",
            "Top-5": "n/a (the model outputs class ids only)"
            if summary.top5 is None
            else f"{summary.top5:.4f}% ({summary.top5_correct:,})",
            "Verdict": {True: "pass", False: "FAIL", None: "no verdict"}[verdict.passed],
            "Rule": verdict.rule,
        }
    )
    report.section("Checks")
    if verdict.passed is not None:
        report.check(verdict.passed, verdict.message)
    for note in pair.notes:
        report.check(False, note)
    if not pair.notes and verdict.passed is None:
        report.text(verdict.message)
    report.section("Worst classes")
    report.table(
        ("label", "images", "top-1 correct", "top-1"),
        [(label, n, ok, f"{100.0 * ok / n:.1f}%") for label, n, ok in summary.worst_classes(10)],
    )
    if summary.confusions:
        report.section("Most frequent mistakes")
        report.table(("true label", "predicted", "images"), summary.confusions[:10])
    wrong = [r for r in rows if r[1] != r[2]]
    if wrong:
        files = {name: file for name, file, _ in pair.data.rows}
        cells = []
        for name, label, predicted, _ in spread(wrong, SAMPLES):
            try:
                picture, _ = viewable(load_tensor(pair.data, store, files[name]), pair.data.config)
            except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn is named, the report goes on
                log.warning("report: cannot show %s: %s", name, exc)
                continue
            cells.append((f"{name.removeprefix('ILSVRC2012_val_').removesuffix('.JPEG')}: {label}->{predicted}", picture))
        if cells:
            rows_of = [cells[i : i + 4] for i in range(0, len(cells), 4)]
            sheet = contact_sheet(
                rows_of, tile=128, title=f"Misclassified: {len(wrong):,} of {summary.images:,} (true -> predicted)"
            )
            report.section("Misclassified samples")
            report.picture("misclassified.png", sheet, "Misclassified images as the model saw them, true -> predicted label")
    return report
