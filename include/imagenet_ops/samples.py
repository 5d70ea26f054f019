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

from imagenet_ops.aux_files import AUX_FILES, NUM_CLASSES, NUM_VAL_IMAGES


def sample_wnids(n: int = NUM_CLASSES) -> list[str]:
    """``n`` sorted, unique, wnid-shaped ids (``n01440764`` style)."""
    return [f"n{1440764 + 7919 * i:08d}" for i in range(n)]


def aux_file_contents(*, seed: int = 0, val_images: int = NUM_VAL_IMAGES) -> dict[str, bytes]:
    """The 8 aux files as bytes, deterministic for a seed."""
    rng = random.Random(seed)
    wnids = sample_wnids()
    val = "".join(f"ILSVRC2012_val_{i:08d}.JPEG {rng.randrange(NUM_CLASSES)}\n" for i in range(1, val_images + 1))
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
