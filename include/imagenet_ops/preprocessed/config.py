"""The frozen config a preprocessed set depends on, resolved from the variation table as CM would.

CM's variations set ``CM_DATASET_*`` env values and *default* other variations (``_for.resnet50``
defaults to the generic preprocessor, ``rgb32``, ``inter.area`` and ``float32``). A trigger form
sends every field, so "not chosen" cannot be told from "chosen the default value"; the groups whose
default depends on other choices therefore have an ``auto`` choice that resolves as CM would:

* preprocessor: reference, unless a ``_for.*`` model or ``_calibration`` is chosen (then generic);
  ``_pytorch`` / ``_tflite_tpu`` always use the reference;
* precision: float32 (``_for.mobilenet``: int8);
* extension: npy for the reference, rgb32 with ``_for.*``, otherwise npy;
* interpolation: the reference function's (area for vgg, linear for mobilenet / tflite_tpu), for the
  generic path area with ``_for.resnet50`` and linear otherwise;
* layout: NCHW, NHWC for ``_tflite_tpu`` (whose output is always HWC; CM still reports NCHW).

Combinations that CM accepts but silently ignores or crashes on are refused before any work, with
a message naming the conflict: the reference preprocessor with a side other than 224, another crop
factor, an rgb8/rgb32 extension, a precision other than float32 or a generic option; ``_pytorch``
with ``_tflite_tpu``; ``_tflite_tpu`` with ``_NCHW``; ``_pytorch``/``_tflite_tpu`` with
``_for.mobilenet`` or the generic preprocessor; integer input data with normalize / subtract means
/ stds (numpy casting error in CM); ``_mlperf.option2`` without ``_calibration``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from math import isfinite
from typing import Any

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.variations import source_urls
from imagenet_ops.preprocessed.variations import (
    ARTIFACT,
    CALIBRATION_BASE_URL,
    CALIBRATION_LISTS,
    CROP_FACTOR,
    PREPROCESS_TABLE,
    REFERENCE_FUNCTIONS,
    SIDE,
    SUBSET_SIZES,
    VAL_500_MD5,
    VAL_500_TAR,
    VAL_500_URLS,
    VAL_FULL_MD5,
    VAL_FULL_TAR,
    VAL_FULL_URLS,
    VERSION,
)

# Options that only the generic preprocessor reads (explicitly set with the reference: a conflict).
GENERIC_OPTIONS = (
    "given_channel_means",
    "given_channel_stds",
    "normalize",
    "subtract_means",
    "quantize",
    "quant_scale",
    "quant_offset",
    "convert_to_unsigned",
    "data_type_input",
)
# CM default_env of the recipe (the values the generic path starts from).
_BASE_VALUES: dict[str, Any] = {
    "channel_means": "",
    "channel_stds": "",
    "normalize": False,
    "subtract_means": False,
    "quantize": False,
    "quant_scale": 1.0,
    "quant_offset": 0.0,
    "convert_to_unsigned": False,
    "data_type_input": None,
}
_OPTION_TO_VALUE = {"given_channel_means": "channel_means", "given_channel_stds": "channel_stds"}
_CALIBRATION_CM = {"option1": "one", "option2": "two"}


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything one preprocessed set depends on, resolved from variations and options.

    ``preprocessor`` is ``reference`` (MLPerf ``dataset.py``; ``reference_function`` names which)
    or ``generic`` (CM's generic preprocessor with its bugs fixed). ``size`` is the number of
    images requested: the first ``size`` entries of the image list.
    """

    dataset_type: str
    calibration_option: str
    size: int
    model: str
    model_variation: str
    preprocessor: str
    reference_function: str | None
    layout: str
    precision: str
    data_type_input: str
    interpolation: str
    extension: str
    resolution: int
    crop_factor: float
    channel_means: tuple[float, ...]
    channel_stds: tuple[float, ...]
    normalize: bool
    subtract_means: bool
    quantize: bool
    quant_scale: float
    quant_offset: float
    convert_to_unsigned: bool
    convert_to_bgr: bool
    pytorch: bool
    tflite_tpu: bool
    skip_bad_images: bool
    images_filename: str
    images_urls: tuple[str, ...]
    images_md5: str
    calibration_filename: str
    calibration_urls: tuple[str, ...]
    calibration_md5: str
    verify_ssl: bool = True
    tags: str = ""

    @property
    def is_reference(self) -> bool:
        return self.preprocessor == "reference"

    @property
    def output_suffix(self) -> str:
        """Reference: ``<name>.npy`` (``ILSVRC2012_val_00000001.JPEG.npy``); generic: ``<stem>.<ext>``."""
        return ".npy" if self.is_reference else f".{self.extension}"

    def output_name(self, image_name: str) -> str:
        """Output file name of one source image."""
        if self.is_reference:
            return f"{image_name}.npy"
        return f"{image_name.rsplit('.', 1)[0]}.{self.extension}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (XCom, manifest)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{ARTIFACT}: unknown config key(s) {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def cache_params(self) -> dict[str, Any]:
        """What the published bytes depend on: the config without mirrors, plus the code version."""
        skip = {"images_urls", "images_md5", "calibration_urls", "calibration_md5", "verify_ssl", "tags"}
        params = {k: v for k, v in self.as_dict().items() if k not in skip}
        params["preprocess_version"] = VERSION
        return params


