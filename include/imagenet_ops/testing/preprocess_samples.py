"""Small generated inputs for the preprocessed sets: every kind of image ImageNet holds, lists, tars.

Nothing here downloads anything; every image is deterministic for its seed.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from imagenet_ops.testing.samples import imagenet_like_jpeg, write_tar

# name -> (width, height, kind): the shapes and encodings the reference has to cope with.
IMAGE_KINDS: dict[str, tuple[int, int, str]] = {
    "landscape": (500, 375, "rgb"),
    "portrait": (375, 500, "rgb"),
    "square": (300, 300, "rgb"),
    "odd": (343, 257, "rgb"),  # odd crop margins: torchvision's round() and int() disagree
    "tiny": (60, 45, "rgb"),  # smaller than 224: upscaled
    "large": (1400, 1050, "rgb"),
    "gray": (400, 300, "L"),  # grayscale JPEG
    "cmyk": (320, 400, "CMYK"),  # CMYK JPEG (22 ImageNet train images are)
    "png": (350, 280, "png"),  # PNG content under a .JPEG name
    "exif": (420, 300, "exif"),  # JPEG with an EXIF orientation tag
}


def val_name(index: int) -> str:
    """``ILSVRC2012_val_%08d.JPEG`` (1-based, as the validation set)."""
    return f"ILSVRC2012_val_{index:08d}.JPEG"


def sample_image(kind: str, seed: int = 0) -> bytes:
    """The bytes of one image of ``kind`` (a key of :data:`IMAGE_KINDS`)."""
    import numpy as np
    from PIL import Image

    width, height, mode = IMAGE_KINDS[kind]
    if mode == "rgb":
        return imagenet_like_jpeg(seed, width=width, height=height)
    base = Image.open(io.BytesIO(imagenet_like_jpeg(seed, width=width, height=height)))
    buf = io.BytesIO()
    if mode in ("L", "CMYK"):
        base.convert(mode).save(buf, format="JPEG", quality=90)
    elif mode == "png":
        rng = np.random.default_rng(seed)
        pixels = np.asarray(base, dtype=np.int16) + rng.integers(-3, 4, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        base.save(buf, format="JPEG", quality=90, exif=exif)
    return buf.getvalue()


def sample_images(kinds: Iterable[str] = IMAGE_KINDS, *, start: int = 1, seed: int = 0) -> dict[str, bytes]:
    """``{val_name(i): bytes}`` for the given kinds, numbered from ``start``."""
    return {val_name(start + i): sample_image(kind, seed * 1000 + i) for i, kind in enumerate(kinds)}


def plain_images(count: int, *, start: int = 1, seed: int = 0, width: int = 500, height: int = 375) -> dict[str, bytes]:
    """``count`` ImageNet-like RGB JPEGs named as validation images."""
    return {val_name(start + i): imagenet_like_jpeg(seed * 100_003 + i, width=width, height=height) for i in range(count)}


def write_folder(folder: Path, images: Mapping[str, bytes]) -> Path:
    """Write ``images`` as files of ``folder`` (a flat validation folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return folder


def write_images_tar(path: Path, images: Mapping[str, bytes]) -> Path:
    """An ``ILSVRC2012_img_val.tar``-shaped flat, uncompressed tar of ``images`` (sorted by name)."""
    return write_tar(Path(path), dict(sorted(images.items())), gz=False)


def val_map_text(names: Sequence[str], *, seed: int = 0) -> str:
    """``val_map.txt`` / aux ``val.txt`` lines ``name label`` (labels 0..999, deterministic)."""
    rng = random.Random(seed)
    return "".join(f"{n} {rng.randrange(1000)}\n" for n in names)


def calibration_list_text(names: Sequence[str], *, option: str = "option1") -> str:
    """An MLPerf calibration list: option1 ``name`` lines, option2 ``name index`` lines (index 0..N-1)."""
    if option == "option1":
        return "".join(f"{n}\n" for n in names)
    return "".join(f"{n} {i}\n" for i, n in enumerate(names))
