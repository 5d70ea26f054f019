"""Full disks: an ``OSError`` ENOSPC (or EDQUOT) while writing becomes a :class:`DiskFullError`.

Every place that writes files wraps the write once::

    with disk_full_guard(part):
        with open(part, "wb") as fh:
            fh.write(chunk)

and the error then names the path and the space left on its filesystem instead of surfacing as
a bare ``[Errno 28] No space left on device`` traceback. Other ``OSError`` pass through unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagenet_ops.core.errors import DiskFullError
from imagenet_ops.core.progress import human_bytes

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` saying the filesystem is full or the quota is used up."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _space(path: Path) -> tuple[int, int] | None:
    """``(free, total)`` bytes of the filesystem holding ``path`` (its nearest existing ancestor)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            try:
                usage = shutil.disk_usage(candidate)
            except OSError:
                return None
            return usage.free, usage.total
    return None


def disk_full_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> DiskFullError:
    """The :class:`DiskFullError` for ``exc``, naming ``path`` (else the path in the error, if any)."""
    where = path if path is not None else (exc.filename or None)
    what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on the device"
    if where is None:
        return DiskFullError(f"{what} while writing (the path was not reported): free space or use another folder")
    space = _space(Path(where))
    left = "free space unknown" if space is None else f"{human_bytes(space[0])} free of {human_bytes(space[1])}"
    return DiskFullError(
        f"{what} while writing {where} ({left} on that filesystem): free space or point the output/work dir elsewhere",
        path=str(where),
        free=None if space is None else space[0],
    )


@contextmanager
def disk_full_guard(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a :class:`DiskFullError` naming ``path``.

    Raises:
        DiskFullError: the filesystem holding ``path`` is full (or the quota is used up).
    """
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise disk_full_error(exc, path) from exc
