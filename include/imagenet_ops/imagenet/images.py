"""ImageNet images read straight from their archives: never extract 1.28 M files to disk.

Train comes as the outer ``ILSVRC2012_img_train.tar`` (1000 inner ``<wnid>.tar``), a folder of
the per-class tars (what CM gets), or a folder ``<wnid>/*.JPEG`` (optionally under ``train/``).
Validation comes as ``ILSVRC2012_img_val.tar`` or a flat folder. Listing walks the tar headers
once and records, for every image, the file holding its bytes and their offset, so any worker can
read any image with one seek: the basis for sharded, parallel writers.

The ImageNet tars are uncompressed; a compressed tar cannot be read by offset and is refused.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from imagenet_ops.core.errors import ArchiveError, ValidationError
from imagenet_ops.core.progress import Progress
from imagenet_ops.core.uris import is_remote

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True, order=True)
class ImageRef:
    """Where one image's bytes are: ``size`` bytes at ``offset`` in ``container``.

    ``relpath`` is ``<wnid>/<name>`` for train and ``<name>`` for validation; it orders the
    global list (sorted, so nothing depends on the filesystem's listing order).
    """

    relpath: str
    container: str
    offset: int
    size: int

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def wnid(self) -> str:
        return self.relpath.split("/", 1)[0] if "/" in self.relpath else ""

    def as_list(self) -> list[Any]:
        """Compact JSON form for plans: ``[relpath, container, offset, size]``."""
        return [self.relpath, self.container, self.offset, self.size]

    @classmethod
    def from_list(cls, row: list[Any]) -> ImageRef:
        return cls(str(row[0]), str(row[1]), int(row[2]), int(row[3]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Window:
    """A read-only file view of ``size`` bytes at ``start`` of ``fh`` (an inner tar inside the outer one)."""

    def __init__(self, fh: IO[bytes], start: int, size: int) -> None:
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not os.path.basename(name).startswith(".")


def _open_tar(fileobj: Any, label: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.ReadError as exc:
        raise ArchiveError(f"{label}: not an uncompressed tar archive ({exc}); ImageNet tars are read by offset") from exc


def _tar_images(tar: tarfile.TarFile, container: str, base: int, prefix: str) -> Iterator[ImageRef]:
    for m in tar:
        if m.isfile() and _is_image(m.name):
            yield ImageRef(f"{prefix}{os.path.basename(m.name)}", container, base + m.offset_data, m.size)


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_PLAIN_FILE = (b"0", b"\0", b"7")
_HANDLED_TYPES = (*_PLAIN_FILE, b"1", b"2", b"3", b"4", b"5", b"6")


def _block_reader(fh: IO[bytes]) -> Callable[[int], bytes]:
    """``read(offset)`` of one tar block: one ``pread`` for a local file (a seek + read refills an 8 KB
    buffer per header), else a seek and a read."""
    try:
        fd = fh.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):

        def read(offset: int) -> bytes:
            fh.seek(offset)
            return fh.read(_BLOCK)

        return read
    return lambda offset: os.pread(fd, _BLOCK, offset)


def _walk_headers(fh: IO[bytes], start: int, size: int) -> list[tuple[str, int, int]] | None:
    """``(name, data offset, size)`` of the regular files of the tar at ``start``, by reading headers only.

    About 4x faster than ``tarfile`` for the 1.28 M ImageNet members. Checks each header's
    checksum; returns ``None`` for anything it does not handle (pax or GNU long-name headers,
    base-256 sizes, a bad checksum) so the caller can fall back to ``tarfile`` and its errors.
    """
    out = []
    pos = 0
    read_block = _block_reader(fh)
    while pos + _BLOCK <= size:
        block = read_block(start + pos)
        if len(block) < _BLOCK:
            return None
        if block == _ZERO_BLOCK:
            break
        try:
            stored = int(block[148:156].replace(b"\0", b" ").strip() or b"0", 8)
            msize = int(block[124:136].replace(b"\0", b" ").strip() or b"0", 8)
        except ValueError:
            return None
        if stored != sum(block) - sum(block[148:156]) + 256:
            return None
        kind = block[156:157]
        if kind not in _HANDLED_TYPES:
            return None
        name = block[:100].split(b"\0", 1)[0]
        if block[257:263] == b"ustar\0" and block[345] != 0:  # POSIX prefix field; GNU keeps times there
            name = block[345:500].split(b"\0", 1)[0] + b"/" + name
        if kind in _PLAIN_FILE:
            out.append((name.decode("utf-8", "surrogateescape"), start + pos + _BLOCK, msize))
        pos += _BLOCK + (msize + _BLOCK - 1) // _BLOCK * _BLOCK
    return out


def _tar_image_refs(fh: IO[bytes], start: int, size: int, container: str, prefix: str, label: str) -> list[ImageRef]:
    walked = _walk_headers(fh, start, size)
    if walked is None:
        return list(_tar_images(_open_tar(_Window(fh, start, size), label), container, start, prefix))
    return [ImageRef(f"{prefix}{os.path.basename(n)}", container, off, sz) for n, off, sz in walked if _is_image(n)]


_CLASS_NAME = re.compile(r"^n\d{8}$")


def _check_wnid(wnid: str, where: str) -> None:
    # Regression: n01440764.tar.tar was taken as class "n01440764.tar" and shifted the labels.
    if not _CLASS_NAME.match(wnid):
        raise ValidationError(f"{where}: {wnid!r} is not a class name like n01440764 (expected <wnid>.tar or <wnid>/)")


def _unique(refs: list[ImageRef], source: object, what: str) -> list[ImageRef]:
    """``refs`` sorted; a name listed twice (two members, two objects) is an error naming it."""
    refs.sort()
    twice = next((a.relpath for a, b in zip(refs, refs[1:], strict=False) if a.relpath == b.relpath), None)
    if twice is not None:
        raise ValidationError(f"{source}: {what} {twice} appears more than once")
    return refs


def _class_tar_images(path: str, fh: IO[bytes], start: int, size: int, wnid: str) -> list[ImageRef]:
    _check_wnid(wnid, f"{path}: class tar {wnid}.tar")
    images = _tar_image_refs(fh, start, size, path, f"{wnid}/", f"{path}:{wnid}.tar")
    if not images:
        raise ValidationError(f"{path}: class tar {wnid}.tar holds no images")
    return images


def _need_store(store: Any, source: str) -> Any:
    if store is None:
        from imagenet_ops.core.store import ObjectStore

        store = ObjectStore()
    return store


def _remote_train_images(source: str, store: Any, progress: Progress) -> list[ImageRef]:
    refs: list[ImageRef] = []
    if source.endswith(".tar"):
        with store.open(source) as fh:
            refs += _outer_train_tar(source, fh, progress)
        return refs
    objects = store.list(source)
    tars = [o for o in objects if o.name.endswith(".tar") and "/" not in o.name]
    if tars:
        for o in tars:
            with store.open(o.uri) as fh:
                refs += _class_tar_images(o.uri, fh, 0, o.size, o.name[: -len(".tar")])
            progress.update(1)
        return refs
    by_class: dict[str, list[Any]] = {}
    for o in objects:
        parts = o.name.split("/")
        if parts[0] == "train":
            parts = parts[1:]
        if len(parts) == 2 and _is_image(parts[1]):
            by_class.setdefault(parts[0], []).append(o)
    for wnid, objs in sorted(by_class.items()):
        _check_wnid(wnid, f"{source}: class folder {wnid}/")
        refs += [ImageRef(f"{wnid}/{o.name.rsplit('/', 1)[-1]}", o.uri, 0, o.size) for o in objs]
        progress.update(1)
    return refs


def _outer_train_tar(label: str, fh: IO[bytes], progress: Progress) -> list[ImageRef]:
    refs: list[ImageRef] = []
    outer = _open_tar(fh, label)
    for m in [m for m in outer if m.isfile()]:
        if not m.name.endswith(".tar"):
            raise ValidationError(f"{label}: member {m.name} is not a <wnid>.tar (expected the ILSVRC2012_img_train.tar layout)")
        refs += _class_tar_images(label, fh, m.offset_data, m.size, Path(m.name).stem)
        progress.update(1)
    return refs


def list_train_images(source: str | Path, *, store: Any = None, progress_every: float = 5.0) -> list[ImageRef]:
    """Every train image of ``source`` (any of the three layouts), sorted by ``<wnid>/<name>``.

    ``source`` may be a local path or an ``s3://`` / ``gs://`` URI (read with ``store``, an
    :class:`imagenet_ops.core.store.ObjectStore`; tars are read by ranged requests, never downloaded whole).

    Raises:
        ValidationError: no images, an empty class tar, or an unknown layout (names what was expected).
        ArchiveError: a tar that cannot be read by offset.
    """
    refs: list[ImageRef] = []
    progress = Progress(
        f"list train images in {str(source).rstrip('/').rsplit('/', 1)[-1]}", unit="classes", logger=log, every=progress_every
    )
    if is_remote(str(source)):
        refs = _remote_train_images(str(source), _need_store(store, str(source)), progress)
    elif (source := Path(source)).is_file():
        with open(source, "rb") as fh:
            refs = _outer_train_tar(str(source), fh, progress)
    elif source.is_dir() and any(source.glob("*.tar")):
        for tar_path in sorted(source.glob("*.tar")):
            with open(tar_path, "rb") as fh:
                refs += _class_tar_images(str(tar_path), fh, 0, tar_path.stat().st_size, tar_path.stem)
            progress.update(1)
    elif source.is_dir():
        root = source / "train" if (source / "train").is_dir() else source
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            _check_wnid(class_dir.name, f"{class_dir}: class folder")
            files = [p for p in class_dir.iterdir() if p.is_file() and _is_image(p.name)]
            if not files:
                raise ValidationError(f"{class_dir}: class folder holds no images")
            refs += [ImageRef(f"{class_dir.name}/{p.name}", str(p), 0, p.stat().st_size) for p in files]
            progress.update(1)
    else:
        raise ValidationError(
            f"{source}: not found (expected ILSVRC2012_img_train.tar, a folder of <wnid>.tar, or <wnid>/*.JPEG folders)"
        )
    if not refs:
        raise ValidationError(f"{source}: no train images found (expected <wnid>.tar members or <wnid>/ folders)")
    refs = _unique(refs, source, "train image")
    log.info("listed %d train images in %d classes from %s", len(refs), len({r.wnid for r in refs}), source)
    return refs


def list_val_images(source: str | Path, *, store: Any = None) -> list[ImageRef]:
    """Every validation image of ``source`` (``ILSVRC2012_img_val.tar`` or a flat folder; local or s3/gs), sorted."""
    if is_remote(str(source)):
        store = _need_store(store, str(source))
        if str(source).endswith(".tar"):
            with store.open(str(source)) as fh:
                refs = _tar_image_refs(fh, 0, store.size(str(source)), str(source), "", str(source))
        else:
            refs = [
                ImageRef(o.name, o.uri, 0, o.size) for o in store.list(str(source)) if "/" not in o.name and _is_image(o.name)
            ]
    elif (source := Path(source)).is_file():
        with open(source, "rb") as fh:
            refs = _tar_image_refs(fh, 0, source.stat().st_size, str(source), "", str(source))
    elif source.is_dir():
        refs = [ImageRef(p.name, str(p), 0, p.stat().st_size) for p in source.iterdir() if p.is_file() and _is_image(p.name)]
    else:
        raise ValidationError(f"{source}: not found (expected ILSVRC2012_img_val.tar or a flat folder of ILSVRC2012_val_*.JPEG)")
    if not refs:
        raise ValidationError(f"{source}: no validation images found")
    return _unique(refs, source, "validation image")


def _truncated(ref: ImageRef, got: int) -> ArchiveError:
    return ArchiveError(f"{ref.container}: {ref.relpath} is truncated ({got} of {ref.size} bytes at offset {ref.offset})")


class ImageReader:
    """Reads :class:`ImageRef` bytes with one ``pread`` each, keeping a few containers open.

    Remote containers (``s3://``, ``gs://``) are read with one ranged request per image through
    ``store``; :meth:`read_many` then keeps ``prefetch`` requests in flight, in order.
    """

    def __init__(self, max_open: int = 16, *, store: Any = None, prefetch: int = 16) -> None:
        self._open: dict[str, IO[bytes]] = {}
        self.max_open = max_open
        self.store = store
        self.prefetch = prefetch

    def read(self, ref: ImageRef) -> bytes:
        if is_remote(ref.container):
            self.store = _need_store(self.store, ref.container)
            return self.store.read_range(ref.container, ref.offset, ref.size)
        data = os.pread(self._fd(ref), ref.size, ref.offset)  # one syscall: no seek, no buffer refill past the image
        if len(data) != ref.size:
            raise _truncated(ref, len(data))
        return data

    def read_into(self, ref: ImageRef, buffer: memoryview) -> None:
        """Read ``ref``'s bytes into ``buffer`` (``ref.size`` bytes long), for a caller that has a place for them.

        A local file is read with one ``preadv`` straight into ``buffer``: no bytes object, no copy.
        A remote one is read as :meth:`read` reads it, then copied in.

        Raises:
            ArchiveError: the container ends inside the image (names the container and the image).
        """
        if is_remote(ref.container):
            data = self.read(ref)
            if len(data) != ref.size:
                raise _truncated(ref, len(data))
            buffer[:] = data
            return
        got = os.preadv(self._fd(ref), (buffer,), ref.offset)
        if got != ref.size:
            raise _truncated(ref, got)

    def _fd(self, ref: ImageRef) -> int:
        """The descriptor of ``ref``'s local container, opened on first use (at most :attr:`max_open` at once)."""
        fh = self._open.get(ref.container)
        if fh is None:
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open))).close()
            fh = self._open[ref.container] = open(ref.container, "rb")  # noqa: SIM115 - closed in close()
        return fh.fileno()

    def read_many(self, refs: Iterable[ImageRef]) -> Iterator[tuple[ImageRef, bytes]]:
        """``(ref, bytes)`` in the order given; remote reads overlap, local reads are sequential."""
        refs = list(refs)
        if not any(is_remote(r.container) for r in refs[:1]):
            for ref in refs:
                yield ref, self.read(ref)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.prefetch) as pool:
            window: deque = deque()
            it = iter(refs)
            for ref in it:
                window.append((ref, pool.submit(self.read, ref)))
                if len(window) >= self.prefetch:
                    break
            while window:
                ref, fut = window.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(self.read, nxt)))
                yield ref, fut.result()

    def close(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
