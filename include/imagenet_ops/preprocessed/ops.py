"""Pixel work of the preprocessed ImageNet sets: the MLPerf reference functions and CM's generic preprocessor.

Every reference function gives the bytes MLPerf inference ``dataset.py`` + ``np.save`` give for
the same file, by doing the same arithmetic in a cheaper order:

* decode each image once, from bytes already in memory, and never without the checks of
  :func:`imagenet_ops.imagenet.image_verify.verify_image` (OpenCV alone returns the rows it got
  even when libjpeg gave up with an error after them, so a JPEG corrupted mid-scan gave a garbage
  output instead of a bad image):

  - a plain JPEG (:func:`~imagenet_ops.imagenet.image_verify.plain_jpeg`: one sequential scan that
    ends at its EOI marker, nearly every ImageNet file) is decoded by ``cv2.imdecode`` straight to
    RGB, the reference's own decoder, whose verdict on such a file is the full verify's;
  - any other colour JPEG without an APP1 (EXIF) segment is verified by Pillow's full decode, and
    that decode is the decode: Pillow's libjpeg-turbo uses the same accurate integer IDCT, fancy
    upsampling and YCbCr conversion as OpenCV's, so its RGB pixels are ``cv2.imread``'s in the
    other order (``tests/lib/test_preprocess_ops.py`` checks :func:`decode_bgr` against
    ``cv2.imread``);
  - the other grayscale, CMYK and EXIF JPEGs (OpenCV turns an image by its EXIF orientation,
    Pillow does not) and PNGs are verified, then decoded by ``cv2.imdecode``;
* resize in RGB order (``cvtColor`` and both resizes work per channel, so the order of the
  channels cannot change a value);
* cast and subtract on the 224x224 crop only, straight into the output layout (C-contiguous);
* INTER_AREA resizes only the source's top-left part the crop depends on (see :func:`_area_roi`):
  an output pixel's weights depend on its position in the whole resized image, so the source is
  never cut on the left or the top, only past the crop's last source pixel on the right and the
  bottom (about 22% less source for a 500x375 image);
* write the ``.npy`` v1.0 header (built once by ``numpy.lib.format``) and the array with one
  ``writev``, no ``np.save`` (which walks a transposed array element by element).

Not done, because it would change bits: OpenCV's reduced-size JPEG decoding (``IMREAD_REDUCED_*``
scales in the DCT), and resizing only the crop's own source rectangle.

``pre_process_imagenet_pytorch`` needs no torchvision: ``torchvision.transforms.functional.resize``
on a PIL image is Pillow's ``Image.resize(..., BILINEAR)`` (which is antialiased when reducing) at
the size torchvision computes, and ``center_crop`` rounds with Python's ``round``; both are
reproduced here with Pillow itself. The decoded image is the one the reference gets: ``cv2.imread``
then ``cvtColor(BGR2RGB)`` and ``Image.fromarray`` (MLPerf's ``imagenet.py`` decodes with OpenCV
for every function; it never calls ``Image.open``).

Generic preprocessor (CM ``generic_preprocess.py``): same arithmetic, same numpy calls, with its
bugs fixed: quantization and integer input casts saturate instead of wrapping, int8 -> uint8 does
not overflow under numpy 2, and an ``npy`` extension gets a real ``.npy`` file (CM wrote raw bytes
under that name).

cv2 and Pillow are imported inside the functions; numpy is the only top-level dependency.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagenet_ops.core.errors import ImageError
from imagenet_ops.preprocessed.config import PreprocessConfig
from imagenet_ops.preprocessed.variations import RESNET50_MEANS

VGG_MEANS = np.array([float(m) for m in RESNET50_MEANS.split()], dtype=np.float32)  # RGB
TFLITE_TPU_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # BGR
TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TORCH_RESIZE = 256

_DBL_EPSILON = 2.220446049250313e-16
_JPEG_SOI, _JPEG_SOS, _JPEG_EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- decoding ------------------------------------------------------------------------------------


def check_complete(data: bytes, name: str) -> None:
    """Refuse empty and truncated JPEG/PNG data (OpenCV decodes a truncated JPEG to a grey-filled image).

    Raises:
        ImageError: naming the image and what is wrong with it.
    """
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if data.startswith(_JPEG_SOI):
        if data.rstrip(b"\0\n\r ")[-2:] == _JPEG_EOI:
            return  # the usual case: the file ends with its end-of-image marker
        from imagenet_ops.imagenet.image_verify import jpeg_end_problem

        if jpeg_end_problem(data) is None:
            return  # reading ends at an EOI inside the data: decoders ignore what follows it
        sos = data.rfind(_JPEG_SOS)
        if sos < 0:
            raise ImageError(f"{name}: corrupt JPEG: no scan data (SOS marker) in {len(data)} bytes")
        if data.rfind(_JPEG_EOI) < sos:
            raise ImageError(f"{name}: truncated JPEG: no end-of-image marker after the last scan ({len(data)} bytes)")
    elif data.startswith(_PNG_SIGNATURE) and data.rfind(b"IEND") < 0:
        raise ImageError(f"{name}: truncated PNG: no IEND chunk ({len(data)} bytes)")


def _same_as_opencv(image: Any) -> bool:
    """Whether Pillow's full decode of this opened JPEG gives ``cv2.imdecode``'s pixels (RGB order).

    It does for 8-bit colour (mode ``RGB``: YCbCr or Adobe RGB) with no APP1 segment; OpenCV
    applies an EXIF orientation, and every APP1 (EXIF or XMP) is left to OpenCV to be safe.
    """
    return image.mode == "RGB" and not any(marker == "APP1" for marker, _ in image.applist)


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode like ``cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)``: 3-channel RGB uint8.

    What TensorFlow's ``decode_jpeg`` refuses is refused here (:mod:`imagenet_ops.imagenet.image_verify`):
    a plain JPEG by OpenCV's own decode, anything else by Pillow's full decode first, which for most
    colour JPEGs gives the pixels (see the module docstring).

    Raises:
        ImageError: empty, truncated, corrupt or undecodable data (the message names the image).
    """
    import cv2
    from PIL import Image

    from imagenet_ops.imagenet.image_verify import TF_MAX_SAMPLES, plain_jpeg, verify_image

    check_complete(data, name)
    # Past Pillow's decompression-bomb warning a JPEG gets the full verify.
    if data.startswith(_JPEG_SOI) and plain_jpeg(data, max_pixels=Image.MAX_IMAGE_PIXELS or TF_MAX_SAMPLES):
        return _opencv_plain_decode(data, name)
    if data.startswith((_JPEG_SOI, _PNG_SIGNATURE)):  # anything else: OpenCV names what it cannot read
        # Regression (issue 10 item 4): a JPEG corrupted mid-scan became a garbage .npy, "0 bad".
        decoded = verify_image(data, name=name, keep=_same_as_opencv)
        if decoded is not None:
            return np.asarray(decoded)
    return cv2.cvtColor(_opencv_decode(data, name), cv2.COLOR_BGR2RGB)