def _floats(text: str | None, what: str) -> tuple[float, ...]:
    if not text or not str(text).strip():
        return ()
    try:
        values = tuple(float(x) for x in str(text).split())
    except ValueError as exc:
        raise ConfigError(f"{ARTIFACT}: {what} must be space-separated numbers, got {text!r}") from exc
    if len(values) not in (1, 3):
        raise ConfigError(f"{ARTIFACT}: {what} needs 1 or 3 values (one per RGB channel), got {len(values)}: {text!r}")
    return values


def _auto(sel: Mapping[str, Any]) -> dict[str, str]:
    """Concrete choices for the ``auto`` groups, following CM's default_variations."""
    model, pytorch, tflite = sel["model"], sel["pytorch"], sel["tflite_tpu"]
    pre = sel["preprocessor"]
    if pre == "auto":
        if pytorch or tflite:
            pre = "mlcommons-reference-preprocessor"
        elif model != "none" or sel["dataset_type"] == "calibration":
            pre = "generic-preprocessor"
        else:
            pre = "mlcommons-reference-preprocessor"
    reference = pre == "mlcommons-reference-preprocessor"
    out = {"preprocessor": pre}
    out["layout"] = sel["layout"] if sel["layout"] != "auto" else ("NHWC" if tflite else "NCHW")
    if sel["precision"] != "auto":
        out["precision"] = sel["precision"]
    else:
        out["precision"] = "int8" if (model == "mobilenet" and not reference) else "float32"
    if sel["extension"] != "auto":
        out["extension"] = sel["extension"]
    else:
        out["extension"] = "npy" if reference or model == "none" else "rgb32"
    if sel["interpolation"] != "auto":
        out["interpolation"] = sel["interpolation"]
    elif reference:
        out["interpolation"] = "linear" if (model == "mobilenet" or tflite or pytorch) else "area"
    else:
        out["interpolation"] = "area" if model == "resnet50" else "linear"
    return out


def _reference_function(model: str, pytorch: bool, tflite: bool) -> str:
    if model == "mobilenet":
        return "pre_process_mobilenet"
    if pytorch:
        return "pre_process_imagenet_pytorch"
    if tflite:
        return "pre_process_imagenet_tflite_tpu"
    return "pre_process_vgg"


def _check_flags(sel: Mapping[str, Any], eff: Mapping[str, str]) -> None:
    pytorch, tflite = sel["pytorch"], sel["tflite_tpu"]
    if pytorch and tflite:
        raise ConfigError(f"{ARTIFACT}: conflicting variations _pytorch and _tflite_tpu: choose one reference function")
    flag = "_pytorch" if pytorch else "_tflite_tpu"
    if (pytorch or tflite) and eff["preprocessor"] == "generic-preprocessor":
        raise ConfigError(f"{ARTIFACT}: {flag} is a reference preprocessing; it conflicts with _generic-preprocessor")
    if (pytorch or tflite) and sel["model"] == "mobilenet":
        raise ConfigError(f"{ARTIFACT}: {flag} applies to ResNet-50 only; it conflicts with _for.mobilenet")
    if tflite and eff["layout"] == "NCHW":
        raise ConfigError(f"{ARTIFACT}: _tflite_tpu output is always NHWC; it conflicts with _NCHW")
    if sel["calibration_option"] != "option1" and sel["dataset_type"] != "calibration":
        raise ConfigError(f"{ARTIFACT}: _mlperf.{sel['calibration_option']} applies to _calibration only")


