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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_ops.core.errors import ArchiveError, ConfigError, ValidationError
from imagenet_ops.core.uris import is_remote, is_url
from imagenet_ops.imagenet.images import IMAGE_SUFFIXES, ImageRef, list_val_images
from imagenet_ops.imagenet.labels import local_aux_folder
from imagenet_ops.preprocessed.config import PreprocessConfig

if TYPE_CHECKING:
    from imagenet_ops.core.download import DownloadResult

log = logging.getLogger(__name__)

EXTRACTED_SUBDIR = "imagenet-2012-val"  # what CM's get-dataset-imagenet-val extracts into


ImageLike = ImageRef | Sequence[Any] | Mapping[str, Any]
"""An image as the steps receive it: an :class:`ImageRef`, its JSON row ``[name, container, offset, size]`` or a dict."""


def image_ref(item: ImageLike) -> ImageRef:
    """The :class:`ImageRef` of ``item`` (a validation image's ``relpath`` is its name)."""
    if isinstance(item, ImageRef):
        return item
    if isinstance(item, Mapping):
        name = item["relpath"] if "relpath" in item else item["name"]
        return ImageRef(str(name), str(item["container"]), int(item["offset"]), int(item["size"]))
    return ImageRef.from_list(list(item))


def missing_image(name: str) -> ImageRef:
    """A listed image the source does not hold: an empty container (kept so ``skip_bad_images`` can report it)."""
    return ImageRef(name, "", 0, 0)


def is_missing(ref: ImageRef) -> bool:
    return not ref.container


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


def _local_images(source: Path, names: Iterable[str]) -> list[ImageRef]:
    if source.is_dir():
        folder = _folder(source)
        out = []
        for name in names:
            path = folder / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                out.append(missing_image(name))
                continue
            out.append(ImageRef(name, str(path), 0, size))
        return out
    if source.is_file():
        if not source.name.lower().endswith(".tar"):
            raise ConfigError(f"image source {source} is a file but not a .tar (expected ILSVRC2012_img_val.tar or a folder)")
        index = {ref.name: ref for ref in list_val_images(source)}
        return [index[n] if n in index else missing_image(n) for n in names]
    raise ValidationError(
        f"image source {source} not found (expected a folder of ILSVRC2012_val_*.JPEG, ILSVRC2012_img_val.tar, "
        "s3://bucket/prefix or gs://bucket/prefix)"
    )


def _remote_tar_index(store: Any, uri: str) -> dict[str, ImageRef]:
    index: dict[str, ImageRef] = {}
    with store.open(uri) as fh:
        try:
            tar = tarfile.open(fileobj=fh, mode="r:")
        except tarfile.ReadError as exc:
            raise ArchiveError(f"{uri}: not an uncompressed tar archive ({exc}); images are read by offset") from exc
        for member in tar:
            base = os.path.basename(member.name)
            if member.isfile() and base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith("."):
                index[base] = ImageRef(base, uri, member.offset_data, member.size)
    return index


def _remote_images(source: str, names: Iterable[str], store: Any) -> list[ImageRef]:
    if source.lower().endswith(".tar"):
        index = _remote_tar_index(store, source)
    else:
        prefix = source.rstrip("/") + "/"
        index = {}
        for info in store.list(prefix):
            base = info.name.rsplit("/", 1)[-1]
            if base.lower().endswith(IMAGE_SUFFIXES) and "/" not in info.name.strip("/"):
                index[base] = ImageRef(base, info.uri, 0, info.size)
        if not index:
            raise ValidationError(f"image source {source}: no images under this prefix")
    return [index.get(n) or missing_image(n) for n in names]


def default_store() -> Any:
    """An :class:`imagenet_ops.core.store.ObjectStore` with the environment's default clients."""
    from imagenet_ops.core.store import ObjectStore

    return ObjectStore()


def locate_images(*, source: str, names: Sequence[str], store: Any = None) -> list[ImageRef]:
    """Find ``names`` in ``source``; images it does not hold come back with an empty container."""
    source = str(source)
    if is_url(source):
        raise ConfigError(
            f"image source {source} is a URL: download it first (fetch_images, or --images download with --images-url)"
        )
    if is_remote(str(source)):
        return _remote_images(source, names, store if store is not None else default_store())
    return _local_images(Path(source).expanduser(), names)


def read_remote(store: Any, item: ImageRef) -> bytes:
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


def aux_val_map(aux_path: str, *, dest_dir: Path, store: Any = None) -> Path:
    """The aux artifact's ``val.txt``: the file in a local folder, or a copy of the object-storage one in ``dest_dir``."""
    store = store if store is not None or not is_remote(aux_path) else default_store()
    return local_aux_folder(aux_path, ("val.txt",), dest_dir=dest_dir, store=store) / "val.txt"


def local_copy(location: str | Path | None, *, dest_dir: Path, store: Any = None) -> Path | None:
    """A list file as a local path: a local one in place, an ``s3://`` / ``gs://`` one downloaded into ``dest_dir``."""
    if not location:
        return None
    if not is_remote(str(location)):
        return Path(location)
    store = store if store is not None else default_store()
    return Path(store.download(str(location), Path(dest_dir) / str(location).rstrip("/").rsplit("/", 1)[-1]))


@dataclass(frozen=True)
class Inputs:
    """A set's inputs, all present: the image source and the local list files (``None``: not needed).

    Attributes:
        source: what the manifest records as the images' source: the URL a downloaded tar came
            from, else ``images`` as given (never a scratch path).
    """

    images: str
    val_map: Path | None = None
    calibration_list: Path | None = None
    source: str | None = None


def fetch_inputs(
    *,
    config: PreprocessConfig,
    images: str | None,
    work_dir: Path,
    val_map: Path | None = None,
    aux_path: str | None = None,
    calibration_list: Path | None = None,
    store: Any = None,
) -> Inputs:
    """Fetch what the set lacks into ``work_dir``: the calibration list, the validation tar, the aux labels.

    Args:
        config: the resolved config (dataset type, download URLs and md5s).
        images: the image source; empty or ``download`` fetches the tar the size needs.
        work_dir: scratch folder for the downloads (``calibration/``, ``images/``, ``aux/``).
        val_map: the aux ``val.txt`` (validation); when omitted, the one of ``aux_path``.
        aux_path: the aux artifact folder or ``s3://`` / ``gs://`` prefix (validation without ``val_map``).
        calibration_list: the calibration list; downloaded when omitted (calibration).
        store: an ``ObjectStore`` for an object-storage aux folder.
    """
    work = Path(work_dir)
    if config.dataset_type == "calibration" and not calibration_list:
        calibration_list = Path(fetch_calibration_list(config=config, dest_dir=work / "calibration").path)
        log.info("calibration list %s: %s", config.calibration_option, calibration_list)
    source = images
    if not images or str(images) == "download":
        fetched = fetch_images(config=config, dest_dir=work / "images")
        images, source = fetched.path, fetched.url
        log.info("validation images downloaded: %s (from %s)", images, fetched.url)
    if config.dataset_type == "validation" and not val_map and aux_path:
        val_map = aux_val_map(aux_path, dest_dir=work / "aux", store=store)
    return Inputs(
        images=str(images),
        val_map=Path(val_map) if val_map else None,
        calibration_list=Path(calibration_list) if calibration_list else None,
        source=str(source),
    )