def decode_bgr(data: bytes, name: str) -> np.ndarray:
    """Decode like ``cv2.imread(path)``: 3-channel BGR uint8 (grayscale, CMYK and PNG content included).

    Raises:
        ImageError: as :func:`decode_rgb`.
    """
    import cv2

    return cv2.cvtColor(decode_rgb(data, name), cv2.COLOR_RGB2BGR)


def _opencv_plain_decode(data: bytes, name: str) -> np.ndarray:
    """``cv2.imdecode`` of a plain JPEG straight to RGB; its failure is the full verify's refusal
    (:func:`imagenet_ops.imagenet.image_verify.plain_jpeg`)."""
    import cv2

    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    except cv2.error as exc:
        img, detail = None, " ".join(str(exc).split())[:200]
    else:
        detail = "libjpeg stopped on a fatal error"
    if img is None:
        raise ImageError(f"{name}: corrupt JPEG: a full decode fails ({detail}; {len(data)} bytes)")
    return img


def _opencv_decode(data: bytes, name: str) -> np.ndarray:
    import cv2

    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode image ({len(data)} bytes): {exc}") from exc
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"{name}: cannot decode image ({len(data)} bytes; not a JPEG/PNG OpenCV can read)")
    return img


# -- geometry (dataset.py resize_with_aspectratio / center_crop) -----------------------------------


