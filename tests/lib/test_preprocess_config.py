"""get-preprocessed-dataset-imagenet variations: CM tags, auto defaults, combinations, conflicts, env."""

from __future__ import annotations

import argparse
import json

import pytest

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.preprocessed.config import PreprocessConfig, config_env, resolve_preprocess_config
from imagenet_ops.preprocessed.variations import (
    CALIBRATION_BASE_URL,
    PREPROCESS_TABLE,
    RESNET50_UINT8_SCALE,
    VAL_500_MD5,
    VAL_500_TAR,
    VAL_FULL_MD5,
    VAL_FULL_TAR,
)


def test_defaults_are_cms_plain_run() -> None:
    # No variation: validation, 500 images, NCHW, reference pre_process_vgg, .npy (reference section 3).
    c = resolve_preprocess_config()
    assert (c.dataset_type, c.size, c.layout, c.preprocessor, c.reference_function, c.extension) == (
        "validation",
        500,
        "NCHW",
        "reference",
        "pre_process_vgg",
        "npy",
    )
    assert (c.precision, c.interpolation, c.resolution, c.crop_factor) == ("float32", "area", 224, 87.5)
    assert c.output_name("ILSVRC2012_val_00000001.JPEG") == "ILSVRC2012_val_00000001.JPEG.npy"


