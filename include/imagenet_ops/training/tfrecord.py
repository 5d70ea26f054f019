"""TFRecord files and ``tf.train.Example`` records without TensorFlow.

The ImageNet converter's hot path: :func:`~imagenet_ops.training.example.imagenet_example`
hand-encodes the 9-key record of the reference converter (re-exported here) and
:class:`TFRecordWriter` frames it (u64 length, masked CRC-32C of the
length, payload, masked CRC-32C of the payload; all little-endian). The CRC comes from the C
extension of ``crc32c`` (ICRAR), which takes any buffer: the writer checksums a record where it
lies in its buffer, so an image read straight into that buffer is never copied in user space.
Output is byte-identical to TF's ``Example.SerializeToString(deterministic=True)`` written by
``tf.io.TFRecordWriter``.

:func:`iter_tfrecords` and :func:`tfrecord_index_lines` read the files back for verification and
for DALI's ``tfrecord2idx`` index.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import IO, BinaryIO

from imagenet_ops.core.errors import ImagenetOpsError
from imagenet_ops.training.example import encode_example, imagenet_example, imagenet_example_parts

try:
    import crc32c as _crc32c_module
except ImportError as exc:  # pinned in requirements.txt; google-crc32c cannot stand in (it refuses memoryviews)
    raise ImportError(
        "imagenet_ops.training.tfrecord needs the crc32c package (pinned in requirements.txt): pip install crc32c==2.9.post0"
    ) from exc

if not _crc32c_module.hardware_based:  # the software fallback is several times slower
    warnings.warn("crc32c has no SSE4.2/ARMv8 CRC here: TFRecord writing will be slow", RuntimeWarning, stacklevel=2)

_crc = _crc32c_module.crc32c  # _crc(data, crc=0): CRC-32C of any buffer (bytes, bytearray, memoryview), extending crc
_U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack
_U64_LE = struct.Struct("<Q").unpack_from
_U32_LE = struct.Struct("<I").unpack_from

MASK_DELTA = 0xA282EAD8
FRAME_OVERHEAD = 16  # u64 length + u32 length crc + u32 payload crc


class CorruptRecordError(ImagenetOpsError, ValueError):
    """A TFRecord file has a bad CRC or ends inside a record; the message names the file and byte offset."""


def _mask(crc: int) -> int:
    """A CRC-32C masked the way TFRecord stores it."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, masked the way TFRecord stores it."""
    return _mask(_crc(data))


def _unmask(masked: int) -> int:
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _frame_header(length: int) -> bytes:
    head = _U64(length)
    return head + _U32(masked_crc32c(head))


def frame_record(payload: bytes) -> bytes:
    """One TFRecord: u64 length, masked CRC of those 8 bytes, ``payload``, masked CRC of ``payload``."""
    return b"".join((_frame_header(len(payload)), payload, _U32(masked_crc32c(payload))))


# --- files -----------------------------------------------------------------------------------------


_IOV_MAX = 1024  # Linux's limit on one writev's buffers (sysconf IOV_MAX)
BUFFER_BYTES = 512 << 10
"""Framed records are gathered in one buffer of this size, written with one ``write`` when full.

Fewer, larger writes cost the kernel less than one ``writev`` per record. The buffer is
allocated once per file and reused: holding the records' own ``bytes`` until a flush instead
made the allocator return and re-fault ~20 pages per image. 512 KiB stays in a core's L2 cache
with the image being copied; 4 MiB did not, and cost more CPU than one ``writev`` per record
(``bench/training_data.py``, CLI marginal CPU per image).
"""
HEAD_ROOM = 256
"""Bytes :meth:`TFRecordWriter.write_filled` keeps before a record's middle for the frame header and the head.

The ImageNet record's header and head take about 170; a record whose head does not fit is copied
out and written like any other (correct, one copy slower).
"""
_TAIL_ROOM = 1024  # kept after the middle for the tail and payload CRC (an ImageNet tail is under 300 bytes)


