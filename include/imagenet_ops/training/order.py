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

Labels come from the train classes whenever train images are written (the reference numbers the
union of train wnids and every wnid of the labels file, so on a subset one validation wnid that
is not a train class shifted every later train label); a validation image whose wnid is not a
train class is refused, naming the labels file and line. Without train images the labels
number every wnid of the labels file (the 1000 classes of the full file: the same labels as a
full run). im2rec numbers the folders it lists, each split on its own (:func:`plan_nvidia`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from imagenet_ops.core.errors import ValidationError
from imagenet_ops.imagenet.images import ImageRef

TRAIN_SEED = 0
IM2REC_SEED = 100
_VAL_INDEX = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)


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


def label_map(wnids: set[str]) -> dict[str, int]:
    """``{wnid: 1 + rank}`` over the sorted wnids (labels 1..1000, 0 unused)."""
    return {w: i + 1 for i, w in enumerate(sorted(wnids))}


def reference_label_map(*, train: Sequence[ImageRef], val_labels: Sequence[str]) -> dict[str, int]:
    """The reference's ``{wnid: 1..N}``: over the train classes when train images are given, else
    over every wnid of the labels file (on the full file: the 1000 classes, as in a full run)."""
    return label_map({r.wnid for r in train} or set(val_labels))


def chunk(items: Sequence[PlanItem], split: str, shards: int) -> list[Shard]:
    """Contiguous ``ceil(N/S)`` chunks; every one of the ``S`` shards exists, trailing ones may be empty."""
    size = math.ceil(len(items) / shards) if items else 0
    return [Shard(split, k, shards, tuple(items[k * size : (k + 1) * size])) for k in range(shards)]


def val_synsets(refs: Sequence[ImageRef], labels: Sequence[str], *, classes: Collection[str] | None = None) -> list[str]:
    """The wnid of each validation image (in ``refs`` order), by the index in its name.

    Args:
        refs: ``ILSVRC2012_val_%08d.JPEG`` images.
        labels: line i - 1 names image i (a :class:`ValLabels` names its file in errors).
        classes: the train classes, when train images are written; every image's wnid must be one.

    Raises:
        ValidationError: an image with another name, labels shorter than an image's index, or a
            wnid that is not in ``classes``; the message names the image, the file and the line.
    """
    source = getattr(labels, "source", "validation labels")
    out = []
    for ref in refs:
        m = _VAL_INDEX.search(ref.name)
        if not m:
            raise ValidationError(f"{ref.container}: {ref.name} is not named ILSVRC2012_val_%08d.JPEG; cannot find its label")
        i = int(m.group(1))
        if i > len(labels):
            raise ValidationError(f"{source}: validation labels hold {len(labels)} lines but image {ref.name} needs line {i}")
        wnid = labels[i - 1]
        if classes is not None and wnid not in classes:
            # Regression (issue 10 item 4): a validation wnid that is not a train class shifted every later train label.
            raise ValidationError(
                f"{source}: line {i} gives {ref.name} the wnid {wnid}, which is not one of the {len(classes)} train classes "
                f"({_span(classes)}); give the train images of that class, or leave that validation image out"
            )
        out.append(wnid)
    return out


def _span(wnids: Collection[str]) -> str:
    ordered = sorted(wnids)
    return ", ".join(ordered) if len(ordered) <= 3 else f"{ordered[0]} .. {ordered[-1]}"


def val_items(refs: Sequence[ImageRef], labels: Sequence[str], mapping: dict[str, int]) -> list[PlanItem]:
    """Label each validation image by the index in its name with ``mapping`` (wnids outside it are refused)."""
    return [PlanItem(ref, mapping[w], w) for ref, w in zip(refs, val_synsets(refs, labels, classes=mapping), strict=True)]


def plan_reference(
    *,
    train: Sequence[ImageRef],
    validation: Sequence[ImageRef],
    val_labels: Sequence[str],
    train_shards: int,
    validation_shards: int,
) -> list[Shard]:
    """The reference converter's shards (train first, then validation). A split with no images or 0 shards is left out.

    Labels are :func:`reference_label_map`'s: the train classes when train shards are written.

    Raises:
        ValidationError: a validation image not labelled by ``val_labels``, or labelled with a wnid
            that is not a train class (naming the labels file and line).
    """
    mapping = reference_label_map(train=train if train_shards else (), val_labels=val_labels)
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

    The labels number the folders of ``refs`` (``<wnid>/<name>``) that hold an image, as
    im2rec's ``list_image`` numbers the folders under the root it lists: each split on its own.

    Returns ``(idx, ref, label)`` in the order records are written.
    """
    ordered = sorted(refs)
    classes = {w: i for i, w in enumerate(sorted({r.wnid for r in ordered}))}
    items = [(i, r, classes[r.wnid]) for i, r in enumerate(ordered)]
    random.Random(seed).shuffle(items)  # im2rec: random.seed(100); random.shuffle(list) - same sequence
    return items


def plan_nvidia(*, train: Sequence[ImageRef], validation: Sequence[ImageRef], val_labels: Sequence[str]) -> list[Shard]:
    """NVIDIA's units: one per split in im2rec order: label = folder index 0..N-1 over sorted wnids, seed-100 shuffle.

    A split with no images is left out (pass none for a split with 0 shards).

    Validation images get ``<wnid>/<name>`` paths, as after ``valprep.sh``. im2rec numbers the
    folders that hold an image under the root it lists, so each split is numbered on its own:
    the train classes for train, the validation images' wnids for val (the same 0..999 on the
    full set). With train images, every validation wnid must be a train class (refused, naming
    the labels file and line).
    """

    def rank(wnids: set[str]) -> dict[str, int]:
        return {w: i - 1 for w, i in label_map(wnids).items()}  # 0-based, like im2rec

    def im2rec(items: list[PlanItem]) -> list[PlanItem]:
        items.sort(key=lambda i: i.ref.relpath)  # the sorted walk
        random.Random(IM2REC_SEED).shuffle(items)
        return items

    out = []
    if train:
        ranks = rank({r.wnid for r in train})
        out.append(Shard("train", 0, 1, tuple(im2rec([PlanItem(r, ranks[r.wnid], r.wnid) for r in train]))))
    if validation:
        classes = {r.wnid for r in train} or set(val_labels)
        labelled = val_items(validation, val_labels, rank(classes))  # refuses a wnid that is not a train class
        # Regression (issue 10 item 11): val labels followed the union of train and label-file wnids, not val's own folders.
        ranks = rank({i.synset for i in labelled})
        moved = [
            PlanItem(ImageRef(f"{i.synset}/{i.ref.name}", i.ref.container, i.ref.offset, i.ref.size), ranks[i.synset], i.synset)
            for i in labelled
        ]
        out.append(Shard("validation", 0, 1, tuple(im2rec(moved))))
    return out
