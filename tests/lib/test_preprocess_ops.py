"""Preprocessing bit-exactness: every function against a literal copy of the code it reproduces.

The oracle is ``mlperf_reference`` (the MLPerf inference ``dataset.py`` / CM ``generic_preprocess.py``
code as written there: ``cv2.imread`` from a path, ``cvtColor``, resize, crop, cast, math,
``np.save``/``tofile``), which the preprocessing bench runs too. The library must give the same
bytes for every kind of image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import mlperf_reference as ref
import numpy as np
import pytest

from imagenet_ops.core.errors import ImageError
from imagenet_ops.preprocessed import ops as ops
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.testing.preprocess_samples import IMAGE_KINDS, sample_image

# The project's tags that select each reference function.
TAGS = {
    "pre_process_vgg": "",
    "pre_process_mobilenet": "_for.mobilenet,_mlcommons-reference-preprocessor",
    "pre_process_imagenet_tflite_tpu": "_tflite_tpu",
    "pre_process_imagenet_pytorch": "_pytorch",
}


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per image kind (portrait, landscape, square, odd, tiny, large, gray, CMYK, PNG, EXIF)."""
    folder = tmp_path_factory.mktemp("kinds")
    out = {}
    for i, kind in enumerate(IMAGE_KINDS):
        path = folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        path.write_bytes(sample_image(kind, seed=i))
        out[kind] = path
    return out


KINDS = list(IMAGE_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_decode_matches_imread(images, kind: str) -> None:
    path = images[kind]
    assert np.array_equal(ops.decode_bgr(path.read_bytes(), path.name), cv2.imread(str(path)))


def _encodings() -> list[tuple[str, bytes]]:
    """Colour JPEGs as encoders write them: Pillow at 4:4:4 / 4:2:2 / 4:2:0, baseline and progressive, and OpenCV."""
    import io

    from PIL import Image

    rng = np.random.default_rng(15)
    out = []
    for i, (w, h) in enumerate([(500, 375), (333, 500), (97, 61), (640, 427)]):
        pixels = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2)
        for subsampling in (0, 1, 2):
            for progressive in (False, True):
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, "JPEG", quality=70 + 7 * i, subsampling=subsampling, progressive=progressive)
                out.append((f"{w}x{h}-pillow-{subsampling}-{'progressive' if progressive else 'baseline'}", buf.getvalue()))
        out.append((f"{w}x{h}-opencv", cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()))
    return out


@pytest.mark.parametrize(("label", "data"), _encodings(), ids=[label for label, _ in _encodings()])
def test_the_verifying_decode_gives_imreads_pixels(label: str, data: bytes) -> None:
    # Issue 15: a colour JPEG that is not plain gets its pixels from the verifying Pillow decode, not
    # a second OpenCV decode; a plain one (tests/lib/test_plain_jpeg.py) from OpenCV alone.
    import io

    from PIL import Image

    from imagenet_ops.imagenet.image_verify import verify_image

    imread = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert ops._same_as_opencv(Image.open(io.BytesIO(data)))
    pillow = np.asarray(verify_image(data, name=f"{label}.JPEG", keep=ops._same_as_opencv))
    assert np.array_equal(cv2.cvtColor(pillow, cv2.COLOR_RGB2BGR), imread)
    assert np.array_equal(ops.decode_bgr(data, f"{label}.JPEG"), imread)


@pytest.mark.parametrize("function", list(ref.REFERENCES))
@pytest.mark.parametrize("kind", KINDS)
def test_reference_functions_are_byte_identical(images, kind: str, function: str) -> None:
    path = images[kind]
    layouts = ["NHWC"] if function == "pre_process_imagenet_tflite_tpu" else ["NCHW", "NHWC"]
    for layout in layouts:
        config = resolve_preprocess_config({"layout": layout}, TAGS[function] or None)
        assert config.reference_function == function
        expected = ref.np_save_bytes(
            ref.REFERENCES[function](cv2.imread(str(path)), dims=[224, 224, 3], need_transpose=layout == "NCHW")
        )
        got = ops.Preprocessor(config).encode(path.read_bytes(), path.name)
        assert got.key == f"{path.name}.npy"
        assert got.to_bytes() == expected, f"{function} {layout} {kind}"
        assert got.size == len(expected) and got.array.flags.c_contiguous


def test_fast_vgg_is_independent_of_opencv_threads(images) -> None:
    data = images["large"].read_bytes()
    pre = ops.Preprocessor(resolve_preprocess_config())
    threaded = pre.encode(data, "x").to_bytes()
    with ops.single_cv2_thread():
        assert pre.encode(data, "x").to_bytes() == threaded


