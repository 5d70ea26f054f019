"""The aux artifact's data-quality report: what each of the 8 files holds, and whether every class is there.

Published as ``report/`` beside the files (:mod:`imagenet_ops.core.report`). The class check is
the one a consumer cares about: 1000 wnids, and the 50,000 validation labels spread 50 to a class.
It reads only what it checks (``train.txt``, 1.28 million lines nothing downstream reads, is
measured, not read); the files' sha256 are in the manifest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from imagenet_ops.aux.variations import AUX_FILES, AuxConfig
from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.report import Report, report_files
from imagenet_ops.imagenet.constants import NUM_CLASSES, NUM_VAL_IMAGES
from imagenet_ops.imagenet.labels import read_val_map

PICTURES: tuple[str, ...] = ()
"""An aux report is text only: its table names every class off the count, which a chart would only hint at
(and drawing costs more than the rest of the report, against a build of well under a second)."""
REPORT_FILES = report_files(PICTURES)
COUNT_LINES_UP_TO = 8 << 20
"""Lines are counted in files up to this size: the ones the artifact's users read (``val.txt`` is 1.6 MB)."""


def _labels_per_class(path: Path, data: bytes) -> list[int]:
    """Images per label (0..999) of a ``<name> <label>`` list (``val.txt``, ``train.txt``) given as bytes.

    One split of the whole file, not a parse per line. The lists' format is
    :func:`~imagenet_ops.imagenet.labels.read_val_map`'s; a file that is not two fields a line with
    integer labels in range is refused with that parser's own error (naming the line).
    """
    tokens = data.split()
    labels = Counter(tokens[1::2])
    known = {str(i).encode(): i for i in range(NUM_CLASSES)}
    if len(tokens) % 2 or not set(labels) <= set(known):
        read_val_map(path)  # names the offending line
        raise ValidationError(f"{path}: not a '<image name> <label>' list")
    counts = {known[k]: n for k, n in labels.items()}
    return [counts.get(i, 0) for i in range(NUM_CLASSES)]


def aux_report(folder: Path, *, config: AuxConfig) -> Report:
    """Build the report of a validated aux folder (run after :func:`~imagenet_ops.aux.pipeline.validate_aux_dir`).

    Args:
        folder: the 8 files.
        config: the resolved config (its version is shown).
    """
    folder = Path(folder)
    report = Report(title=f"ImageNet aux files {config.version}")
    report.section("Files")
    rows = []
    for name in AUX_FILES:
        size = (folder / name).stat().st_size
        if not name.endswith(".txt"):
            lines: int | str = "binary"
        elif size > COUNT_LINES_UP_TO:  # train.txt: 1.28 million lines that nothing downstream reads
            lines = "not counted"
        else:
            lines = (folder / name).read_bytes().count(b"\n")
        rows.append((name, lines, human_bytes(size), size))
    report.table(("file", "lines", "size", "bytes"), rows)

    report.section("Classes")
    synsets = (folder / "synsets.txt").read_text().split()
    val = _labels_per_class(folder / "val.txt", (folder / "val.txt").read_bytes())
    report.check(len(synsets) == NUM_CLASSES, f"synsets.txt holds {len(synsets)} wnids (expected {NUM_CLASSES})")
    report.check(sum(val) == NUM_VAL_IMAGES, f"val.txt labels {sum(val)} images (expected {NUM_VAL_IMAGES})")
    per_class = NUM_VAL_IMAGES // NUM_CLASSES
    uneven = [(synsets[i] if i < len(synsets) else str(i), n) for i, n in enumerate(val) if n != per_class]
    report.check(not uneven, f"every class has {per_class} validation images" + (f" ({len(uneven)} do not)" if uneven else ""))
    if uneven:
        report.table(("wnid", "validation images"), uneven, limit=20)
    return report
