"""Operators for the training data (TFRecords / RecordIO): md5 check, plan, mapped shard writers, finalize.

A *job* is the :class:`~imagenet_ops.training.variations.TrainingJob` the resolve task makes
(config, inputs, sink, connections, work dir, writer tasks); every step gets it whole and rebuilds
it with :meth:`typed_job`, so a mapped writer on any worker has what it needs. The plan itself
lives in the sink (``.imagenet_ops/plan.json.gz``), not in XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.capacity import task_processes
from imagenet_operators.leases import LeasedJobOperator, run_owner
from imagenet_operators.links import ARTIFACT_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context


class _TrainingJobOperator(LeasedJobOperator):
    job_type = "imagenet_ops.training.variations:TrainingJob"


class TrainingChecksumOperator(_TrainingJobOperator):
    """Check the md5 of the big input tars when the job asks for it (CM's ``md5sum -c``); otherwise a no-op.

    :param job: the job dict from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.training.inputs import check_input_archives

        job = self.typed_job()
        store = self._store() if job.config.check_md5 else None  # no input clients for a no-op
        checked = check_input_archives(config=job.config, train=job.train, validation=job.validation, store=store)
        self.log.info("md5 check of the input tars (check_md5=%s): %d tar(s) matched", job.config.check_md5, len(checked))
        return checked


class TrainingPlanOperator(_TrainingJobOperator):
    """List the inputs straight from their tars, fix the global order, store the plan in the sink, group the units.

    :param job: the job dict from the resolve task. (templated)
    :param checked: md5 results of the checksum task, recorded in the manifest. (templated)
    """

    template_fields: Sequence[str] = ("job", "checked")

    def __init__(self, *, job: Mapping[str, Any], checked: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.checked = checked

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.training.plan import plan_training

        job = self.typed_job()
        plan = plan_training(
            config=job.config,
            sink=self._sink(),
            train=job.train,
            validation=job.validation,
            validation_labels=job.validation_labels,
            aux_path=job.aux_path,
            work_dir=Path(job.work_dir),
            tasks=int(job.tasks),
            store=self._store(),
            checked=self.checked or {},
        )
        self.log.info("Plan: %d units in %d groups%s", plan.units, len(plan.groups), " (cache hit)" if plan.cache_hit else "")
        return plan.as_dict()


class TrainingShardsOperator(_TrainingJobOperator):
    """Write one group of planned units (shards or RecordIO splits) to the sink; complete ones are skipped.

    :param job: the job dict from the resolve task. (templated)
    :param group: indices of the plan's units this task writes. (templated)
    :param workers: processes writing at once; 0 means all cores. (templated)
    """

    template_fields: Sequence[str] = ("job", "group", "workers")

    def __init__(self, *, job: Mapping[str, Any], group: Sequence[int], workers: int = 0, **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.group = group
        self.workers = workers

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.training.claims import GroupClaim
        from imagenet_ops.training.pipeline import write_units

        ti = context.get("ti")  # a try's claim on its group; contexts without a task instance write unclaimed
        claim = GroupClaim(owner=run_owner(context), attempt=int(ti.try_number)) if ti is not None else None
        results = write_units(
            sink=self._sink(),
            indices=list(self.group),
            work_dir=Path(self.typed_job().work_dir),
            workers=task_processes(self.workers),
            store=self._store(),
            on_group_label=lambda label: context.__setitem__("shard_group", label),  # map_index_template's name
            claim=claim,  # a try superseded by a newer one stops before its next unit
        )
        written = [r for r in results if not r.skipped]
        skipped, records = len(results) - len(written), sum(r.records for r in written)
        self.log.info("Group done: %d units written (%d records), %d already complete", len(written), records, skipped)
        return {"units": len(results), "written": len(written), "records": sum(r.records for r in results)}


class TrainingFinalizeOperator(_TrainingJobOperator):
    """Verify every unit's record count, write the manifest, and return the CM env dict.

    :param job: the job dict from the resolve task. (templated)
    :param plan: the plan task's result (cache key, counts). (templated)
    """

    operator_extra_links = ARTIFACT_LINKS  # the artifact folder and its manifest.json
    template_fields: Sequence[str] = ("job", "plan")
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], plan: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.training.pipeline import finalize_training

        done = finalize_training(sink=self._sink(), cache_key=self.plan["cache_key"], store=self._store())
        # the aux artifact is an inlet when it labelled the validation split
        emit_artifact_event(self, context, done.publish, inlets=self.typed_job().upstream_artifacts())
        self.log.info(
            "Training data: %d train + %d validation images in %d files at %s",
            done.counts.get("train", 0),
            done.counts.get("validation", 0),
            done.publish.files,
            done.publish.uri,
        )
        return done.env