def test_the_pool_initializer_keeps_the_workers_heap(monkeypatch) -> None:
    # Issue 15: a worker faulted ~100 fresh pages back in per image; its initializer now keeps the freed heap.
    from imagenet_ops.core import heap

    kept: list[bool] = []
    monkeypatch.setattr(heap, "keep_freed_heap", lambda: kept.append(True) or True)
    monkeypatch.setattr(ops, "_WORKER", {})
    with ops.single_cv2_thread():
        ops.worker_init(resolve_preprocess_config().as_dict(), None)
    assert kept == [True]
    assert isinstance(ops._WORKER["pre"], ops.Preprocessor)


GENERIC_CASES = {
    "for.resnet50 (float32 means)": ({}, "_for.resnet50"),
    "for.resnet50 NHWC": ({}, "_for.resnet50,_NHWC"),
    "for.resnet50,uint8 (quantized)": ({}, "_for.resnet50,_uint8"),
    "for.resnet50,rgb8 (raw)": ({}, "_for.resnet50,_rgb8"),
    "for.resnet50,rgb8,uint8": ({}, "_for.resnet50,_rgb8,_uint8"),
    "for.mobilenet,float32 (normalize)": ({}, "_for.mobilenet,_float32"),
    "for.mobilenet,rgb8": ({}, "_for.mobilenet,_rgb8"),
    "generic plain (float32 pixels)": ({}, "_generic-preprocessor"),
    "resolution 160, inter.area, crop 80": ({"crop_factor": 80.0}, "_generic-preprocessor,_resolution.160,_inter.area"),
    "image mean subtraction": ({"subtract_means": True}, "_generic-preprocessor"),
    "stds + means": ({"given_channel_stds": "58.4 57.1 57.4"}, "_for.resnet50"),
    "scalar mean and std": ({"subtract_means": True, "given_channel_means": "120", "given_channel_stds": "60"}, "_generic"),
    "normalize": ({"normalize": True}, "_generic-preprocessor"),
    "convert to BGR": ({"convert_to_bgr": True}, "_for.resnet50"),
    "quantize with offset": ({"quant_scale": 1.7, "quant_offset": 3.0}, "_for.resnet50,_uint8"),
    "int8 quantize of normalized": ({"normalize": True, "quantize": True, "quant_scale": 0.0079}, "_generic-preprocessor"),
    "uint8 input, no math": ({"data_type_input": "uint8"}, "_generic-preprocessor"),
}


@pytest.mark.parametrize("case", list(GENERIC_CASES))
@pytest.mark.parametrize("kind", ["landscape", "portrait", "tiny", "gray", "cmyk"])
def test_generic_options_match_cm(images, kind: str, case: str) -> None:
    given, tags = GENERIC_CASES[case]
    config = resolve_preprocess_config(given, tags)
    assert config.preprocessor == "generic"
    path = images[kind]
    got = ops.Preprocessor(config).encode(path.read_bytes(), path.name)
    expected = ref.generic(path, config)
    if config.extension == "npy":  # CM wrote raw bytes under a .npy name; we write a real .npy
        assert got.to_bytes() == ref.np_save_bytes(np.frombuffer(expected, dtype=got.array.dtype).reshape(got.array.shape))
    else:
        assert got.to_bytes() == expected, case
    assert got.key == path.name.replace(".JPEG", f".{config.extension}")


def test_generic_int8_saturates_where_cm_wraps(images) -> None:
    # CM bug: np.asarray(pixels, int8) wraps 200 to -56 (for.mobilenet default int8).
    config = resolve_preprocess_config(variations="_for.mobilenet")
    assert (config.precision, config.data_type_input, config.quantize) == ("int8", "int8", True)
    path = images["landscape"]
    got = ops.Preprocessor(config).array(path.read_bytes(), path.name)
    pixels = ref.load_image(str(path), 224).transpose(2, 0, 1)
    assert got.dtype == np.int8 and pixels.max() > 127
    assert np.array_equal(got, np.minimum(pixels, 127).astype(np.int8))


def test_quantize_saturates() -> None:
    # CM bug: (x/scale + offset) outside -128..127 wrapped on the int8 cast.
    x = np.array([-300.0, -128.6, -0.4, 0.5, 126.5, 127.4, 1000.0], dtype=np.float32)
    assert ops.quantize_to_int8(x, 1.0, 0.0).tolist() == [-128, -128, 0, 1, 127, 127, 127]
    assert ops.int8_to_uint8(np.array([-128, 0, 127], dtype=np.int8)).tolist() == [0, 128, 255]


