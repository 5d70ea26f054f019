"""Small, deterministic sample inputs with the real layout, names and formats.

Used by the demo command and the tests (nothing here downloads anything). The aux sample
has the real counts the validator checks (1000 wnids, 50,000 validation labels) and short
train/test lists; wnids and words are synthetic.
"""

from __future__ import annotations

import gzip
import io
import pickle
import random
import struct
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imagenet_ops.aux.pipeline import AUX_FILES, NUM_CLASSES, NUM_VAL_IMAGES


def sample_wnids(n: int = NUM_CLASSES) -> list[str]:
    """``n`` sorted, unique, wnid-shaped ids (``n01440764`` style)."""
    return [f"n{1440764 + 7919 * i:08d}" for i in range(n)]


def aux_file_contents(*, seed: int = 0, val_images: int = NUM_VAL_IMAGES) -> dict[str, bytes]:
    """The 8 aux files as bytes, deterministic for a seed."""
    rng = random.Random(seed)
    wnids = sample_wnids()
    labels = [i % NUM_CLASSES for i in range(val_images)]  # as in ImageNet: 50 images a class, in a shuffled order
    rng.shuffle(labels)
    val = "".join(f"ILSVRC2012_val_{i:08d}.JPEG {label}\n" for i, label in enumerate(labels, 1))
    train = "".join(f"{w}/{w}_{k}.JPEG {c}\n" for c, w in enumerate(wnids) for k in (1, 2))
    # Caffe BlobProto header fields (num, channels, height, width) then float data; a stand-in of the right kind.
    mean = struct.pack("<4i", 1, 3, 16, 16) + struct.pack("<768f", *(rng.uniform(90, 130) for _ in range(768)))
    return {
        "synsets.txt": "".join(f"{w}\n" for w in wnids).encode(),
        "synset_words.txt": "".join(f"{w} sample class {i}\n" for i, w in enumerate(wnids)).encode(),
        "val.txt": val.encode(),
        "train.txt": train.encode(),
        "test.txt": "".join(f"ILSVRC2012_test_{i:08d}.JPEG 0\n" for i in range(1, 101)).encode(),
        "det_synset_words.txt": "".join(f"{w} detection class {i}\n" for i, w in enumerate(wnids[:200])).encode(),
        "imagenet_mean.binaryproto": mean,
        "imagenet.bet.pickle": pickle.dumps({"words": wnids[:10], "infogain": [0.0] * 10}, protocol=2),
    }


def write_tar(path: Path, members: Mapping[str, bytes], *, gz: bool | None = None) -> Path:
    """Write ``members`` (name -> bytes) to a tar (gzipped if the name says so), byte-reproducibly."""
    path = Path(path)
    gz = path.name.endswith((".gz", ".tgz")) if gz is None else gz
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def make_aux_archive(
    path: Path, *, seed: int = 0, omit: Iterable[str] = (), overrides: Mapping[str, bytes] | None = None
) -> Path:
    """Write a sample ``caffe_ilsvrc12.tar.gz``; ``omit``/``overrides`` make broken variants for tests."""
    files = aux_file_contents(seed=seed)
    files.update(overrides or {})
    skip = set(omit)
    return write_tar(path, {n: files[n] for n in (*AUX_FILES, *sorted(set(files) - set(AUX_FILES))) if n not in skip})


# -- training data -----------------------------------------------------------------------------