def resized_size(height: int, width: int, side: int, crop_factor: float) -> tuple[int, int]:
    """``(width, height)`` that ``resize_with_aspectratio`` passes to ``cv2.resize``."""
    new_height = int(100.0 * side / crop_factor)
    new_width = int(100.0 * side / crop_factor)
    if height > width:
        return new_width, int(new_height * height / width)
    return int(new_width * width / height), new_height


def crop_origin(height: int, width: int, side: int) -> tuple[int, int]:
    """``(top, left)`` of ``center_crop``."""
    return int((height - side) / 2), int((width - side) / 2)


def _area_roi(height: int, width: int, size: tuple[int, int], top: int, left: int, side: int) -> tuple[int, int] | None:
    """Source ``(rows, cols)`` from the top-left corner that give the crop's INTER_AREA pixels unchanged, or None.

    OpenCV's INTER_AREA (``resizeArea_``, used when both scales are >= 1 and not integers) computes
    each output column from a table built by ``computeResizeAreaTab(ssize, dsize, cn, scale)``:
    for output ``dx`` the source span ``[dx*scale, dx*scale + scale)`` and its weights; ``ssize``
    only enters through clamps that apply when that span reaches the source's end. Rows likewise,
    and every output row is summed from zero over its own source rows. Calling ``cv2.resize`` with
    the same ``fx``/``fy`` (so the very same ``scale`` doubles) on a source cut at the right and the
    bottom therefore gives the same values for every output pixel whose span ends before the cut:
    the crop's, with the cut two pixels past the last span. Cutting at the left or the top would
    shift every span and is never done. Checked byte for byte against a full resize on 3,362 image
    sizes and 4 side/crop settings during development; tests/lib/test_preprocess_ops.py keeps 61.
    """
    new_w, new_h = size
    scale_x, scale_y = 1.0 / (new_w / width), 1.0 / (new_h / height)
    if scale_x < 1 or scale_y < 1:
        return None  # upscaling: INTER_AREA is a bilinear variant there
    if abs(scale_x - round(scale_x)) < _DBL_EPSILON and abs(scale_y - round(scale_y)) < _DBL_EPSILON:
        return None  # integer scales take OpenCV's block-average path
    cols = min(width, math.floor((left + side) * scale_x) + 2)
    rows = min(height, math.floor((top + side) * scale_y) + 2)
    return rows, cols


def _resize_crop(img: np.ndarray, side: int, crop_factor: float, interpolation: int) -> np.ndarray:
    """Aspect resize then centre crop, as a view into the resized image (channels as given)."""
    import cv2

    h, w = img.shape[:2]
    size = resized_size(h, w, side, crop_factor)
    top, left = crop_origin(size[1], size[0], side)
    roi = _area_roi(h, w, size, top, left, side) if interpolation == cv2.INTER_AREA else None
    if roi is not None:
        rows, cols = roi
        fx, fy = size[0] / w, size[1] / h
        resized = cv2.resize(img[:rows, :cols], None, fx=fx, fy=fy, interpolation=interpolation)
        if resized.shape[0] >= top + side and resized.shape[1] >= left + side:
            return resized[top : top + side, left : left + side]
    resized = cv2.resize(img, size, interpolation=interpolation)
    return resized[top : top + side, left : left + side]


