"""Preprocessing bit-exactness: every function against a literal copy of the code it reproduces.

The ``ref_*`` functions below are the MLPerf inference ``dataset.py`` / CM ``generic_preprocess.py``
code as written there (``cv2.imread`` from a path, ``cvtColor``, resize, crop, cast, math,
``np.save``/``tofile``); ``pre_process_imagenet_pytorch`` is torchvision's PIL code path spelled
out with torch tensors. The library must give the same bytes for every kind of image.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagenet_ops.core.errors import ImageError
from imagenet_ops.preprocessed import ops as ops
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.testing.preprocess_samples import IMAGE_KINDS, sample_image

# -- literal reference code -----------------------------------------------------------------------


def ref_center_crop(img, out_height, out_width):
    height, width, _ = img.shape
    left = int((width - out_width) / 2)
    right = int((width + out_width) / 2)
    top = int((height - out_height) / 2)
    bottom = int((height + out_height) / 2)
    img = img[top:bottom, left:right]
    return img


def ref_resize_with_aspectratio(img, out_height, out_width, scale=87.5, inter_pol=cv2.INTER_LINEAR):
    height, width, _ = img.shape
    new_height = int(100.0 * out_height / scale)
    new_width = int(100.0 * out_width / scale)
    if height > width:
        w = new_width
        h = int(new_height * height / width)
    else:
        h = new_height
        w = int(new_width * width / height)
    img = cv2.resize(img, (w, h), interpolation=inter_pol)
    return img


def ref_pre_process_vgg(img, dims=None, need_transpose=False):
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    cv2_interpol = cv2.INTER_AREA
    img = ref_resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2_interpol)
    img = ref_center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    means = np.array([123.68, 116.78, 103.94], dtype=np.float32)
    img -= means
    if need_transpose:
        img = img.transpose([2, 0, 1])
    return img


def ref_pre_process_mobilenet(img, dims=None, need_transpose=False):
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    img = ref_resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2.INTER_LINEAR)
    img = ref_center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    img /= 255.0
    img -= 0.5
    img *= 2
    if need_transpose:
        img = img.transpose([2, 0, 1])
    return img


def ref_pre_process_imagenet_tflite_tpu(img, dims=None, need_transpose=False):
    # As described in the reference (section 3a): RGB, INTER_LINEAR, crop, reversed back to BGR, caffe means, HWC.
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    img = ref_resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2.INTER_LINEAR)
    img = ref_center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    img = img[:, :, ::-1]
    img = img - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    return img


def ref_pre_process_imagenet_pytorch(img, dims=None, need_transpose=False):
    import torch
    from PIL import Image

    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = Image.fromarray(img)
    # F.resize(img, 256, Image.BILINEAR): torchvision's _compute_resized_output_size, then PIL resize
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 256, int(256 * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if [h, w] != [new_h, new_w]:
        img = img.resize((new_w, new_h), Image.BILINEAR)
    # F.center_crop(img, 224)
    crop_top = int(round((new_h - 224) / 2.0))
    crop_left = int(round((new_w - 224) / 2.0))
    img = img.crop((crop_left, crop_top, crop_left + 224, crop_top + 224))
    # F.to_tensor
    t = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(224, 224, 3).permute((2, 0, 1)).contiguous()
    t = t.to(dtype=torch.float32).div(255)
    # F.normalize(inplace=False)
    t = t.clone()
    mean = torch.as_tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(-1, 1, 1)
    t.sub_(mean).div_(std)
    if not need_transpose:
        t = t.permute(1, 2, 0)
    return np.asarray(t, dtype="float32")


REFERENCES = {
    "pre_process_vgg": ref_pre_process_vgg,
    "pre_process_mobilenet": ref_pre_process_mobilenet,
    "pre_process_imagenet_tflite_tpu": ref_pre_process_imagenet_tflite_tpu,
    "pre_process_imagenet_pytorch": ref_pre_process_imagenet_pytorch,
}
TAGS = {
    "pre_process_vgg": "",
    "pre_process_mobilenet": "_for.mobilenet,_mlcommons-reference-preprocessor",
    "pre_process_imagenet_tflite_tpu": "_tflite_tpu",
    "pre_process_imagenet_pytorch": "_pytorch",
}


def np_save_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# CM generic_preprocess.py, as written (int8_to_uint8 with numpy 1's value-based casting, which CM relied on).
def ref_load_image(image_path, target_size, crop_percentage=87.5, convert_to_bgr=False, interpolation_method=cv2.INTER_LINEAR):
    out_height = target_size
    out_width = target_size
    img = cv2.imread(image_path)
    if len(img.shape) < 3 or img.shape[2] != 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = ref_resize_with_aspectratio(img, out_height, out_width, scale=crop_percentage, inter_pol=interpolation_method)
    img = ref_center_crop(img, out_height, out_width)
    if convert_to_bgr:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return img


def ref_quantize_to_int8(image, scale, offset):
    quant_image = (image / scale + offset).astype(np.float32)
    output = np.copy(quant_image)
    gtZero = (quant_image > 0).astype(int)
    gtZero = gtZero * 0.5
    output = output + gtZero
    ltZero = (quant_image < 0).astype(int)
    ltZero = ltZero * (-0.5)
    output = output + ltZero
    return output.astype(np.int8)


def ref_generic(path, c) -> bytes:
    interpolation_method = cv2.INTER_AREA if c.interpolation == "area" else cv2.INTER_LINEAR
    image_data = ref_load_image(str(path), c.resolution, c.crop_factor, c.convert_to_bgr, interpolation_method)
    image_data = np.asarray(image_data, dtype=c.data_type_input)
    if c.normalize:
        image_data = image_data / 127.5 - 1.0
    if c.subtract_means:
        if len(c.channel_means):
            image_data -= list(c.channel_means)
        else:
            image_data -= np.mean(image_data)
    if len(c.channel_stds):
        image_data /= list(c.channel_stds)
    if c.layout.lower() == "nchw":
        image_data = image_data[:, :, 0:3].transpose(2, 0, 1)
    if c.quantize:
        image_data = ref_quantize_to_int8(image_data, c.quant_scale, c.quant_offset)
    if c.convert_to_unsigned:
        image_data = (image_data.astype(np.int16) + 128).astype(np.uint8)
    buf = io.BytesIO()
    buf.write(image_data.tobytes(order="C"))  # what ndarray.tofile writes
    return buf.getvalue()


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


@pytest.mark.parametrize("function", list(REFERENCES))
@pytest.mark.parametrize("kind", KINDS)
def test_reference_functions_are_byte_identical(images, kind: str, function: str) -> None:
    path = images[kind]
    layouts = ["NHWC"] if function == "pre_process_imagenet_tflite_tpu" else ["NCHW", "NHWC"]
    for layout in layouts:
        config = resolve_preprocess_config({"layout": layout}, TAGS[function] or None)
        assert config.reference_function == function
        expected = np_save_bytes(REFERENCES[function](cv2.imread(str(path)), dims=[224, 224, 3], need_transpose=layout == "NCHW"))
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
    expected = ref_generic(path, config)
    if config.extension == "npy":  # CM wrote raw bytes under a .npy name; we write a real .npy
        assert got.to_bytes() == np_save_bytes(np.frombuffer(expected, dtype=got.array.dtype).reshape(got.array.shape))
    else:
        assert got.to_bytes() == expected, case
    assert got.key == path.name.replace(".JPEG", f".{config.extension}")


def test_generic_int8_saturates_where_cm_wraps(images) -> None:
    # CM bug: np.asarray(pixels, int8) wraps 200 to -56 (for.mobilenet default int8).
    config = resolve_preprocess_config(variations="_for.mobilenet")
    assert (config.precision, config.data_type_input, config.quantize) == ("int8", "int8", True)
    path = images["landscape"]
    got = ops.Preprocessor(config).array(path.read_bytes(), path.name)
    pixels = ref_load_image(str(path), 224).transpose(2, 0, 1)
    assert got.dtype == np.int8 and pixels.max() > 127
    assert np.array_equal(got, np.minimum(pixels, 127).astype(np.int8))


def test_quantize_saturates() -> None:
    # CM bug: (x/scale + offset) outside -128..127 wrapped on the int8 cast.
    x = np.array([-300.0, -128.6, -0.4, 0.5, 126.5, 127.4, 1000.0], dtype=np.float32)
    assert ops.quantize_to_int8(x, 1.0, 0.0).tolist() == [-128, -128, 0, 1, 127, 127, 127]
    assert ops.int8_to_uint8(np.array([-128, 0, 127], dtype=np.int8)).tolist() == [0, 128, 255]


def test_npy_header_is_np_saves() -> None:
    for arr in (np.zeros((3, 224, 224), np.float32), np.zeros((160, 160, 3), np.uint8), np.zeros((3, 5, 5), np.int8)):
        assert np_save_bytes(arr) == ops.npy_header(arr.shape, arr.dtype) + arr.tobytes()


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
