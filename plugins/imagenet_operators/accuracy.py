"""Operators of the accuracy check: plan (pair + cache check), score a chunk, publish, clean up.

The job is :class:`imagenet_ops.accuracy.job.AccuracyJob` (its ``to_xcom`` dict between tasks);
each ``execute`` rebuilds it and makes one call into :mod:`imagenet_ops.accuracy.pipeline`. The
chunks' scored rows go through the run's staging area in the sink (workers share no disk) and the
cleanup teardown removes it. Only a passing check (or a subset checked without an expectation)
adds an Asset event; a failing one is published for its report, then fails the publish task
naming the model, the set and measured vs expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.capacity import task_processes
from imagenet_operators.job import RunCleanupOperator
from imagenet_operators.leases import LeasedJobOperator
from imagenet_operators.links import ARTIFACT_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

JOB_TYPE = "imagenet_ops.accuracy.job:AccuracyJob"


RECENT_EVENTS = 10
"""How many of each artifact's newest Asset events an Asset-triggered run looks through for a pair that fits."""


class NothingToPair(Exception):
    """An Asset-triggered run with nothing to check: an artifact never published, or nothing that fits the newest."""


def newest_fitting(params: Mapping[str, Any], recent: Mapping[str, Sequence[tuple[str, Any]]]) -> dict[str, str | None]:
    """``artifact -> location`` for an Asset-triggered run: the newest artifact with the newest of the other that fits it.

    ``recent``: per artifact, its Asset events' ``(location, timestamp)``, newest first. A side the
    form gives is kept. The newest event's artifact stays fixed: a new NHWC TFLite variant is checked
    on the newest NHWC set, and a new calibration set (no labels) has nothing to check, so neither
    fails a scheduled run (:func:`imagenet_ops.accuracy.pair.newest_fitting_pair` reads the manifests).

    Raises:
        NothingToPair: nothing fits, or an artifact has no event yet (then :func:`pair_locations` names it).
    """
    from imagenet_operators import dag_helpers
    from imagenet_operators.sinks import store_from_connection
    from imagenet_ops.accuracy.job import MODEL_ARTIFACT, PREPROCESSED_ARTIFACT
    from imagenet_ops.accuracy.pair import NoFittingPair, newest_fitting_pair

    given = {MODEL_ARTIFACT: params.get("model"), PREPROCESSED_ARTIFACT: params.get("preprocessed")}
    found = {a: [given[a]] if given[a] else [loc for loc, _ in recent.get(a, ())] for a in given}
    if not all(found.values()) or all(given.values()):
        return {a: locations[0] if locations else None for a, locations in found.items()}
    if given[MODEL_ARTIFACT] or given[PREPROCESSED_ARTIFACT]:
        last = MODEL_ARTIFACT if given[MODEL_ARTIFACT] else PREPROCESSED_ARTIFACT
    else:
        newer_model = recent[MODEL_ARTIFACT][0][1] >= recent[PREPROCESSED_ARTIFACT][0][1]  # the newest events' timestamps
        last = MODEL_ARTIFACT if newer_model else PREPROCESSED_ARTIFACT
    models, sets = found[MODEL_ARTIFACT], found[PREPROCESSED_ARTIFACT]
    conn_id = params.get("source_conn_id") or dag_helpers.sink_conn_id(models[0], params.get("conn_id"))
    store = store_from_connection([*models, *sets], conn_id)
    try:
        model, data = newest_fitting_pair(store, models=models, sets=sets, published_last=last)
    except NoFittingPair as nothing:
        raise NothingToPair(str(nothing)) from None
    return {MODEL_ARTIFACT: model, PREPROCESSED_ARTIFACT: data}


