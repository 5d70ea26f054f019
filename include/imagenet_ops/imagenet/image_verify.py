"""Full-decode verification of an image: refuse what TensorFlow's ``decode_jpeg`` would refuse.

The header check (:mod:`imagenet_ops.imagenet.image_header`) reads a JPEG's size from its first bytes and
never looks at the compressed scan data, so a file corrupted mid-scan passes it. OpenCV does no
better: ``cv2.imdecode`` returns the rows it managed to decode, even after libjpeg gave up with an
error. :func:`verify_image` decodes the whole image instead.

What TensorFlow refuses (``tensorflow/core/lib/jpeg/jpeg_mem.cc`` and ``jpeg_handle.cc``, with
``try_recover_truncated=False``, the default and what the training readers use):

* any fatal libjpeg error: an unknown or misplaced marker, bad SOS/SOF/DHT/DQT parameters, a
  marker length that runs out of the segment;
* any read past the end of the data. libjpeg's own memory source would insert a fake
  end-of-image marker there ("Premature end of JPEG file"); TensorFlow's fails instead, both while
  reading scan lines and in ``jpeg_finish_decompress``, which reads on to the EOI marker;
* images of 2**29 or more samples (height x width x components) and samples other than 8 bits.

What it accepts, and so is accepted here: damage libjpeg only warns about and repairs, such as
"Corrupt JPEG data: N extraneous bytes before marker" (bytes skipped), "premature end of data
segment" (the rest of the scan filled from zeros, an EOI follows) or "Invalid SOS parameters for
sequential JPEG". Those images decode in training. A flipped bit that still forms valid codes
cannot be told from the original by any decoder; only a checksum of the bytes can. The one
refusal TensorFlow may not share: a file with no EOI marker at all, which TensorFlow's decoder
fails on nearly always but not when it happens to stop reading just short of the end.

How it is checked, without TensorFlow (a 700 MB import per process): Pillow decodes the image
fully (Pillow raises on every fatal libjpeg error and on data that ends before the last row), and
:func:`jpeg_end_problem` walks the markers the way libjpeg's marker reader does, to find whether
reading stops at an EOI marker inside the data. Pillow accepts a file whose rows are complete but
whose EOI is missing; TensorFlow does not. ``tests/lib/test_image_verify.py`` checks this against
``tf.io.decode_jpeg`` on corrupted real JPEGs.

PNG: Pillow's ``verify()`` (every chunk CRC, up to IEND), then a full decode.

A caller that needs the pixels anyway (the preprocessed sets) passes ``keep``: a JPEG it accepts
by its header is then decoded once, at full size, and the verifying decode is also the one it
uses (:func:`imagenet_ops.preprocessed.ops.decode_rgb`). For a plain JPEG (:func:`plain_jpeg`: one
sequential scan ending at its EOI, nearly every ImageNet file) that caller needs no Pillow at all:
``cv2.imdecode``, the decoder its reference uses, refuses exactly what the full verify refuses.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import Any

from imagenet_ops.core.errors import ConfigError, ImageError

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EOI, _SOS = 0xD9, 0xDA
# libjpeg's readers stop at FF (fill FFs) then a code of C0 or more other than RSTn. They pass over
# FF 00 (a stuffed FF data byte), RSTn (D0-D7) and TEM (01), which stand alone, and the reserved
# 02-BF, which have no length libjpeg would read: in a scan with restart markers its resync skips
# them, anywhere else they are fatal (the full decode refuses them). So reading stops at the first
# FF followed by C0-CF or D8-FE: a run of fill FFs ends at its last FF (the one before the code),
# and the byte after a passed-over FF is never FF itself, so it cannot start a stop.
_STOP = re.compile(rb"\xff[\xc0-\xcf\xd8-\xfe]")
# Start-of-frame markers: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# tensorflow/core/lib/jpeg/jpeg_mem.cc refuses output_height * output_width * num_components >= 2**29.
TF_MAX_SAMPLES = 1 << 29
# What a plain JPEG (:func:`plain_jpeg`) may hold before its scan: DHT, DQT, DRI, APPn and COM segments,
# and one baseline or extended sequential Huffman frame.
_PLAIN_SEGMENTS = frozenset({0xC4, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})
_SEQUENTIAL_SOF = frozenset({0xC0, 0xC1})
# In scan data libjpeg passes over a stuffed FF 00, fill FFs and RSTn (benign even where no restart
# interval is set); any other FF xx ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def verify_image(data: bytes, *, name: str, keep: Callable[[Any], bool] | None = None) -> Any:
    """Decode ``data`` fully and refuse it if TensorFlow's ``decode_jpeg`` could not decode it.

    Args:
        data: the file's bytes (JPEG or PNG, whatever the name says).
        name: the file and member named in the error (e.g. ``train.tar: n01440764/n01440764_10026.JPEG``).
        keep: called with a JPEG's opened (not yet decoded) Pillow image; when it returns True the
            JPEG is decoded at full size and returned. Otherwise (and without ``keep``) the
            verifying decode runs at libjpeg's 1/8 scale: the same checks, 1.5x faster.

    Returns:
        The decoded Pillow image of a JPEG ``keep`` accepted, else None.

    Raises:
        ImageError: not a JPEG or PNG, or corrupt; the message names ``name`` and what is wrong.
    """
    if data[:2] == _JPEG_SOI:
        problem = jpeg_end_problem(data)
        if problem:
            raise ImageError(f"{name}: corrupt JPEG: {problem}")
        return _pillow_load(data, fmt="JPEG", name=name, keep=keep)
    if data[:8] == _PNG_SIGNATURE:
        _pillow_load(data, fmt="PNG", name=name)
        return None
    head = f"starts with {bytes(data[:8]).hex(' ')}" if data else "the file is empty"
    raise ImageError(f"{name}: not a JPEG or PNG ({head})")


def jpeg_end_problem(data: bytes) -> str | None:
    """Why libjpeg would read past the end of ``data`` or refuse its frame, or ``None``.

    Walks the markers as libjpeg's marker reader and entropy decoder consume them: marker segments
    by their length; scan data up to the first marker that is neither a stuffed ``FF 00``, fill
    ``FF`` bytes, a restart marker nor a reserved one without a length (the entropy decoder stops
    there, and what comes after it is read as markers again, skipping stray bytes). Reading has to
    end at an EOI marker after a scan.
    Everything else (bad tables, unknown markers, bad Huffman codes) is left to the full decode.
    """
    n = len(data)
    pos = 2
    scans = 0
    seen_frame = False
    while True:
        found = _STOP.search(data, pos)
        if found is None:
            return f"no end-of-image marker after byte {pos}: the data ends at byte {n} (truncated?)"
        at = found.start()
        marker = data[at + 1]
        if marker == _EOI:
            return None if scans else f"end-of-image marker at byte {at} before any scan"
        if at + 4 > n:
            return f"marker 0xff{marker:02x} at byte {at} is cut off by the end of the data"
        length = data[at + 2] << 8 | data[at + 3]
        if at + 2 + length > n:
            return f"marker 0xff{marker:02x} at byte {at} is {length} bytes long, past the end of the data ({n} bytes)"
        if marker in _SOF and not seen_frame and length >= 8:
            seen_frame = True
            precision, components = data[at + 4], data[at + 9]
            height, width = data[at + 5] << 8 | data[at + 6], data[at + 7] << 8 | data[at + 8]
            if precision != 8:
                return f"{precision}-bit samples (TensorFlow decodes 8-bit JPEGs only)"
            if height * width * components >= TF_MAX_SAMPLES:
                return f"{width}x{height} with {components} components is too large for TensorFlow (2**29 samples or more)"
        if marker == _SOS:
            scans += 1
        pos = at + 2 + length


def plain_jpeg(data: bytes, *, max_pixels: int) -> bool:
    """Whether ``data`` is a JPEG any libjpeg decoder refuses exactly when :func:`verify_image` does,
    provided the decoder fails on every fatal libjpeg error up to its last scan line.

    Plain means: SOI, then marker segments each starting right where the last one ended (DHT, DQT,
    DRI, APPn, COM and one baseline or extended sequential frame of 8-bit samples, 1, 3 or 4
    components and at most ``max_pixels`` pixels, within TensorFlow's limit), then one scan whose
    data holds no marker but RSTn before an EOI marker. All of such a file up to the end of its
    scan is read while the scan lines are decoded, and what ``jpeg_finish_decompress`` reads after
    it is RSTn markers, stray bytes (a warning) and the EOI: nothing there can fail. ``cv2.imdecode``
    fails on every fatal error before its last scan line and ignores only those in
    ``jpeg_finish_decompress`` (its ``JpegDecoder::readData`` sets its result before that call), so
    for a plain JPEG its verdict is Pillow's full decode's; and an EOI after the one scan leaves
    nothing for :func:`jpeg_end_problem` to find. Anything else (progressive and multi-scan files,
    fill bytes or stray data between segments, any other marker in the scan) is not plain, and
    gets the full verify. ``tests/lib/test_plain_jpeg.py`` checks both verdicts on damaged JPEGs.
    """
    frame = False
    for marker, pos, end in _header_segments(data):
        length = end - pos - 2
        if length < 2:
            return False
        if marker in _SEQUENTIAL_SOF:
            if frame or length < 8:
                return False
            precision, components = data[pos + 4], data[pos + 9]
            pixels = (data[pos + 5] << 8 | data[pos + 6]) * (data[pos + 7] << 8 | data[pos + 8])
            if precision != 8 or components not in (1, 3, 4) or not 0 < pixels <= max_pixels:
                return False
            if pixels * components >= TF_MAX_SAMPLES:
                return False
            frame = True
        elif marker == _SOS:
            found = _SCAN_END.search(data, end)
            return frame and found is not None and data[found.start() + 1] == _EOI
        elif marker not in _PLAIN_SEGMENTS:
            return False
    return False


def _header_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(marker, start, end)`` of each marker segment after the SOI while each starts right where
    the last one ended and fits in ``data``; the last one yielded may be the first SOS."""
    n, pos = len(data), 2
    while pos + 4 <= n and data[pos] == 0xFF:
        marker, end = data[pos + 1], pos + 2 + (data[pos + 2] << 8 | data[pos + 3])
        if end > n:
            return
        yield marker, pos, end
        if marker == _SOS:
            return
        pos = end


def _pillow_open(data: bytes, fmt: str) -> tuple[Any, bytes]:
    """``Image.open`` and the bytes it opened: ``data``, or a JPEG's ``data`` without its APPn
    segments when only those made Pillow fail.

    Pillow's Python header parser raises on APPn contents libjpeg (and so TensorFlow and OpenCV)
    skips or reads leniently: a 5-byte JFIF or Adobe segment, an ICC profile chunk without its
    sequence bytes, a cut Photoshop resource, an EXIF resolution of an empty string.
    """
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data), formats=(fmt,)), data
    except Exception:
        stripped = _without_appn(data) if fmt == "JPEG" else data
        if stripped == data:
            raise
    return Image.open(io.BytesIO(stripped), formats=(fmt,)), stripped  # raises if the rest fails too


