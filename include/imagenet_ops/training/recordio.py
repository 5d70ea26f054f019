"""MXNet RecordIO (``.rec`` + ``.idx``) and im2rec ``.lst`` files, written without MXNet.

This is what NVIDIA's ``prepare_imagenet.sh`` produces with ``im2rec.py --list --recursive`` and
``im2rec.py --pass-through``. Each ``.rec`` record is written the way dmlc-core's
``RecordIOWriter::WriteRecord`` writes it: u32 magic ``0xced7230a``, u32 ``lrec = cflag << 29 |
length``, the data, zero padding to 4 bytes. A payload holding the magic number at a 4-byte-aligned
offset is split there: the magic is dropped and the pieces get ``cflag`` 1 (first), 2 (middle)
and 3 (last), so a reader never meets the magic inside a record and re-inserts it when joining.
The payload of an im2rec record is :func:`pack_irheader` followed by the image file's bytes.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Sequence
from types import TracebackType

RECORDIO_MAGIC = 0xCED7230A
MAX_RECORD_BYTES = (1 << 29) - 1  # lrec keeps 29 bits for the length
IRHEADER_SIZE = 24

_MAGIC = struct.pack("<I", RECORDIO_MAGIC)
_HEAD = struct.Struct("<II").pack
_IRHEADER = struct.Struct("<IfQQ")  # flag, label, id, id2; MXNet packs native 'IfQQ' = this on little-endian
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4


def pack_irheader(label: float, id: int, id2: int = 0, flag: int = 0) -> bytes:
    """MXNet's ``IRHeader`` as ``mx.recordio.pack`` writes it for a scalar label (24 bytes)."""
    return _IRHEADER.pack(flag, label, id, id2)


def _aligned_magics(payload: bytes) -> list[int]:
    """Offsets where dmlc splits ``payload``: the magic at a multiple of 4, wholly before ``len & ~3``."""
    limit = len(payload) & ~3
    found = []
    at = payload.find(_MAGIC, 0, limit)
    while at != -1:
        if at & 3:
            at = payload.find(_MAGIC, (at | 3) + 1, limit)
        else:
            found.append(at)
            at = payload.find(_MAGIC, at + 4, limit)
    return found


class RecordIOWriter:
    """Write an indexed RecordIO pair like ``mx.recordio.MXIndexedRecordIO(idx_path, rec_path, "w")``.

    Both files are created or truncated; use as a context manager. ``records``, ``bytes`` (of the
    ``.rec``) and ``splits`` (magic numbers dropped by splitting) count what was written.
    """

    def __init__(self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]) -> None:
        self.rec_path, self.idx_path = os.fspath(rec_path), os.fspath(idx_path)
        self._rec = open(rec_path, "wb")  # both closed in close()
        try:
            self._idx = open(idx_path, "w", encoding="utf-8", newline="\n")
        except BaseException:
            self._rec.close()
            raise
        self.records = 0
        self.bytes = 0
        self.splits = 0

    def write(self, idx: int, payload: bytes) -> None:
        """Append ``payload`` as one logical record and the line ``idx\\toffset`` to the ``.idx``.

        Raises:
            ValueError: ``payload`` is 2**29 bytes or longer (dmlc's limit).
        """
        size = len(payload)
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"{self.rec_path}: record {idx} has {size} bytes; RecordIO records must be below 2**29 bytes")
        offset, write = self.bytes, self._rec.write
        start = 0
        if _MAGIC in payload:  # rare: split where dmlc does
            view, cuts = memoryview(payload), _aligned_magics(payload)
            for at in cuts:
                write(_HEAD(RECORDIO_MAGIC, ((2 if start else 1) << 29) | (at - start)))
                write(view[start:at])
                self.bytes += 8 + at - start
                start = at + 4
            self.splits += len(cuts)
            payload = view[start:]
        write(_HEAD(RECORDIO_MAGIC, ((3 if start else 0) << 29) | (size - start)))
        write(payload)
        write(_PAD[size & 3])
        self.bytes += 8 + size - start + len(_PAD[size & 3])
        self._idx.write(f"{idx}\t{offset}\n")
        self.records += 1

    def close(self) -> None:
        """Close both files."""
        try:
            self._rec.close()
        finally:
            self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def lst_line(idx: int, label: float, relpath: str) -> str:
    """One ``.lst`` line as im2rec writes it: ``idx\\tlabel(%f)\\trelpath\\n``."""
    return f"{idx}\t{label:f}\t{relpath}\n"


def im2rec_list(root_entries: Sequence[tuple[str, int]], *, shuffle: bool = True, seed: int = 100) -> list[tuple[int, str, int]]:
    """The ``.lst`` rows of ``im2rec.py --list --recursive``, in file order.

    im2rec numbers the images in walk order (directories and files sorted) and then, with
    shuffle on (its default), runs ``random.seed(100); random.shuffle(image_list)``. A private
    ``random.Random(seed)`` gives the identical permutation without touching the global RNG.

    Args:
        root_entries: ``(relpath, label)`` for every image, in im2rec's sorted-walk order.
        shuffle: shuffle like im2rec (``--no-shuffle`` turns it off there).
        seed: im2rec's fixed seed.

    Returns:
        ``(idx, relpath, label)`` rows; write them with :func:`lst_line`.
    """
    rows = [(idx, relpath, label) for idx, (relpath, label) in enumerate(root_entries)]
    if shuffle:
        random.Random(seed).shuffle(rows)
    return rows


__all__ = [
    "IRHEADER_SIZE",
    "MAX_RECORD_BYTES",
    "RECORDIO_MAGIC",
    "RecordIOWriter",
    "im2rec_list",
    "lst_line",
    "pack_irheader",
]
