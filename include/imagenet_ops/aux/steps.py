"""The aux DAG's steps, each able to run on any worker: download -> verify -> extract -> validate -> publish.

Workers share no disk, so the one file that crosses a step goes through the run's staging area
(:class:`~imagenet_ops.core.staging.Staging`): the download stages the archive as
``download/<filename>`` and every later step gets it back into its own scratch (a local sink's
staged copy is read in place). The steps after the extract re-derive the 8 files from the archive:
it is ~17 MB and extracts in about a second, cheaper than staging the files (~55 MB) and reading
them back twice. Each step gets ``scratch``, a folder of its own that the caller removes when the
step ends; no step returns or records a scratch path (results name the staged archive).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagenet_ops.aux.pipeline import AuxPublished, AuxValidation, fetch_aux, publish_aux, validate_aux_dir, verify_aux_archive
from imagenet_ops.aux.variations import AuxConfig
from imagenet_ops.core.download import DownloadResult
from imagenet_ops.core.extract import ExtractResult, extract_archive
from imagenet_ops.core.sinks import Sink
from imagenet_ops.core.staging import Staging

STAGED_DOWNLOAD = "download"


def staged_archive(config: AuxConfig) -> str:
    """The archive's name in the run's staging area (``download/caffe_ilsvrc12.tar.gz``)."""
    return f"{STAGED_DOWNLOAD}/{config.filename}"


def download_archive(*, config: AuxConfig, staging: Staging, scratch: Path) -> DownloadResult:
    """Download the archive into ``scratch`` (mirrors, checksum gate) and stage it for the next steps.

    A ``.part`` left by a dropped connection is resumed within this call; a retried task gets a
    fresh scratch (maybe on another worker) and starts over.

    Returns:
        The download's facts; ``path`` is the staged archive's URI.
    """
    fetched = fetch_aux(config=config, dest_dir=Path(scratch) / "download")
    uri = staging.put_file(Path(fetched.path), staged_archive(config))
    return dataclasses.replace(fetched, path=uri)


def _local_archive(config: AuxConfig, staging: Staging, scratch: Path) -> Path:
    return staging.get_file(staged_archive(config), Path(scratch) / "download" / config.filename)


def verify_archive(*, config: AuxConfig, staging: Staging, scratch: Path) -> dict[str, Any]:
    """Re-check the staged archive against the accepted checksums.

    Returns:
        ``path`` (the staged archive's URI), ``md5``, ``sha256``, ``size``.

    Raises:
        ChecksumMismatch: the staged bytes are not the accepted ones.
        StorageError: nothing is staged (the download did not finish).
    """
    digests = verify_aux_archive(config=config, archive=_local_archive(config, staging, scratch))
    return {"path": staging.uri(staged_archive(config)), **digests}


def _extract(config: AuxConfig, staging: Staging, scratch: Path) -> ExtractResult:
    return extract_archive(archive=_local_archive(config, staging, scratch), dest=Path(scratch) / "extracted")


def extract_archive_check(*, config: AuxConfig, staging: Staging, scratch: Path) -> ExtractResult:
    """Safely extract the staged archive into ``scratch``: fails on an unsafe or broken archive.

    Returns:
        The counts; ``path`` is the staged archive's URI (the later steps re-derive the folder from it).
    """
    return dataclasses.replace(_extract(config, staging, scratch), path=staging.uri(staged_archive(config)))


def validate_archive(*, config: AuxConfig, staging: Staging, scratch: Path) -> AuxValidation:
    """Extract the staged archive into ``scratch`` and check the 8 files (:func:`validate_aux_dir`).

    Returns:
        The counts; ``path`` is the staged archive's URI.

    Raises:
        ValidationError: naming the file, the check that failed and the offending line.
    """
    checked = validate_aux_dir(Path(_extract(config, staging, scratch).path))
    return dataclasses.replace(checked, path=staging.uri(staged_archive(config)))


def publish_archive(
    *, config: AuxConfig, staging: Staging, scratch: Path, sink: Sink, archive: Mapping[str, Any]
) -> AuxPublished:
    """Extract the staged, validated archive into ``scratch`` and publish its 8 files (:func:`publish_aux`).

    Args:
        archive: the download's facts (``md5``, ``sha256``, ``size`` in the cache key; ``url``,
            ``etag``, ``last_modified`` recorded as the provenance).
    """
    folder = Path(_extract(config, staging, scratch).path)
    return publish_aux(extracted_dir=folder, sink=sink, config=config, archive=archive)