def _check_reference(sel: Mapping[str, Any], eff: Mapping[str, str], function: str) -> None:
    def refuse(what: str, only: str) -> ConfigError:
        return ConfigError(
            f"{ARTIFACT}: {what} conflicts with _mlcommons-reference-preprocessor: {function} supports only {only}; "
            "use _generic-preprocessor"
        )

    if sel["resolution"] != SIDE:
        raise refuse(f"_resolution.{sel['resolution']}", "224x224")
    if float(sel["crop_factor"]) != CROP_FACTOR:
        raise refuse(f"crop_factor {_num(sel['crop_factor'])}", "crop factor 87.5")
    if eff["extension"] != "npy":
        raise refuse(f"_{eff['extension']}", ".npy files")
    if eff["precision"] != "float32":
        raise refuse(f"_{eff['precision']}", "float32")
    expected = REFERENCE_FUNCTIONS[function]["interpolation"]
    if sel["interpolation"] != "auto" and sel["interpolation"] != expected:
        raise refuse(f"_inter.{sel['interpolation']}", f"{expected} interpolation")
    given = [name for name in GENERIC_OPTIONS if sel[name] is not None] + (["convert_to_bgr"] if sel["convert_to_bgr"] else [])
    if given:
        raise ConfigError(
            f"{ARTIFACT}: option(s) {', '.join(given)} apply to the generic preprocessor only; "
            "they conflict with _mlcommons-reference-preprocessor"
        )


def _size(sel: Mapping[str, Any]) -> int:
    if sel["size"] is None:
        return SUBSET_SIZES[sel["subset"]]
    default = PREPROCESS_TABLE.group("subset").default
    if sel["subset"] != default and SUBSET_SIZES[sel["subset"]] != sel["size"]:
        raise ConfigError(f"{ARTIFACT}: conflicting sizes _{sel['subset']} and _size.{sel['size']}: drop one of them")
    return int(sel["size"])


def _downloads(sel: Mapping[str, Any], dataset_type: str, size: int) -> dict[str, Any]:
    subset = dataset_type == "validation" and size <= 500
    images = VAL_500_TAR if subset else VAL_FULL_TAR
    published = VAL_500_URLS if subset else VAL_FULL_URLS
    images_urls = source_urls(published, url=sel["images_url"], mirror=sel["mirror"], name=images)
    cal_name, cal_md5 = CALIBRATION_LISTS[sel["calibration_option"]]
    cal_published = (f"{CALIBRATION_BASE_URL}/{cal_name}",)
    cal_urls = source_urls(cal_published, url=sel["calibration_url"], mirror=sel["mirror"], name=cal_name)
    return {
        "images_filename": images,
        "images_urls": images_urls,
        "images_md5": (sel["images_md5"] or (VAL_500_MD5 if subset else VAL_FULL_MD5)).lower(),
        "calibration_filename": cal_name,
        "calibration_urls": cal_urls,
        "calibration_md5": (sel["calibration_md5"] or cal_md5).lower(),
    }


def _tags(sel: Mapping[str, Any], eff: Mapping[str, str], size: int) -> str:
    parts = [f"_{sel['dataset_type']}"]
    if sel["dataset_type"] == "calibration":
        parts.append(f"_mlperf.{sel['calibration_option']}")
    parts.append(f"_size.{size}")
    if sel["model"] != "none":
        parts.append(f"_for.{sel['model']}")
    parts += [f"_{eff['preprocessor']}", f"_{eff['layout']}", f"_{eff['precision']}", f"_{eff['extension']}"]
    parts.append(f"_inter.{eff['interpolation']}")
    parts.append(f"_resolution.{sel['resolution']}")
    parts += ["_pytorch"] if sel["pytorch"] else []
    parts += ["_tflite_tpu"] if sel["tflite_tpu"] else []
    return ",".join(parts)


