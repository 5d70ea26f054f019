"""Variations of CM's get-preprocessed-dataset-imagenet as data: the table, its constants, the version.

Every CM variation of the recipe is a group or an option of :data:`PREPROCESS_TABLE`; the trigger
form, the CLI flags and the CM tag parser are generated from it. :mod:`.config` resolves a
selection into the frozen :class:`~imagenet_ops.preprocessed.config.PreprocessConfig` (the ``auto``
choices and the refused combinations are described there).

:data:`VERSION` is the version of the preprocessing code: it is part of every set's cache key, so a
change to the published bytes must bump it and say why in :data:`RELEASE_NOTES`.
"""

from __future__ import annotations

from imagenet_ops.core.variations import (
    SKIP_SSL_VERIFICATION,
    Choice,
    Combo,
    Group,
    Option,
    VariationTable,
    md5_option,
    mirror_option,
    url_option,
)
from imagenet_ops.imagenet.constants import (
    NUM_VAL_IMAGES,
    RESNET50_CHANNEL_MEANS,
    VAL_TAR,
    VAL_TAR_MD5,
    VAL_TAR_SIZE,
    VAL_TAR_URLS,
)

ARTIFACT = "imagenet_preprocessed"
VERSION = "1.0.0"
"""The preprocessing code's version: part of every set's cache key (``params.preprocess_version``)."""
RELEASE_NOTES = {
    "1.0.0": (
        "First release. Reference outputs are byte-identical to MLPerf dataset.py. Generic preprocessor fixes: int8 "
        "quantization and int8 input casts saturate (CM wraps); raw bytes are never named .npy (npy means a real .npy); "
        "int8 -> uint8 no longer overflows under numpy 2; a short image list is an error naming what is missing; both "
        "calibration list formats work with both preprocessors."
        " Changed since, without a version bump (so sets built before remain cache hits): 2026-12-01, a cache"
        " hit on a local folder re-checks its files' size and CRC-32C and rebuilds a damaged set; val_map.txt and"
        " the aux val.txt are read by the one strict labels parser; images skipped as bad leave the published"
        " val_map.txt; quantizing needs a positive scale; every image is fully decoded and a corrupt one refused,"
        " naming its tar and member (OpenCV's partial images no longer become outputs); URL credentials are"
        " recorded as ***; one writer per output."
    ),
}

SIDE = 224
CROP_FACTOR = 87.5
RESNET50_MEANS = RESNET50_CHANNEL_MEANS
RESNET50_UINT8_SCALE = 1.18944883
SUBSET_SIZES = {"1": 1, "500": 500, "full": NUM_VAL_IMAGES}

# get-dataset-imagenet-val (section 3c of the reference).
VAL_500_TAR = "ILSVRC2012_img_val_500.tar"
VAL_500_URLS = (
    "http://cKnowledge.org/ai/data/ILSVRC2012_img_val_500.tar",
    "https://www.dropbox.com/scl/fi/a7fhjnzxi6x3ceapxh5bm/ILSVRC2012_img_val_500.tar"
    "?rlkey=hz4rabo9ve43co3c303y9r6l7&st=ulcgb3av&dl=1",
)
VAL_500_MD5 = "8627befdd8c2bcf305729020e9db354e"
VAL_FULL_TAR = VAL_TAR
VAL_FULL_URLS = VAL_TAR_URLS
VAL_FULL_MD5 = VAL_TAR_MD5
VAL_FULL_SIZE = VAL_TAR_SIZE

# get-dataset-imagenet-calibration (section 3d).
CALIBRATION_BASE_URL = "https://github.com/mlcommons/inference/raw/master/calibration/ImageNet"
CALIBRATION_LISTS = {
    "option1": ("cal_image_list_option_1.txt", "f09719174af3553119e2c621157773a6"),
    "option2": ("cal_image_list_option_2.txt", "e44582af00e3b4fc3fac30efd6bdd05f"),
}

# The reference functions of MLPerf inference dataset.py and what they fix.
REFERENCE_FUNCTIONS = {
    "pre_process_vgg": {"interpolation": "area"},
    "pre_process_mobilenet": {"interpolation": "linear"},
    "pre_process_imagenet_pytorch": {"interpolation": "linear"},  # PIL bilinear (antialiased), not cv2
    "pre_process_imagenet_tflite_tpu": {"interpolation": "linear"},
}

_GENERIC = "Generic preprocessor"
_SOURCE = "Custom source"
_NUM_LIST = r"^\s*-?[0-9.]+(e-?[0-9]+)?(\s+-?[0-9.]+(e-?[0-9]+)?)*\s*$"

