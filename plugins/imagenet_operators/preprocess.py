"""Operators for preprocessed ImageNet sets: inputs, selection + cache check, mapped chunks, finalize.

The job is :class:`imagenet_ops.preprocessed.job.PreprocessJob` (its ``to_xcom`` dict between
tasks); each ``execute`` rebuilds it and makes one call into :mod:`imagenet_ops.preprocessed.steps`.
The selected images, split into chunks, are kept in the sink (``.chunks/plan-%05d.json``), so a
mapped chunk task on any worker reads its own rows there, and its per-file result goes back there
(``.chunks/chunk-%05d.json``); XCom carries only chunk indices and counts. What the inputs task
downloads is staged in the run's staging area in the sink (workers share no disk), and
:class:`PreprocessCleanupOperator` removes that area at the end of the run, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.capacity import task_processes
from imagenet_operators.job import RunCleanupOperator
from imagenet_operators.leases import LeasedJobOperator
from imagenet_operators.links import ARTIFACT_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context


class _PreprocessJobOperator(LeasedJobOperator):
    job_type = "imagenet_ops.preprocessed.job:PreprocessJob"


class PreprocessInputsOperator(_PreprocessJobOperator):
    """Fetch what the job lacks and stage it in the run's staging area: the validation tar (``images``
    empty), the calibration list, the aux ``val.txt`` of an object-storage aux folder.

    Downloads go through mirrors with resume and md5 checks, into this task's own scratch (removed
    after). Returns the job naming the staged locations, so any worker can read them.

    :param job: the job dict from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.steps import fetch_job_inputs

        job = fetch_job_inputs(self.typed_job(), staging=self._staging(context), store=self._store())
        self.log.info("Inputs: images %s, labels %s, calibration list %s", job.images, job.val_map, job.calibration_list)
        return job.to_xcom()


class PreprocessSelectOperator(_PreprocessJobOperator):
    """Select the set's images (first N of the list), check the cache, and store the chunks in the sink.

    :param job: the job dict from the inputs task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.steps import select_chunks

        sink = self._sink()
        selection = select_chunks(self.typed_job(), sink=sink, store=self._store())
        self.log.info(
            "%s at %s: %d images in %d chunks; cache key %s",
            "Cache hit" if selection.hit else "Selected",
            sink.uri,
            selection.images,
            len(selection.chunks),
            selection.cache_key[:12],
        )
        return selection.as_dict()


def chunk_label(index: int, names: Sequence[str]) -> str:
    """``chunk 3: 500 images, ILSVRC2012_val_00001501.JPEG … ILSVRC2012_val_00002000.JPEG``."""
    if not names:
        return f"chunk {index}: no images"
    span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    return f"chunk {index}: {len(names)} image{'' if len(names) == 1 else 's'}, {span}"


def _task_namer(context: Context, index: int) -> Callable[[Sequence[str]], None]:
    """Names the mapped task in the UI (``map_index_template="{{ chunk_images }}"``) once its plan is read."""

    def name(names: Sequence[str]) -> None:
        context["chunk_images"] = chunk_label(index, names)

    return name


class PreprocessChunkOperator(_PreprocessJobOperator):
    """Preprocess one chunk: read its images from the source, write its outputs to the sink.

    A retried chunk rewrites exactly its own files (each written to a temporary name and renamed).

    :param job: the job dict from the inputs task. (templated)
    :param chunk: index of the chunk in the stored plan. (templated)
    :param workers: processes; 0 means all cores. (templated)
    """

    template_fields: Sequence[str] = ("job", "chunk", "workers")

    def __init__(self, *, job: Mapping[str, Any], chunk: int, workers: int | str = 0, **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.chunk = chunk
        self.workers = workers

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.steps import run_chunk

        index = int(self.chunk)
        result = run_chunk(
            self.typed_job(),
            index=index,
            sink=self._sink(),
            workers=task_processes(self.workers),
            store=self._store(),
            on_plan=_task_namer(context, index),
        )
        self.log.info("Chunk %d: %d images, %d bad, in %.1f s", index, result.count, len(result.bad), result.seconds)
        return result.summary()


class PreprocessFinalizeOperator(_PreprocessJobOperator):
    """Write the list files, ``val_map.txt`` and the manifest; return the CM env dict (the cache hit's too).

    :param job: the job dict from the inputs task. (templated)
    :param selection: the select task's result (chunk indices; the results are read from the sink). (templated)
    """

    operator_extra_links = ARTIFACT_LINKS  # the artifact folder and its manifest.json
    template_fields: Sequence[str] = ("job", "selection")
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        job: Mapping[str, Any],
        selection: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(job=job, **kwargs)
        self.selection = selection

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.preprocessed.steps import finalize_chunks

        job = self.typed_job()
        publish, env = finalize_chunks(
            job, sink=self._sink(), selection=self.selection, staging=self._staging(context), store=self._store()
        )
        # a cache hit is logged, with no Asset event; the aux artifact is an inlet when it labelled the set
        emit_artifact_event(self, context, publish, inlets=job.upstream_artifacts())
        self.log.info("Preprocessed set: %s images at %s", env.get("CM_DATASET_SIZE"), publish.uri)
        return env


class PreprocessCleanupOperator(RunCleanupOperator):
    """Remove the run's staging area (the staged downloads) and this host's run folder; runs whatever happened upstream.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    job_type = "imagenet_ops.preprocessed.job:PreprocessJob"
