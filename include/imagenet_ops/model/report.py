"""A model variant's data-quality report: the interface its load check found, its files, and its env.

Published as ``report/`` beside the variant (:mod:`imagenet_ops.core.report`). The interface
table puts what the framework reported next to what the variant must offer, so a wrong input
layout (NHWC where NCHW is expected) or class count (1000 vs 1001) is read off one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagenet_ops.core.digests import file_digests
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.report import Report, report_files
from imagenet_ops.model.interface import ModelCheckResult, ModelInterface, fmt_shape
from imagenet_ops.model.variations import ModelConfig

PICTURES: tuple[str, ...] = ()
"""A model's report is text only: its facts are names, shapes and checksums."""
REPORT_FILES = report_files(PICTURES)


def _rows(role: str, found: Mapping[str, object], expected: Mapping[str, object]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in sorted(set(found) | set(expected)):
        got = fmt_shape(found[name]) if name in found else "absent"  # type: ignore[arg-type]
        want = fmt_shape(expected[name]) if name in expected else "(not required)"  # type: ignore[arg-type]
        rows.append((role, name, got, want))
    return rows


def model_report(
    *,
    config: ModelConfig,
    folder: Path,
    files: list[str],
    env: Mapping[str, str],
    expected: ModelInterface,
    check: ModelCheckResult | None,
) -> Report:
    """Build the report of a prepared, load-checked variant.

    Args:
        config: the variant's config.
        folder: the prepared folder about to be published.
        files: the folder's files, relative to it.
        env: the variant's ``CM_ML_MODEL_*`` env (its published paths).
        expected: what the variant must offer (:func:`~imagenet_ops.model.pipeline.expected_interface`).
        check: what the load check found (``None`` when the caller has no check result: said so).
    """
    report = Report(title=f"ResNet-50 model {config.variant_id}")
    report.facts(
        {
            "framework": config.framework,
            "precision": config.precision,
            "output": config.model_output,
            "batch size": config.batch_size,
            "CM tags": config.tags or "(none)",
        }
    )
    report.section("Interface found by the load check")
    if check is None:
        report.check(False, "no load-check result was handed to the publish; the interface is not shown")
    else:
        report.text(f"Read as `{check.kind}`: {check.summary}")
        report.table(
            ("", "tensor", "found", "expected"),
            _rows("input", check.inputs, expected.inputs) + _rows("output", check.outputs, expected.outputs),
        )
        report.check(True, "the load check passed (names and shapes as expected)")
    report.section("Files")
    rows = []
    for name in sorted(files):
        d = file_digests(Path(folder) / name)
        rows.append((name, human_bytes(d.size), d.size, d.md5))
    report.table(("file", "size", "bytes", "md5"), rows)
    report.section("CM env")
    report.table(("variable", "value"), sorted(env.items()))
    return report
