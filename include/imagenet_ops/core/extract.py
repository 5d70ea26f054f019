"""Safe extraction of .tar / .tar.gz / .tgz / .gz into a temporary folder renamed into place.

Absolute names and ``..`` components are refused up front; links that escape, device files and
other specials are refused by the standard library's ``data`` extraction filter.

Decompression bombs are refused while extracting, before the bytes land on disk: at most
:data:`MAX_EXPANDED_BYTES` in all, and, past :data:`RATIO_FLOOR`, at most :data:`MAX_RATIO`
times the archive's own size. (A 1.7 MB ``.tar.gz`` that expanded to 1.5 GB was extracted.)
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.errors import ArchiveError, DiskFullError, UnsafeArchiveError
from imagenet_ops.core.progress import Progress, human_bytes

log = logging.getLogger(__name__)

MAX_EXPANDED_BYTES = 8 << 30
"""Absolute cap on what one archive may expand to (the largest legitimate input, a model, is ~100 MB)."""
MAX_RATIO = 100
"""Cap on expanded size / archive size once past :data:`RATIO_FLOOR` (images and models barely compress)."""
RATIO_FLOOR = 64 << 20
"""Below this many expanded bytes the ratio is not checked (small text files compress well)."""


class _Budget:
    """What an archive may still expand to; refuses the member or chunk that would go over."""

    def __init__(self, archive: Path, max_bytes: int, max_ratio: float) -> None:
        self.archive, self.size, self.max_bytes, self.max_ratio = archive, archive.stat().st_size, max_bytes, max_ratio
        self.ratio_cap, self.used = max(RATIO_FLOOR, int(self.size * max_ratio)), 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.archive}: expands to more than {human_bytes(self.max_bytes)}; refusing to extract (a decompression bomb?)"
            )
        if self.used > self.ratio_cap:
            raise UnsafeArchiveError(
                f"{self.archive}: expands to more than {self.max_ratio:g}x its size of {human_bytes(self.size)} "
                f"(over {human_bytes(self.used)} so far); refusing to extract (a decompression bomb?)"
            )


@dataclass(frozen=True)
class ExtractResult:
    """The extracted folder (or file, for a plain ``.gz``) and what went into it."""

    path: str
    files: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def archive_kind(path: Path) -> str:
    """Return ``"tar"`` or ``"gz"`` from the name, or raise :class:`ArchiveError`."""
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if name.endswith(".gz"):
        return "gz"
    raise ArchiveError(f"{path}: unsupported archive type (expected .tar, .tar.gz, .tgz or .gz)")


def extract_archive(
    *,
    archive: Path,
    dest: Path,
    progress_every: float = 5.0,
    max_bytes: int = MAX_EXPANDED_BYTES,
    max_ratio: float = MAX_RATIO,
) -> ExtractResult:
    """Extract ``archive`` to ``dest`` atomically.

    A tar goes into the folder ``dest``; a plain ``.gz`` becomes the file ``dest``.
    The content is written under a temporary sibling name first and renamed into place, so a
    failed extraction leaves nothing at ``dest``; an existing ``dest`` is replaced.

    Args:
        archive: the .tar/.tar.gz/.tgz/.gz file.
        dest: target folder (tar) or file (gz).
        progress_every: seconds between progress lines.
        max_bytes: most bytes the archive may expand to.
        max_ratio: most expanded bytes per archive byte, past :data:`RATIO_FLOOR`.

    Returns:
        Path, number of files and bytes extracted.

    Raises:
        UnsafeArchiveError: a member has an absolute name, a ``..`` component, a link that
            escapes ``dest`` or is a device/special file (names the archive and the member), or
            the archive expands past ``max_bytes`` or ``max_ratio``.
        ArchiveError: the archive is unreadable or of an unknown kind.
        DiskFullError: the destination's filesystem filled up (names the file being written and
            the space left); nothing is left at ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    with disk_full_guard(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, max_bytes, max_ratio)
    if archive_kind(archive) == "gz":
        return _gunzip(archive, dest, budget)
    with disk_full_guard(dest.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        files, size = _untar(archive, tmp, progress_every, budget)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %s: %d files, %s into %s", archive.name, files, human_bytes(size), dest)
    return ExtractResult(path=str(dest), files=files, bytes=size)


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} has an absolute path; refusing to extract")
    if ".." in name.parts:
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} contains '..'; refusing to extract")


def _untar(archive: Path, tmp: Path, every: float, budget: _Budget) -> tuple[int, int]:
    files = size = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            progress = Progress(f"extract {archive.name}", unit="files", logger=log, every=every)
            for member in tar:
                _check_member(archive, member)
                budget.take(member.size)  # the header's size, before a byte of it is written
                try:
                    with disk_full_guard(tmp / member.name):
                        tar.extract(member, tmp, filter="data")
                except tarfile.FilterError as exc:
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} refused: {exc}") from exc
                if member.isfile():
                    files += 1
                    size += member.size
                    progress.update(1)
            _check_end_of_archive(archive, tar, files)
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArchiveError(f"{archive}: not a readable tar archive: {exc}") from exc
    return files, size


def _check_end_of_archive(archive: Path, tar: tarfile.TarFile, files: int) -> None:
    """Only zero padding may follow the last member.

    ``tarfile`` takes an unreadable header *after* the first member for the end of the archive,
    which would silently drop the rest; and a compressed stream's checksum (gzip CRC) is only
    verified once it is read to its end. Reading the tail does both checks.
    """
    stream = tar.fileobj
    stream.seek(tar.offset)  # back over the header block tarfile just rejected (still buffered)
    position = tar.offset
    while chunk := stream.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise ArchiveError(f"{archive}: corrupt or truncated: unreadable header at byte {position} after {files} file(s)")
        position += len(chunk)


def _replace_dir(tmp: Path, dest: Path) -> None:
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _gunzip(archive: Path, dest: Path, budget: _Budget) -> ExtractResult:
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with gzip.open(archive, "rb") as src, disk_full_guard(tmp), open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                budget.take(len(chunk))
                out.write(chunk)
        os.replace(tmp, dest)
    except (UnsafeArchiveError, DiskFullError):
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{archive}: not a readable gzip file: {exc}") from exc
    size = dest.stat().st_size
    log.info("gunzipped %s to %s (%s)", archive.name, dest, human_bytes(size))
    return ExtractResult(path=str(dest), files=1, bytes=size)
