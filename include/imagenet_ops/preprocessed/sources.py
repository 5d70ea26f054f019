"""Where the images of a preprocessed set come from: image lists, sources, and the reference downloads.

Image lists: ``val_map.txt`` (aux ``val.txt``, ``name label``), calibration option 1 (``name``)
and option 2 (``name index``). Every list is read the same way (first token of each non-empty
line), so both calibration formats work with both preprocessors; the reference tools each crash
on one of them.

Sources: a flat folder of ``ILSVRC2012_val_*.JPEG``, ``ILSVRC2012_img_val.tar`` (or the 500-image
subset tar) read in place by member offset, or an object-storage prefix / tar (``s3://``,
``gs://``) read through :class:`imagenet_ops.core.store.ObjectStore`. An object-storage tar is
indexed by streaming its headers, which reads the tar once; a prefix of JPEGs is only listed.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_ops.core.errors import ArchiveError, ConfigError, ValidationError
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.images import IMAGE_SUFFIXES, ImageRef, list_val_images
from imagenet_ops.preprocessed.variations import PreprocessConfig

if TYPE_CHECKING:
    from imagenet_ops.core.download import DownloadResult

log = logging.getLogger(__name__)

EXTRACTED_SUBDIR = "imagenet-2012-val"  # what CM's get-dataset-imagenet-val extracts into


@dataclass(frozen=True, order=True)
class SourceImage:
    """One listed image: ``size`` bytes at ``offset`` of ``container`` (a file, a tar or an object URI).

    ``container`` is empty for an image the list names but the source does not hold (kept so that
    ``skip_bad_images`` can report it).
    """

    name: str
    container: str
    offset: int
    size: int

    @property
    def missing(self) -> bool:
        return not self.container

    @property
    def remote(self) -> bool:
        return is_remote(self.container)

    def as_list(self) -> list[Any]:
        """Compact JSON form: ``[name, container, offset, size]``."""
        return [self.name, self.container, self.offset, self.size]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> SourceImage:
        return cls(str(row[0]), str(row[1]), int(row[2]), int(row[3]))

    @classmethod
    def of(cls, item: SourceImage | ImageRef | Sequence[Any] | dict[str, Any]) -> SourceImage:
        """Accept a :class:`SourceImage`, an :class:`ImageRef`, a JSON row or a dict."""
        if isinstance(item, SourceImage):
            return item
        if isinstance(item, ImageRef):
            return cls(item.name, item.container, item.offset, item.size)
        if isinstance(item, dict):
            return cls(str(item["name"]), str(item["container"]), int(item["offset"]), int(item["size"]))
        return cls.from_list(item)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_image_list(text: str, *, origin: str, labelled: bool = False, classes: int = 1000) -> list[str]:
    """Image names of a list file: the first token of each non-empty line.

    Accepts ``name``, ``name label`` and ``name index`` lines (val_map, calibration option 1 and 2).
    With ``labelled`` (a val_map), every line must be ``name label`` with a label in
    ``0..classes-1`` and no name may repeat: the labels are copied into the published set.

    Raises:
        ValidationError: naming the file and line: more than two tokens, a name that is not an
            image file name, and with ``labelled`` a missing, non-integer or out-of-range label
            or a repeated name.
    """
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2 or not tokens[0].lower().endswith((*IMAGE_SUFFIXES, ".gif")):
            raise ValidationError(f"{origin}: line {number} {line!r} is not 'name', 'name label' or 'name index'")
        if labelled:
            label = tokens[1] if len(tokens) == 2 else None
            if label is None or not label.isdigit() or int(label) >= classes:
                raise ValidationError(
                    f"{origin}: line {number} {line!r}: the label must be an integer 0..{classes - 1} ('name label' lines)"
                )
            if tokens[0] in seen:
                raise ValidationError(f"{origin}: line {number}: {tokens[0]} repeats line {seen[tokens[0]]}")
            seen[tokens[0]] = number
        names.append(tokens[0])
    return names


def read_image_list(path: Path, *, what: str, labelled: bool = False) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValidationError(f"{what} {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{what} {path}: unreadable: {exc}") from exc
    names = parse_image_list(text, origin=str(path), labelled=labelled)
    if not names:
        raise ValidationError(f"{what} {path} lists no images")
    return names


def requested_names(*, config: PreprocessConfig, val_map: Path | None, calibration_list: Path | None) -> list[str]:
    """The first ``config.size`` names of the image list, in list order.

    Raises:
        ConfigError: the list the dataset type needs was not given.
        ValidationError: the list is unreadable, malformed or shorter than the requested size.
    """
    if config.dataset_type == "calibration":
        if calibration_list is None:
            raise ConfigError("calibration needs the MLPerf calibration list (fetch_calibration_list or --calibration-list)")
        path, what = Path(calibration_list), "calibration list"
    else:
        if val_map is None:
            raise ConfigError("validation needs val_map.txt (the aux val.txt: 'name label' lines; --labels)")
        path, what = Path(val_map), "val_map"
    names = read_image_list(path, what=what, labelled=config.dataset_type != "calibration")
    if len(names) < config.size:
        raise ValidationError(
            f"{what} {path} lists only {len(names)} images but {config.size} were requested "
            f"(missing list entries {len(names) + 1}..{config.size}); choose a size of at most {len(names)}"
        )
    return names[: config.size]


# -- sources ---------------------------------------------------------------------------------------


def _folder(source: Path) -> Path:
    sub = source / EXTRACTED_SUBDIR
    if sub.is_dir() and not any(p.name.lower().endswith(IMAGE_SUFFIXES) for p in source.iterdir() if p.is_file()):
        return sub
    return source


def _local_images(source: Path, names: Iterable[str]) -> list[SourceImage]:
    if source.is_dir():
        folder = _folder(source)
        out = []
        for name in names:
            path = folder / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                out.append(SourceImage(name, "", 0, 0))
                continue
            out.append(SourceImage(name, str(path), 0, size))
        return out
    if source.is_file():
        if not source.name.lower().endswith(".tar"):
            raise ConfigError(f"image source {source} is a file but not a .tar (expected ILSVRC2012_img_val.tar or a folder)")
        index = {ref.name: ref for ref in list_val_images(source)}
        return [SourceImage.of(index[n]) if n in index else SourceImage(n, "", 0, 0) for n in names]
    raise ValidationError(
        f"image source {source} not found (expected a folder of ILSVRC2012_val_*.JPEG, ILSVRC2012_img_val.tar, "
        "s3://bucket/prefix or gs://bucket/prefix)"
    )


def _remote_tar_index(store: Any, uri: str) -> dict[str, SourceImage]:
    index: dict[str, SourceImage] = {}
    with store.open(uri) as fh:
        try:
            tar = tarfile.open(fileobj=fh, mode="r:")
        except tarfile.ReadError as exc:
            raise ArchiveError(f"{uri}: not an uncompressed tar archive ({exc}); images are read by offset") from exc
        for member in tar:
            base = os.path.basename(member.name)
            if member.isfile() and base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith("."):
                index[base] = SourceImage(base, uri, member.offset_data, member.size)
    return index


def _remote_images(source: str, names: Iterable[str], store: Any) -> list[SourceImage]:
    if source.lower().endswith(".tar"):
        index = _remote_tar_index(store, source)
    else:
        prefix = source.rstrip("/") + "/"
        index = {}
        for info in store.list(prefix):
            base = info.name.rsplit("/", 1)[-1]
            if base.lower().endswith(IMAGE_SUFFIXES) and "/" not in info.name.strip("/"):
                index[base] = SourceImage(base, info.uri, 0, info.size)
        if not index:
            raise ValidationError(f"image source {source}: no images under this prefix")
    return [index.get(n) or SourceImage(n, "", 0, 0) for n in names]


def default_store() -> Any:
    """An :class:`imagenet_ops.core.store.ObjectStore` with the environment's default clients."""
    from imagenet_ops.core.store import ObjectStore

    return ObjectStore()


