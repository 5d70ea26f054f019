"""Image size from the JPEG/PNG header bytes, and the reference's PNG/CMYK -> RGB JPEG conversion.

The reference converter decodes every image with TensorFlow only to learn its height and width.
TF ignores EXIF orientation, so those are the JPEG SOF frame dims (PNG: IHDR dims), which this
module reads from the bytes already in memory in a few microseconds. Only files whose header
cannot be read that way (DNL height 0, malformed or truncated data) are decoded, with Pillow.

Of all ImageNet files only the 23 named in :data:`CMYK_TRAIN_IMAGES` and :data:`PNG_TRAIN_IMAGES`
get pixel work: :func:`to_rgb_jpeg` turns them into RGB JPEGs byte for byte as the reference
does. The 22 CMYK JPEGs go through TensorFlow itself (imported there only), because the
reference's ``decode_jpeg`` uses libjpeg's fast integer IDCT, which Pillow cannot select; the
PNG goes through Pillow, whose decode is lossless and whose libjpeg-turbo encoder writes the
same bytes as TF's ``encode_jpeg``. Pillow and numpy are imported only there and in the decode
fallback.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from dataclasses import dataclass
from typing import Any

from imagenet_ops.core.errors import ConfigError, ImageError

log = logging.getLogger(__name__)

JPEG = "JPEG"
PNG = "PNG"
SPLITS = ("train", "validation")

# cytsai/ilsvrc-cmyk-image-list, as hard-coded in tensorflow/tpu imagenet_to_gcs.py (_is_cmyk).
CMYK_TRAIN_IMAGES: frozenset[str] = frozenset(
    f"{stem}.JPEG"
    for stem in (
        "n01739381_1309",
        "n02077923_14822",
        "n02447366_23489",
        "n02492035_15739",
        "n02747177_10752",
        "n03018349_4028",
        "n03062245_4620",
        "n03347037_9675",
        "n03467068_12171",
        "n03529860_11437",
        "n03544143_17228",
        "n03633091_5218",
        "n03710637_5125",
        "n03961711_5286",
        "n04033995_2932",
        "n04258138_17003",
        "n04264628_27969",
        "n04336792_7448",
        "n04371774_5854",
        "n04596742_4225",
        "n07583066_647",
        "n13037406_4650",
    )
)
# The one PNG stored under a .JPEG name (imagenet_to_gcs.py _is_png).
PNG_TRAIN_IMAGES: frozenset[str] = frozenset({"n02105855_2933.JPEG"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM and RST0-7 (SOI/EOI are handled on their own).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _APP14 = 0xDA, 0xEE
# libjpeg notes an Adobe marker only when APP14 carries at least 12 data bytes ("Adobe" + 7).
_ADOBE_MIN_LENGTH = 2 + 12
# PNG colour type -> channels TF decode_png(channels=0) returns (palette: 4 with a tRNS chunk).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_PIL_COMPONENTS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "I;16B": 1, "F": 1, "LA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}

_sof = struct.Struct(">BHHB").unpack_from
_u32 = struct.Struct(">I").unpack_from


@dataclass(frozen=True)
class ImageInfo:
    """What the reference learns from decoding one image, read from its header.

    ``components`` is the JPEG frame's component count (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK) or the
    channels TF's ``decode_png(channels=0)`` returns for a PNG. ``adobe`` says whether a JPEG has an
    Adobe APP14 marker (it decides TF's CMYK -> RGB formula). ``source`` is ``"header"`` for the
    fast path and ``"decode"`` when Pillow had to decode the image.
    """

    format: str
    height: int
    width: int
    components: int
    adobe: bool
    source: str


class _BadHeader(Exception):
    """The fast path cannot read this header; the message says why (never escapes the module)."""


def image_info(data: bytes, *, name: str) -> ImageInfo:
    """Format, height, width and components of an in-memory JPEG or PNG.

    The format comes from the magic bytes, never from ``name``. JPEG markers are walked from SOI
    to the first SOS; the dims are those of the first SOFn frame, as libjpeg (and so TF) reports
    them. A DNL height of 0, a precision other than 8 bits, a malformed or truncated header, or a
    JPEG without EOI after its first scan falls back to a full Pillow decode.

    Args:
        data: the file's bytes.
        name: file name used in log and error messages.

    Returns:
        The image's :class:`ImageInfo`.

    Raises:
        ImageError: the bytes are neither JPEG nor PNG, or the header is unreadable and Pillow
            cannot decode the image either; the message names ``name`` and the problem.
    """
    if data[:2] == _JPEG_SOI:
        fmt, parse = JPEG, _jpeg_header
    elif data[:8] == _PNG_SIGNATURE:
        fmt, parse = PNG, _png_header
    else:
        head = f"starts with {bytes(data[:8]).hex(' ')}" if data else "the file is empty"
        raise ImageError(f"{name}: not a JPEG or PNG ({head})")
    try:
        return parse(data)
    except _BadHeader as exc:
        reason = str(exc)
    log.debug("%s: %s header not readable (%s); decoding it with Pillow", name, fmt, reason)
    return _decoded_info(data, fmt=fmt, name=name, reason=reason)


def _jpeg_header(data: bytes) -> ImageInfo:
    pos = 2
    adobe = False
    frame = None
    try:
        while True:
            if data[pos] != 0xFF:
                raise _BadHeader(f"byte {pos} is 0x{data[pos]:02x} where a marker was expected")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            if marker in _STANDALONE:
                pos += 2
                continue
            length = data[pos + 2] << 8 | data[pos + 3]
            if marker == _SOS:
                break
            if marker in _SOF:
                if frame is None:
                    if length < 8:
                        raise _BadHeader(f"SOF marker 0xff{marker:02x} at byte {pos} is only {length} bytes long")
                    frame = _sof(data, pos + 4)
            elif marker == _APP14:
                if length >= _ADOBE_MIN_LENGTH and data[pos + 4 : pos + 9] == b"Adobe":
                    adobe = True
            elif marker in (0x00, 0xD8, 0xD9) or length < 2:
                raise _BadHeader(f"marker 0xff{marker:02x} (length {length}) at byte {pos} before the first scan")
            pos += 2 + length
    except (IndexError, struct.error):
        raise _BadHeader(f"truncated at byte {len(data)} before the first scan") from None
    if frame is None:
        raise _BadHeader("no SOF frame header before the first scan")
    precision, height, width, components = frame
    if height == 0:
        raise _BadHeader("SOF height is 0 (the height is in a DNL marker)")
    if width == 0 or components not in (1, 3, 4):
        raise _BadHeader(f"SOF says {width} columns and {components} components")
    if precision != 8:
        raise _BadHeader(f"{precision}-bit samples (TF decodes 8-bit JPEGs only)")
    # Entropy-coded data never contains FF D9, so an EOI after the scan start proves the file
    # is not cut short (the reference's full decode would fail on a truncated file).
    if not _found_after(data, _JPEG_EOI, pos):
        raise _BadHeader("no EOI marker after the first scan (truncated?)")
    return ImageInfo(JPEG, height, width, components, adobe, "header")


def _found_after(data: bytes | memoryview, marker: bytes, start: int) -> bool:
    """Whether ``marker`` occurs in ``data`` at or after ``start`` (``rfind``, which a memoryview lacks).

    A complete file ends with it (JPEG EOI; PNG IEND then its 4-byte CRC), so the end is checked
    in place first; only otherwise is the rest searched (a copy, for a memoryview).
    """
    if isinstance(data, bytes):
        return data.rfind(marker, start) >= 0
    end = len(data)
    for tail in (0, 4):
        at = end - tail - len(marker)
        if at >= start and data[at : end - tail] == marker:
            return True
    return bytes(data[start:]).rfind(marker) >= 0


def _png_header(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise _BadHeader("no 13-byte IHDR chunk right after the signature")
    width, height = struct.unpack_from(">II", data, 16)
    depth, color_type = data[24], data[25]
    channels = _PNG_CHANNELS.get(color_type)
    if not width or not height or channels is None or depth not in (1, 2, 4, 8, 16):
        raise _BadHeader(f"IHDR says {width}x{height}, bit depth {depth}, colour type {color_type}")
    if color_type == 3 and _png_has_trns(data):
        channels = 4
    if not _found_after(data, b"IEND", 33):
        raise _BadHeader("no IEND chunk (truncated?)")
    return ImageInfo(format=PNG, height=height, width=width, components=channels, adobe=False, source="header")


def _png_has_trns(data: bytes) -> bool:
    """Whether a tRNS chunk comes before the first IDAT (chunks: length u32, type, data, crc)."""
    pos, n = 8, len(data)
    while pos + 8 <= n:
        (length,) = _u32(data, pos)
        kind = data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return True
        if kind == b"IDAT":
            return False
        pos += 12 + length
    raise _BadHeader("truncated before the first IDAT chunk")


def _decoded_info(data: bytes, *, fmt: str, name: str, reason: str) -> ImageInfo:
    im = _pillow_decode(data, fmt=fmt, name=name, why=f"{reason}, and Pillow cannot decode the {fmt} either")
    width, height = im.size
    components = _PIL_COMPONENTS.get(im.mode, len(im.getbands()))
    if im.mode == "P":
        components = 4 if "transparency" in im.info else 3
    return ImageInfo(format=fmt, height=height, width=width, components=components, adobe="adobe" in im.info, source="decode")


def _pillow_decode(data: bytes, *, fmt: str, name: str, why: str) -> Any:
    """Fully decode ``data`` with Pillow; returns the loaded image."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data), formats=(fmt,))
        im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ... on corrupt data
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageError(f"{name}: {why} ({detail})") from exc
    return im


def to_rgb_jpeg(data: bytes, *, name: str, quality: int = 100) -> bytes:
    """Re-encode a CMYK (or any) JPEG or a PNG as a baseline RGB JPEG, byte for byte as the reference does.

    The reference (``imagenet_to_gcs.py`` ``ImageCoder``) runs ``tf.image.decode_jpeg`` /
    ``decode_png(channels=3)`` then ``tf.image.encode_jpeg(format='rgb', quality=100)``.

    JPEG: done by TensorFlow, ``decode_jpeg(channels=3)`` with its default IDCT (libjpeg's fast
    integer one, ``JDCT_IFAST``; Pillow always uses the accurate one, off by up to 3 levels) and
    TF's CMYK/YCCK -> RGB conversion, then ``encode_jpeg``. A grey JPEG becomes grey RGB (the
    reference's ``channels=0`` decode would fail on it). PNG: decoded by Pillow (alpha dropped,
    16-bit samples cut to their high byte, like ``decode_png(channels=3)``) and encoded by Pillow
    with TF's settings (4:2:0, 300 dpi), which gives TF's bytes: both are libjpeg-turbo.

    Args:
        data: the file's bytes (JPEG or PNG, whatever the name says).
        name: file name used in error messages.
        quality: JPEG quality, 0-100 (the reference uses 100).

    Returns:
        The JPEG bytes; same height and width as the input.

    Raises:
        ConfigError: ``quality`` is out of range.
        ImageError: the bytes are not a decodable JPEG or PNG; the message names ``name``.
    """
    if not 0 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be 0-100, got {quality}")
    info = image_info(data, name=name)
    if info.format == JPEG:
        return _tf_rgb_jpeg(data, name=name, quality=quality)
    im = _pillow_decode(data, fmt=info.format, name=name, why=f"Pillow cannot decode the {info.format}")
    rgb = _to_rgb(im, name=name)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, subsampling="4:2:0", progressive=False, optimize=False, dpi=(300, 300))
    return out.getvalue()


