"""The full-decode image check against TensorFlow's ``decode_jpeg``, on real JPEGs damaged mid-scan.

TensorFlow is imported inside the fixture only (the library never imports it for this).
"""

from __future__ import annotations

import struct

import pytest
from jpeg_damage import STRAY_MARKER, base_images, damage_cases, stray_marker, truncated, truncated_then_eoi

from imagenet_ops.core.errors import ImageError
from imagenet_ops.imagenet.image_header import image_info
from imagenet_ops.imagenet.image_verify import TF_MAX_SAMPLES, jpeg_end_problem, verify_image
from imagenet_ops.testing.preprocess_samples import sample_image


@pytest.fixture(scope="module")
def tf_decodes():
    """Whether ``tf.io.decode_jpeg(data, channels=3)`` decodes ``data`` (what the training readers call)."""
    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()

    def decodes(data: bytes) -> bool:
        try:
            tf.io.decode_jpeg(data, channels=3)
        except tf.errors.OpError:
            return False
        return True

    return decodes


def _verdict(data: bytes) -> str | None:
    """``None`` if the verify accepts ``data``, else its message."""
    try:
        verify_image(data, name="x.JPEG")
    except ImageError as exc:
        return str(exc)
    return None


def test_what_the_verify_accepts_tensorflow_decodes_and_what_it_refuses_tensorflow_refuses(tf_decodes) -> None:
    # Regression (issue 10 item 4): a JPEG corrupted mid-scan was packed, and decode_jpeg failed on it in training.
    cases = list(damage_cases(per_image=60, seed=10))
    tf_ok = {label: tf_decodes(data) for label, data in cases}
    ours = {label: _verdict(data) for label, data in cases}
    assert sum(tf_ok.values()) > 100 and sum(not ok for ok in tf_ok.values()) > 100, "both outcomes must be exercised"

    lenient = [label for label in tf_ok if ours[label] is None and not tf_ok[label]]
    assert not lenient, f"accepted, but TensorFlow cannot decode them: {lenient}"
    # The one refusal TF does not share: data without an end-of-image marker that TF's decoder
    # happens to stop short of (it fails on nearly every such file, see the truncation cases).
    stricter = {label: ours[label] for label in tf_ok if ours[label] is not None and tf_ok[label]}
    assert all("no end-of-image marker" in why for why in stricter.values()), stricter
    assert len(stricter) <= len(cases) // 100, stricter


@pytest.mark.parametrize("key", sorted(base_images()))
def test_intact_images_are_accepted(key: str, tf_decodes) -> None:
    data = base_images()[key]
    assert _verdict(data) is None and tf_decodes(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (stray_marker, r"x\.JPEG: corrupt JPEG: a full decode fails \("),
        (truncated, r"x\.JPEG: corrupt JPEG: no end-of-image marker after byte \d+: the data ends at byte \d+"),
        (lambda d: d[:-2], r"x\.JPEG: corrupt JPEG: no end-of-image marker"),
        (lambda d: d[: d.index(b"\xff\xda") + 8], r"x\.JPEG: corrupt JPEG: marker 0xffda at byte \d+ is 12 bytes long, past"),
        (lambda d: d[:2] + b"\xff\xd9", r"x\.JPEG: corrupt JPEG: end-of-image marker at byte 2 before any scan"),
        (lambda d: b"", r"x\.JPEG: not a JPEG or PNG \(the file is empty\)"),
        (lambda d: b"GIF89a" + d[6:], r"x\.JPEG: not a JPEG or PNG \(starts with 47 49 46 38"),
    ],
    ids=["stray-marker-mid-scan", "truncated-mid-scan", "no-eoi", "cut-in-sos", "eoi-first", "empty", "gif"],
)
def test_refusals_name_the_file_and_the_problem(damage, message: str, tf_decodes) -> None:
    data = damage(base_images()["baseline"])
    with pytest.raises(ImageError, match=message):
        verify_image(data, name="x.JPEG")
    assert not tf_decodes(data)


def test_the_header_check_alone_passes_a_file_corrupted_mid_scan(tf_decodes) -> None:
    # Why the full decode is needed: the header is intact, TF still fails ("Unsupported marker type 0x67").
    data = stray_marker(base_images()["baseline"], 0.3)
    assert STRAY_MARKER in data and image_info(data, name="x").source == "header"
    assert not tf_decodes(data)
    with pytest.raises(ImageError, match="a full decode fails"):
        verify_image(data, name="x")