def _without_appn(data: bytes) -> bytes:
    """``data`` without its APPn segments before the first scan (unchanged if its segments do not
    follow each other; what libjpeg does with APPn contents cannot make a decode fail)."""
    kept = [data[:2]]
    for marker, pos, end in _header_segments(data):
        if marker == _SOS:
            kept.append(data[pos:])
            return b"".join(kept)
        if not 0xE0 <= marker <= 0xEF:
            kept.append(data[pos:end])
    return data


def _pillow_load(data: bytes, *, fmt: str, name: str, keep: Callable[[Any], bool] | None = None) -> Any:
    """Decode all of ``data`` with Pillow in one pass; errors become :class:`ImageError` naming ``name``.

    Returns the decoded image when ``keep(image)`` said to decode it at full size, else None.

    Raises:
        ConfigError: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is on in this process: Pillow then
            swallows decode errors, so nothing could be verified.
    """
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ConfigError(
            f"{name}: cannot verify images while PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process "
            "(Pillow then hides decode errors); set it back to False"
        )
    try:
        if fmt == "PNG":
            with Image.open(io.BytesIO(data), formats=(fmt,)) as im:
                im.verify()  # chunk CRCs up to IEND; load() does not check the image data's
        im, opened = _pillow_open(data, fmt)
        if opened is not data:  # only Pillow's parser of APPn contents refused it: verify the rest, never keep
            data, keep = opened, None
        kept = keep is not None and keep(im)
        if fmt == "JPEG" and not kept:
            # libjpeg's 1/8 scale: every coefficient is still entropy-decoded (where corrupt data
            # shows), only the inverse DCT is skipped; 1.5x faster than a full-size decode.
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im.decodermaxblock = max(len(data), 65536)  # one read: libjpeg sees all of the data at once, as in TF
        im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageError(f"{name}: corrupt {fmt}: a full decode fails ({detail})") from exc
    return im if kept else None
