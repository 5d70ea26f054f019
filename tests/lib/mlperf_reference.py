"""The reference code the preprocessors must match byte for byte: the one oracle of tests and bench.

``center_crop``, ``resize_with_aspectratio`` and the ``pre_process_*`` functions are MLPerf
inference's ``vision/classification_and_detection/python/dataset.py`` as written there
(mlcommons/inference at 0cde9777, the file's last change), with two spelled-out differences:
``pre_process_imagenet_tflite_tpu`` takes its size from ``dims`` (upstream hard-codes 224, the
only size it is called with), and ``pre_process_imagenet_pytorch`` spells torchvision's PIL
path (``F.resize``, ``F.center_crop``, ``F.to_tensor``, ``F.normalize``) out with torch tensors,
because torchvision is not installed. ``load_image``, ``quantize_to_int8`` and ``generic`` are
CM's ``get-preprocessed-dataset-generic/src/generic_preprocess.py``.

Imported by ``tests/lib/test_preprocess_ops.py`` and by ``bench/preprocess.py`` (whose timed
reference process runs ``pre_process_vgg`` from here, in MLPerf's ``imagenet.py`` thread pool).
"""

from __future__ import annotations

import io

import cv2
import numpy as np


def center_crop(img, out_height, out_width):
    height, width, _ = img.shape
    left = int((width - out_width) / 2)
    right = int((width + out_width) / 2)
    top = int((height - out_height) / 2)
    bottom = int((height + out_height) / 2)
    img = img[top:bottom, left:right]
    return img


def resize_with_aspectratio(img, out_height, out_width, scale=87.5, inter_pol=cv2.INTER_LINEAR):
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


def pre_process_vgg(img, dims=None, need_transpose=False):
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    cv2_interpol = cv2.INTER_AREA
    img = resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2_interpol)
    img = center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    means = np.array([123.68, 116.78, 103.94], dtype=np.float32)
    img -= means
    if need_transpose:
        img = img.transpose([2, 0, 1])
    return img


def pre_process_mobilenet(img, dims=None, need_transpose=False):
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    img = resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2.INTER_LINEAR)
    img = center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    img /= 255.0
    img -= 0.5
    img *= 2
    if need_transpose:
        img = img.transpose([2, 0, 1])
    return img


def pre_process_imagenet_tflite_tpu(img, dims=None, need_transpose=False):
    # As described in the reference (section 3a): RGB, INTER_LINEAR, crop, reversed back to BGR, caffe means, HWC.
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_height, output_width, _ = dims
    img = resize_with_aspectratio(img, output_height, output_width, inter_pol=cv2.INTER_LINEAR)
    img = center_crop(img, output_height, output_width)
    img = np.asarray(img, dtype="float32")
    img = img[:, :, ::-1]
    img = img - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    return img


def pre_process_imagenet_pytorch(img, dims=None, need_transpose=False):
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
    "pre_process_vgg": pre_process_vgg,
    "pre_process_mobilenet": pre_process_mobilenet,
    "pre_process_imagenet_tflite_tpu": pre_process_imagenet_tflite_tpu,
    "pre_process_imagenet_pytorch": pre_process_imagenet_pytorch,
}


def np_save_bytes(arr) -> bytes:
    """What the reference's ``np.save(dst, processed)`` writes."""
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# CM generic_preprocess.py, as written (int8_to_uint8 with numpy 1's value-based casting, which CM relied on).
def load_image(image_path, target_size, crop_percentage=87.5, convert_to_bgr=False, interpolation_method=cv2.INTER_LINEAR):
    out_height = target_size
    out_width = target_size
    img = cv2.imread(image_path)
    if len(img.shape) < 3 or img.shape[2] != 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = resize_with_aspectratio(img, out_height, out_width, scale=crop_percentage, inter_pol=interpolation_method)
    img = center_crop(img, out_height, out_width)
    if convert_to_bgr:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return img


def quantize_to_int8(image, scale, offset):
    quant_image = (image / scale + offset).astype(np.float32)
    output = np.copy(quant_image)
    gtZero = (quant_image > 0).astype(int)
    gtZero = gtZero * 0.5
    output = output + gtZero
    ltZero = (quant_image < 0).astype(int)
    ltZero = ltZero * (-0.5)
    output = output + ltZero
    return output.astype(np.int8)


def generic(path, c) -> bytes:
    interpolation_method = cv2.INTER_AREA if c.interpolation == "area" else cv2.INTER_LINEAR
    image_data = load_image(str(path), c.resolution, c.crop_factor, c.convert_to_bgr, interpolation_method)
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
        image_data = quantize_to_int8(image_data, c.quant_scale, c.quant_offset)
    if c.convert_to_unsigned:
        image_data = (image_data.astype(np.int16) + 128).astype(np.uint8)
    buf = io.BytesIO()
    buf.write(image_data.tobytes(order="C"))  # what ndarray.tofile writes
    return buf.getvalue()