def resolve_preprocess_config(
    given: Mapping[str, Any] | None = None, variations: str | Iterable[str] | None = None
) -> PreprocessConfig:
    """Resolve form fields / CLI options and CM tags (``_for.resnet50,_NCHW,_uint8``) into a config.

    Order, as CM: group defaults (``auto`` resolved from the other choices), the chosen variations'
    values, the matching combinations (later ones win), then explicitly given options.

    Raises:
        ConfigError: an unknown tag or option, or a conflicting combination (named in the message).
    """
    sel = PREPROCESS_TABLE.selections(given, variations)
    eff = _auto(sel)
    _check_flags(sel, eff)
    effective = {**sel, **eff}
    values: dict[str, Any] = dict(_BASE_VALUES)
    values.update(PREPROCESS_TABLE.resolve(effective))
    for name in GENERIC_OPTIONS:
        if sel[name] is not None:
            values[_OPTION_TO_VALUE.get(name, name)] = sel[name]
    size = _size(sel)
    reference = eff["preprocessor"] == "mlcommons-reference-preprocessor"
    function = _reference_function(sel["model"], sel["pytorch"], sel["tflite_tpu"]) if reference else None
    if function:
        _check_reference(sel, eff, function)
    precision = values.get("precision", eff["precision"])
    data_type_input = values["data_type_input"] or precision
    means = _floats(values["channel_means"], "channel means")
    stds = _floats(values["channel_stds"], "channel stds")
    if not reference:
        math = [n for n, on in (("normalize", values["normalize"]), ("subtract_means", values["subtract_means"])) if on]
        math += ["given_channel_stds"] if stds else []
        if data_type_input != "float32" and math:
            raise ConfigError(
                f"{ARTIFACT}: input data type {data_type_input} conflicts with {', '.join(math)} (CM fails with a numpy "
                "casting error); set data_type_input=float32"
            )
        if values["convert_to_unsigned"] and not values["quantize"]:
            raise ConfigError(f"{ARTIFACT}: convert_to_unsigned needs quantize (it maps the int8 result to uint8)")
        scale = float(values["quant_scale"])
        if values["quantize"] and (not isfinite(scale) or scale <= 0):
            # Regression: --quant-scale 0 wrote garbage int8 (a division by zero) and exited 0.
            raise ConfigError(f"{ARTIFACT}: quant_scale must be a positive number to quantize, got {scale:g}")
    return PreprocessConfig(
        dataset_type=sel["dataset_type"],
        calibration_option=sel["calibration_option"],
        size=size,
        model=values["model"],
        model_variation=sel["model"],
        preprocessor="reference" if reference else "generic",
        reference_function=function,
        layout=eff["layout"],
        precision=precision,
        data_type_input="float32" if reference else data_type_input,
        interpolation=eff["interpolation"],
        extension=eff["extension"],
        resolution=int(sel["resolution"]),
        crop_factor=float(sel["crop_factor"]),
        channel_means=means,
        channel_stds=stds,
        normalize=bool(values["normalize"]),
        subtract_means=bool(values["subtract_means"]),
        quantize=bool(values["quantize"]),
        quant_scale=float(values["quant_scale"]),
        quant_offset=float(values["quant_offset"]),
        convert_to_unsigned=bool(values["convert_to_unsigned"]),
        convert_to_bgr=bool(sel["convert_to_bgr"]),
        pytorch=bool(sel["pytorch"]),
        tflite_tpu=bool(sel["tflite_tpu"]),
        skip_bad_images=bool(sel["skip_bad_images"]),
        verify_ssl=not sel["skip_ssl_verification"],
        tags=_tags(sel, eff, size),
        **_downloads(sel, sel["dataset_type"], size),
    )


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def config_env(config: PreprocessConfig) -> dict[str, str]:
    """The ``CM_DATASET_*`` keys that describe the data (paths and counts are added by the pipeline)."""
    env = {
        "CM_DATASET_TYPE": config.dataset_type,
        "CM_MODEL": config.model,
        "CM_DATASET_DATA_LAYOUT": config.layout,
        "CM_DATASET_DATA_TYPE": config.precision,
        "CM_DATASET_DATA_TYPE_INPUT": config.data_type_input,
        "CM_DATASET_INPUT_SQUARE_SIDE": str(config.resolution),
        "CM_DATASET_CROP_FACTOR": _num(config.crop_factor),
        "CM_DATASET_PREPROCESSED_EXTENSION": "npy" if config.is_reference else config.extension,
        "CM_DATASET_INTERPOLATION_METHOD": "INTER_AREA" if config.interpolation == "area" else "INTER_LINEAR",
        "CM_DATASET_REFERENCE_PREPROCESSOR": "1" if config.is_reference else "0",
        "CM_DATASET_NORMALIZE_DATA": str(int(config.normalize)),
        "CM_DATASET_SUBTRACT_MEANS": str(int(config.subtract_means)),
        "CM_DATASET_GIVEN_CHANNEL_MEANS": " ".join(_num(m) for m in config.channel_means),
        "CM_DATASET_GIVEN_CHANNEL_STDS": " ".join(_num(s) for s in config.channel_stds),
        "CM_DATASET_QUANTIZE": str(int(config.quantize)),
        "CM_DATASET_QUANT_SCALE": _num(config.quant_scale),
        "CM_DATASET_QUANT_OFFSET": _num(config.quant_offset),
        "CM_DATASET_CONVERT_TO_UNSIGNED": str(int(config.convert_to_unsigned)),
        "CM_DATASET_CONVERT_TO_BGR": str(int(config.convert_to_bgr)),
    }
    if config.dataset_type == "calibration":
        env["CM_DATASET_CALIBRATION_OPTION"] = _CALIBRATION_CM[config.calibration_option]
    if config.pytorch:
        env["CM_PREPROCESS_PYTORCH"] = "yes"
    if config.tflite_tpu:
        env["CM_PREPROCESS_TFLITE_TPU"] = "yes"
    if config.reference_function:
        env["IMAGENET_OPS_REFERENCE_FUNCTION"] = config.reference_function
    return env