def test_for_resnet50_tags_parse_and_default_to_generic() -> None:
    c = resolve_preprocess_config(variations="_for.resnet50,_NCHW,_uint8")
    assert (c.preprocessor, c.extension, c.interpolation, c.layout) == ("generic", "rgb32", "area", "NCHW")
    assert (c.precision, c.data_type_input, c.quantize, c.convert_to_unsigned) == ("uint8", "float32", True, True)
    assert c.quant_scale == RESNET50_UINT8_SCALE and c.quant_offset == 0.0
    assert c.channel_means == (123.68, 116.78, 103.94) and c.subtract_means and not c.normalize
    assert c.output_name("ILSVRC2012_val_00000001.JPEG") == "ILSVRC2012_val_00000001.rgb32"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # for.resnet50: float32 CHW means-subtracted
        ("_for.resnet50", {"precision": "float32", "subtract_means": True, "quantize": False, "data_type_input": "float32"}),
        # for.resnet50,rgb8: raw uint8 pixels
        (
            "_for.resnet50,_rgb8",
            {"precision": "uint8", "data_type_input": "uint8", "subtract_means": False, "quantize": False, "channel_means": ()},
        ),
        # for.resnet50,rgb8,uint8: means set, quantize, subtract
        (
            "_for.resnet50,_rgb8,_uint8",
            {"precision": "uint8", "data_type_input": "float32", "subtract_means": True, "quantize": True},
        ),
        # for.mobilenet defaults: rgb32, inter.linear, int8, generic
        (
            "_for.mobilenet",
            {
                "precision": "int8",
                "extension": "rgb32",
                "interpolation": "linear",
                "preprocessor": "generic",
                "model": "mobilenet",
            },
        ),
        # for.mobilenet,float32: normalize, no means, no quantize
        ("_for.mobilenet,_float32", {"normalize": True, "channel_means": (), "quantize": False, "precision": "float32"}),
        # for.mobilenet,rgb8: uint8 raw
        ("_for.mobilenet,_rgb8", {"precision": "uint8", "data_type_input": "uint8", "quantize": False, "normalize": False}),
        # calibration defaults to option1 + generic; size 500
        ("_calibration", {"calibration_option": "option1", "preprocessor": "generic", "size": 500, "extension": "npy"}),
        ("_calibration,_mlperf.option2", {"calibration_option": "option2"}),
        ("_size.7", {"size": 7}),
        ("_1", {"size": 1}),
        ("_full", {"size": 50_000, "images_filename": VAL_FULL_TAR, "images_md5": VAL_FULL_MD5}),
        ("_500", {"size": 500, "images_filename": VAL_500_TAR, "images_md5": VAL_500_MD5}),
        ("_generic-preprocessor,_resolution.160,_NHWC", {"resolution": 160, "layout": "NHWC", "interpolation": "linear"}),
        ("_generic-preprocessor,_inter.area", {"interpolation": "area"}),
        ("_pytorch", {"reference_function": "pre_process_imagenet_pytorch", "layout": "NCHW"}),
        ("_tflite_tpu", {"reference_function": "pre_process_imagenet_tflite_tpu", "layout": "NHWC", "interpolation": "linear"}),
        (
            "_for.mobilenet,_mlcommons-reference-preprocessor",
            {"reference_function": "pre_process_mobilenet", "precision": "float32"},
        ),
        ("_for.resnet50,_pytorch", {"preprocessor": "reference", "reference_function": "pre_process_imagenet_pytorch"}),
    ],
)
def test_variations_resolve_like_cm(tags: str, expected: dict) -> None:
    c = resolve_preprocess_config(variations=tags)
    assert {k: getattr(c, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("given", "tags", "message"),
    [
        ({}, "_resolution.160", r"_resolution.160 conflicts with _mlcommons-reference-preprocessor"),
        ({}, "_mlcommons-reference-preprocessor,_rgb8", r"_rgb8 conflicts with _mlcommons-reference-preprocessor"),
        ({}, "_for.resnet50,_reference,_rgb32", r"_rgb32 conflicts with _mlcommons-reference-preprocessor"),
        ({}, "_int8", r"_int8 conflicts with _mlcommons-reference-preprocessor"),
        ({}, "_tflite_tpu,_NCHW", r"_tflite_tpu output is always NHWC; it conflicts with _NCHW"),
        ({}, "_pytorch,_tflite_tpu", r"conflicting variations _pytorch and _tflite_tpu"),
        ({}, "_pytorch,_generic-preprocessor", r"_pytorch is a reference preprocessing; it conflicts with _generic"),
        ({}, "_for.mobilenet,_tflite_tpu", r"_tflite_tpu applies to ResNet-50 only"),
        ({}, "_inter.linear", r"_inter.linear conflicts with _mlcommons-reference-preprocessor: pre_process_vgg"),
        ({"quantize": True}, None, r"quantize apply to the generic preprocessor only"),
        ({"crop_factor": 80}, None, r"crop_factor 80 conflicts"),
        ({}, "_mlperf.option2", r"_mlperf.option2 applies to _calibration only"),
        ({}, "_1,_size.7", r"conflicting sizes _1 and _size.7"),
        ({}, "_NCHW,_NHWC", r"conflicting variations _NCHW and _NHWC"),
        ({}, "_for.bert", r"unknown variation tag _for.bert"),
        # CM: int8 input with subtract means is a numpy casting error
        ({}, "_for.resnet50,_int8", r"input data type int8 conflicts with subtract_means"),
        ({"given_channel_means": "1 2"}, "_generic-preprocessor", r"channel means needs 1 or 3 values"),
        ({"convert_to_unsigned": True}, "_generic-preprocessor", r"convert_to_unsigned needs quantize"),
        # Regression (issue 10 item 4): --quant-scale 0 wrote garbage int8 with rc 0.
        ({"quantize": True, "quant_scale": 0}, "_generic-preprocessor", r"quant_scale must be a positive number"),
        ({"quantize": True, "quant_scale": -2}, "_generic-preprocessor", r"quant_scale must be a positive number"),
    ],
)
def test_conflicts_are_refused_before_any_work(given: dict, tags: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_preprocess_config(given, tags)


def test_explicit_options_override_variation_values() -> None:
    c = resolve_preprocess_config(
        {"quant_scale": 2.0, "given_channel_means": "1 2 3", "given_channel_stds": "4", "convert_to_bgr": True},
        "_for.resnet50,_uint8",
    )
    assert (c.quant_scale, c.channel_means, c.channel_stds, c.convert_to_bgr) == (2.0, (1.0, 2.0, 3.0), (4.0,), True)


def test_form_values_and_tags_combine() -> None:
    # A form sends every field; 'auto' and the defaults leave room for tags.
    form = {name: spec["default"] for name, spec in PREPROCESS_TABLE.param_specs().items()}
    form["variations"] = "_for.mobilenet,_float32"
    c = resolve_preprocess_config(PREPROCESS_TABLE.selections_from_form(form))
    assert (c.model, c.precision, c.normalize) == ("mobilenet", "float32", True)


def test_config_round_trips_through_json() -> None:
    c = resolve_preprocess_config(variations="_calibration,_mlperf.option2,_for.resnet50,_uint8")
    again = PreprocessConfig.from_dict(json.loads(json.dumps(c.as_dict())))
    assert again == c
    with pytest.raises(ConfigError, match="unknown config key"):
        PreprocessConfig.from_dict({**c.as_dict(), "bogus": 1})


def test_mirror_and_checksums_are_overridable() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    c = resolve_preprocess_config(
        {"mirror": "http://mirror.internal/ml/", "calibration_md5": md5.upper(), "images_md5": md5},
        "_calibration,_mlperf.option2",
    )
    assert c.calibration_urls == (
        "http://mirror.internal/ml/cal_image_list_option_2.txt",
        f"{CALIBRATION_BASE_URL}/cal_image_list_option_2.txt",
    )
    assert c.images_urls[0] == f"http://mirror.internal/ml/{VAL_FULL_TAR}"  # calibration draws from the full set
    assert (c.calibration_md5, c.images_md5) == (md5, md5)
    url = resolve_preprocess_config({"images_url": "http://x.internal/v.tar"}).images_urls
    assert url == ("http://x.internal/v.tar",)


def test_cache_params_ignore_mirrors_but_not_the_data() -> None:
    a = resolve_preprocess_config(variations="_for.resnet50")
    b = resolve_preprocess_config({"mirror": "http://m.internal"}, "_for.resnet50")
    assert a.cache_params() == b.cache_params()
    assert a.cache_params() != resolve_preprocess_config(variations="_for.resnet50,_NHWC").cache_params()


def test_env_has_cm_keys() -> None:
    env = config_env(resolve_preprocess_config(variations="_for.resnet50,_uint8"))
    assert env["CM_DATASET_QUANT_SCALE"] == "1.18944883"
    assert env["CM_DATASET_GIVEN_CHANNEL_MEANS"] == "123.68 116.78 103.94"
    assert (env["CM_DATASET_DATA_TYPE"], env["CM_DATASET_DATA_TYPE_INPUT"], env["CM_DATASET_QUANTIZE"]) == (
        "uint8",
        "float32",
        "1",
    )
    assert env["CM_DATASET_REFERENCE_PREPROCESSOR"] == "0" and env["CM_DATASET_INTERPOLATION_METHOD"] == "INTER_AREA"
    cal = config_env(resolve_preprocess_config(variations="_calibration,_mlperf.option2"))
    assert cal["CM_DATASET_CALIBRATION_OPTION"] == "two"
    assert config_env(resolve_preprocess_config(variations="_pytorch"))["CM_PREPROCESS_PYTORCH"] == "yes"


def test_cli_options_come_from_the_table() -> None:
    parser = argparse.ArgumentParser()
    PREPROCESS_TABLE.add_cli_arguments(parser)
    args = parser.parse_args(["--variations", "_for.resnet50", "--layout", "NHWC", "--size", "3", "--skip-bad-images"])
    c = resolve_preprocess_config(PREPROCESS_TABLE.selections_from_args(args))
    assert (c.layout, c.size, c.skip_bad_images, c.preprocessor) == ("NHWC", 3, True, "generic")