def locate_images(*, source: str, names: Sequence[str], store: Any = None) -> list[SourceImage]:
    """Find ``names`` in ``source``; images it does not hold come back with an empty container."""
    source = str(source)
    if source.startswith(("http://", "https://", "file://")):
        raise ConfigError(
            f"image source {source} is a URL: download it first (fetch_images, or --images download with --images-url)"
        )
    if is_remote(str(source)):
        return _remote_images(source, names, store if store is not None else default_store())
    return _local_images(Path(source).expanduser(), names)


def read_remote(store: Any, item: SourceImage) -> bytes:
    """Bytes of one object-storage image (a whole object, or a member of a tar by range)."""
    if item.offset == 0 and not item.container.lower().endswith(".tar"):
        return store.read(item.container)
    return store.read_range(item.container, item.offset, item.size)


# -- downloads -------------------------------------------------------------------------------------


def fetch_images(*, config: PreprocessConfig, dest_dir: Path) -> DownloadResult:
    """Download the validation tar the config needs (500-image subset or full) and check its md5.

    The full tar needs an image-net.org login: give an internal mirror (``mirror``/``images_url``).
    """
    from imagenet_ops.core.digests import AcceptedChecksums
    from imagenet_ops.core.download import download

    return download(
        urls=config.images_urls,
        dest_dir=Path(dest_dir),
        accepted=AcceptedChecksums.of(md5=[config.images_md5]),
        filename=config.images_filename,
        verify_ssl=config.verify_ssl,
    )


def fetch_calibration_list(*, config: PreprocessConfig, dest_dir: Path) -> DownloadResult:
    """Download the MLPerf calibration list of ``config.calibration_option`` and check its md5."""
    from imagenet_ops.core.digests import AcceptedChecksums
    from imagenet_ops.core.download import download

    return download(
        urls=config.calibration_urls,
        dest_dir=Path(dest_dir),
        accepted=AcceptedChecksums.of(md5=[config.calibration_md5]),
        filename=config.calibration_filename,
        verify_ssl=config.verify_ssl,
    )