@pytest.mark.parametrize("means", ["VGG_MEANS", "TFLITE_TPU_MEANS"])
def test_opencvs_hwc_subtraction_gives_numpys_bits_for_every_pixel_value(means: str) -> None:
    # Issue 15: the HWC mean subtraction moved from numpy's mixed-type broadcast to cv2.subtract.
    values = getattr(ops, means)
    every = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1).reshape(16, 16, 3)
    expected = every.astype(np.float32)
    expected -= values  # the reference: np.asarray(img, dtype="float32") then img -= means
    got = ops._minus_hwc(every, values)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.tobytes() == expected.tobytes()


def test_npy_header_is_np_saves() -> None:
    for arr in (np.zeros((3, 224, 224), np.float32), np.zeros((160, 160, 3), np.uint8), np.zeros((3, 5, 5), np.int8)):
        assert ref.np_save_bytes(arr) == ops.npy_header(arr.shape, arr.dtype) + arr.tobytes()


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path, images) -> None:
    enc = ops.Preprocessor(resolve_preprocess_config()).encode(images["square"].read_bytes(), "a.JPEG")
    (tmp_path / enc.key).write_bytes(b"stale from an earlier attempt")
    ops.write_atomic(str(tmp_path), enc)
    assert (tmp_path / enc.key).read_bytes() == enc.to_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [enc.key]

    import google_crc32c

    assert enc.digest() == f"crc32c:{google_crc32c.value(enc.to_bytes()):08x}"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"", r"x.JPEG: empty file \(0 bytes\)"),
        (lambda d: d[: len(d) // 2], r"x.JPEG: truncated JPEG"),
        (lambda d: d[:2] + b"\x00" * 500, r"x.JPEG: corrupt JPEG"),
        (lambda d: b"this is not an image at all" * 10, r"x.JPEG: cannot decode image"),
    ],
)
def test_bad_images_are_named(images, mutate, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        ops.decode_bgr(mutate(images["landscape"].read_bytes()), "x.JPEG")


def test_truncated_png_is_refused(images) -> None:
    data = images["png"].read_bytes()
    with pytest.raises(ImageError, match=r"x.JPEG: (truncated PNG|cannot decode)"):
        ops.decode_bgr(data[: len(data) // 2], "x.JPEG")


def test_geometry_matches_dataset_py() -> None:
    # 500x375 -> 341x256, crop offset (58, 16) (reference section 3a)
    assert ops.resized_size(375, 500, 224, 87.5) == (341, 256)
    assert ops.crop_origin(256, 341, 224) == (16, 58)
    assert ops.resized_size(500, 375, 224, 87.5) == (256, 341)
    assert ops.resized_size(300, 300, 224, 87.5) == (256, 256)
    # torchvision: long side int(256*long/short); w <= h picks the short side
    assert ops.torchvision_resize_size(343, 257) == (341, 256)
    assert ops.torchvision_resize_size(300, 300) == (256, 256)


def _roi_sizes() -> list[tuple[int, int, int, float]]:
    rng = np.random.default_rng(7)
    sizes = [(500, 375), (375, 500), (500, 333), (640, 480), (1024, 683), (343, 257), (257, 343), (2000, 230), (230, 2000)]
    sizes += [tuple(int(v) for v in rng.integers(226, 1300, 2)) for _ in range(40)]
    cases = [(w, h, 224, 87.5) for w, h in sizes]
    cases += [
        (w, h, side, crop) for (w, h), side, crop in zip(sizes[:12], [160, 299, 96] * 4, [87.5, 80.0, 100.0] * 4, strict=True)
    ]
    return cases


@pytest.mark.parametrize(("width", "height", "side", "crop"), _roi_sizes())
def test_area_resize_of_the_crop_corner_equals_a_full_resize(width: int, height: int, side: int, crop: float) -> None:
    # The fast path resizes only the source's top-left part the crop needs (see _area_roi).
    rng = np.random.default_rng(width * 7919 + height)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if width % 2:
        img = cv2.GaussianBlur(img, (7, 7), 3)  # smooth content too, not only noise
    size = ops.resized_size(height, width, side, crop)
    top, left = ops.crop_origin(size[1], size[0], side)
    full = cv2.resize(img, size, interpolation=cv2.INTER_AREA)[top : top + side, left : left + side]
    got = ops._resize_crop(img, side, crop, cv2.INTER_AREA)
    assert np.array_equal(got, full)


def test_area_roi_is_not_used_when_upscaling_or_integer_scales() -> None:
    assert ops._area_roi(100, 150, (341, 256), 16, 58, 224) is None  # upscaling: bilinear variant
    assert ops._area_roi(512, 682, (341, 256), 16, 58, 224) is None  # exactly 2x: block averages
    assert ops._area_roi(375, 500, (341, 256), 16, 58, 224) == (353, 415)