def imagenet_like_jpeg(seed: int, *, width: int = 500, height: int = 375, quality: int = 90, mode: str = "RGB") -> bytes:
    """A JPEG with photo-like statistics (smooth gradients plus texture), ~100 KB at 500x375."""
    import io as _io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([(x * rng.uniform(0.2, 0.6) + y * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256 for _ in range(3)], -1)
    texture = rng.normal(0, 18, (height, width, 3))
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_class_tars(
    folder: Path,
    *,
    wnids: list[str],
    per_class: int,
    seed: int = 0,
    files: Mapping[str, bytes] | None = None,
    width: int = 500,
    height: int = 375,
) -> list[Path]:
    """Write ``<wnid>.tar`` per class (the layout CM gets); ``files`` adds or replaces ``<wnid>_<n>.JPEG`` members."""
    folder = Path(folder)
    extra = dict(files or {})
    paths = []
    for c, wnid in enumerate(wnids):
        members = {
            f"{wnid}_{k}.JPEG": imagenet_like_jpeg(seed * 100_003 + c * 1009 + k, width=width, height=height)
            for k in range(1, per_class + 1)
        }
        members.update({n: b for n, b in extra.items() if n.startswith(wnid + "_")})
        paths.append(write_tar(folder / f"{wnid}.tar", dict(sorted(members.items()))))
    return paths


def make_train_tar(path: Path, **kwargs: Any) -> Path:
    """Write an ``ILSVRC2012_img_train.tar``-shaped tar of per-class tars (arguments as :func:`make_class_tars`)."""
    import tempfile as _tempfile

    path = Path(path)
    with _tempfile.TemporaryDirectory() as tmp:
        inner = make_class_tars(Path(tmp), **kwargs)
        return write_tar(path, {p.name: p.read_bytes() for p in inner}, gz=False)


def make_val_tar(
    path: Path,
    *,
    count: int | None = None,
    indices: Iterable[int] | None = None,
    seed: int = 1,
    width: int = 500,
    height: int = 375,
) -> Path:
    """Write an ``ILSVRC2012_img_val.tar``-shaped flat tar of ``ILSVRC2012_val_%08d.JPEG``.

    The images are numbered 1..``count``, or ``indices`` (a subset picked by :func:`training_subset`);
    image i has the same bytes either way.
    """
    if (count is None) == (indices is None):
        raise ValueError("give count or indices")
    numbers = range(1, count + 1) if count is not None else sorted(indices or ())
    members = {f"ILSVRC2012_val_{i:08d}.JPEG": imagenet_like_jpeg(seed * 7919 + i, width=width, height=height) for i in numbers}
    return write_tar(Path(path), members, gz=False)


def training_subset(val_txt: str, synsets: list[str], *, classes: int, images: int) -> tuple[list[str], list[int]]:
    """A small train + validation subset in which every validation class is a train class.

    The converters refuse a validation image whose wnid is not a train class, so a subset cannot
    simply take the first N validation images and a few classes. This takes the classes of the
    first validation images until there are ``classes`` of them, then the first ``images``
    validation images labelled with one of those classes.

    Args:
        val_txt: the aux ``val.txt`` text (``ILSVRC2012_val_%08d.JPEG <label>`` lines, in order).
        synsets: ``synsets.txt`` as a list (label k names ``synsets[k]``).
        classes: how many train classes.
        images: how many validation images.

    Returns:
        The sorted train class wnids and the validation image numbers (for :func:`make_val_tar`).

    Raises:
        ValueError: ``val_txt`` has fewer distinct labels or fewer images of those classes.
    """
    labels = [synsets[int(line.split()[1])] for line in val_txt.splitlines() if line.strip()]
    chosen: list[str] = []
    for wnid in labels:
        if len(chosen) == classes:
            break
        if wnid not in chosen:
            chosen.append(wnid)
    picked = [i for i, wnid in enumerate(labels, 1) if wnid in chosen][:images]
    if len(chosen) < classes or len(picked) < images:
        raise ValueError(f"val.txt has {len(chosen)} classes and {len(picked)} images of them; {classes} and {images} wanted")
    return sorted(chosen), picked


def val_synset_labels(count: int, wnids: list[str], seed: int = 2) -> str:
    """``imagenet_2012_validation_synset_labels.txt``-shaped text: one wnid per validation image."""
    rng = random.Random(seed)
    return "".join(f"{rng.choice(wnids)}\n" for _ in range(count))


def example_fields(seed: int, size: int) -> dict[str, Any]:
    """Random fields of one ImageNet ``tf.train.Example`` with a ``size``-byte payload (not a real JPEG)."""
    rng = random.Random(seed)
    wnid = f"n{rng.randrange(10**8):08d}"
    return {
        "encoded": rng.randbytes(size),
        "height": rng.randrange(1, 5000),
        "width": rng.randrange(1, 5000),
        "label": rng.randrange(1, 1001),
        "synset": wnid,
        "filename": f"{wnid}_{rng.randrange(10**5)}.JPEG",
    }
