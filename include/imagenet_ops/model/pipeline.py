"""ResNet-50 model variants (CM recipe get-ml-model-resnet50): download, prepare, check, publish.

Two tables, both data:

* ``MODEL_TABLE``: the CM variation groups and options (what the form, CLI and tags offer);
* ``MODEL_SOURCES``: every *supported* combination and the file(s) it downloads, with the
  reference's mirrors and md5s. A combination with no row is rejected before any download with
  a message listing the supported ones.

Oddities kept (documented in RELEASE_NOTES / README): the 1001-class tf/onnx models, the tflite
``"input_tensor 2"`` input name in INPUT_SHAPES, the md5 of the ``.gz`` (not the model) for
tflite argmax. Oddities fixed: ``tflite,int8,argmax`` (CM silently gives the fp32 file) is
rejected; the tensorflow INPUT_SHAPES says NHWC (CM says NCHW for an NHWC graph); the pytorch
starting-weights key is ``CM_ML_MODEL_STARTING_WEIGHTS_FILENAME`` (CM's typo never exported);
pytorch gets no ``?`` placeholders; fix-input-shape honours the batch size (CM: always 1).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import AcceptedChecksums
from imagenet_ops.core.download import download
from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.extract import extract_archive
from imagenet_ops.core.storage import PublishResult, Sink, publish_dir
from imagenet_ops.core.variations import SKIP_SSL_VERIFICATION, Choice, Group, Option, VariationTable
from imagenet_ops.imagenet.constants import RESNET50_CHANNEL_MEANS

log = logging.getLogger(__name__)

ARTIFACT = "resnet50_model"
CHANNEL_MEANS = RESNET50_CHANNEL_MEANS
TF_ACCURACY = "76.456"
ZENODO_PB = "https://zenodo.org/record/2535873/files/resnet50_v1.pb"

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
        Option(
            "mirror",
            "string",
            "Mirror base URL",
            "Internal artifact store tried first: files are fetched as <mirror>/<file name>.",
            section="Custom source",
            pattern=r"^(https?|file)://",
        ),
        Option(
            "url",
            "string",
            "Custom URL",
            "Download the (single) model file from this URL only.",
            section="Custom source",
            pattern=r"^(https?|file)://",
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
class RemoteFile:
    """One downloaded file: final name, mirrors in order, accepted md5 of the *download*."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    gunzip: bool = False

    @property
    def download_name(self) -> str:
        return self.filename + ".gz" if self.gunzip else self.filename


@dataclass(frozen=True)
class ModelSource:
    """A supported combination: the selections it needs and what it downloads."""

    when: Mapping[str, Any]
    files: tuple[RemoteFile, ...]


def _src(files: Iterable[RemoteFile], **when: Any) -> ModelSource:
    return ModelSource(when=when, files=tuple(files))


MODEL_SOURCES: tuple[ModelSource, ...] = (
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                (
                    "https://huggingface.co/ctuning/mlperf-inference-resnet50-onnx-fp32-imagenet2012-v1.0/resolve/main/resnet50_v1.onnx",
                ),
                "f6a4da60cd5f084d97efc2c1ddb10beb",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=False,
        huggingface_default=True,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                (
                    "https://zenodo.org/record/4735647/files/resnet50_v1.onnx",
                    "https://armi.in/files/resnet50_v1_op11/resnet50_v1.onnx",
                    "https://storage.googleapis.com/resnet50_assets/resnet50_v1.onnx",
                ),
                "f6a4da60cd5f084d97efc2c1ddb10beb",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=False,
        huggingface_default=False,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                ("https://zenodo.org/record/2592612/files/resnet50_v1.onnx",),
                "a638cf028b5870da29e09ccc2f7182e7",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="8",
        from_tf=False,
        huggingface_default=False,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1_modified.onnx",
                ("https://drive.google.com/uc?id=15wZ_8Vt12cb10IEBsln8wksD1zGwlbOM&export=download",),
                "04a510152d9eded924883bdfcf85dd4a",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=True,
        huggingface_default=False,
    ),
    _src(
        [RemoteFile("resnet50_v1.pb", (ZENODO_PB, "https://armi.in/files/resnet50_v1.pb"), "7b94a2da05dd30f6c0af23a46bc08886")],
        framework="tensorflow",
        precision="fp32",
    ),
    _src(
        [
            RemoteFile(
                "resnet50-19c8e357.pth",
                ("https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth",),
                "9e9c86b324d80e65229fab49b8d9a8e8",
            )
        ],
        framework="pytorch",
        precision="fp32",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_INT8bit_quantized.pt",
                ("https://zenodo.org/record/4589637/files/resnet50_INT8bit_quantized.pt",),
                "6893ea9769b0afce65bb0ddf002f4438",
            )
        ],
        framework="pytorch",
        precision="int8",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.tflite",
                ("https://www.dropbox.com/s/cvv2zlfo80h54uz/resnet50_v1.tflite.gz?dl=1",),
                "92b5ae497e0de5c2d487507953b6e5cc",
                gunzip=True,
            )
        ],
        framework="tflite",
        precision="fp32",
        model_output="argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.no-argmax.tflite",
                ("https://www.dropbox.com/s/vhuqo0wc39lky0a/resnet50_v1.no-argmax.tflite?dl=1",),
                "53e81f9f9b459ecfb6d64add3da91564",
            )
        ],
        framework="tflite",
        precision="fp32",
        model_output="no-argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_quant_full_mlperf_edgetpu.tflite",
                ("https://zenodo.org/record/8234946/files/resnet50_quant_full_mlperf_edgetpu.tflite?download=1",),
                "a657cf1f97545aefd058c1c718cc0e17",
            )
        ],
        framework="tflite",
        precision="int8",
        model_output="no-argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.bin",
                ("https://zenodo.org/record/8073420/files/resnet50_v1.bin?download=1",),
                "0360777ab2178a65a8f78c35a7d619e0",
            ),
            RemoteFile(
                "resnet50_v1.param",
                ("https://zenodo.org/record/8073420/files/resnet50_v1.param?download=",),
                "f9ba6c4d7f66348e6d24c06bfe3f4ae8",
            ),
        ],
        framework="ncnn",
        precision="fp32",
    ),
)