def _tf_rgb_jpeg(data: bytes, *, name: str, quality: int) -> bytes:
    """The reference's ``cmyk_to_rgb``: TF ``decode_jpeg`` (default, fast IDCT) then ``encode_jpeg``."""
    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()
    try:
        pixels = tf.io.decode_jpeg(data, channels=3)  # dct_method "" is JDCT_IFAST, as in the reference
        return bytes(tf.io.encode_jpeg(pixels, format="rgb", quality=quality).numpy())
    except tf.errors.OpError as exc:
        detail = " ".join(re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", exc.message).split())[:200] or type(exc).__name__
        raise ImageError(f"{name}: TensorFlow cannot decode the JPEG to re-encode it ({detail})") from exc


def _to_rgb(im: Any, *, name: str) -> Any:
    import numpy as np
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey PNG: keep the high byte
        grey = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")
    if im.mode in ("1", "L", "LA", "P", "PA", "RGBA"):
        return im.convert("RGB")  # alpha and transparency are dropped, not composited
    raise ImageError(f"{name}: cannot convert Pillow mode {im.mode} to RGB")


def needs_conversion(basename: str, *, split: str) -> bool:
    """Whether the reference re-encodes this file (the 22 CMYK JPEGs and the 1 PNG, train only).

    Like the reference, this goes by name only, never by content: the CMYK validation image
    ``ILSVRC2012_val_00019877.JPEG`` is stored as it is.

    Args:
        basename: the file name without folders, e.g. ``n02105855_2933.JPEG``.
        split: ``"train"`` or ``"validation"``.

    Raises:
        ConfigError: ``split`` is neither.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split == "train" and (basename in CMYK_TRAIN_IMAGES or basename in PNG_TRAIN_IMAGES)
