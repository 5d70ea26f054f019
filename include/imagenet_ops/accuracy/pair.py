"""The two sides of a check, read from their manifests, and the refusals before any inference.

A published model variant and a published preprocessed set are each trusted only through their
``manifest.json`` (the model's params rebuild its :class:`~imagenet_ops.model.variations.ModelConfig`
and so its ``CM_ML_MODEL_*`` env; the set's params give its layout, data type and side), and the
set's ``val_map.txt`` gives the labels. :func:`check_pair` refuses, naming both sides, what
could only give a meaningless figure: an NHWC set into an NCHW model, float32 into an int8 input,
another resolution, a calibration set (no labels).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from imagenet_ops.accuracy.job import ARTIFACT, MODEL_ARTIFACT, PREPROCESSED_ARTIFACT
from imagenet_ops.core.errors import StorageError, ValidationError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VAL_MAP = "val_map.txt"
MODEL_SIDE = 224
# What each variant's own harness feeds it (MLPerf inference's dataset profiles).
EXPECTED_PREPROCESSING = {"pytorch": "pre_process_imagenet_pytorch"}
DEFAULT_PREPROCESSING = "pre_process_vgg"


class PairError(ValidationError):
    """The model and the set cannot be checked together; the message names both and what differs."""


def join(location: str, key: str) -> str:
    """``location/key`` for a folder, an ``s3://`` or a ``gs://`` prefix."""
    return f"{location.rstrip('/')}/{key}"


def read_manifest(store: Any, location: str, artifact: str) -> dict[str, Any]:
    """The manifest of the artifact published at ``location``.

    Raises:
        ValidationError: no manifest there, an unreadable one, or one of another artifact.
    """
    uri = join(location, MANIFEST)
    try:
        raw = store.read(uri)
    except StorageError as exc:
        raise ValidationError(f"{location}: no {artifact} published here ({MANIFEST} cannot be read: {exc})") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"{uri}: not a JSON manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("artifact") != artifact:
        found = manifest.get("artifact") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValidationError(f"{uri}: the manifest of {found!r}, not of {artifact} (is the folder right?)")
    return manifest


@dataclass(frozen=True)
class ModelSide:
    """A published variant: what the check needs to run it and to score its outputs."""

    location: str
    variant_id: str
    framework: str
    precision: str
    argmax: bool
    layout: str
    input_dtype: str
    classes: int
    fixed_batch: int | None
    files: tuple[str, ...]
    accuracy: float | None
    preprocessing: str
    cache_key: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def offset(self) -> int:
        """Subtract from a model class id to get the 0-based ImageNet label (1 where class 0 is background)."""
        return 1 if self.classes == 1001 else 0

    def describe(self) -> str:
        return f"model {self.variant_id} ({self.framework} {self.precision}, {self.layout} {self.input_dtype}) at {self.location}"


def read_model(store: Any, location: str) -> ModelSide:
    """The variant published at ``location`` by ``resnet50_model``."""
    from imagenet_ops.model.sources import RemoteFile
    from imagenet_ops.model.variations import ModelConfig, model_env

    manifest = read_manifest(store, location, MODEL_ARTIFACT)
    params = dict(manifest["params"])
    provenance = manifest.get("provenance", {})
    try:
        remote = tuple(
            RemoteFile(
                filename=f["filename"],
                urls=tuple(f.get("urls") or [provenance.get(f["filename"], {}).get("url", "")]),
                md5=f["md5"],
                gunzip=bool(f.get("gunzip", False)),
            )
            for f in params["files"]
        )
        config = ModelConfig.from_params({**params, "files": [{**vars(f), "urls": list(f.urls)} for f in remote]})
    except (KeyError, TypeError) as exc:
        raise ValidationError(f"{join(location, MANIFEST)}: not a resnet50_model manifest this version reads ({exc})") from exc
    files = tuple(f.filename for f in config.files)
    env = model_env(config, model_path=join(location, files[0]))
    fw = config.framework
    layout = env.get("CM_ML_MODEL_DATA_LAYOUT", "NCHW")
    quantized_tflite = fw == "tflite" and config.precision != "fp32"
    return ModelSide(
        location=location,
        variant_id=config.variant_id,
        framework=fw,
        precision=config.precision,
        argmax=config.model_output == "argmax",
        layout=layout,
        # the int8 .pt quantizes inside the module: it takes float32 like the others
        input_dtype={"fp32": "float32"}.get(config.precision, "float32" if fw == "pytorch" else config.precision),
        classes=1000 if fw == "pytorch" or quantized_tflite else 1001,
        fixed_batch=config.batch_size if (fw == "tensorflow" and config.fix_input_shape) else None,
        files=files,
        accuracy=float(env["CM_ML_MODEL_ACCURACY"]) if env.get("CM_ML_MODEL_ACCURACY") else None,
        preprocessing=EXPECTED_PREPROCESSING.get(fw, DEFAULT_PREPROCESSING),
        cache_key=manifest.get("cache_key", ""),
        env=env,
    )