def _writev_all(fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    """``os.writev`` every byte of ``chunks`` (at most :data:`_IOV_MAX` buffers per call; a short write is resumed)."""
    for at in range(0, len(chunks), _IOV_MAX):
        batch = chunks[at : at + _IOV_MAX]
        total = sum(len(c) for c in batch)
        written = os.writev(fd, batch)
        while written < total:  # a regular file rarely takes less, but may
            rest = memoryview(b"".join(batch))[written:]
            written += os.write(fd, rest)


def _write_all(fd: int, data: memoryview) -> None:
    """``os.write`` until every byte of ``data`` is written."""
    while data:
        data = data[os.write(fd, data) :]


def _preallocate(fd: int, size: int) -> bool:
    """Reserve ``size`` bytes of disk for a new file in one call (fewer block allocations while writing).

    ``posix_fallocate`` also sets the file's length, so the writer truncates to what it wrote at the
    end. A filesystem that cannot do it (some network and FUSE mounts) is simply not preallocated.
    """
    try:
        os.posix_fallocate(fd, 0, size)
    except (OSError, AttributeError):
        return False
    return True


class TFRecordWriter:
    """Write framed records to a path (created or truncated) or to an open binary file.

    Use as a context manager; a file opened here is closed on exit, a file passed in is only flushed.
    ``records`` and ``bytes`` count what this writer wrote (framing included); :attr:`checksum`
    is the file's :func:`tfrecord_checksum`, kept while writing so nobody reads the file back.

    Writing to a path, records are gathered in a reused buffer of ``buffer_bytes`` and written
    with one ``write`` when it is full (a larger record goes out by itself with one ``writev``).
    :meth:`write_filled` lets the caller read a record's large middle straight into that buffer.
    ``size_hint`` (the expected file size, e.g. from the plan) preallocates the file; it is
    truncated to the bytes written on close, so a wrong hint costs nothing but the reservation.
    ``index`` also writes DALI's ``tfrecord2idx`` index of the file to that path, line by line
    as records are written (see :func:`tfrecord_index_lines`); :attr:`index_sha256` and
    :attr:`index_bytes` describe it.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        index: str | os.PathLike[str] | None = None,
        buffer_bytes: int = BUFFER_BYTES,
        size_hint: int = 0,
    ) -> None:
        if isinstance(target, str | os.PathLike):
            self._fh: IO[bytes] = open(target, "wb", buffering=0)  # closed in close(); records go out by writev
            self._owned = True
            self.name = os.fspath(target)
        else:
            self._fh = target
            self._owned = False
            self.name = str(getattr(target, "name", repr(target)))
        self.records = 0
        self.bytes = 0
        self._crc = 0
        self._buffer = memoryview(bytearray(buffer_bytes)) if self._owned and buffer_bytes > 1 else None
        # What the buffer holds for the file, in order: the finished runs, then [_run_start, _fill).
        # write_filled may leave a gap before a record (the head room it did not need), so a run ends there.
        self._runs: list[memoryview] = []
        self._run_start = 0
        self._fill = 0
        self._preallocated = self._owned and size_hint > 0 and _preallocate(self._fh.fileno(), size_hint)
        self._index: IO[bytes] | None = open(index, "wb") if index is not None else None  # noqa: SIM115 - closed in close()
        self._index_sha = hashlib.sha256()
        self.index_bytes = 0

    @property
    def checksum(self) -> str:
        """:func:`tfrecord_checksum` of what was written so far."""
        return f"{CHECKSUM_KIND}:{self._crc:08x}"

    @property
    def index_sha256(self) -> str:
        """sha256 (hex) of the index written so far (only meaningful with ``index``)."""
        return self._index_sha.hexdigest()

    def write(self, payload: bytes) -> None:
        """Append one record holding ``payload`` (usually a serialized Example)."""
        self.write_parts((payload,))

    def write_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        """Append one record whose payload is ``b"".join(parts)``, without joining them.

        The payload CRC is extended over the parts; the frame is copied into the writer's buffer
        (one ``write`` per :data:`BUFFER_BYTES`), or written by itself if it is larger.
        """
        length = sum(map(len, parts))
        crc = 0
        for part in parts:
            crc = _crc(part, crc)
        head, foot = _frame_header(length), _U32(_mask(crc))
        size = length + FRAME_OVERHEAD
        buffer = self._buffer
        if buffer is not None and size <= len(buffer):
            if self._fill + size > len(buffer):
                self._flush()
            at = self._fill
            for chunk in (head, *parts, foot):
                end = at + len(chunk)
                buffer[at:end] = chunk
                at = end
            self._fill = at
        elif self._owned:
            self._flush()
            _writev_all(self._fh.fileno(), [head, *parts, foot])
        else:
            self._fh.write(head)
            for part in parts:
                self._fh.write(part)
            self._fh.write(foot)
        self._written(head, foot, size)

    def write_filled(self, size: int, fill: Callable[[memoryview], tuple[bytes, bytes]]) -> bool:
        """Append one record ``head + middle + tail`` whose ``size``-byte middle ``fill`` writes into the buffer.

        ``fill(middle)`` gets a writable view of the buffer where the middle goes, fills it (an
        image read from its tar with one ``preadv``) and returns ``(head, tail)``; the view is
        valid during the call only. The payload is then checksummed and written where it lies:
        its middle is never copied in user space. If ``fill`` raises, nothing is written.

        Returns:
            ``False``, without calling ``fill``, when the record cannot go through the buffer
            (a file passed in, ``buffer_bytes`` of 1, or a middle near the buffer's size):
            write it with :meth:`write_parts` then.
        """
        buffer = self._buffer
        if buffer is None or HEAD_ROOM + size + _TAIL_ROOM > len(buffer):
            return False
        if self._fill + HEAD_ROOM + size + _TAIL_ROOM > len(buffer):
            self._flush()
        at = self._fill + HEAD_ROOM
        end = at + size
        head, tail = fill(buffer[at:end])
        start, stop = at - len(head) - 12, end + len(tail) + 4
        if start < self._fill or stop > len(buffer):  # no room for this head or tail: write a copy as usual
            self.write_parts((head, bytes(buffer[at:end]), tail))
            return True
        buffer[start + 12 : at] = head
        buffer[end : stop - 4] = tail
        header = _frame_header(stop - start - FRAME_OVERHEAD)
        foot = _U32(masked_crc32c(buffer[start + 12 : stop - 4]))
        buffer[start : start + 12] = header
        buffer[stop - 4 : stop] = foot
        if start != self._fill:  # a gap before this record: the buffer's current run ends
            if self._fill > self._run_start:
                self._runs.append(buffer[self._run_start : self._fill])
            self._run_start = start
        self._fill = stop
        self._written(header, foot, stop - start)
        return True

    def _written(self, header: bytes, foot: bytes, size: int) -> None:
        """Account for one record of ``size`` bytes (framing included): index line, file checksum, counts."""
        if self._index is not None:
            line = b"%d %d\n" % (self.bytes, size)
            self._index.write(line)
            self._index_sha.update(line)
            self.index_bytes += len(line)
        self._crc = _crc(foot, _crc(header, self._crc))
        self.records += 1
        self.bytes += size

    def _flush(self) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        if self._fill > self._run_start:
            self._runs.append(buffer[self._run_start : self._fill])
        if len(self._runs) == 1:
            _write_all(self._fh.fileno(), self._runs[0])
        elif self._runs:
            _writev_all(self._fh.fileno(), self._runs)
        self._runs = []
        self._run_start = self._fill = 0

    def close(self) -> None:
        """Write what is buffered, and close the file if this writer opened it (and the index)."""
        try:
            if self._owned:
                try:
                    self._flush()
                    if self._preallocated:
                        os.ftruncate(self._fh.fileno(), self.bytes)
                finally:
                    self._fh.close()
            else:
                self._fh.flush()
        finally:
            if self._index is not None:
                self._index.close()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


CHECKSUM_KIND = "tfrecord-crc32c"


def tfrecord_checksum(path: str | os.PathLike[str]) -> str:
    """A TFRecord file's checksum: CRC-32C over every record's 12-byte header and 4-byte payload CRC.

    The payload CRCs already cover every payload byte, so this identifies the content as well as a
    CRC of the whole file, but the writer gets it without a second pass over the image bytes (a
    whole-file hash cost about half the writer's time). Verifying reads the file once and checks
    every record's CRC. Returned as ``"tfrecord-crc32c:<8 hex digits>"``.

    Raises:
        CorruptRecordError: a record's CRC does not match or the file ends inside a record.
    """
    crc, name = 0, os.fspath(path)
    with open(path, "rb") as fh:
        offset = 0
        while True:
            head = fh.read(12)
            if not head:
                break
            length = _read_header(io.BytesIO(head), name, offset)
            payload, footer = fh.read(length), fh.read(4)
            if len(payload) < length or len(footer) < 4:
                raise CorruptRecordError(f"{name}: truncated TFRecord at byte offset {offset}")
            if _U32_LE(footer)[0] != masked_crc32c(payload):
                raise CorruptRecordError(f"{name}: corrupt TFRecord at byte offset {offset}: payload CRC mismatch")
            crc = _crc(footer, _crc(head, crc))
            offset += length + FRAME_OVERHEAD
    return f"{CHECKSUM_KIND}:{crc:08x}"


def _open_for_read(path_or_file: str | os.PathLike[str] | BinaryIO) -> tuple[IO[bytes], bool, str]:
    if isinstance(path_or_file, str | os.PathLike):
        return open(path_or_file, "rb"), True, os.fspath(path_or_file)
    return path_or_file, False, str(getattr(path_or_file, "name", repr(path_or_file)))


def _read_header(fh: IO[bytes], name: str, offset: int) -> int | None:
    """Length of the record at ``offset``, ``None`` at a clean end of file; the length CRC is always checked."""
    head = fh.read(12)
    if not head:
        return None
    if len(head) < 12:
        raise CorruptRecordError(f"{name}: truncated TFRecord at byte offset {offset}: {len(head)} of 12 header bytes")
    stored, computed = _U32_LE(head, 8)[0], masked_crc32c(head[:8])
    if stored != computed:
        raise CorruptRecordError(
            f"{name}: corrupt TFRecord at byte offset {offset}: length CRC 0x{stored:08x} != computed 0x{computed:08x}"
        )
    return _U64_LE(head)[0]


def iter_tfrecords(path_or_file: str | os.PathLike[str] | BinaryIO, *, verify_crc: bool = True) -> Iterator[bytes]:
    """Yield the payload of every record in a TFRecord file.

    Args:
        path_or_file: a path or an open binary file positioned at a record start.
        verify_crc: check each payload's CRC. The 12-byte length header is always checked:
            without it a damaged length could not be told from a real one.

    Yields:
        Each record's payload, in file order.

    Raises:
        CorruptRecordError: a ``ValueError`` naming the file and the record's byte offset when a
            CRC does not match or the file ends inside a record.
    """
    fh, owned, name = _open_for_read(path_or_file)
    try:
        offset = 0
        while (length := _read_header(fh, name, offset)) is not None:
            payload = fh.read(length)
            footer = fh.read(4)
            if len(payload) < length or len(footer) < 4:
                raise CorruptRecordError(
                    f"{name}: truncated TFRecord at byte offset {offset}: "
                    f"record of {length + FRAME_OVERHEAD} bytes, file ends after {12 + len(payload) + len(footer)}"
                )
            if verify_crc:
                stored, computed = _U32_LE(footer)[0], masked_crc32c(payload)
                if stored != computed:
                    raise CorruptRecordError(
                        f"{name}: corrupt TFRecord at byte offset {offset}: "
                        f"payload CRC 0x{stored:08x} != computed 0x{computed:08x} (unmasked 0x{_unmask(stored):08x})"
                    )
            yield payload
            offset += length + FRAME_OVERHEAD
    finally:
        if owned:
            fh.close()


def tfrecord_index_lines(path: str | os.PathLike[str]) -> list[str]:
    """DALI ``tfrecord2idx`` lines for a TFRecord file: ``"<offset> <size>\\n"`` per record.

    ``size`` includes the 16 framing bytes; ``"".join(lines)`` is the index file's content.
    Payloads are skipped, not read; only the length CRCs are checked.

    Raises:
        CorruptRecordError: a length CRC does not match or the file ends inside a record.
    """
    name = os.fspath(path)
    lines = []
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        offset = 0
        while (length := _read_header(fh, name, offset)) is not None:
            size = length + FRAME_OVERHEAD
            if offset + size > end:
                raise CorruptRecordError(
                    f"{name}: truncated TFRecord at byte offset {offset}: record of {size} bytes, file ends after {end - offset}"
                )
            lines.append(f"{offset} {size}\n")
            offset += size
            fh.seek(offset)
    return lines


__all__ = [
    "FRAME_OVERHEAD",
    "CorruptRecordError",
    "TFRecordWriter",
    "encode_example",
    "frame_record",
    "imagenet_example",
    "imagenet_example_parts",
    "iter_tfrecords",
    "masked_crc32c",
    "tfrecord_index_lines",
]
