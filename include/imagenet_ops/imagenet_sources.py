"""ImageNet images read straight from their archives: never extract 1.28 M files to disk.

Train comes as the outer ``ILSVRC2012_img_train.tar`` (1000 inner ``<wnid>.tar``), a folder of
the per-class tars (what CM gets), or a folder ``<wnid>/*.JPEG`` (optionally under ``train/``).
Validation comes as ``ILSVRC2012_img_val.tar`` or a flat folder. Listing walks the tar headers
once and records, for every image, the file holding its bytes and their offset, so any worker can
read any image with one seek: the basis for sharded, parallel writers.

The ImageNet tars are uncompressed; a compressed tar cannot be read by offset and is refused.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from imagenet_ops.errors import ArchiveError, ValidationError
from imagenet_ops.progress import Progress

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


def _class_tar_images(path: Path, fh: IO[bytes], start: int, size: int, wnid: str) -> list[ImageRef]:
    inner = _open_tar(_Window(fh, start, size), f"{path}:{wnid}.tar")
    images = list(_tar_images(inner, str(path), start, f"{wnid}/"))
    if not images:
        raise ValidationError(f"{path}: class tar {wnid}.tar holds no images")
    return images


def list_train_images(source: Path, *, progress_every: float = 5.0) -> list[ImageRef]:
    """Every train image of ``source`` (any of the three layouts), sorted by ``<wnid>/<name>``.

    Raises:
        ValidationError: no images, an empty class tar, or an unknown layout (names what was expected).
        ArchiveError: a tar that cannot be read by offset.
    """
    source = Path(source)
    refs: list[ImageRef] = []
    progress = Progress(f"list train images in {source.name}", unit="classes", logger=log, every=progress_every)
    if source.is_file():
        with open(source, "rb") as fh:
            outer = _open_tar(fh, str(source))
            members = [m for m in outer if m.isfile()]
            for m in members:
                if not m.name.endswith(".tar"):
                    raise ValidationError(
                        f"{source}: member {m.name} is not a <wnid>.tar (expected the ILSVRC2012_img_train.tar layout)"
                    )
                refs += _class_tar_images(source, fh, m.offset_data, m.size, Path(m.name).stem)
                progress.update(1)
    elif source.is_dir() and any(source.glob("*.tar")):
        for tar_path in sorted(source.glob("*.tar")):
            with open(tar_path, "rb") as fh:
                refs += _class_tar_images(tar_path, fh, 0, tar_path.stat().st_size, tar_path.stem)
            progress.update(1)
    elif source.is_dir():
        root = source / "train" if (source / "train").is_dir() else source
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
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
    refs.sort()
    log.info("listed %d train images in %d classes from %s", len(refs), len({r.wnid for r in refs}), source)
    return refs


def list_val_images(source: Path) -> list[ImageRef]:
    """Every validation image of ``source`` (``ILSVRC2012_img_val.tar`` or a flat folder), sorted by name."""
    source = Path(source)
    if source.is_file():
        with open(source, "rb") as fh:
            refs = list(_tar_images(_open_tar(fh, str(source)), str(source), 0, ""))
    elif source.is_dir():
        refs = [ImageRef(p.name, str(p), 0, p.stat().st_size) for p in source.iterdir() if p.is_file() and _is_image(p.name)]
    else:
        raise ValidationError(f"{source}: not found (expected ILSVRC2012_img_val.tar or a flat folder of ILSVRC2012_val_*.JPEG)")
    if not refs:
        raise ValidationError(f"{source}: no validation images found")
    refs.sort()
    return refs


class ImageReader:
    """Reads :class:`ImageRef` bytes with one seek each, keeping a few containers open."""

    def __init__(self, max_open: int = 16) -> None:
        self._open: dict[str, IO[bytes]] = {}
        self.max_open = max_open

    def read(self, ref: ImageRef) -> bytes:
        fh = self._open.get(ref.container)
        if fh is None:
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open))).close()
            fh = self._open[ref.container] = open(ref.container, "rb")  # noqa: SIM115 - closed in close()
        fh.seek(ref.offset)
        data = fh.read(ref.size)
        if len(data) != ref.size:
            raise ArchiveError(
                f"{ref.container}: {ref.relpath} is truncated ({len(data)} of {ref.size} bytes at offset {ref.offset})"
            )
        return data

    def read_many(self, refs: Iterable[ImageRef]) -> Iterator[tuple[ImageRef, bytes]]:
        for ref in refs:
            yield ref, self.read(ref)

    def close(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