def pair_locations(params: Mapping[str, Any], *, triggered: bool, latest: Mapping[str, str | None]) -> dict[str, Any]:
    """``params`` with the model and set to pair filled in when the form left them empty.

    An Asset-triggered run pairs the latest published variant with the latest published set
    (``latest``: artifact -> location of its newest Asset event); a manual run uses the default
    folders in the sink root (the default variant's folder for the model, as ``resnet50_model``
    publishes it).

    Raises:
        NothingToPair: an Asset-triggered run, and one of the two artifacts has no event yet.
    """
    from imagenet_operators import dag_helpers
    from imagenet_ops.accuracy.job import MODEL_ARTIFACT, PREPROCESSED_ARTIFACT
    from imagenet_ops.model.variations import MODEL_TABLE, resolve_model_config

    default_variant = resolve_model_config(MODEL_TABLE.selections({})).variant_id
    defaults = {
        "model": f"{dag_helpers.sink_uri(MODEL_ARTIFACT, None).rstrip('/')}/{default_variant}",
        "preprocessed": dag_helpers.sink_uri(PREPROCESSED_ARTIFACT, None),
    }
    artifacts = {"model": MODEL_ARTIFACT, "preprocessed": PREPROCESSED_ARTIFACT}
    filled = dict(params)
    for name, artifact in artifacts.items():
        if filled.get(name):
            continue
        if triggered and not latest.get(artifact):
            raise NothingToPair(f"no {artifact} has been published yet: the check runs once both a variant and a set exist")
        filled[name] = latest[artifact] if triggered else defaults[name]
    if not filled.get("sink_uri"):
        from imagenet_ops.accuracy.job import pair_folder

        base = dag_helpers.sink_uri("imagenet_accuracy", None)
        filled["sink_uri"] = f"{base.rstrip('/')}/{pair_folder(filled['model'], filled['preprocessed'])}"
    return filled


class _AccuracyJobOperator(LeasedJobOperator):
    job_type = JOB_TYPE


class AccuracyPlanOperator(_AccuracyJobOperator):
    """Read both manifests, refuse a pair that cannot fit (naming both), check for a published result.

    :param job: the job dict from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.accuracy.pipeline import plan_check

        plan = plan_check(self.typed_job(), sink=self._sink(), store=self._store())
        self.log.info(
            "%s: %d images in %d chunk(s); cache key %s",
            "Cache hit" if plan.hit else "Planned",
            plan.images,
            len(plan.chunks),
            plan.cache_key[:12],
        )
        return plan.as_dict()


class AccuracyScoreOperator(_AccuracyJobOperator):
    """Score one chunk of the set on the model's own runtime; its rows go to the run's staging area.

    :param job: the job dict from the resolve task. (templated)
    :param chunk: the chunk's index. (templated)
    :param workers: runtime threads; 0 means this task's share of the worker's cores. (templated)
    """

    template_fields: Sequence[str] = ("job", "chunk", "workers")

    def __init__(self, *, job: Mapping[str, Any], chunk: int, workers: int | str = 0, **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.chunk = chunk
        self.workers = workers

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_operators.preprocess import chunk_label
        from imagenet_ops.accuracy.pipeline import score_chunk
        from imagenet_ops.core.staging import task_scratch

        job = self.typed_job()
        index = int(self.chunk)
        context["chunk_images"] = f"chunk {index}"  # map_index_template: the image range once scored
        with task_scratch(job.work_dir, f"score-{index}") as scratch:
            score = score_chunk(
                job,
                index=index,
                sink=self._sink(),
                store=self._store(),
                staging=self._staging(context),
                threads=task_processes(self.workers),
                scratch=scratch,
            )
        context["chunk_images"] = chunk_label(index, [row[0] for row in score.rows])
        summary = score.summary()
        self.log.info(
            "Chunk %d: %d images, %d top-1 correct, in %.1f s", index, summary["images"], summary["top1_correct"], score.seconds
        )
        return summary


class AccuracyPublishOperator(_AccuracyJobOperator):
    """Merge the chunks, judge, publish ``accuracy.json`` and its report; return the env. A fail raises after publishing.

    :param job: the job dict from the resolve task. (templated)
    :param plan: the plan task's result. (templated)
    """

    operator_extra_links = ARTIFACT_LINKS  # the result folder, its manifest and its report
    template_fields: Sequence[str] = ("job", "plan")
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], plan: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.accuracy.pipeline import finalize_check, raise_unless_passed
        from imagenet_ops.core.staging import task_scratch

        job = self.typed_job()
        with task_scratch(job.work_dir, "publish") as scratch:
            publish, env, verdict = finalize_check(
                job, sink=self._sink(), store=self._store(), staging=self._staging(context), plan=self.plan, work_dir=scratch
            )
        self.log.info(
            "Accuracy: top-1 %s%% of %s images; %s",
            env["CM_MLPERF_ACCURACY_TOP1"],
            env["CM_MLPERF_ACCURACY_IMAGES"],
            verdict.message,
        )
        raise_unless_passed(verdict)  # a fail: published (its report can be read), no Asset event
        emit_artifact_event(self, context, publish, inlets=job.upstream_artifacts())
        return env


class AccuracyCleanupOperator(RunCleanupOperator):
    """Remove the run's staging area (the chunks' rows) and this host's run folder; runs whatever happened upstream.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    job_type = JOB_TYPE
