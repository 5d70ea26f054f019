"""ResNet-50 model variants: fetch -> prepare -> check -> publish, one variant at a time.

Each step takes the variant's :class:`~imagenet_ops.model.variations.ModelConfig` and the typed
results of the steps before it, and returns its own typed result (JSON through ``as_dict`` /
``from_dict``, so a DAG hands it to the next mapped task through XCom):

* :func:`fetch_model` -> :class:`ModelFetched` (the downloads, checked against their md5s);
* :func:`prepare_model` -> :class:`ModelPrepared` (the folder to publish, fix-input-shape done);
* :func:`check_prepared_model` -> :class:`~imagenet_ops.model.interface.ModelCheckResult`;
* :func:`publish_model` -> :class:`ModelPublished` (the publish facts and the ``CM_ML_MODEL_*`` env).

:func:`build_model` runs the four in one call (what the CLI runs); the DAG's tasks, which hand the
files over through the run's staging area, are in :mod:`imagenet_ops.model.steps`. The variant's declaration
(tables, config, env, job) is in :mod:`imagenet_ops.model.variations`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import AcceptedChecksums
from imagenet_ops.core.download import DownloadResult, download
from imagenet_ops.core.extract import extract_archive
from imagenet_ops.core.manifest import PublishResult, publish_dir
from imagenet_ops.core.sinks import Sink
from imagenet_ops.model.interface import ModelCheckResult, ModelInterface
from imagenet_ops.model.variations import ARTIFACT, DOWNLOAD_DIR, PREPARED_DIR, ModelConfig, model_env

log = logging.getLogger(__name__)

ORIGINAL_DIR = "original"


@dataclass(frozen=True)
class FetchedFile(DownloadResult):
    """One downloaded file of a variant: the download's facts, ``path`` the usable local file (gunzipped
    when the variant needs it), and ``filename`` its final name."""

    filename: str = ""


@dataclass(frozen=True)
class ModelFetched:
    """Result of :func:`fetch_model`: every file of the variant, in the config's order."""

    files: tuple[FetchedFile, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"files": [asdict(f) for f in self.files]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFetched:
        return cls(tuple(FetchedFile(**f) for f in data["files"]))


@dataclass(frozen=True)
class ModelPrepared:
    """Result of :func:`prepare_model`: the folder to publish and its files (relative paths)."""

    dir: str
    model_file: str
    starting_file: str | None
    files: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelPrepared:
        return cls(data["dir"], data["model_file"], data.get("starting_file"), tuple(data["files"]))


def fetch_model(*, config: ModelConfig, dest_dir: Path) -> ModelFetched:
    """Download every file of the variant (mirrors, resume, md5 of the download); gunzip ``.gz``.

    Returns:
        One :class:`FetchedFile` per file: ``path`` is the usable file (gunzipped), the other
        facts (``url``, ``md5``, ``sha256``, ``size``, ``etag`` ...) are the download's.
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
        fetched.append(FetchedFile(**{**got.as_dict(), "path": str(path)}, filename=f.filename))
    return ModelFetched(tuple(fetched))


def prepare_model(*, config: ModelConfig, fetched: ModelFetched, dest_dir: Path) -> ModelPrepared:
    """Lay out the files to publish in ``dest_dir``; run fix-input-shape for TensorFlow when asked.

    With fix-input-shape the fixed graph takes the model's name and the download is kept as
    ``original/<name>`` (CM_ML_MODEL_STARTING_FILE_PATH).
    """
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        shutil.rmtree(dest_dir)  # a retried task starts clean
    dest_dir.mkdir(parents=True)
    for f in fetched.files:
        shutil.copyfile(f.path, dest_dir / f.filename)
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
    files = tuple(sorted(p.relative_to(dest_dir).as_posix() for p in dest_dir.rglob("*") if p.is_file()))
    return ModelPrepared(dir=str(dest_dir), model_file=model_file, starting_file=starting_file, files=files)


def expected_interface(config: ModelConfig) -> ModelInterface:
    """Input/output names and shapes the variant's file must have (``None`` = any size)."""
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


def check_prepared_model(*, config: ModelConfig, prepared: ModelPrepared) -> ModelCheckResult:
    """Load check of the prepared model file(s) against :func:`expected_interface`.

    Raises:
        ModelCheckError: the file does not parse as the framework or has other inputs/outputs.
    """
    from imagenet_ops.model.checks import check_model

    base = Path(prepared.dir)
    files = [base / f.filename for f in config.files]
    return check_model(framework=config.framework, files=files, expected=expected_interface(config))


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
    *, config: ModelConfig, prepared: ModelPrepared, fetched: ModelFetched, sink: Sink, check: ModelCheckResult | None = None
) -> ModelPublished:
    """Publish a checked variant with its report; the cache key covers the config and the downloads' bytes.

    Args:
        check: what the load check found, shown in ``report/report.md``.
    """
    from imagenet_ops.core.report import build_report
    from imagenet_ops.model.report import model_report

    upstream = {f.filename: {"md5": f.md5, "sha256": f.sha256, "size": f.size} for f in fetched.files}
    starting = sink.location(prepared.starting_file) if prepared.starting_file else None
    env = model_env(config, model_path=sink.location(prepared.model_file), starting_path=starting)
    report = build_report(
        ARTIFACT,
        lambda: model_report(
            config=config,
            folder=Path(prepared.dir),
            files=list(prepared.files),
            env=env,
            expected=expected_interface(config),
            check=check,
        ),
    )
    result = publish_dir(
        local_dir=Path(prepared.dir),
        sink=sink,
        artifact=ARTIFACT,
        params=cache_params(config),
        upstream=upstream,
        provenance={f.filename: {"url": f.url, "etag": f.etag} for f in fetched.files},
        report=report,  # report/: published with the variant, listed in the manifest
    )
    return ModelPublished(publish=result, env=env)


def build_model(*, config: ModelConfig, sink: Sink, work_dir: Path) -> ModelPublished:
    """Fetch, prepare, check and publish one variant in one call (what the CLI runs)."""
    work_dir = Path(work_dir)
    fetched = fetch_model(config=config, dest_dir=work_dir / DOWNLOAD_DIR)
    prepared = prepare_model(config=config, fetched=fetched, dest_dir=work_dir / PREPARED_DIR)
    check = check_prepared_model(config=config, prepared=prepared)
    return publish_model(config=config, prepared=prepared, fetched=fetched, sink=sink, check=check)