def _cv2_interpolation(name: str) -> int:
    import cv2

    return cv2.INTER_AREA if name == "area" else cv2.INTER_LINEAR


# -- reference functions (input: decoded RGB image; output: C-contiguous float32) -----------------


def _planar_minus(crop_rgb: np.ndarray, means_rgb: np.ndarray, nchw: bool) -> np.ndarray:
    """float32(RGB pixel) - mean, written straight into the output layout (float32 rounding of the exact difference)."""
    import cv2

    side = crop_rgb.shape[0]
    if nchw:
        out = np.empty((3, side, side), dtype=np.float32)
        planes = cv2.split(crop_rgb)  # contiguous R, G, B planes: the subtraction runs on contiguous memory
        for c in range(3):
            np.subtract(planes[c], means_rgb[c], out=out[c], dtype=np.float32)
        return out
    return _minus_hwc(crop_rgb, means_rgb)


def _minus_hwc(crop: np.ndarray, means: np.ndarray) -> np.ndarray:
    """float32(pixel) - mean per channel, HWC: OpenCV's subtraction in float32, 11x numpy's mixed-type
    broadcast on 224x224x3 and the same bits (``tests/lib/test_preprocess_ops.py`` checks every value)."""
    import cv2

    return cv2.subtract(crop, (float(means[0]), float(means[1]), float(means[2]), 0.0), dtype=cv2.CV_32F)


def pre_process_vgg(img_rgb: np.ndarray, *, nchw: bool, side: int = 224) -> np.ndarray:
    """MLPerf ``pre_process_vgg``: INTER_AREA aspect resize, centre crop, RGB float32 minus the ResNet means."""
    import cv2

    crop = _resize_crop(img_rgb, side, 87.5, cv2.INTER_AREA)
    return _planar_minus(crop, VGG_MEANS, nchw)


def pre_process_mobilenet(img_rgb: np.ndarray, *, nchw: bool, side: int = 224) -> np.ndarray:
    """MLPerf ``pre_process_mobilenet``: INTER_LINEAR, crop, RGB float32 ``(x/255 - 0.5) * 2``."""
    import cv2

    crop = _resize_crop(img_rgb, side, 87.5, cv2.INTER_LINEAR)
    if nchw:
        out = np.empty((3, side, side), dtype=np.float32)
        for c in range(3):
            out[c] = crop[:, :, c]
    else:
        out = np.empty((side, side, 3), dtype=np.float32)
        out[...] = crop
    out /= np.float32(255.0)
    out -= np.float32(0.5)
    out *= np.float32(2)
    return out


def pre_process_imagenet_tflite_tpu(img_rgb: np.ndarray, *, nchw: bool = False, side: int = 224) -> np.ndarray:
    """MLPerf ``pre_process_imagenet_tflite_tpu``: INTER_LINEAR, crop, back to BGR, minus caffe means; always HWC."""
    import cv2

    crop = _resize_crop(img_rgb, side, 87.5, cv2.INTER_LINEAR)
    return _minus_hwc(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), TFLITE_TPU_MEANS)


def torchvision_resize_size(width: int, height: int, size: int = TORCH_RESIZE) -> tuple[int, int]:
    """``(width, height)`` of ``torchvision.transforms.functional.resize(img, size)`` (short side to ``size``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def pre_process_imagenet_pytorch(img_rgb: np.ndarray, *, nchw: bool, side: int = 224) -> np.ndarray:
    """MLPerf ``pre_process_imagenet_pytorch`` without torchvision (see the module docstring)."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(img_rgb))
    width, height = pil.size
    size = torchvision_resize_size(width, height)
    if size != (width, height):
        pil = pil.resize(size, Image.BILINEAR)
    top = int(round((size[1] - side) / 2.0))
    left = int(round((size[0] - side) / 2.0))
    rgb = np.asarray(pil.crop((left, top, left + side, top + side)), dtype=np.uint8)
    x = rgb.astype(np.float32)
    x /= np.float32(255)
    x -= TORCH_MEAN
    x /= TORCH_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)) if nchw else x


