"""The model DAG's steps for one variant, each able to run on any worker: download -> prepare -> load check -> publish.

Workers share no disk, so what crosses a step goes through the run's staging area
(:class:`~imagenet_ops.core.staging.Staging`), under the variant's id:

* the download stages each usable file (gunzipped) as ``<variant_id>/download/<filename>``;
* the prepare gets them back, lays out the folder to publish (fix-input-shape done) and stages it
  as ``<variant_id>/prepared/...``;
* the load check and the publish get that folder back.

Each step gets ``scratch``, a folder of its own that the caller removes when the step ends (a
local sink's staged copies are read in place). The results name staged URIs, never a scratch
path; the manifest's provenance keeps only the mirrors' URLs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from imagenet_ops.core.sinks import Sink
from imagenet_ops.core.staging import Staging
from imagenet_ops.model.interface import ModelCheckResult
from imagenet_ops.model.pipeline import (
    ModelFetched,
    ModelPrepared,
    ModelPublished,
    check_prepared_model,
    fetch_model,
    prepare_model,
    publish_model,
)
from imagenet_ops.model.variations import DOWNLOAD_DIR, PREPARED_DIR, ModelConfig


def staged_download(config: ModelConfig, filename: str) -> str:
    """A downloaded file's name in the run's staging area."""
    return f"{config.variant_id}/{DOWNLOAD_DIR}/{filename}"


def staged_prepared(config: ModelConfig) -> str:
    """The prepared folder's name in the run's staging area."""
    return f"{config.variant_id}/{PREPARED_DIR}"


def download_variant(*, config: ModelConfig, staging: Staging, scratch: Path) -> ModelFetched:
    """Download the variant's file(s) into ``scratch`` (:func:`fetch_model`) and stage the usable files.

    A ``.part`` left by a dropped connection is resumed within this call; a retried task gets a
    fresh scratch (maybe on another worker) and starts over.

    Returns:
        The downloads' facts; each ``path`` is the staged file's URI.
    """
    fetched = fetch_model(config=config, dest_dir=Path(scratch) / DOWNLOAD_DIR)
    return ModelFetched(
        tuple(
            dataclasses.replace(f, path=staging.put_file(Path(f.path), staged_download(config, f.filename)))
            for f in fetched.files
        )
    )


def prepare_variant(*, config: ModelConfig, fetched: ModelFetched, staging: Staging, scratch: Path) -> ModelPrepared:
    """Get the staged downloads, lay out the folder to publish in ``scratch`` (:func:`prepare_model`), stage it.

    Returns:
        The prepared files; ``dir`` is the staged folder's URI.

    Raises:
        StorageError: a download is not staged (the download task did not finish).
    """
    scratch = Path(scratch)
    local = ModelFetched(
        tuple(
            dataclasses.replace(
                f, path=str(staging.get_file(staged_download(config, f.filename), scratch / DOWNLOAD_DIR / f.filename))
            )
            for f in fetched.files
        )
    )
    prepared = prepare_model(config=config, fetched=local, dest_dir=scratch / PREPARED_DIR)
    staging.put_dir(Path(prepared.dir), staged_prepared(config))
    return dataclasses.replace(prepared, dir=staging.uri(staged_prepared(config)))


def _local_prepared(config: ModelConfig, prepared: ModelPrepared, staging: Staging, scratch: Path) -> ModelPrepared:
    folder = staging.get_dir(staged_prepared(config), Path(scratch) / PREPARED_DIR)
    return dataclasses.replace(prepared, dir=str(folder))


def check_variant(*, config: ModelConfig, prepared: ModelPrepared, staging: Staging, scratch: Path) -> ModelCheckResult:
    """Load check of the staged prepared folder (:func:`check_prepared_model`), got into ``scratch``.

    Returns:
        What the check found; ``files`` (and the summary) name the staged files' URIs.

    Raises:
        ModelCheckError: the file does not parse as the framework or has other inputs/outputs.
    """
    local = _local_prepared(config, prepared, staging, scratch)
    check = check_prepared_model(config=config, prepared=local)
    staged = staging.uri(staged_prepared(config))
    names = [Path(f).relative_to(local.dir).as_posix() for f in check.files]
    return dataclasses.replace(check, files=[f"{staged}/{n}" for n in names], summary=check.summary.replace(local.dir, staged))


def publish_variant(
    *,
    config: ModelConfig,
    fetched: ModelFetched,
    prepared: ModelPrepared,
    staging: Staging,
    scratch: Path,
    sink: Sink,
    check: ModelCheckResult | None = None,
) -> ModelPublished:
    """Publish the staged, load-checked folder (:func:`publish_model`); the downloads' facts make the cache key.

    Args:
        check: the load check's result, for the report.
    """
    local = _local_prepared(config, prepared, staging, scratch)
    return publish_model(config=config, prepared=local, fetched=fetched, sink=sink, check=check)
