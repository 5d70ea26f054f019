"""Small PNG pictures for the data-quality reports: bar charts, histograms, contact sheets (Pillow only).

Every picture is drawn from its inputs alone with Pillow's built-in font, so the same data gives
the same PNG bytes. Pillow is imported inside each function: a DAG file that imports a report
module pays nothing at parse time.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
BAR = (66, 133, 244)
WARN = (219, 68, 55)
SERIES = ((219, 68, 55), (15, 157, 88), (66, 133, 244))  # channel 0, 1, 2: drawn red, green, blue


@functools.cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def png(image: Any, *, compress_level: int = 6) -> bytes:
    """A Pillow image as PNG bytes (no metadata: the same pixels give the same bytes).

    Photographs (contact sheets) are saved at ``compress_level=1``: zlib's effort buys little on
    noisy pixels and is most of a report's cost.
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=compress_level)
    return buf.getvalue()


def _axes(title: str, width: int, height: int) -> tuple[Any, Any, tuple[int, int, int, int]]:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((10, 6), title, fill=INK, font=_font(14))
    box = (56, 30, width - 12, height - 34)  # left, top, right, bottom of the plot area
    return image, draw, box


def _y_ticks(draw: Any, box: tuple[int, int, int, int], top: float) -> None:
    left, upper, right, bottom = box
    font = _font(10)
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - upper)
        draw.line((left, y, right, y), fill=GRID)
        value = top * frac
        draw.text((4, y - 6), f"{value:.3g}" if value < 1e4 else f"{value:.2e}", fill=INK, font=font)


def bar_chart(
    title: str,
    values: Sequence[float],
    *,
    labels: Sequence[str] | None = None,
    highlight: Sequence[bool] | None = None,
    width: int = 720,
    height: int = 260,
) -> bytes:
    """Bars for ``values`` (one per label); ``highlight`` draws chosen bars in the warning colour.

    With many bars (1000 classes) the labels are thinned to about twelve along the axis.
    """
    image, draw, (left, upper, right, bottom) = _axes(title, width, height)
    top = max([float(v) for v in values] + [1.0])
    _y_ticks(draw, (left, upper, right, bottom), top)
    n = max(len(values), 1)
    step = (right - left) / n
    font = _font(10)
    for i, v in enumerate(values):
        x0 = left + i * step
        x1 = max(x0 + 1, x0 + step - (1 if step > 3 else 0))
        y = bottom - float(v) / top * (bottom - upper)
        colour = WARN if highlight is not None and highlight[i] else BAR
        draw.rectangle((x0, y, x1 - 1 if x1 - 1 > x0 else x0, bottom), fill=colour)
    if labels:
        every = max(1, len(labels) // 12)
        for i in range(0, len(labels), every):
            draw.text((left + i * step, bottom + 4), str(labels[i])[:10], fill=INK, font=font)
    draw.line((left, bottom, right, bottom), fill=INK)
    return png(image)


def histogram(
    title: str, values: Sequence[float] | np.ndarray, *, bins: int = 40, value_range: tuple[float, float] | None = None
) -> bytes:
    """A histogram of ``values`` with the bin edges' range under the axis."""
    data = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = value_range or ((float(data.min()), float(data.max())) if data.size else (0.0, 1.0))
    counts, _ = np.histogram(data, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    edges = [f"{lo + (hi - lo) * i / bins:.4g}" for i in range(bins)]
    return bar_chart(title, counts.tolist(), labels=edges)


def channel_histograms(
    title: str, channels: Sequence[np.ndarray], *, names: Sequence[str], bins: int = 64, width: int = 720, height: int = 260
) -> bytes:
    """Per-channel value histograms on one set of axes (lines), over the values' common range."""
    image, draw, (left, upper, right, bottom) = _axes(title, width, height)
    flat = [np.asarray(c, dtype=np.float64).ravel() for c in channels]
    lo = min((float(c.min()) for c in flat if c.size), default=0.0)
    hi = max((float(c.max()) for c in flat if c.size), default=1.0)
    hi = hi if hi > lo else lo + 1
    hists = [np.histogram(c, bins=bins, range=(lo, hi))[0] for c in flat]
    top = float(max((h.max() for h in hists if h.size), default=1)) or 1.0
    _y_ticks(draw, (left, upper, right, bottom), top)
    step = (right - left) / bins
    font = _font(10)
    for k, (counts, name) in enumerate(zip(hists, names, strict=True)):
        colour = SERIES[k % len(SERIES)]
        points = [(left + (i + 0.5) * step, bottom - c / top * (bottom - upper)) for i, c in enumerate(counts)]
        draw.line(points, fill=colour, width=2)
        draw.text((right - 150 + 50 * k, 8), name, fill=colour, font=_font(12))
    draw.line((left, bottom, right, bottom), fill=INK)
    draw.text((left, bottom + 4), f"{lo:.4g}", fill=INK, font=font)
    draw.text((right - 40, bottom + 4), f"{hi:.4g}", fill=INK, font=font)
    return png(image)


def contact_sheet(
    rows: Sequence[Sequence[tuple[str, np.ndarray]]],
    *,
    tile: int = 160,
    title: str = "",
    row_titles: Sequence[str] | None = None,
) -> bytes:
    """A grid of captioned RGB tiles: one row per sample (e.g. the original, then the tensor made viewable).

    Args:
        rows: each row's ``(caption, HxWx3 uint8 RGB array)`` cells.
        tile: each cell's longest side in pixels (aspect kept, centred; small images are enlarged).
        title: drawn above the grid.
        row_titles: one line drawn above each row (e.g. the shard it comes from).
    """
    from PIL import Image, ImageDraw

    columns = max((len(r) for r in rows), default=1)
    caption_h, title_h, pad = 16, (24 if title else 0), 6
    row_title_h = 16 if row_titles else 0
    width = columns * (tile + pad) + pad
    height = title_h + len(rows) * (row_title_h + tile + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title, fill=INK, font=_font(14))
    font = _font(10)
    chars = max(8, tile // 6)  # what fits under a tile in the 10 px font
    for r, row in enumerate(rows):
        y = title_h + pad + r * (row_title_h + tile + caption_h + pad)
        if row_titles:
            draw.text((pad, y), row_titles[r], fill=INK, font=_font(12))
            y += row_title_h
        for c, (caption, pixels) in enumerate(row):
            x = pad + c * (tile + pad)
            cell = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
            scale = tile / max(cell.width, cell.height)
            cell = cell.resize((max(1, round(cell.width * scale)), max(1, round(cell.height * scale))), Image.BILINEAR)
            sheet.paste(cell, (x + (tile - cell.width) // 2, y + (tile - cell.height) // 2))
            draw.text((x, y + tile + 2), caption[:chars], fill=INK, font=font)
    return png(sheet, compress_level=1)