REFERENCE: dict[str, Callable[..., np.ndarray]] = {
    "pre_process_vgg": pre_process_vgg,
    "pre_process_mobilenet": pre_process_mobilenet,
    "pre_process_imagenet_pytorch": pre_process_imagenet_pytorch,
    "pre_process_imagenet_tflite_tpu": pre_process_imagenet_tflite_tpu,
}


# -- generic preprocessor --------------------------------------------------------------------------


def _cast_pixels(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 pixels as ``dtype`` (a contiguous copy); int8 saturates at 127 (CM wraps 200 to -56)."""
    if dtype == "int8":
        return np.minimum(pixels, 127).astype(np.int8)
    return np.asarray(pixels, dtype=dtype).copy() if dtype == "uint8" else np.asarray(pixels, dtype=dtype)


def quantize_to_int8(image: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """CM's quantize_to_int8 (x/scale + offset, rounded half away from zero) with saturation to -128..127."""
    quant = (image / scale + offset).astype(np.float32)
    output = np.copy(quant)
    output = output + (quant > 0).astype(int) * 0.5
    output = output + (quant < 0).astype(int) * (-0.5)
    return np.clip(output, -128, 127).astype(np.int8)


def int8_to_uint8(image: np.ndarray) -> np.ndarray:
    """int8 + 128 as uint8 (CM's ``image + 128`` overflows int8 under numpy 2)."""
    return (image.astype(np.int16) + 128).astype(np.uint8)


def generic_preprocess(img_rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """CM ``generic_preprocess.preprocess_files`` for one decoded RGB image (fixed, see the module docstring)."""
    side = config.resolution
    crop = _resize_crop(img_rgb, side, config.crop_factor, _cv2_interpolation(config.interpolation))
    pixels = crop[:, :, ::-1] if config.convert_to_bgr else crop
    x = _cast_pixels(pixels, config.data_type_input)
    if config.normalize:
        x = x / 127.5 - 1.0
    if config.subtract_means:
        if config.channel_means:
            x -= np.asarray(config.channel_means)
        else:
            x -= np.mean(x)
    if config.channel_stds:
        x /= np.asarray(config.channel_stds)
    if config.layout == "NCHW":
        x = x[:, :, 0:3].transpose(2, 0, 1)
    if config.quantize:
        x = quantize_to_int8(x, config.quant_scale, config.quant_offset)
    if config.convert_to_unsigned:
        x = int8_to_uint8(x)
    return np.ascontiguousarray(x)


# -- one image, end to end ---------------------------------------------------------------------------


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The exact header ``np.save`` writes for a C-ordered array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


@dataclass(frozen=True)
class Encoded:
    """One output file: its name, an optional header and the C-contiguous array that follows it."""

    key: str
    header: bytes
    array: np.ndarray

    @property
    def size(self) -> int:
        return len(self.header) + self.array.nbytes

    def parts(self) -> list[Any]:
        return [self.header, memoryview(self.array).cast("B")] if self.header else [memoryview(self.array).cast("B")]

    def digest(self) -> str:
        """``crc32c:<hex>`` of the file's bytes: ~10 GB/s, where sha256 of 602 KB cost ~10% of an image's time."""
        import google_crc32c

        crc = google_crc32c.extend(google_crc32c.value(self.header), self.array)  # C-contiguous (written as is)
        return f"crc32c:{crc:08x}"

    def to_bytes(self) -> bytes:
        return self.header + self.array.tobytes()


class Preprocessor:
    """Turns the bytes of one source image into its output file for a config (constants built once)."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self.nchw = config.layout == "NCHW"
        self.function = REFERENCE[config.reference_function] if config.reference_function else None
        self.write_npy = config.is_reference or config.extension == "npy"
        self._headers: dict[tuple[tuple[int, ...], str], bytes] = {}

    def array(self, data: bytes, name: str) -> np.ndarray:
        img = decode_rgb(data, name)
        if self.function is not None:
            return self.function(img, nchw=self.nchw)
        return generic_preprocess(img, self.config)

    def encode(self, data: bytes, name: str) -> Encoded:
        arr = self.array(data, name)
        header = b""
        if self.write_npy:
            key = (arr.shape, arr.dtype.str)
            header = self._headers.get(key) or self._headers.setdefault(key, npy_header(arr.shape, arr.dtype))
        return Encoded(self.config.output_name(name), header, arr)


def write_atomic(folder: str, encoded: Encoded) -> None:
    """Write ``encoded`` to ``folder/key`` under a temporary name, then rename (a retried chunk overwrites)."""
    target = os.path.join(folder, encoded.key)
    tmp = os.path.join(folder, f".{encoded.key}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            parts = encoded.parts()
            written = os.writev(fd, parts)
            if written != encoded.size:  # short write: finish the rest
                rest = b"".join(bytes(p) for p in parts)[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- batches (in-process or in a worker process) ----------------------------------------------------


@dataclass(frozen=True)
class ImageResult:
    """What one image gave: its output (``key``, ``size``, ``checksum``; ``payload`` when not written
    locally) or the reason it is bad."""

    name: str
    key: str | None = None
    size: int = 0
    checksum: str | None = None
    error: str | None = None
    payload: bytes | None = None


Batch = list[tuple[list[Any], bytes | None]]


def run_batch(pre: Preprocessor, reader: Any, out_dir: str | None, batch: Batch) -> list[ImageResult]:
    """Preprocess ``[(row, data or None), ...]``: read local rows, encode, write to ``out_dir`` or return bytes.

    A bad image (missing, empty, truncated, undecodable) becomes an :class:`ImageResult` with ``error``;
    I/O errors on the source or the output propagate.
    """
    from imagenet_ops.imagenet.images import ImageRef

    results = []
    for row, data in batch:
        name, container, offset, size = row[0], row[1], int(row[2]), int(row[3])
        try:
            if not container:
                raise ImageError(f"{name}: not found in the image source")
            if data is None:
                data = reader.read(ImageRef(name, container, offset, size))
            enc = pre.encode(data, name)
        except ImageError as exc:
            member = container and not container.endswith(name)  # a tar member: name the tar too
            results.append(ImageResult(name, error=f"{container}: {exc}" if member else str(exc)))
            continue
        if out_dir is not None:
            write_atomic(out_dir, enc)
            results.append(ImageResult(name, enc.key, enc.size, enc.digest()))
        else:
            results.append(ImageResult(name, enc.key, enc.size, enc.digest(), payload=enc.to_bytes()))
    return results


_WORKER: dict[str, Any] = {}


def worker_init(config: dict[str, Any], out_dir: str | None) -> None:
    """Pool initializer: one OpenCV thread per process (the pool is the parallelism), and the
    freed heap kept for the next image (:func:`imagenet_ops.core.heap.keep_freed_heap`)."""
    import cv2

    from imagenet_ops.core.heap import keep_freed_heap
    from imagenet_ops.imagenet.images import ImageReader

    keep_freed_heap()
    if cv2.getNumThreads() != 1:  # a fresh import; after a fork the parent already made it 1
        cv2.setNumThreads(1)
    _WORKER.update(pre=Preprocessor(PreprocessConfig.from_dict(config)), reader=ImageReader(), out_dir=out_dir)


def worker_run(batch: Batch) -> list[ImageResult]:
    return run_batch(_WORKER["pre"], _WORKER["reader"], _WORKER["out_dir"], batch)


@contextlib.contextmanager
def single_cv2_thread() -> Any:
    """Run OpenCV single-threaded in this process for the duration (restores the previous setting)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
