"""Preprocessed tensors turned back into pictures, by undoing what the set's config says was done.

:func:`viewable` reads a published tensor *as its config declares it* (layout, channel order,
means, scale, quantization) and inverts each step, so a correct set looks like its source image's
centre crop, and a set whose bytes do not match its declaration (NHWC written as NCHW, BGR where
RGB is declared, a wrong mean) looks visibly wrong: stripes, swapped colours, a colour cast.
:func:`source_crop` is the picture a correct tensor should give, for the side-by-side check.
"""

from __future__ import annotations

import numpy as np

from imagenet_ops.preprocessed.config import PreprocessConfig

_TFLITE = "pre_process_imagenet_tflite_tpu"


def channel_order(config: PreprocessConfig) -> str:
    """``RGB`` or ``BGR``: the order of the channels in the published tensor."""
    if config.is_reference:
        return "BGR" if config.reference_function == _TFLITE else "RGB"
    return "BGR" if config.convert_to_bgr else "RGB"


def channels_first(config: PreprocessConfig) -> bool:
    """Whether the tensor is CHW (the TFLite TPU reference is always HWC)."""
    return config.layout == "NCHW" and config.reference_function != _TFLITE


def _undo_reference(x: np.ndarray, function: str) -> np.ndarray:
    from imagenet_ops.preprocessed.ops import TFLITE_TPU_MEANS, TORCH_MEAN, TORCH_STD, VGG_MEANS

    if function == "pre_process_vgg":
        return x + VGG_MEANS
    if function == "pre_process_mobilenet":
        return (x / 2 + 0.5) * 255
    if function == "pre_process_imagenet_pytorch":
        return (x * TORCH_STD + TORCH_MEAN) * 255
    return x + TFLITE_TPU_MEANS  # BGR minus the caffe means


def viewable(tensor: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, bool]:
    """The HxWx3 uint8 RGB picture of ``tensor`` read as ``config`` declares it.

    Returns:
        The picture, and whether it is exact: a generic set that subtracted each image's own
        mean cannot be undone exactly, so it is contrast-stretched instead (``False``).
    """
    x = np.asarray(tensor).astype(np.float64)
    exact = True
    if config.is_reference:
        hwc = x.transpose(1, 2, 0) if channels_first(config) else x
        pixels = _undo_reference(hwc, str(config.reference_function))
    else:
        if config.convert_to_unsigned:
            x = x - 128
        if config.quantize:
            x = (x - config.quant_offset) * config.quant_scale
        hwc = x.transpose(1, 2, 0) if channels_first(config) else x
        if config.channel_stds:
            hwc = hwc * np.asarray(config.channel_stds)
        if config.subtract_means:
            if config.channel_means:
                hwc = hwc + np.asarray(config.channel_means)
            else:  # the image's own mean was subtracted: stretch back to the display range
                exact = False
                lo, hi = float(hwc.min()), float(hwc.max())
                hwc = (hwc - lo) / (hi - lo if hi > lo else 1) * (2.0 if config.normalize else 255.0)
                hwc = hwc - 1.0 if config.normalize else hwc
        if config.normalize:
            hwc = (hwc + 1.0) * 127.5
        pixels = hwc
    if pixels.ndim != 3 or pixels.shape[-1] < 3:
        raise ValueError(f"a tensor of shape {tuple(np.shape(tensor))} is not an image in layout {config.layout}")
    pixels = pixels[..., :3]
    if channel_order(config) == "BGR":
        pixels = pixels[..., ::-1]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8), exact


def source_crop(image_bytes: bytes, config: PreprocessConfig) -> np.ndarray:
    """The source's centre crop as RGB uint8, decoded and resized by Pillow: what the report shows beside a tensor.

    The geometry is the preprocessing's (aspect resize to ``100 / crop_factor`` of the side, then
    the centre crop), the pixels display quality: a JPEG is decoded at a reduced scale (DCT
    scaling) no smaller than the resize, and EXIF orientation is applied as OpenCV applies it.
    No OpenCV: a report's samples cost a few milliseconds each.
    """
    import io

    from PIL import Image, ImageOps

    from imagenet_ops.preprocessed.ops import crop_origin, resized_size

    side = config.resolution
    with Image.open(io.BytesIO(image_bytes)) as im:
        oriented = ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im
        width, height = oriented.size
        size = resized_size(height, width, side, config.crop_factor)
        if oriented is im:
            im.draft("RGB", size)  # JPEG only: decode at 1/2, 1/4, 1/8 while still >= size
            rgb = im.convert("RGB")
        else:
            rgb = oriented.convert("RGB")
        top, left = crop_origin(size[1], size[0], side)
        resized = rgb.resize(size, Image.BILINEAR, box=(0, 0, *rgb.size))
        return np.asarray(resized.crop((left, top, left + side, top + side)))


def raw_dtype(config: PreprocessConfig, itemsize: int) -> np.dtype:
    """The dtype of a raw (headerless ``rgb8``/``rgb32``) output of ``config`` whose items are ``itemsize`` bytes."""
    if itemsize == 1:
        if config.convert_to_unsigned:
            return np.dtype(np.uint8)
        return np.dtype(np.int8) if config.quantize or config.data_type_input == "int8" else np.dtype(np.uint8)
    return np.dtype({4: np.float32, 8: np.float64, 2: np.float16}.get(itemsize, np.float32))


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two same-size uint8 pictures, in 0..255 units (``inf`` if sizes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))
