"""ResNet-50 model variants (CM recipe get-ml-model-resnet50): the artifact's declaration.

What this module declares, as data and small pure functions:

* ``MODEL_TABLE``: the CM variation groups and options (what the form, CLI and tags offer);
* :func:`resolve_model_config`: form fields / CLI options / CM tags -> one supported
  :class:`ModelConfig`, checked against the download table in :mod:`imagenet_ops.model.sources`;
* :func:`model_env`: the ``CM_ML_MODEL_*`` env of the reference for a published variant;
* :class:`ModelJob` and :func:`resolve_job`: one typed job per variant, with every rule about
  the run's params (which variants, url/md5 for one variant only, the folders per variant);
* ``VERSION`` and ``RELEASE_NOTES`` of the artifact.

The steps (fetch -> prepare -> check -> publish) are in :mod:`imagenet_ops.model.pipeline`.

Oddities kept (listed in the README's ``resnet50_model`` section and in ``RELEASE_NOTES["1.0.0"]``):
the 1001-class tf/onnx models, the tflite ``"input_tensor 2"`` input name in INPUT_SHAPES, the
md5 of the ``.gz`` (not the model) for tflite argmax. Oddities fixed: ``tflite,int8,argmax`` (CM
silently gives the fp32 file) is rejected; the tensorflow INPUT_SHAPES says NHWC (CM says NCHW for
an NHWC graph); the pytorch starting-weights key is ``CM_ML_MODEL_STARTING_WEIGHTS_FILENAME``
(CM's typo never exported); pytorch gets no ``?`` placeholders; fix-input-shape honours the batch
size (CM: always 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Artifact, Job
from imagenet_ops.core.variations import (
    SKIP_SSL_VERIFICATION,
    Choice,
    Group,
    Option,
    VariationTable,
    mirror_option,
    source_urls,
    url_option,
)
from imagenet_ops.imagenet.constants import RESNET50_CHANNEL_MEANS
from imagenet_ops.model.sources import MODEL_SOURCES, ZENODO_PB, RemoteFile, describe, matches, supported_combinations

ARTIFACT = "resnet50_model"

# The artifact's version: what a published variant holds (files, manifest, env). It is recorded in
# no output yet: the manifest and the cache key carry the package's ``library_version``, and
# adding this one there would change every published manifest.
VERSION = "1.1.0"
# Changes to what is published or accepted, newest first (TFDS style), from the git history.
RELEASE_NOTES = {
    "1.1.0": (
        "2026-12-01. URL credentials (user:password@, token and signature query values) are recorded as *** in "
        "manifest.json (params, provenance) and left out of the cache key, so a rotating presigned mirror URL no "
        "longer re-publishes the same bytes. One writer per output: a publish takes the output's lease, and the "
        "files of an earlier artifact or of a killed run in the variant's folder are removed before the new ones "
        "are written."
    ),
    "1.0.0": (
        "2026-11-21. First release: every CM variation (framework, precision, model output, opset, batch size, "
        "fix-input-shape, from-tf, huggingface default) and the reference's download table with its mirrors and "
        "md5s; unsupported combinations are refused before any download, listing the supported ones; a `mirror` "
        "base URL is tried first, `url`/`md5` replace one file's source, `md5_by_file` accepts re-built files. "
        "Each variant is load-checked with its framework and published to <sink>/<variant id> with its own "
        "manifest and the reference's CM_ML_MODEL_* env. Kept oddities: the 1001-class tf/onnx models, tflite's "
        '"input_tensor 2" in INPUT_SHAPES, the md5 of the .gz download for tflite argmax. Fixed oddities: '
        "tflite,int8,argmax is refused (CM gives the fp32 argmax file); the tensorflow INPUT_SHAPES is NHWC; "
        "pytorch exports CM_ML_MODEL_STARTING_WEIGHTS_FILENAME (CM's key has a typo) and no ? values; "
        "fix-input-shape honours the batch size (CM: always 1)."
    ),
}

CHANNEL_MEANS = RESNET50_CHANNEL_MEANS
TF_ACCURACY = "76.456"

MODEL_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(
        Group(
            "framework",
            "Framework",
            "Model format.",
            default="onnx",
            choices=(
                Choice("onnx", "ONNX", aliases=("onnxruntime",)),
                Choice("tensorflow", "TensorFlow frozen graph (.pb)", aliases=("tf",)),
                Choice("tflite", "TensorFlow Lite"),
                Choice("pytorch", "PyTorch"),
                Choice("ncnn", "ncnn (.param + .bin)"),
            ),
        ),
        Group(
            "precision",
            "Precision",
            "Weights and input data type.",
            default="fp32",
            choices=(Choice("fp32", "float32"), Choice("int8", "int8"), Choice("uint8", "uint8")),
        ),
        Group(
            "model_output",
            "Model output",
            "argmax graphs also output the top-1 class id (ArgMax).",
            default="argmax",
            choices=(Choice("argmax", "argmax"), Choice("no-argmax", "probabilities only")),
        ),
        Group(
            "opset",
            "ONNX opset",
            "ONNX opset version (ONNX only).",
            default="11",
            tag_prefix="opset-",
            choices=(Choice("11", "opset 11"), Choice("8", "opset 8")),
        ),
    ),
    options=(
        Option(
            "batch_size",
            "integer",
            "Batch size",
            "Batch size written into the env (and the fixed input shape).",
            default=1,
            optional=False,
            minimum=1,
            maximum=4096,
            tag_prefix="batch_size.",
            section="Model",
        ),
        Option(
            "fix_input_shape",
            "boolean",
            "Fix input shape",
            "TensorFlow only: make input_tensor a static [batch,224,224,3] placeholder.",
            default=False,
            optional=False,
            tag="fix-input-shape",
            section="Model",
        ),
        Option(
            "from_tf",
            "boolean",
            "ONNX converted from TF",
            "ONNX only: the NHWC model converted from the TF graph.",
            default=False,
            optional=False,
            tag="from-tf",
            section="Model",
        ),
        Option(
            "huggingface_default",
            "boolean",
            "From Hugging Face",
            "ONNX opset 11 fp32 from the Hugging Face mirror.",
            default=False,
            optional=False,
            tag="huggingface_default",
            section="Model",
        ),
        mirror_option(),
        url_option(
            "url",
            title="Custom URL",
            description="Download the (single) model file from this URL only.",
        ),
        Option(
            "md5",
            "string",
            "Custom md5",
            "Accepted md5 of the download; for ncnn two sums, comma-separated (.bin,.param).",
            section="Custom source",
            pattern=r"^[0-9a-fA-F]{32}(,[0-9a-fA-F]{32})*$",
        ),
        SKIP_SSL_VERIFICATION,
    ),
)


@dataclass(frozen=True)
class ModelConfig:
    """A resolved, supported variant: selections plus the files to fetch."""

    framework: str
    precision: str
    model_output: str
    opset: str
    batch_size: int
    fix_input_shape: bool
    from_tf: bool
    huggingface_default: bool
    files: tuple[RemoteFile, ...]
    verify_ssl: bool = True
    tags: str = ""

    @property
    def variant_id(self) -> str:
        """Stable folder name of this variant under the artifact root."""
        parts = [self.framework, self.precision]
        if self.framework in ("onnx", "tensorflow", "tflite"):
            parts.append(self.model_output)
        if self.framework == "onnx":
            parts.append(f"opset{self.opset}")
            parts += ["from-tf"] if self.from_tf else []
            parts += ["hf"] if self.huggingface_default else []
        if self.fix_input_shape:
            parts.append(f"fixed-bs{self.batch_size}")
        return "-".join(parts)

    def as_params(self) -> dict[str, Any]:
        """JSON-friendly form (XCom, manifest, cache key)."""
        d = asdict(self)
        d["files"] = [{**asdict(f), "urls": list(f.urls)} for f in self.files]
        d["variant_id"] = self.variant_id
        return d

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ModelConfig:
        p = {k: v for k, v in params.items() if k != "variant_id"}
        p["files"] = tuple(RemoteFile(**{**f, "urls": tuple(f["urls"])}) for f in p["files"])
        return cls(**p)


def resolve_model_config(
    given: Mapping[str, Any] | None = None,
    *,
    variations: str | Iterable[str] | None = None,
    md5_by_file: Mapping[str, str] | None = None,
) -> ModelConfig:
    """Resolve form fields / CLI options and CM tags into a supported :class:`ModelConfig`.

    ``md5_by_file`` (file name -> md5 of its download) overrides the reference sums, e.g. for
    an internal mirror that serves re-built files; it may name files of other variants too.

    Raises:
        ConfigError: an unknown tag, a flag used with the wrong framework, or a combination
            with no download (the message lists the supported combinations).
    """
    sel = MODEL_TABLE.selections(given, variations)
    fw = sel["framework"]
    misuse = [
        (sel["fix_input_shape"] and fw != "tensorflow", "_fix-input-shape applies to _tensorflow only"),
        (sel["from_tf"] and fw != "onnx", "_from-tf applies to _onnx only"),
        (sel["huggingface_default"] and fw != "onnx", "_huggingface_default applies to _onnx only"),
        (sel["opset"] != "11" and fw != "onnx", "_opset-* applies to _onnx only"),
    ]
    for bad, why in misuse:
        if bad:
            raise ConfigError(f"{ARTIFACT}: {why} (framework is {fw})")
    source = next((s for s in MODEL_SOURCES if matches(s, sel)), None)
    if source is None:
        keys = ("framework", "precision", "model_output") + (("opset", "from_tf", "huggingface_default") if fw == "onnx" else ())
        chosen = describe({k: sel[k] for k in keys})
        raise ConfigError(
            f"{ARTIFACT}: no model file for {chosen}; supported combinations: " + "; ".join(supported_combinations())
        )
    files = _override_files(source.files, sel, md5_by_file or {})
    return ModelConfig(
        framework=fw,
        precision=sel["precision"],
        model_output=sel["model_output"],
        opset=sel["opset"],
        batch_size=sel["batch_size"],
        fix_input_shape=sel["fix_input_shape"],
        from_tf=sel["from_tf"],
        huggingface_default=sel["huggingface_default"],
        files=files,
        verify_ssl=not sel["skip_ssl_verification"],
        tags=describe(source.when),
    )


def _override_files(
    files: tuple[RemoteFile, ...], sel: Mapping[str, Any], md5_by_file: Mapping[str, str]
) -> tuple[RemoteFile, ...]:
    md5s = sel["md5"].split(",") if sel["md5"] else None
    if md5s is not None and len(md5s) != len(files):
        raise ConfigError(
            f"{ARTIFACT}: {len(files)} file(s) to download ({', '.join(f.filename for f in files)}) but {len(md5s)} md5(s) given"
        )
    if sel["url"] and len(files) != 1:
        raise ConfigError(f"{ARTIFACT}: --url replaces a single file; this variant downloads {len(files)}: use --mirror")
    out = []
    for i, f in enumerate(files):
        urls = source_urls(f.urls, url=sel["url"], mirror=sel["mirror"], name=f.download_name)
        md5 = md5s[i] if md5s else md5_by_file.get(f.filename, f.md5)
        out.append(RemoteFile(f.filename, urls, md5.lower(), f.gunzip))
    return tuple(out)


# -- env ---------------------------------------------------------------------------------------


def model_env(config: ModelConfig, *, model_path: str, starting_path: str | None = None) -> dict[str, str]:
    """The ``CM_ML_MODEL_*`` env of the reference for ``config``, with the published paths."""
    bs = str(config.batch_size)
    env = {
        "CM_ML_MODEL": "RESNET50",
        "CM_ML_MODEL_DATASET": "imagenet2012-val",
        "CM_ML_MODEL_IMAGE_HEIGHT": "224",
        "CM_ML_MODEL_IMAGE_WIDTH": "224",
        "CM_ML_MODEL_NORMALIZE_DATA": "0",
        "CM_ML_MODEL_RETRAINING": "no",
        "CM_ML_MODEL_SUBTRACT_MEANS": "YES",
        "CM_ML_MODEL_WEIGHT_TRANSFORMATIONS": "no",
        "CM_ML_MODEL_FRAMEWORK": config.framework,
        "CM_ML_MODEL_INPUT_DATA_TYPES": config.precision,
        "CM_ML_MODEL_PRECISION": config.precision,
        "CM_ML_MODEL_WEIGHT_DATA_TYPES": config.precision,
        "CM_ML_MODEL_OUTPUT_LAYER_ARGMAX": "yes" if config.model_output == "argmax" else "no",
        "CM_ML_MODEL_BATCH_SIZE": bs,
    }
    fw = config.framework
    if fw == "onnx" and not config.from_tf:
        env.update(_layers("NCHW", "input_tensor:0", "softmax_tensor:0", f'"input_tensor:0": ({bs}, 3, 224, 224)'))
        env.update(
            {
                "CM_ML_MODEL_VER": "1.5",
                "CM_ML_MODEL_ONNX_OPSET": config.opset,
                "CM_ML_MODEL_STARTING_WEIGHTS_FILENAME": config.files[0].urls[-1],
            }
        )
    elif fw == "onnx":
        env.update(_layers("NHWC", "input_tensor", "softmax_tensor", f'"input_tensor": ({bs}, 224, 224, 3)'))
        env.update({"CM_ML_MODEL_ONNX_OPSET": config.opset, "CM_ML_MODEL_STARTING_WEIGHTS_FILENAME": ZENODO_PB})
    elif fw in ("tensorflow", "tflite"):
        shape_name = '"input_tensor:0"' if fw == "tensorflow" else '"input_tensor 2"'
        env.update(_layers("NHWC", "input_tensor", "softmax_tensor", f"{shape_name}: ({bs}, 224, 224, 3)"))
        env.update({"CM_ML_MODEL_GIVEN_CHANNEL_MEANS": CHANNEL_MEANS, "CM_ML_MODEL_ACCURACY": TF_ACCURACY})
    elif fw == "pytorch":
        env.update(_layers("NCHW", "input_tensor:0", "output", f"[{bs}, 3, 224, 224]"))
        env["CM_ML_MODEL_STARTING_WEIGHTS_FILENAME"] = config.files[0].urls[-1]
    elif fw == "ncnn":
        env.update(_layers("NCHW", "in0", "out0", f"[{bs}, 3, 224, 224]"))
    env["CM_ML_MODEL_FILE"] = model_path.rstrip("/").rsplit("/", 1)[-1]
    env["CM_ML_MODEL_FILE_WITH_PATH"] = model_path
    if starting_path:
        env["CM_ML_MODEL_STARTING_FILE_PATH"] = starting_path
    return env


def _layers(layout: str, inp: str, out: str, shapes: str) -> dict[str, str]:
    return {
        "CM_ML_MODEL_DATA_LAYOUT": layout,
        "CM_ML_MODEL_INPUT_LAYERS": inp,
        "CM_ML_MODEL_INPUT_LAYER_NAME": inp,
        "CM_ML_MODEL_OUTPUT_LAYERS": out,
        "CM_ML_MODEL_OUTPUT_LAYER_NAME": out,
        "CM_ML_MODEL_INPUT_SHAPES": shapes,
    }


# -- job ---------------------------------------------------------------------------------------

DOWNLOAD_DIR = "download"
PREPARED_DIR = "prepared"


@dataclass(frozen=True, kw_only=True)
class ModelJob(Job):
    """One variant to build: its resolved config, its own sink folder and its own work dir.

    The model reads no input locations (its files come from URLs in the config), so
    ``source_conn_id`` stays unset and is not written to XCom.
    """

    config_type: ClassVar[type] = ModelConfig
    config: ModelConfig

    XCOM_KEYS: ClassVar[tuple[str, ...]] = ("config", "work_dir", "sink_uri", "conn_id")

    @property
    def variant_id(self) -> str:
        return self.config.variant_id

    @property
    def download_dir(self) -> Path:
        """Where :func:`~imagenet_ops.model.pipeline.build_model` (the CLI) puts the downloads (a DAG task: its scratch)."""
        return Path(self.work_dir) / DOWNLOAD_DIR

    @property
    def prepared_dir(self) -> Path:
        """Where :func:`~imagenet_ops.model.pipeline.build_model` (the CLI) lays out the files (a DAG task: its scratch)."""
        return Path(self.work_dir) / PREPARED_DIR

    def to_xcom(self) -> dict[str, Any]:
        """``config`` (with its ``variant_id``), ``work_dir``, ``sink_uri``, ``conn_id``."""
        data = super().to_xcom()
        out = {k: data[k] for k in self.XCOM_KEYS}
        if self.source_conn_id is not None:
            out["source_conn_id"] = self.source_conn_id
        return out


def resolve_job(
    params: Mapping[str, Any],
    *,
    sink_uri: str,
    conn_id: str | None,
    work_dir: str,
    scheduled: bool = False,
    per_variant_folder: bool = True,
) -> list[ModelJob]:
    """One :class:`ModelJob` per variant of a run; bad combinations fail here, before any download.

    The rules:

    * ``variants`` (a list of CM tag strings) gives one variant each, built with the run's
      ``mirror`` and ``skip_ssl_verification``; without it, the form's fields and
      ``variations`` give a single variant. A scheduled run with no ``variants`` refreshes every
      supported variant.
    * ``url`` and ``md5`` replace one file's source, so they apply to a single variant only;
      with several, ``mirror`` and ``md5_by_file`` do that job.
    * Variants are de-duplicated by variant id (the last one given wins, in its first place).
    * Each variant gets ``<sink_uri>/<variant id>`` and ``<work_dir>/<variant id>``, unless
      ``per_variant_folder`` is false (the CLI's default): then the locations are used as given.

    Args:
        params: the trigger form's params (or the CLI's options, by the same names).
        sink_uri: the artifact's output root.
        conn_id: the sink's connection.
        work_dir: the run's scratch folder.
        scheduled: the run was created by the schedule (a refresh).
        per_variant_folder: put each variant in its own folder under ``sink_uri`` and ``work_dir``.

    Raises:
        ConfigError: an unknown tag, an unsupported combination, or url/md5 with several variants.
    """
    tag_lists = list(params.get("variants") or [])
    if not tag_lists and scheduled:
        tag_lists = supported_combinations()
    md5_by_file = params.get("md5_by_file") or {}
    if tag_lists:
        if params.get("url") or params.get("md5"):
            raise ConfigError("url and md5 apply to a single variant; with several use mirror and md5_by_file")
        common = {k: params[k] for k in ("mirror", "skip_ssl_verification") if params.get(k) is not None}
        configs = [resolve_model_config(common, variations=t, md5_by_file=md5_by_file) for t in tag_lists]
    else:
        configs = [resolve_model_config(MODEL_TABLE.selections_from_form(params), md5_by_file=md5_by_file)]
    configs = list({c.variant_id: c for c in configs}.values())
    if not per_variant_folder:
        return [ModelJob(config=c, sink_uri=sink_uri, conn_id=conn_id, work_dir=work_dir) for c in configs]
    root = sink_uri.rstrip("/")
    return [
        ModelJob(config=c, sink_uri=f"{root}/{c.variant_id}", conn_id=conn_id, work_dir=f"{work_dir}/{c.variant_id}")
        for c in configs
    ]


DECLARATION = Artifact(
    name=ARTIFACT,
    table=MODEL_TABLE,
    job=ModelJob,
    resolve_job=resolve_job,
    version=VERSION,
    release_notes=RELEASE_NOTES,
)
"""The artifact's one declaration: its form, CLI subcommand and CM tag parser are made from it."""