@dataclass(frozen=True)
class SetSide:
    """A published preprocessed set: its declared tensors, its files in label order, their labels."""

    location: str
    tags: str
    dataset_type: str
    layout: str
    dtype: str
    side: int
    preprocessing: str
    config: Any
    rows: tuple[tuple[str, str, int], ...]
    """``(image name, published file, 0-based label)`` in ``val_map.txt`` order."""
    missing: tuple[str, ...]
    """Images the set was made from but has no file for (bad images it skipped, from its manifest)."""
    size: int
    """The images the set was made from (its ``size``): 50,000 for the full validation set."""
    cache_key: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def npy(self) -> bool:
        return self.config.is_reference or self.config.extension == "npy"

    def describe(self) -> str:
        return f"set {self.tags or self.location} ({self.layout} {self.dtype} {self.side}x{self.side}) at {self.location}"


def preprocess_config(params: Mapping[str, Any], tags: str = "") -> Any:
    """The set's :class:`~imagenet_ops.preprocessed.config.PreprocessConfig` from its manifest params (mirrors dropped there)."""
    from imagenet_ops.preprocessed.config import PreprocessConfig

    known = {f.name for f in fields(PreprocessConfig)}
    data = {k: v for k, v in params.items() if k in known}
    data.update(images_urls=[], images_md5="", calibration_urls=[], calibration_md5="", tags=tags)
    return PreprocessConfig.from_dict(data)


def read_set(store: Any, location: str) -> SetSide:
    """The set published at ``location`` by ``imagenet_preprocessed``, with its labels.

    Raises:
        PairError: a calibration set, or a set without ``val_map.txt``.
        ValidationError: a manifest this version cannot read, or a ``val_map.txt`` line that is not ``name label``.
    """
    from imagenet_ops.preprocessed.config import config_env

    manifest = read_manifest(store, location, PREPROCESSED_ARTIFACT)
    tags = manifest.get("provenance", {}).get("tags", "")
    try:
        config = preprocess_config(manifest["params"], tags)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"{join(location, MANIFEST)}: not an imagenet_preprocessed manifest this version reads ({exc})"
        ) from exc
    published = {f["path"] for f in manifest.get("files", [])}
    describe = f"set {tags or location} at {location}"
    if config.dataset_type != "validation" or VAL_MAP not in published:
        kind = "a calibration set" if config.dataset_type != "validation" else "a set"
        raise PairError(f"{describe}: {kind} without {VAL_MAP}, so there are no labels to score against")
    rows = []
    # val_map.txt is the aux val.txt whole (50,000 lines, as CM copies it) also for a subset: the
    # set's images are the lines it has a file for; the ones it skipped are in its manifest.
    missing = tuple(str(name) for name in (manifest.get("outputs") or {}).get("bad", []))
    text = store.read(join(location, VAL_MAP)).decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) < 1000:
            raise ValidationError(
                f"{join(location, VAL_MAP)} line {number}: expected 'name label' with a label 0..999, got {line!r}"
            )
        output = config.output_name(parts[0])
        if output in published:
            rows.append((parts[0], output, int(parts[1])))
    if not rows:
        raise PairError(f"{describe}: none of the images of {VAL_MAP} has a published file")
    return SetSide(
        location=location,
        tags=tags,
        dataset_type=config.dataset_type,
        layout=config.layout,
        dtype=config.precision,
        side=config.resolution,
        preprocessing=config.reference_function or "generic",
        config=config,
        rows=tuple(rows),
        missing=missing,
        size=int(config.size),
        cache_key=manifest.get("cache_key", ""),
        env=config_env(config),
    )