PREPROCESS_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(
        Group(
            "dataset_type",
            "Dataset type",
            "Validation images (first N lines of val_map.txt) or the MLPerf calibration list.",
            default="validation",
            choices=(
                Choice("validation", "Validation", {"dataset_type": "validation"}),
                Choice("calibration", "Calibration", {"dataset_type": "calibration"}),
            ),
        ),
        Group(
            "calibration_option",
            "Calibration list",
            "MLPerf calibration list (calibration only): option1 lists names, option2 'name index'.",
            default="option1",
            tag_prefix="mlperf.",
            choices=(
                Choice("option1", "cal_image_list_option_1.txt", {"calibration_option": "option1"}),
                Choice("option2", "cal_image_list_option_2.txt", {"calibration_option": "option2"}),
            ),
        ),
        Group(
            "subset",
            "Size",
            "How many images: the first N of the list. 'Custom size' overrides it.",
            default="500",
            choices=(Choice("1", "1 image"), Choice("500", "500 images"), Choice("full", "all 50,000 images")),
        ),
        Group(
            "model",
            "Model",
            "CM _for.* variation: sets means/normalisation and defaults to the generic preprocessor. "
            "'none' is CM's default (CM_MODEL=resnet50, reference pre_process_vgg).",
            default="none",
            tag_prefix="for.",
            choices=(
                Choice("none", "none (reference ResNet-50 preprocessing)", {"model": "resnet50"}),
                Choice(
                    "resnet50",
                    "ResNet-50",
                    {"model": "resnet50", "channel_means": RESNET50_MEANS, "normalize": False, "subtract_means": True},
                ),
                Choice("mobilenet", "MobileNet", {"model": "mobilenet"}),
            ),
        ),
        Group(
            "preprocessor",
            "Preprocessor",
            "MLPerf reference dataset.py or CM's generic preprocessor. auto: reference unless _for.* or calibration.",
            default="auto",
            choices=(
                Choice("auto", "auto"),
                Choice(
                    "mlcommons-reference-preprocessor",
                    "MLPerf reference (dataset.py)",
                    {"preprocessor": "reference"},
                    aliases=("reference",),
                ),
                Choice("generic-preprocessor", "CM generic preprocessor", {"preprocessor": "generic"}, aliases=("generic",)),
            ),
        ),
        Group(
            "layout",
            "Data layout",
            "Layout of each output tensor. auto: NCHW (NHWC for tflite_tpu).",
            default="auto",
            choices=(
                Choice("auto", "auto"),
                Choice("NCHW", "NCHW (channels first)", {"layout": "NCHW"}),
                Choice("NHWC", "NHWC (channels last)", {"layout": "NHWC"}),
            ),
        ),
        Group(
            "precision",
            "Precision",
            "Output data type. auto: float32 (int8 for _for.mobilenet). int8/uint8 quantize (generic only).",
            default="auto",
            choices=(
                Choice("auto", "auto"),
                Choice("float32", "float32", {"precision": "float32", "quantize": False, "convert_to_unsigned": False}),
                Choice("int8", "int8", {"precision": "int8", "quantize": True, "convert_to_unsigned": False}),
                Choice(
                    "uint8",
                    "uint8",
                    {"precision": "uint8", "data_type_input": "float32", "quantize": True, "convert_to_unsigned": True},
                ),
            ),
        ),
        Group(
            "interpolation",
            "Interpolation",
            "cv2.resize interpolation (generic only). auto: area for _for.resnet50, linear otherwise.",
            default="auto",
            tag_prefix="inter.",
            choices=(
                Choice("auto", "auto"),
                Choice("area", "INTER_AREA", {"interpolation": "area"}),
                Choice("linear", "INTER_LINEAR", {"interpolation": "linear"}),
            ),
        ),
        Group(
            "extension",
            "File extension",
            "npy: real .npy files; rgb8/rgb32: raw bytes (generic only). auto: npy, rgb32 with _for.*.",
            default="auto",
            choices=(
                Choice("auto", "auto"),
                Choice("npy", ".npy", {"extension": "npy"}),
                Choice("rgb8", ".rgb8 (raw bytes)", {"extension": "rgb8"}),
                Choice("rgb32", ".rgb32 (raw bytes)", {"extension": "rgb32"}),
            ),
        ),
    ),
    options=(
        Option(
            "size",
            "integer",
            "Custom size",
            "Number of images (first N of the list); overrides Size.",
            minimum=1,
            maximum=NUM_VAL_IMAGES,
            tag_prefix="size.",
        ),
        Option(
            "resolution",
            "integer",
            "Square side",
            "Output side in pixels (the reference needs 224).",
            default=SIDE,
            optional=False,
            minimum=8,
            maximum=4096,
            tag_prefix="resolution.",
        ),
        Option(
            "pytorch",
            "boolean",
            "PyTorch preprocessing",
            "Reference pre_process_imagenet_pytorch (PIL bilinear resize, torchvision center crop and normalisation).",
            default=False,
            optional=False,
            tag="pytorch",
            section="Variations",
        ),
        Option(
            "tflite_tpu",
            "boolean",
            "TFLite TPU preprocessing",
            "Reference pre_process_imagenet_tflite_tpu (BGR, caffe means, always NHWC).",
            default=False,
            optional=False,
            tag="tflite_tpu",
            section="Variations",
        ),
        Option(
            "crop_factor",
            "number",
            "Crop factor",
            "Centre crop percentage: resize the short side to side*100/crop_factor, then crop.",
            default=CROP_FACTOR,
            optional=False,
            minimum=1,
            maximum=100,
            section=_GENERIC,
        ),
        Option(
            "given_channel_means",
            "string",
            "Channel means",
            "Space-separated per-channel means (RGB order) subtracted when 'Subtract means' is on.",
            section=_GENERIC,
            pattern=_NUM_LIST,
        ),
        Option(
            "given_channel_stds",
            "string",
            "Channel stds",
            "Space-separated per-channel standard deviations to divide by.",
            section=_GENERIC,
            pattern=_NUM_LIST,
        ),
        Option("normalize", "boolean", "Normalize", "x/127.5 - 1.", section=_GENERIC),
        Option(
            "subtract_means",
            "boolean",
            "Subtract means",
            "Subtract the channel means (the image mean if none are given).",
            section=_GENERIC,
        ),
        Option("quantize", "boolean", "Quantize", "round(x/scale + offset) to int8, saturating.", section=_GENERIC),
        Option("quant_scale", "number", "Quantization scale", "Scale of the int8 quantization.", section=_GENERIC),
        Option("quant_offset", "number", "Quantization offset", "Offset of the int8 quantization.", section=_GENERIC),
        Option("convert_to_unsigned", "boolean", "Convert to unsigned", "int8 + 128 as uint8.", section=_GENERIC),
        Option(
            "convert_to_bgr",
            "boolean",
            "Convert to BGR",
            "Swap the channels to BGR after the crop.",
            default=False,
            optional=False,
            section=_GENERIC,
        ),
        Option(
            "data_type_input",
            "string",
            "Input data type",
            "dtype the cropped pixels are cast to before the math (default: the precision).",
            section=_GENERIC,
            pattern=r"^(float32|int8|uint8)$",
        ),
        Option(
            "skip_bad_images",
            "boolean",
            "Skip bad images",
            "Skip missing, corrupt or truncated images and list them in bad_images.txt instead of failing.",
            default=False,
            optional=False,
            section="Options",
        ),
        mirror_option(),
        url_option(
            "images_url",
            title="Images tar URL",
            description="Download the validation tar from this URL instead of the reference mirrors.",
        ),
        md5_option(
            "images_md5",
            title="Images tar md5",
            description="Accepted md5 of the downloaded validation tar.",
        ),
        url_option(
            "calibration_url",
            title="Calibration list URL",
            description="Download the calibration list from this URL instead of GitHub.",
        ),
        md5_option(
            "calibration_md5",
            title="Calibration list md5",
            description="Accepted md5 of the downloaded calibration list.",
        ),
        SKIP_SSL_VERIFICATION,
    ),
    combos=(
        # CM's combination variations (section 3 of the reference); later entries win.
        Combo(
            {"model": "resnet50", "extension": "rgb8"},
            {"precision": "uint8", "channel_means": "", "normalize": False, "subtract_means": False, "quantize": False},
        ),
        Combo({"model": "resnet50", "precision": "uint8"}, {"quant_scale": RESNET50_UINT8_SCALE, "quant_offset": 0.0}),
        Combo(
            {"model": "resnet50", "extension": "rgb8", "precision": "uint8"},
            {"channel_means": RESNET50_MEANS, "quantize": True, "subtract_means": True},
        ),
        Combo({"model": "mobilenet", "precision": "float32"}, {"normalize": True, "channel_means": "", "quantize": False}),
        Combo(
            {"model": "mobilenet", "extension": "rgb8"},
            {
                "precision": "uint8",
                "data_type_input": "uint8",
                "channel_means": "",
                "normalize": False,
                "subtract_means": False,
                "quantize": False,
                "convert_to_unsigned": False,
            },
        ),
    ),
)