def _matches(source: ModelSource, sel: Mapping[str, Any]) -> bool:
    return all(sel.get(k) == v for k, v in source.when.items())


def _describe(when: Mapping[str, Any]) -> str:
    parts = []
    for k, v in when.items():
        if isinstance(v, bool):
            if v:
                parts.append(f"_{k.replace('_', '-') if k != 'huggingface_default' else k}")
        else:
            parts.append(f"_opset-{v}" if k == "opset" else f"_{v}")
    return ",".join(parts)


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


def supported_combinations() -> list[str]:
    """CM tag strings of every supported combination (the reference's download table)."""
    return [_describe(s.when) for s in MODEL_SOURCES]


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
    source = next((s for s in MODEL_SOURCES if _matches(s, sel)), None)
    if source is None:
        keys = ("framework", "precision", "model_output") + (("opset", "from_tf", "huggingface_default") if fw == "onnx" else ())
        chosen = _describe({k: sel[k] for k in keys})
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
        tags=_describe(source.when),
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
        urls = (sel["url"],) if sel["url"] else f.urls
        if sel["mirror"]:
            urls = (f"{sel['mirror'].rstrip('/')}/{f.download_name}", *urls)
        md5 = md5s[i] if md5s else md5_by_file.get(f.filename, f.md5)
        out.append(RemoteFile(f.filename, urls, md5.lower(), f.gunzip))
    return tuple(out)


def model_table_listing() -> list[dict[str, Any]]:
    """Every supported combination with URLs, file names and md5s (``model --list``)."""
    rows = []
    for s in MODEL_SOURCES:
        rows.append(
            {
                "variations": _describe(s.when),
                "files": [
                    {
                        "file": f.filename,
                        "download": f.download_name,
                        "urls": list(f.urls),
                        "md5": f.md5,
                        "md5_of": "the .gz download" if f.gunzip else "the file",
                    }
                    for f in s.files
                ],
            }
        )
    return rows


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


# -- pipeline ----------------------------------------------------------------------------------

ORIGINAL_DIR = "original"


def fetch_model(*, config: ModelConfig, dest_dir: Path) -> list[dict[str, Any]]:
    """Download every file of the variant (mirrors, resume, md5 of the download); gunzip ``.gz``.

    Returns:
        One dict per file: ``filename``, ``path`` (the usable file), and the download's
        ``url``, ``md5``, ``sha256``, ``size``, ``etag``.
    """
    dest_dir = Path(dest_dir)
    fetched = []
    for f in config.files:
        got = download(
            urls=f.urls,
            dest_dir=dest_dir,
            accepted=AcceptedChecksums.of(md5=[f.md5]),
            filename=f.download_name,
            verify_ssl=config.verify_ssl,
        )
        path = Path(got.path)
        if f.gunzip:
            path = Path(extract_archive(archive=path, dest=dest_dir / f.filename).path)
        fetched.append({"filename": f.filename, "path": str(path), **{k: v for k, v in got.as_dict().items() if k != "path"}})
    return fetched


