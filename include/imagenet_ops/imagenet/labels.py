"""Validation labels, read one way wherever they come from: a wnid-per-line labels file or the aux artifact.

``imagenet_2012_validation_synset_labels.txt`` names image i's class on line i; the aux artifact's
``val.txt`` (and a preprocessed set's ``val_map.txt``) pairs each image name with a 0-based
label into ``synsets.txt``. Both give the same mapping; every artifact reads them here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.constants import NUM_CLASSES, WNID

_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_val_map(path: Path, *, classes: int = NUM_CLASSES) -> list[tuple[str, int]]:
    """Parse ``val.txt`` (or a ``val_map.txt``): one ``<image name> <label>`` per line, in file order.

    The one parser for these files: the aux validation and every reader of the labels use it,
    so a malformed line fails the same way everywhere.

    Args:
        path: the file.
        classes: labels must be ``0..classes-1``.

    Returns:
        ``(name, label)`` per line.

    Raises:
        ValidationError: naming the file and the line: an empty line, a line without exactly two
            fields (a missing label, extra fields), a label that is not an integer or is outside
            ``0..classes-1``, or an image name that repeats an earlier line. Also an unreadable or
            non-UTF-8 file.
    """
    path = Path(path)
    out: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_lines(path), 1):
        fields = line.split()
        if not fields:
            raise ValidationError(f"{path}: line {number} is empty (expected '<image name> <label>')")
        if len(fields) != 2:
            problem = "has no label" if len(fields) == 1 else f"has {len(fields)} fields"
            raise ValidationError(f"{path}: line {number} {line!r} {problem}; expected '<image name> <label>'")
        name, raw = fields
        if not _INTEGER.match(raw):
            raise ValidationError(f"{path}: line {number} label {raw!r} is not an integer")
        label = int(raw)
        if not 0 <= label < classes:
            raise ValidationError(f"{path}: line {number} label {label} is outside 0..{classes - 1}")
        if name in seen:
            raise ValidationError(f"{path}: line {number}: {name} repeats line {seen[name]}")
        seen[name] = number
        out.append((name, label))
    return out


class ValLabels(list[str]):
    """The validation wnids, item i - 1 naming ``ILSVRC2012_val_%08d`` i, and ``source``: the
    file whose line i says so (the synset-labels file, or the aux ``val.txt``), for error messages."""

    def __init__(self, wnids: Iterable[str], *, source: str) -> None:
        super().__init__(wnids)
        self.source = source


def read_wnid_labels(path: Path, *, source: str | None = None) -> ValLabels:
    """Read ``imagenet_2012_validation_synset_labels.txt`` (one wnid per line, line i = image i).

    Args:
        path: the local file.
        source: how errors name the file (the URI it was fetched from); ``path`` by default.

    Raises:
        ValidationError: a line that is not exactly one wnid (a blank or doubled line would
            shift every later label), an empty file, or one that is not UTF-8 text (a tar given by
            mistake); the message names the file and line.
    """
    name = source or str(path)
    try:
        lines = read_lines(Path(path))
    except ValidationError as exc:  # named as the user gave it (a URI), not as the local copy
        raise ValidationError(str(exc).replace(str(path), name, 1)) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValidationError(f"{name}: empty validation labels file")
    for number, line in enumerate(lines, 1):
        if not WNID.match(line.strip()):
            raise ValidationError(f"{name}: line {number} {line!r} is not a wnid like n01440764")
    return ValLabels((line.strip() for line in lines), source=name)


def val_labels_from_aux(val_txt: Path, synsets_txt: Path) -> ValLabels:
    """The same mapping from the aux artifact: ``val.txt`` label k names ``synsets.txt`` line k."""
    synsets = " ".join(read_lines(Path(synsets_txt))).split()
    # Regression: a label of -1 named the last synset, and malformed lines gave tracebacks.
    out = [synsets[label] for _, label in read_val_map(Path(val_txt), classes=len(synsets))]
    return ValLabels(out, source=str(val_txt))


def local_aux_folder(aux_path: str | Path, names: Sequence[str], *, dest_dir: Path, store: Any) -> Path:
    """A local folder holding the aux artifact's files ``names``: the folder itself when it is local,
    else ``dest_dir`` with copies of the s3:// / gs:// objects (read through ``store``)."""
    if not is_remote(str(aux_path)):
        return Path(aux_path)
    for name in names:
        store.download(f"{str(aux_path).rstrip('/')}/{name}", Path(dest_dir) / name)
    return Path(dest_dir)
