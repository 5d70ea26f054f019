"""Images whose class is known from their pixels, for the colour-reading sample models.

Class ``k`` (0..999) is the solid colour ``(LEVELS[k // 100], LEVELS[k // 10 % 10], LEVELS[k % 10])``
in RGB. A solid colour survives JPEG, resizing, cropping and mean subtraction almost unchanged (a
level or two out of 255, against a spacing of 25), so the samples of
:mod:`imagenet_ops.testing.model_samples` name every such image's class exactly once the
preprocessing is right; a wrong mean, scale, channel order or class offset gives a lower figure
that :func:`read_colour` predicts. Nothing here downloads anything; every image is deterministic.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LEVELS = tuple(14 + 25 * i for i in range(10))
"""The ten values each channel takes (14 .. 239, 25 apart)."""


def class_colours() -> Any:
    """``(1000, 3)`` uint8: the RGB colour of each class 0..999."""
    import numpy as np

    k = np.arange(1000)
    levels = np.asarray(LEVELS, dtype=np.uint8)
    return np.stack([levels[k // 100], levels[k // 10 % 10], levels[k % 10]], axis=1)


def read_colour(rgb: Sequence[float]) -> int:
    """The class a colour reader gives for a mean colour in pixel units (nearest level per channel)."""
    import numpy as np

    nearest = [int(np.abs(np.asarray(LEVELS) - float(v)).argmin()) for v in rgb]
    return nearest[0] * 100 + nearest[1] * 10 + nearest[2]


def pattern_jpeg(label: int, *, width: int = 500, height: int = 375, quality: int = 90, mode: str = "RGB") -> bytes:
    """A JPEG of ``label``'s colour; ``mode="L"`` / ``"CMYK"`` give a grayscale / CMYK JPEG of it."""
    from PIL import Image

    colour = tuple(int(v) for v in class_colours()[label])
    image = Image.new("RGB", (width, height), colour)
    buf = io.BytesIO()
    (image if mode == "RGB" else image.convert(mode)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# Shapes of the real validation set, cycled over the images: landscape, portrait, square, odd, small.
SHAPES = ((500, 375), (375, 500), (300, 300), (343, 257), (160, 120))


def pattern_images(labels: Mapping[str, int]) -> dict[str, bytes]:
    """``{name: JPEG}``: each image of ``labels`` (name -> 0-based class) in its class's colour."""
    return {
        name: pattern_jpeg(label, width=SHAPES[i % len(SHAPES)][0], height=SHAPES[i % len(SHAPES)][1])
        for i, (name, label) in enumerate(labels.items())
    }


def val_labels(val_txt: str, count: int) -> dict[str, int]:
    """The first ``count`` entries of an aux ``val.txt`` (``name label`` lines) as ``{name: label}``."""
    rows = [line.split() for line in val_txt.splitlines() if line.strip()][:count]
    return {name: int(label) for name, label in rows}


def write_pattern_folder(folder: Path, labels: Mapping[str, int]) -> Path:
    """A validation folder: the images of :func:`pattern_images` and their ``val_map.txt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in pattern_images(labels).items():
        (folder / name).write_bytes(data)
    (folder / "val_map.txt").write_text("".join(f"{n} {lab}\n" for n, lab in labels.items()), encoding="utf-8")
    return folder