def prepare_model(*, config: ModelConfig, fetched: list[Mapping[str, Any]], dest_dir: Path) -> dict[str, Any]:
    """Lay out the files to publish in ``dest_dir``; run fix-input-shape for TensorFlow when asked.

    With fix-input-shape the fixed graph takes the model's name and the download is kept as
    ``original/<name>`` (CM_ML_MODEL_STARTING_FILE_PATH).

    Returns:
        ``dir``, ``model_file`` (relative), ``starting_file`` (relative or None), ``files``.
    """
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        shutil.rmtree(dest_dir)  # a retried task starts clean
    dest_dir.mkdir(parents=True)
    for f in fetched:
        shutil.copyfile(f["path"], dest_dir / f["filename"])
    model_file = config.files[0].filename
    starting_file = None
    if config.fix_input_shape:
        from imagenet_ops.model.fix_input_shape import fix_input_shape

        (dest_dir / ORIGINAL_DIR).mkdir()
        starting_file = f"{ORIGINAL_DIR}/{model_file}"
        (dest_dir / model_file).replace(dest_dir / starting_file)
        fix_input_shape(
            src=dest_dir / starting_file, dest=dest_dir / model_file, input_name="input_tensor", batch=config.batch_size
        )
        log.info("fixed input shape of %s to [%d, 224, 224, 3]", model_file, config.batch_size)
    files = sorted(p.relative_to(dest_dir).as_posix() for p in dest_dir.rglob("*") if p.is_file())
    return {"dir": str(dest_dir), "model_file": model_file, "starting_file": starting_file, "files": files}


def expected_interface(config: ModelConfig) -> Any:
    """Input/output names and shapes the variant's file must have (``None`` = any size)."""
    from imagenet_ops.model.checks import ModelInterface

    fw, argmax = config.framework, config.model_output == "argmax"
    if fw == "onnx" and not config.from_tf:
        return ModelInterface("onnx", {"input_tensor:0": (None, 3, 224, 224)}, {"softmax_tensor:0": (None, 1001)})
    if fw == "onnx":
        return ModelInterface("onnx", {"input_tensor": (None, 224, 224, 3)}, {"softmax_tensor": (None, 1001)})
    if fw == "tensorflow":
        batch = config.batch_size if config.fix_input_shape else None
        outputs = {"softmax_tensor": (None, 1001), **({"ArgMax": (None,)} if argmax else {})}
        return ModelInterface("tensorflow", {"input_tensor": (batch, 224, 224, 3)}, outputs)
    if fw == "tflite":
        outputs = {"ArgMax": (1,)} if argmax else {"softmax_tensor": (1, None)}
        return ModelInterface("tflite", {"input_tensor": (1, 224, 224, 3)}, outputs)
    if fw == "pytorch":
        return ModelInterface("pytorch", {"input": (1, 3, 224, 224)}, {"output": (1, 1000)})
    return ModelInterface("ncnn", {"in0": (3, 224, 224)}, {"out0": (None,)})


def check_prepared_model(*, config: ModelConfig, prepared: Mapping[str, Any]) -> dict[str, Any]:
    """Load check of the prepared model file(s) against :func:`expected_interface`.

    Raises:
        ModelCheckError: the file does not parse as the framework or has other inputs/outputs.
    """
    from imagenet_ops.model.checks import check_model

    base = Path(prepared["dir"])
    files = [base / f.filename for f in config.files]
    result = check_model(framework=config.framework, files=files, expected=expected_interface(config))
    return result.as_dict()


@dataclass(frozen=True)
class ModelPublished:
    """Result of :func:`publish_model`: the publish facts and the CM env dict."""

    publish: PublishResult
    env: dict[str, str] = field(default_factory=dict)


def cache_params(config: ModelConfig) -> dict[str, Any]:
    """The config without mirror URLs: the same bytes from another mirror are the same artifact."""
    params = config.as_params()
    params["files"] = [{k: v for k, v in f.items() if k != "urls"} for f in params["files"]]
    return params


def publish_model(
    *, config: ModelConfig, prepared: Mapping[str, Any], fetched: list[Mapping[str, Any]], sink: Sink
) -> ModelPublished:
    """Publish a checked variant; the cache key covers the config and the downloads' bytes."""
    upstream = {f["filename"]: {"md5": f["md5"], "sha256": f["sha256"], "size": f["size"]} for f in fetched}
    result = publish_dir(
        local_dir=Path(prepared["dir"]),
        sink=sink,
        artifact=ARTIFACT,
        params=cache_params(config),
        upstream=upstream,
        provenance={f["filename"]: {"url": f.get("url"), "etag": f.get("etag")} for f in fetched},
    )
    starting = sink.location(prepared["starting_file"]) if prepared.get("starting_file") else None
    return ModelPublished(
        publish=result, env=model_env(config, model_path=sink.location(prepared["model_file"]), starting_path=starting)
    )


def build_model(*, config: ModelConfig, sink: Sink, work_dir: Path) -> ModelPublished:
    """Fetch, prepare, check and publish one variant in one call (what the CLI runs)."""
    work_dir = Path(work_dir)
    fetched = fetch_model(config=config, dest_dir=work_dir / "download")
    prepared = prepare_model(config=config, fetched=fetched, dest_dir=work_dir / "prepared")
    check_prepared_model(config=config, prepared=prepared)
    return publish_model(config=config, prepared=prepared, fetched=fetched, sink=sink)