def test_damage_libjpeg_repairs_is_accepted_like_tensorflow_does(tf_decodes) -> None:
    # A cut scan followed by EOI: libjpeg warns "premature end of data segment" and fills zeros; TF decodes it.
    data = truncated_then_eoi(base_images()["baseline"], 0.7)
    assert tf_decodes(data) and _verdict(data) is None


def _patched_sof(data: bytes, *, precision: int | None = None, height: int | None = None, width: int | None = None) -> bytes:
    sof = data.index(b"\xff\xc0")
    p, h, w = struct.unpack_from(">BHH", data, sof + 4)
    return data[: sof + 4] + struct.pack(">BHH", precision or p, height or h, width or w) + data[sof + 9 :]


def test_frames_tensorflow_refuses_are_refused_before_decoding(tf_decodes) -> None:
    data = base_images()["baseline"]
    big = _patched_sof(data, height=12_000, width=15_000)  # 12000 * 15000 * 3 >= 2**29
    assert 12_000 * 15_000 * 3 >= TF_MAX_SAMPLES
    assert "too large for TensorFlow" in jpeg_end_problem(big)
    assert not tf_decodes(big)
    assert "12-bit samples" in jpeg_end_problem(_patched_sof(data, precision=12))


def test_png_content_is_decoded_fully(tf_decodes) -> None:
    png = sample_image("png")
    assert _verdict(png) is None and tf_decodes(png)
    flipped = png[:2000] + bytes([png[2000] ^ 0x55]) + png[2001:]
    for bad in (png[: len(png) // 2], flipped, png[:-12]):
        assert "x.JPEG: corrupt PNG: a full decode fails" in _verdict(bad)
        assert not tf_decodes(bad)


def test_opencv_alone_returns_rows_of_a_corrupt_jpeg() -> None:
    # Regression (issue 10 item 4): cv2.imdecode gave an image for this file, which became a garbage .npy.
    import cv2
    import numpy as np

    from imagenet_ops.preprocessed.ops import decode_bgr

    data = stray_marker(base_images()["baseline"], 0.3)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(ImageError, match=r"ILSVRC2012_val_00000001\.JPEG: corrupt JPEG: a full decode fails"):
        decode_bgr(data, "ILSVRC2012_val_00000001.JPEG")


def test_pillow_set_to_hide_decode_errors_is_refused(monkeypatch) -> None:
    from PIL import ImageFile

    from imagenet_ops.core.errors import ConfigError

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ConfigError, match=r"x\.JPEG: cannot verify images while PIL\.ImageFile\.LOAD_TRUNCATED_IMAGES"):
        verify_image(base_images()["baseline"], name="x.JPEG")


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


_EMPTY_EXIF_XRESOLUTION = (  # ResolutionUnit 2, then XResolution as an ASCII string of one NUL
    b"Exif\0\0MM\0*\0\0\0\x08\0\x02"
    + struct.pack(">HHL4s", 0x0128, 3, 1, b"\0\x02\0\0")
    + struct.pack(">HHL4s", 0x011A, 2, 1, b"\0\0\0\0")
    + b"\0\0\0\0"
)


@pytest.mark.parametrize(
    "segment",
    [
        _segment(0xE0, b"JFIF\0"),
        _segment(0xEE, b"Adobe"),
        _segment(0xE2, b"ICC_PROFILE\0\x01"),
        _segment(0xED, b"Photoshop 3.0\x008BIM\x03\xed"),
        _segment(0xE1, _EMPTY_EXIF_XRESOLUTION),
    ],
    ids=["short-jfif", "short-adobe", "icc-without-sequence", "cut-photoshop", "exif-empty-resolution"],
)
def test_appn_contents_only_pillows_parser_refuses_are_accepted_like_tensorflow_does(segment: bytes, tf_decodes) -> None:
    # Found by a hostile review (issue 15): Pillow's header parser raised on these, libjpeg skips them.
    from imagenet_ops.preprocessed.ops import decode_rgb

    base = base_images()["baseline"]
    data = base[:2] + segment + base[2:]
    assert tf_decodes(data)
    assert _verdict(data) is None
    assert decode_rgb(data, "x.JPEG").shape == (375, 500, 3)


def test_bytes_after_the_eoi_are_ignored_like_tensorflow_does(tf_decodes) -> None:
    # Found by a hostile review (issue 15): an SOS marker in the trailing bytes read as a truncated scan.
    from imagenet_ops.preprocessed.ops import decode_rgb

    data = base_images()["baseline"] + b"\xff\xda\x00"
    assert tf_decodes(data) and _verdict(data) is None
    assert decode_rgb(data, "x.JPEG").shape == (375, 500, 3)
