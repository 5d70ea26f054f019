"""Plain JPEGs decoded by OpenCV alone refuse exactly what the full verify refuses (issue 15).

:func:`imagenet_ops.imagenet.image_verify.plain_jpeg` lets :func:`imagenet_ops.preprocessed.ops.decode_rgb`
skip Pillow's verifying decode for a one-scan sequential JPEG; ``test_image_verify.py`` holds the
full verify to TensorFlow's ``decode_jpeg``, and this module holds the plain path to the full verify.
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
from jpeg_damage import base_images, damage_cases, scan_start, stray_marker, truncated_then_eoi
from PIL import Image

from imagenet_ops.core.errors import ImageError
from imagenet_ops.imagenet.image_verify import TF_MAX_SAMPLES, plain_jpeg, verify_image
from imagenet_ops.preprocessed import ops

LIMIT = Image.MAX_IMAGE_PIXELS  # what decode_rgb passes: past it Pillow warns of a decompression bomb


def _refusal(call, data: bytes) -> str | None:
    try:
        call(data)
    except ImageError as exc:
        return str(exc)
    return None


def _header_damaged(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1 to 3 bytes of its marker segments (tables, frame, scan header) changed."""
    raw = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        raw[rng.randrange(2, scan_start(data))] ^= rng.randrange(1, 256)
    return bytes(raw)


def _cases() -> list[tuple[str, bytes]]:
    rng = random.Random(15)
    cases = list(damage_cases(per_image=80, seed=15))
    cases += [(f"{key}#h{i}:header", _header_damaged(data, rng)) for key, data in base_images().items() for i in range(40)]
    return cases


def test_the_plain_path_refuses_what_the_full_verify_refuses() -> None:
    verdicts = {"plain refused": 0, "plain accepted": 0, "not plain": 0}
    differ = []
    for label, data in _cases():
        full = _refusal(lambda d: verify_image(d, name="x.JPEG"), data)
        ours = _refusal(lambda d: ops.decode_rgb(d, "x.JPEG"), data)
        if not plain_jpeg(data, max_pixels=LIMIT):
            verdicts["not plain"] += 1
        else:
            verdicts["plain refused" if full else "plain accepted"] += 1
        if (full is None) != (ours is None):
            differ.append((label, full, ours))
    assert not differ, differ[:10]
    assert min(verdicts.values()) > 50, verdicts  # each outcome exercised


@pytest.mark.parametrize(("key", "plain"), [(k, k != "progressive") for k in sorted(base_images())])
def test_intact_images_decode_to_imreads_pixels_on_either_path(key: str, plain: bool) -> None:
    data = base_images()[key]
    assert plain_jpeg(data, max_pixels=LIMIT) is plain
    imread = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(ops.decode_bgr(data, "x.JPEG"), imread)


def test_a_fatal_error_in_a_plain_jpeg_is_a_bad_image_naming_it() -> None:
    data = bytearray(base_images()["baseline"])
    sos = bytes(data).index(b"\xff\xda")
    data[sos + 6] = 0x33  # the first component's Huffman tables: 3, never defined
    assert plain_jpeg(bytes(data), max_pixels=LIMIT)
    with pytest.raises(ImageError, match=r"ILSVRC2012_val_00000001\.JPEG: corrupt JPEG: a full decode fails \(libjpeg"):
        ops.decode_rgb(bytes(data), "ILSVRC2012_val_00000001.JPEG")


def _with_segment_after_scan(data: bytes, segment: bytes) -> bytes:
    return data[:-2] + segment + data[-2:]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda d: stray_marker(d, 0.4), "a marker OpenCV passes over inside the scan"),
        (lambda d: _with_segment_after_scan(d, b"\xff\xc4\x00\x03\x00"), "a table after the scan (read by finish_decompress)"),
        (lambda d: d[:2] + b"\xff" + d[2:], "a fill byte before a segment"),
        (lambda d: d[:2] + b"junk" + d[2:], "stray bytes before a segment"),
        (lambda d: d[:-2], "no EOI"),
        (lambda d: d.replace(b"\xff\xc0", b"\xff\xc2", 1), "a progressive frame"),
    ],
    ids=["stray-marker", "table-after-scan", "fill-byte", "stray-bytes", "no-eoi", "progressive"],
)
def test_what_finish_decompress_or_the_marker_walk_would_catch_is_not_plain(damage, why: str) -> None:
    data = damage(base_images()["baseline"])
    assert not plain_jpeg(data, max_pixels=LIMIT), why
    assert (_refusal(lambda d: ops.decode_rgb(d, "x.JPEG"), data) is None) == (
        _refusal(lambda d: verify_image(d, name="x.JPEG"), data) is None
    )


def test_frames_beyond_the_limits_are_left_to_the_full_verify() -> None:
    data = base_images()["baseline"]
    sof = data.index(b"\xff\xc0")
    big = data[: sof + 5] + (12_000).to_bytes(2, "big") + (15_000).to_bytes(2, "big") + data[sof + 9 :]
    assert 12_000 * 15_000 * 3 >= TF_MAX_SAMPLES
    assert not plain_jpeg(big, max_pixels=LIMIT)
    assert not plain_jpeg(data, max_pixels=375 * 500 - 1)  # Pillow's bomb warning starts lower
    twelve_bit = data[: sof + 4] + b"\x0c" + data[sof + 5 :]
    assert not plain_jpeg(twelve_bit, max_pixels=LIMIT)
    with pytest.raises(ImageError, match="12-bit samples"):
        ops.decode_rgb(twelve_bit, "x.JPEG")


def test_damage_libjpeg_repairs_is_accepted_on_the_plain_path() -> None:
    data = truncated_then_eoi(base_images()["baseline"], 0.7)
    assert plain_jpeg(data, max_pixels=LIMIT)
    assert ops.decode_rgb(data, "x.JPEG").shape == (375, 500, 3)