def tensor_layout(data: SetSide) -> str:
    """How the set's tensors are laid out, whatever it declares: the TFLite TPU reference is always HWC."""
    from imagenet_ops.preprocessed.viewable import channels_first

    return "NCHW" if channels_first(data.config) else "NHWC"


def check_pair(model: ModelSide, data: SetSide) -> list[str]:
    """Refuse what cannot be scored; return notes on what can but may score low (another preprocessing).

    Raises:
        PairError: layout, data type or resolution differ; the message names both sides.
    """
    problems = []
    layout = tensor_layout(data)
    if layout != model.layout:
        problems.append(f"an {layout} set into an {model.layout} model")
    if data.dtype != model.input_dtype:
        problems.append(f"{data.dtype} tensors into a {model.input_dtype} input")
    if data.side != MODEL_SIDE:
        problems.append(f"{data.side}x{data.side} images into a {MODEL_SIDE}x{MODEL_SIDE} input")
    if problems:
        raise PairError(f"cannot check {model.describe()} on {data.describe()}: {'; '.join(problems)}")
    notes = []
    if data.preprocessing != model.preprocessing:
        notes.append(
            f"the set was made by {data.preprocessing}, the {model.framework} variant's harness feeds it "
            f"{model.preprocessing}: expect a lower top-1"
        )
    return notes


class NoFittingPair(ValidationError):
    """Nothing published fits the newest artifact (an Asset-triggered check has nothing to score)."""


def newest_fitting_pair(store: Any, *, models: Sequence[str], sets: Sequence[str], published_last: str) -> tuple[str, str]:
    """The pair an Asset-triggered check scores: ``(model location, set location)``.

    ``models`` and ``sets`` are published locations, newest first; ``published_last`` names the
    artifact whose event is the newest (``resnet50_model`` or ``imagenet_preprocessed``). That one
    stays fixed, and is paired with the newest of the other artifact that fits it: a new NHWC
    TFLite variant with the newest NHWC set, not with a newer NCHW set it cannot read. A location
    whose manifest cannot be read any more (an older artifact removed) is passed over.

    Raises:
        NoFittingPair: the newest artifact is a set without labels (a calibration set), or nothing
            of the other artifact fits it; the message names it and why the newest candidate did not fit.
        ValidationError: the newest artifact's own manifest cannot be read.
    """
    model_last = published_last == MODEL_ARTIFACT
    newest, others = (models[0], sets) if model_last else (sets[0], models)
    try:
        fixed: ModelSide | SetSide = read_model(store, newest) if model_last else read_set(store, newest)
    except PairError as exc:
        raise NoFittingPair(f"{exc}: nothing to check") from None
    reasons: list[str] = []
    for location in dict.fromkeys(others):  # newest first, each location once
        try:
            if model_last:
                check_pair(fixed, read_set(store, location))  # type: ignore[arg-type]
            else:
                check_pair(read_model(store, location), fixed)  # type: ignore[arg-type]
        except ValidationError as exc:  # PairError included
            reasons.append(str(exc))
            continue
        log.info("%s: pairing the newest %s with %s", ARTIFACT, fixed.describe(), location)
        return (newest, location) if model_last else (location, newest)
    other = PREPROCESSED_ARTIFACT if model_last else MODEL_ARTIFACT
    raise NoFittingPair(
        f"{fixed.describe()} fits none of the {len(reasons)} newest published {other} "
        f"artifact(s), so there is nothing to check; the newest: {reasons[0]}"
    )
