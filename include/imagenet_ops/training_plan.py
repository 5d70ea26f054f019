"""The global order of the training-data converters, fixed before any shard is written.

Reference (``imagenet_to_gcs``) contract: labels 1..1000 over the sorted wnids; validation in
sorted order, labelled from the synset-labels file; train in a ``Random(0)`` shuffle of the list;
contiguous ``ceil(N/S)`` chunks per shard, trailing shards possibly empty, names
``train-%05d-of-%05d`` / ``validation-%05d-of-%05d``.

One deliberate difference: the reference shuffles its glob order, which depends on the
filesystem (not reproducible); here the list is sorted by ``<wnid>/<name>`` first, so the same
input always gives the same shards. Validation labels are paired by the 8-digit index in the
file name (line i labels ``ILSVRC2012_val_%08d`` i), which equals the reference's zip of sorted
names on the full set and cannot shift on a partial one.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.errors import ValidationError
from imagenet_ops.imagenet_sources import ImageRef

TRAIN_SEED = 0
IM2REC_SEED = 100
_VAL_INDEX = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)
_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class PlanItem:
    """One record: the image's bytes location, its label and synset."""

    ref: ImageRef
    label: int
    synset: str

    def as_list(self) -> list[Any]:
        return [*self.ref.as_list(), self.label, self.synset]

    @classmethod
    def from_list(cls, row: list[Any]) -> PlanItem:
        return cls(ImageRef.from_list(row[:4]), int(row[4]), str(row[5]))


@dataclass(frozen=True)
class Shard:
    """One output file of a split and the records it holds, in order."""

    split: str
    index: int
    count: int
    items: tuple[PlanItem, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "index": self.index, "count": self.count, "items": [i.as_list() for i in self.items]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shard:
        return cls(d["split"], int(d["index"]), int(d["count"]), tuple(PlanItem.from_list(r) for r in d["items"]))


def read_val_labels(path: Path) -> list[str]:
    """Read ``imagenet_2012_validation_synset_labels.txt`` (one wnid per line, line i = image i)."""
    lines = Path(path).read_text().split()
    bad = next((i for i, w in enumerate(lines, 1) if not _WNID.match(w)), None)
    if bad is not None:
        raise ValidationError(f"{path}: line {bad} {lines[bad - 1]!r} is not a wnid like n01440764")
    if not lines:
        raise ValidationError(f"{path}: empty validation labels file")
    return lines


def val_labels_from_aux(val_txt: Path, synsets_txt: Path) -> list[str]:
    """The same mapping from the aux artifact: ``val.txt`` label k names ``synsets.txt`` line k."""
    synsets = Path(synsets_txt).read_text().split()
    out = []
    seen: dict[str, int] = {}
    for number, line in enumerate(Path(val_txt).read_text().splitlines(), 1):
        tokens = line.split()
        if len(tokens) != 2 or not tokens[1].isdigit() or int(tokens[1]) >= len(synsets):
            # Regression: a label of -1 named the last synset, and malformed lines gave tracebacks.
            raise ValidationError(
                f"{val_txt}: line {number} {line!r} is not 'name label' with a label 0..{len(synsets) - 1} "
                f"(the lines of {synsets_txt})"
            )
        if tokens[0] in seen:
            raise ValidationError(f"{val_txt}: line {number}: {tokens[0]} repeats line {seen[tokens[0]]}")
        seen[tokens[0]] = number
        out.append(synsets[int(tokens[1])])
    return out


def label_map(wnids: set[str]) -> dict[str, int]:
    """``{wnid: 1 + rank}`` over the sorted wnids (labels 1..1000, 0 unused)."""
    return {w: i + 1 for i, w in enumerate(sorted(wnids))}


def chunk(items: Sequence[PlanItem], split: str, shards: int) -> list[Shard]:
    """Contiguous ``ceil(N/S)`` chunks; every one of the ``S`` shards exists, trailing ones may be empty."""
    size = math.ceil(len(items) / shards) if items else 0
    return [Shard(split, k, shards, tuple(items[k * size : (k + 1) * size])) for k in range(shards)]


def val_items(refs: Sequence[ImageRef], labels: Sequence[str], mapping: dict[str, int]) -> list[PlanItem]:
    """Label each validation image by the index in its name; errors name the image and the file length."""
    out = []
    for ref in refs:
        m = _VAL_INDEX.search(ref.name)
        if not m:
            raise ValidationError(f"{ref.container}: {ref.name} is not named ILSVRC2012_val_%08d.JPEG; cannot find its label")
        i = int(m.group(1))
        if i > len(labels):
            raise ValidationError(f"validation labels hold {len(labels)} lines but image {ref.name} needs line {i}")
        out.append(PlanItem(ref, mapping[labels[i - 1]], labels[i - 1]))
    return out


def plan_reference(
    *,
    train: Sequence[ImageRef],
    validation: Sequence[ImageRef],
    val_labels: Sequence[str],
    train_shards: int,
    validation_shards: int,
) -> list[Shard]:
    """The reference converter's shards (train first, then validation). A split with no images or 0 shards is left out."""
    mapping = label_map({r.wnid for r in train} | set(val_labels))
    shards: list[Shard] = []
    if train and train_shards:
        ordered = sorted(train)
        order = list(range(len(ordered)))
        random.Random(TRAIN_SEED).shuffle(order)
        shards += chunk([PlanItem(ordered[i], mapping[ordered[i].wnid], ordered[i].wnid) for i in order], "train", train_shards)
    if validation and validation_shards:
        shards += chunk(val_items(sorted(validation), val_labels, mapping), "validation", validation_shards)
    return shards


def im2rec_order(refs: Sequence[ImageRef], *, seed: int = IM2REC_SEED) -> list[tuple[int, ImageRef, int]]:
    """im2rec ``--list --recursive``: sorted walk, label = class index 0..999, idx in walk order, ``seed`` shuffle.

    Returns ``(idx, ref, label)`` in the order records are written.
    """
    ordered = sorted(refs)
    classes = {w: i for i, w in enumerate(sorted({r.wnid for r in ordered}))}
    items = [(i, r, classes[r.wnid]) for i, r in enumerate(ordered)]
    random.Random(seed).shuffle(items)  # im2rec: random.seed(100); random.shuffle(list) - same sequence
    return items
