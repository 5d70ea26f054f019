"""The DAG's steps of a preprocessed set, one call per task, each on the run's :class:`PreprocessJob`.

They run the pipeline's own steps (:mod:`.sources`, :mod:`.pipeline`, :mod:`.chunks`) and keep
what passes between tasks in the sink rather than XCom: the selected images as chunk plans
(``.chunks/plan-%05d.json``) and each chunk's per-file result (``.chunks/chunk-%05d.json``); XCom
carries only the job, chunk indices and counts.

Workers share no disk, so no step reads a local file another wrote. What the inputs step fetches
(the validation tar, the calibration list, an object-storage aux ``val.txt``) is put in the run's
staging area in the sink (:class:`~imagenet_ops.core.staging.Staging`) and the job it hands on
names those staged locations: the tar is then read in place on a local sink, by range through the
``ObjectStore`` on S3/GCS (never downloaded again), and the small list files are fetched into the
reading step's own scratch. Each step's scratch is a temporary folder under the job's work dir,
removed when the step ends; :func:`imagenet_ops.core.staging.clean_up_run` removes the staging
area at the end of the run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ConfigError, StorageError
from imagenet_ops.core.manifest import PublishResult, read_manifest
from imagenet_ops.core.sinks import Sink
from imagenet_ops.core.staging import task_scratch
from imagenet_ops.preprocessed.chunks import (
    ChunkResult,
    load_chunk_plan,
    load_chunk_results,
    plan_chunks,
    preprocess_chunk,
    remove_chunk_state,
    save_chunk_plan,
    save_chunk_result,
)
from imagenet_ops.preprocessed.job import PreprocessJob
from imagenet_ops.preprocessed.pipeline import cached_set, finalize_preprocessed, select_set
from imagenet_ops.preprocessed.sources import fetch_inputs, local_copy

log = logging.getLogger(__name__)

IMAGES_SOURCE = "images/source.txt"
"""Staged next to a downloaded tar: the URL it came from (the manifest's ``provenance.source``)."""


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def fetch_job_inputs(job: PreprocessJob, *, staging: Any = None, store: Any = None) -> PreprocessJob:
    """The job with its inputs present: what was fetched is staged, and the job names the staged copies.

    See :func:`~imagenet_ops.preprocessed.sources.fetch_inputs`. Downloads go to this step's own
    scratch, then into ``staging`` (the run's :class:`~imagenet_ops.core.staging.Staging`) as
    ``images/<tar>``, ``calibration/<list>`` and ``aux/val.txt``; a downloaded tar's URL is staged
    as ``images/source.txt`` for the manifest.

    Raises:
        ConfigError: something had to be fetched but no staging area was given.
    """
    with task_scratch(job.work_dir) as scratch:
        inputs = fetch_inputs(
            config=job.config,
            images=job.images,
            work_dir=scratch,
            val_map=_path(job.val_map),
            aux_path=job.aux_path,
            calibration_list=_path(job.calibration_list),
            store=store,
        )
        found = {"images": inputs.images, "val_map": inputs.val_map, "calibration_list": inputs.calibration_list}
        fetched = {name: Path(v) for name, v in found.items() if v and scratch in Path(v).parents}
        if fetched and staging is None:
            raise ConfigError(f"fetched {', '.join(fetched)} but have no staging area to hand them on")
        staged = {name: staging.put_file(path, path.relative_to(scratch).as_posix()) for name, path in fetched.items()}
        if "images" in staged:
            (scratch / "source.txt").write_text(str(inputs.source))
            staging.put_file(scratch / "source.txt", IMAGES_SOURCE)
    return dataclasses.replace(  # given values stay as given; only what was fetched is filled in
        job,
        images=staged.get("images", inputs.images),
        val_map=job.val_map or staged.get("val_map") or (str(inputs.val_map) if inputs.val_map else None),
        calibration_list=job.calibration_list or staged.get("calibration_list"),
        labels_from_aux=bool(job.upstream_artifacts()),  # val_map is now the aux's val.txt: the run's inlet
    )


@dataclass(frozen=True)
class Selection:
    """What :func:`select_chunks` found: a cache hit (no chunks) or the indices of the stored chunk plans."""

    hit: bool
    cache_key: str
    chunks: list[int]
    images: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def select_chunks(job: PreprocessJob, *, sink: Sink, store: Any = None) -> Selection:
    """Select the set's images, check the cache, and on a miss store ``job.chunks`` chunk plans in ``sink``.

    The list files are read in place when local, else fetched into this step's own scratch.
    """
    with task_scratch(job.work_dir) as scratch:
        items, cached = select_set(
            config=job.config,
            source=str(job.images),
            sink=sink,
            val_map=local_copy(job.val_map, dest_dir=scratch / "val_map", store=store),
            calibration_list=local_copy(job.calibration_list, dest_dir=scratch / "calibration", store=store),
            store=store,
        )
    if cached.hit:
        return Selection(hit=True, cache_key=cached.cache_key, chunks=[], images=len(items))
    count = save_chunk_plan(sink=sink, chunks=plan_chunks(items, int(job.chunks)))
    return Selection(hit=False, cache_key=cached.cache_key, chunks=list(range(count)), images=len(items))


def run_chunk(
    job: PreprocessJob,
    *,
    index: int,
    sink: Sink,
    workers: int,
    store: Any = None,
    on_plan: Callable[[Sequence[str]], None] | None = None,
) -> ChunkResult:
    """Preprocess the stored chunk ``index`` and store its result in ``sink`` next to its plan.

    Args:
        on_plan: called with the chunk's image names before any work (the mapped task's name in the UI).
    """
    items = load_chunk_plan(sink=sink, index=index)
    if on_plan is not None:
        on_plan([row[0] for row in items])
    result = preprocess_chunk(config=job.config, source=str(job.images), items=items, sink=sink, workers=workers, store=store)
    save_chunk_result(sink=sink, index=index, result=result)
    return result


def finalize_chunks(
    job: PreprocessJob,
    *,
    sink: Sink,
    selection: Mapping[str, Any],
    staging: Any = None,
    store: Any = None,
) -> tuple[PublishResult, dict[str, str]]:
    """Publish the set from the stored chunk plans and results; on a cache hit, the set already there.

    The chunk state is removed only after the manifest is written, so a retried finalize still finds it.

    Args:
        staging: the run's staging area: a downloaded tar's URL is read there for the manifest.
        store: reads list files the job names on S3/GCS (into this step's own scratch).

    Raises:
        StorageError: the manifest of a cache hit is gone, or a chunk's result is missing.
    """
    if selection["hit"]:
        manifest = read_manifest(sink)
        if manifest is None:
            raise StorageError(f"sink {sink.uri}: the manifest of the cache hit is gone")
        return cached_set(config=job.config, sink=sink, manifest=manifest)
    count = len(selection["chunks"])
    items = [row for index in range(count) for row in load_chunk_plan(sink=sink, index=index)]
    with task_scratch(job.work_dir) as scratch:
        published = finalize_preprocessed(
            config=job.config,
            sink=sink,
            items=items,
            chunk_results=load_chunk_results(sink=sink, count=count),
            val_map=local_copy(job.val_map, dest_dir=scratch / "val_map", store=store),
            calibration_list=local_copy(job.calibration_list, dest_dir=scratch / "calibration", store=store),
            source=images_source(job, staging=staging, scratch=scratch),
            store=store,
        )
    remove_chunk_state(sink=sink, count=count)
    return published


def images_source(job: PreprocessJob, *, staging: Any, scratch: Path) -> str | None:
    """What the manifest records as the images' source: the URL of a tar the inputs step downloaded
    and staged, else ``job.images`` as the user gave it (never a staging or scratch location)."""
    if staging is None or job.images != staging.uri(f"images/{job.config.images_filename}"):
        return job.images
    return staging.get_file(IMAGES_SOURCE, scratch / "source.txt").read_text()
