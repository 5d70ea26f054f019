"""Header-only image dims against TensorFlow's full decode, and the reference's PNG/CMYK -> RGB JPEG conversion.

Every image is generated here with Pillow/numpy; TensorFlow is the oracle the reference uses.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imagenet_ops.core.errors import ConfigError, ImageError
from imagenet_ops.imagenet.image_header import (
    CMYK_TRAIN_IMAGES,
    PNG_TRAIN_IMAGES,
    ImageInfo,
    image_info,
    needs_conversion,
    to_rgb_jpeg,
)


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


def _pixels(height: int, width: int, channels: int) -> np.ndarray:
    """Smooth gradients plus mild noise: realistic JPEG scans, small 4:2:0 re-encoding error."""
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // (width + height), 40 + xx * yy * 160 // (width * height)]
    arr = np.stack(planes[:channels], axis=-1).astype(np.int16)
    noise = np.random.default_rng(height * width + channels).integers(-3, 4, arr.shape)
    return np.clip(arr + noise, 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, mode: str | None, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr.squeeze(), mode).save(out, fmt, **kwargs)
    return out.getvalue()


def _segment(data: bytes, marker: bytes) -> tuple[int, int]:
    """Start and end of the first ``marker`` segment (FF xx, u16 length)."""
    start = data.index(marker)
    return start, start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")


def _without_app14(data: bytes) -> bytes:
    start, end = _segment(data, b"\xff\xee")
    return data[:start] + data[end:]


def _patch_sof_height(data: bytes, height: int) -> bytes:
    start = data.index(b"\xff\xc0")
    return data[: start + 5] + height.to_bytes(2, "big") + data[start + 7 :]


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    rgb = _pixels(375, 500, 3)
    cmyk = _encode(_pixels(120, 160, 4), "CMYK", quality=95)
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "Canon", 6  # Make, and an orientation TF ignores
    with_app14_late = _without_app14(cmyk)
    sos = with_app14_late.index(b"\xff\xda")
    start, end = _segment(cmyk, b"\xff\xee")
    jpeg = _encode(rgb, "RGB", quality=90)
    dqt = jpeg.index(b"\xff\xdb")
    palette = Image.fromarray((_pixels(40, 50, 1)[..., 0] // 16).astype(np.uint8), "P")
    palette.putpalette(list(range(48)) * 16)
    pal_trns, pal = io.BytesIO(), io.BytesIO()
    palette.save(pal_trns, "PNG", transparency=3)
    palette.save(pal, "PNG")
    return {
        "rgb.JPEG": jpeg,
        "portrait.JPEG": _encode(_pixels(500, 333, 3), "RGB", quality=85),
        "grey.JPEG": _encode(_pixels(200, 300, 1), "L"),
        "cmyk-adobe.JPEG": cmyk,
        "cmyk-plain.JPEG": _without_app14(cmyk),
        "cmyk-app14-after-sof.JPEG": with_app14_late[:sos] + cmyk[start:end] + with_app14_late[sos:],
        "progressive.JPEG": _encode(rgb, "RGB", progressive=True),
        "exif-com-icc.JPEG": _encode(rgb, "RGB", exif=exif.tobytes(), comment=b"scanned " * 300, icc_profile=bytes(3000)),
        "fill-bytes.JPEG": jpeg[:dqt] + b"\xff\xff\xff" + jpeg[dqt:],
        "rgba.png": _encode(_pixels(90, 120, 4), "RGBA", "PNG"),
        "rgb.png": _encode(_pixels(90, 120, 3), "RGB", "PNG"),
        "grey.png": _encode(_pixels(90, 120, 1), "L", "PNG"),
        "grey-alpha.png": _encode(_pixels(90, 120, 2), "LA", "PNG"),
        "grey16.png": _encode(_pixels(64, 48, 1).astype(np.uint16) * 257, None, "PNG"),  # Pillow infers I;16
        "palette.png": pal.getvalue(),
        "palette-trns.png": pal_trns.getvalue(),
        # The real n02105855_2933.JPEG: PNG content under a JPEG name.
        "n02105855_2933.JPEG": _encode(_pixels(375, 500, 4), "RGBA", "PNG"),
    }


VALID = {
    # name: (format, components, adobe)
    "rgb.JPEG": ("JPEG", 3, False),
    "portrait.JPEG": ("JPEG", 3, False),
    "grey.JPEG": ("JPEG", 1, False),
    "cmyk-adobe.JPEG": ("JPEG", 4, True),
    "cmyk-plain.JPEG": ("JPEG", 4, False),
    "cmyk-app14-after-sof.JPEG": ("JPEG", 4, True),
    "progressive.JPEG": ("JPEG", 3, False),
    "exif-com-icc.JPEG": ("JPEG", 3, False),
    "fill-bytes.JPEG": ("JPEG", 3, False),
    "rgba.png": ("PNG", 4, False),
    "rgb.png": ("PNG", 3, False),
    "grey.png": ("PNG", 1, False),
    "grey-alpha.png": ("PNG", 2, False),
    "grey16.png": ("PNG", 1, False),
    "palette.png": ("PNG", 3, False),
    "palette-trns.png": ("PNG", 4, False),
    "n02105855_2933.JPEG": ("PNG", 4, False),
}


@pytest.mark.parametrize("name", VALID)
def test_header_matches_tensorflow_decode(images, tf, name):
    data = images[name]
    fmt, components, adobe = VALID[name]

    info = image_info(data, name=name)

    assert (info.format, info.components, info.adobe, info.source) == (fmt, components, adobe, "header")
    decoded = tf.io.decode_jpeg(data, channels=3) if fmt == "JPEG" else tf.io.decode_png(data, channels=0)
    assert (info.height, info.width) == tuple(decoded.shape[:2])
    if fmt == "PNG":
        assert info.components == decoded.shape[-1]  # what decode_png(channels=0) returns


def test_dims_are_sof_dims_not_exif_orientation(images):
    # Orientation 6 would rotate to 375x500 in an EXIF-aware viewer; TF (and the reference) do not rotate.
    assert b"Exif" in images["exif-com-icc.JPEG"][: images["exif-com-icc.JPEG"].index(b"\xff\xc0")]
    info = image_info(images["exif-com-icc.JPEG"], name="x")
    assert (info.height, info.width) == (375, 500)


def test_portrait_is_height_by_width(images):
    info = image_info(images["portrait.JPEG"], name="portrait.JPEG")
    assert (info.height, info.width) == (500, 333)


def test_adobe_marker_after_sof_counts_like_libjpeg(images, tf):
    # libjpeg reads every marker up to SOS, so a late APP14 still selects the Adobe CMYK formula.
    late = tf.io.decode_jpeg(images["cmyk-app14-after-sof.JPEG"], channels=3, dct_method="INTEGER_ACCURATE")
    early = tf.io.decode_jpeg(images["cmyk-adobe.JPEG"], channels=3, dct_method="INTEGER_ACCURATE")
    assert np.array_equal(late.numpy(), early.numpy())


def test_junk_between_segments_falls_back_to_decode(images, tf):
    jpeg = images["rgb.JPEG"]
    dqt = jpeg.index(b"\xff\xdb")
    junk = jpeg[:dqt] + b"\x00\x12\x34" + jpeg[dqt:]  # libjpeg warns and skips it; so does Pillow

    info = image_info(junk, name="junk.JPEG")

    assert info == ImageInfo(format="JPEG", height=375, width=500, components=3, adobe=False, source="decode")
    assert tuple(tf.io.decode_jpeg(junk, channels=3).shape) == (375, 500, 3)


def test_dnl_height_zero_that_nothing_decodes_names_the_file(images, tf):
    patched = _patch_sof_height(images["rgb.JPEG"], 0)
    with pytest.raises(ImageError, match=r"^n01_0\.JPEG: SOF height is 0 .*DNL.*Pillow cannot decode"):
        image_info(patched, name="n01_0.JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError):  # the reference would fail on it too
        tf.io.decode_jpeg(patched, channels=3)


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        (300, "truncated at byte 300 before the first scan"),
        (None, "no EOI marker after the first scan"),  # half the file
        (-2, "no EOI marker after the first scan"),
    ],
    ids=["in-header", "mid-scan", "eoi-missing"],
)
def test_truncated_jpeg_is_an_error_naming_the_file(images, tf, cut, problem):
    data = images["rgb.JPEG"][: cut or len(images["rgb.JPEG"]) // 2]
    with pytest.raises(ImageError, match=rf"^cut\.JPEG: {problem}.*Pillow cannot decode the JPEG"):
        image_info(data, name="cut.JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError):  # TF's full decode fails on each of them too
        tf.io.decode_jpeg(data, channels=3)


def test_truncated_png_is_an_error_naming_the_file(images):
    with pytest.raises(ImageError, match=r"^cut\.png: no IEND chunk"):
        image_info(images["rgb.png"][:5000], name="cut.png")


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "starts with ff e4 22 79 f3 bd 06 83"),
        (b"", "the file is empty"),
        (b"<html><body>403</body></html>", "starts with 3c 68 74 6d 6c 3e 3c 62"),
        (b"GIF89a\x01\x00\x01\x00", "starts with 47 49 46 38"),
        (b"\xff\xd9", "starts with ff d9"),
    ],
    ids=["random", "empty", "html", "gif", "eoi-only"],
)
def test_neither_jpeg_nor_png_is_an_error_naming_the_file(data, shown):
    with pytest.raises(ImageError, match=rf"^n01_1\.JPEG: not a JPEG or PNG \({shown}"):
        image_info(data, name="n01_1.JPEG")


def test_format_comes_from_bytes_not_name(images):
    assert image_info(images["rgb.png"], name="looks-like.JPEG").format == "PNG"
    assert image_info(images["rgb.JPEG"], name="looks-like.png").format == "JPEG"


# -- to_rgb_jpeg ---------------------------------------------------------------------------------


def _sof0(data: bytes) -> tuple[int, int, int, bytes]:
    """Height, width, components and per-component sampling bytes of a baseline JPEG."""
    start = data.index(b"\xff\xc0")
    height, width, ncomp = struct.unpack_from(">HHB", data, start + 5)
    return height, width, ncomp, bytes(data[start + 11 + 3 * i] for i in range(ncomp))


@pytest.mark.parametrize(
    "name", ["cmyk-adobe.JPEG", "cmyk-plain.JPEG", "n02105855_2933.JPEG", "grey.JPEG", "palette-trns.png", "grey16.png"]
)
def test_to_rgb_jpeg_matches_tensorflow_pixels(images, tf, name):
    original = images[name]
    before = image_info(original, name=name)

    out = to_rgb_jpeg(original, name=name)

    assert image_info(out, name="out") == ImageInfo("JPEG", before.height, before.width, 3, False, "header")
    assert _sof0(out) == (before.height, before.width, 3, b"\x22\x11\x11")  # baseline, 4:2:0
    decoded = tf.io.decode_jpeg(out, channels=0)
    assert decoded.shape[-1] == 3
    # TF's own conversion of the original: CMYK -> RGB in decode_jpeg, PNG/grey to 3 channels.
    expected = tf.io.decode_jpeg(original, channels=3) if before.format == "JPEG" else tf.io.decode_png(original, channels=3)
    diff = np.abs(decoded.numpy().astype(int) - expected.numpy().astype(int)).mean()
    assert diff < 3, f"{name}: mean abs diff {diff:.2f} against TF's decode"


@pytest.mark.parametrize("name", ["rgb.JPEG", "cmyk-adobe.JPEG", "cmyk-plain.JPEG"])
def test_jpeg_pixels_are_tf_default_decode_not_the_accurate_idct(images, tf, name):
    # Regression (issue 10 item 11): CMYK files were re-encoded after Pillow's accurate-IDCT decode;
    # the reference decodes with TF's default, the fast integer IDCT, so pixels were off by up to 3.
    data = images[name]
    out = tf.io.decode_jpeg(to_rgb_jpeg(data, name=name), channels=3).numpy()
    fast = tf.io.decode_jpeg(data, channels=3).numpy()
    accurate = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    assert not np.array_equal(fast, accurate)  # the two IDCTs differ on these images
    assert np.array_equal(fast, tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST").numpy())
    assert to_rgb_jpeg(data, name=name) == tf.io.encode_jpeg(fast, format="rgb", quality=100).numpy()
    assert out.shape == fast.shape


def test_pillow_decodes_with_the_accurate_idct(images, tf):
    # Why JPEGs are re-encoded by TF: Pillow offers no IDCT choice and always matches INTEGER_ACCURATE.
    data = images["rgb.JPEG"]
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(pillow, tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy())
    assert not np.array_equal(pillow, tf.io.decode_jpeg(data, channels=3).numpy())


def test_pillow_convert_is_wrong_for_cmyk_without_adobe_marker(images, tf):
    # Why to_rgb_jpeg does not use Image.convert("RGB"): it is right only for Adobe CMYK.
    data = images["cmyk-plain.JPEG"]
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert np.abs(pillow - tf.io.decode_jpeg(data, channels=3).numpy()).mean() > 30


def test_to_rgb_jpeg_quality(images):
    high = to_rgb_jpeg(images["cmyk-adobe.JPEG"], name="x")
    low = to_rgb_jpeg(images["cmyk-adobe.JPEG"], name="x", quality=50)
    assert len(low) < len(high)
    with pytest.raises(ConfigError, match="quality must be 0-100, got 101"):
        to_rgb_jpeg(images["cmyk-adobe.JPEG"], name="x", quality=101)


def test_to_rgb_jpeg_errors_name_the_file(images):
    with pytest.raises(ImageError, match=r"^n03_9\.JPEG: not a JPEG or PNG"):
        to_rgb_jpeg(b"garbage", name="n03_9.JPEG")
    with pytest.raises(ImageError, match=r"^n03_9\.JPEG: no EOI marker"):
        to_rgb_jpeg(images["cmyk-adobe.JPEG"][:-100], name="n03_9.JPEG")
    broken = bytearray(images["cmyk-adobe.JPEG"])
    broken[broken.index(b"\xff\xc0") + 12] = 3  # component 1 names quantisation table 3, which is not defined
    with pytest.raises(ImageError, match=r"^n03_9\.JPEG: TensorFlow cannot decode the JPEG to re-encode it \(jpeg::Uncompress"):
        to_rgb_jpeg(bytes(broken), name="n03_9.JPEG")


# -- the reference's name lists ------------------------------------------------------------------


def test_name_lists():
    assert len(CMYK_TRAIN_IMAGES) == 22
    assert all(name.startswith("n") and name.endswith(".JPEG") for name in CMYK_TRAIN_IMAGES)
    assert {"n01739381_1309.JPEG", "n13037406_4650.JPEG"} <= CMYK_TRAIN_IMAGES
    assert PNG_TRAIN_IMAGES == {"n02105855_2933.JPEG"}
    assert not CMYK_TRAIN_IMAGES & PNG_TRAIN_IMAGES


@pytest.mark.parametrize(
    ("basename", "split", "expected"),
    [
        ("n02105855_2933.JPEG", "train", True),
        ("n03062245_4620.JPEG", "train", True),
        ("n07583066_647.JPEG", "train", True),
        ("n01440764_10026.JPEG", "train", False),
        ("n03062245_4620.JPEG", "validation", False),
        ("n02105855_2933.JPEG", "validation", False),
        # CMYK too, but not on the reference's list: stored as it is.
        ("ILSVRC2012_val_00019877.JPEG", "validation", False),
        ("n03062245_4620.jpeg", "train", False),
    ],
)
def test_needs_conversion(basename, split, expected):
    assert needs_conversion(basename, split=split) is expected


def test_needs_conversion_rejects_unknown_split():
    with pytest.raises(ConfigError, match="split must be one of train, validation, got 'val'"):
        needs_conversion("n02105855_2933.JPEG", split="val")


def test_import_stays_light():
    code = (
        "import sys, imagenet_ops.imagenet.image_header; "
        "print(sorted({'PIL', 'numpy', 'tensorflow', 'airflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


# -- a memoryview (the shard writer reads images straight into its buffer) ----------------------


@pytest.mark.parametrize("name", VALID)
def test_a_memoryview_gives_what_the_bytes_give(images, name):
    data = images[name]
    inside = memoryview(bytearray(b"x" * 7 + data + b"\0" * 64))[7 : 7 + len(data)]  # a slice of a larger buffer
    assert image_info(memoryview(data), name=name) == image_info(inside, name=name) == image_info(data, name=name)


def test_a_memoryview_with_bytes_after_the_end_marker_searches_for_it(images):
    # The end marker is checked at the end in place; trailing bytes after it must still be found.
    for name in ("rgb.JPEG", "rgb.png"):
        data = images[name] + b"trailing bytes"
        assert image_info(memoryview(data), name=name) == image_info(data, name=name)


@pytest.mark.parametrize("cut", [300, None, -2], ids=["in-header", "mid-scan", "eoi-missing"])
def test_a_memoryview_of_a_truncated_jpeg_fails_as_its_bytes_do(images, cut):
    data = images["rgb.JPEG"][: cut or len(images["rgb.JPEG"]) // 2]
    with pytest.raises(ImageError) as as_bytes:
        image_info(data, name="cut.JPEG")
    with pytest.raises(ImageError) as as_view:
        image_info(memoryview(bytearray(data)), name="cut.JPEG")
    assert str(as_view.value) == str(as_bytes.value)
