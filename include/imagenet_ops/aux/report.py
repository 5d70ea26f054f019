"""The aux artifact's data-quality report: what each of the 8 files holds, and whether every class is there.

Published as ``report/`` beside the files (:mod:`imagenet_ops.core.report`). The class check is
the one a consumer cares about: 1000 wnids, and the 50,000 validation labels spread 50 to a class.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from imagenet_ops.aux.variations import AUX_FILES, AuxConfig
from imagenet_ops.core import charts
from imagenet_ops.core.digests import file_digests
from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.report import Report, report_files
from imagenet_ops.imagenet.constants import NUM_CLASSES, NUM_VAL_IMAGES
from imagenet_ops.imagenet.labels import read_lines, read_val_map

PICTURES = ("val_per_class.png", "train_per_class.png")
"""The report's pictures, announced before a publish so a killed one leaves nothing unlisted."""
REPORT_FILES = report_files(PICTURES)
_TEXT_SUFFIXES = (".txt",)


def _labels_per_class(path: Path) -> list[int]:
    """Images per label (0..999) of a ``<name> <label>`` list (``val.txt``, ``train.txt``)."""
    counts = Counter(label for _, label in read_val_map(path))
    return [counts.get(i, 0) for i in range(NUM_CLASSES)]


def aux_report(folder: Path, *, config: AuxConfig) -> Report:
    """Build the report of a validated aux folder (run after :func:`~imagenet_ops.aux.pipeline.validate_aux_dir`).

    Args:
        folder: the 8 files.
        config: the resolved config (its version and source are shown).
    """
    folder = Path(folder)
    report = Report(title=f"ImageNet aux files {config.version}")
    report.section("Files")
    rows = []
    for name in AUX_FILES:
        path = folder / name
        d = file_digests(path)
        lines = len(read_lines(path)) if name.endswith(_TEXT_SUFFIXES) else "binary"
        rows.append((name, lines, human_bytes(d.size), d.md5))
    report.table(("file", "lines", "size", "md5"), rows)

    report.section("Classes")
    synsets = read_lines(folder / "synsets.txt")
    val = _labels_per_class(folder / "val.txt")
    report.check(len(synsets) == NUM_CLASSES, f"synsets.txt holds {len(synsets)} wnids (expected {NUM_CLASSES})")
    report.check(sum(val) == NUM_VAL_IMAGES, f"val.txt labels {sum(val)} images (expected {NUM_VAL_IMAGES})")
    per_class = NUM_VAL_IMAGES // NUM_CLASSES
    uneven = [(synsets[i] if i < len(synsets) else str(i), n) for i, n in enumerate(val) if n != per_class]
    report.check(not uneven, f"every class has {per_class} validation images" + (f" ({len(uneven)} do not)" if uneven else ""))
    if uneven:
        report.table(("wnid", "validation images"), uneven, limit=20)
    report.picture(
        "val_per_class.png",
        charts.bar_chart(
            f"val.txt: images per class (expected {per_class} each)",
            val,
            labels=[str(i) for i in range(NUM_CLASSES)],
            highlight=[n != per_class for n in val],
        ),
        "Validation images per class label 0..999; a class off the expected count is drawn red.",
    )
    try:
        train = _labels_per_class(folder / "train.txt")
    except ValidationError as exc:  # only val.txt and synsets.txt are validated (and used downstream)
        report.check(False, f"train.txt is not a '<image> <label>' list: {exc}")
        return report
    report.check(all(train), f"train.txt labels every class ({sum(1 for n in train if n)} of {NUM_CLASSES} have images)")
    report.picture(
        "train_per_class.png",
        charts.bar_chart(
            "train.txt: images per class",
            train,
            labels=[str(i) for i in range(NUM_CLASSES)],
            highlight=[n == 0 for n in train],
        ),
        "Training images per class label 0..999 (ImageNet's classes hold 732 to 1300); an empty class is drawn red.",
    )
    return report
