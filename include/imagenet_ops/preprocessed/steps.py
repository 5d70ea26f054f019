"""The DAG's steps of a preprocessed set, one call per task, each on the run's :class:`PreprocessJob`.

They run the pipeline's own steps (:mod:`.sources`, :mod:`.pipeline`, :mod:`.chunks`) and keep
what passes between tasks in the sink rather than XCom: the selected images as chunk plans
(``.chunks/plan-%05d.json``) and each chunk's per-file result (``.chunks/chunk-%05d.json``); XCom
carries only the job, chunk indices and counts. Workers share no disk, so no step reads a local
file another wrote, except the downloads in the run's shared work dir.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.manifest import PublishResult, read_manifest
from imagenet_ops.core.sinks import Sink
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
from imagenet_ops.preprocessed.sources import fetch_inputs

log = logging.getLogger(__name__)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _str(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def fetch_job_inputs(job: PreprocessJob, *, store: Any = None) -> PreprocessJob:
    """The job with its inputs present: downloads in its work dir, the aux labels as ``val_map``.

    See :func:`~imagenet_ops.preprocessed.sources.fetch_inputs`.
    """
    inputs = fetch_inputs(
        config=job.config,
        images=job.images,
        work_dir=Path(job.work_dir),
        val_map=_path(job.val_map),
        aux_path=job.aux_path,
        calibration_list=_path(job.calibration_list),
        store=store,
    )
    return dataclasses.replace(  # given values stay as given; only what was fetched is filled in
        job,
        images=inputs.images,
        val_map=job.val_map or _str(inputs.val_map),
        calibration_list=job.calibration_list or _str(inputs.calibration_list),
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
    """Select the set's images, check the cache, and on a miss store ``job.chunks`` chunk plans in ``sink``."""
    items, cached = select_set(
        config=job.config,
        source=str(job.images),
        sink=sink,
        val_map=_path(job.val_map),
        calibration_list=_path(job.calibration_list),
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


def finalize_chunks(job: PreprocessJob, *, sink: Sink, selection: Mapping[str, Any]) -> tuple[PublishResult, dict[str, str]]:
    """Publish the set from the stored chunk plans and results; on a cache hit, the set already there.

    The chunk state is removed only after the manifest is written, so a retried finalize still finds it.

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
    published = finalize_preprocessed(
        config=job.config,
        sink=sink,
        items=items,
        chunk_results=load_chunk_results(sink=sink, count=count),
        val_map=_path(job.val_map),
        calibration_list=_path(job.calibration_list),
        source=job.images,
    )
    remove_chunk_state(sink=sink, count=count)
    return published
