"""Operators for the training data (TFRecords / RecordIO): md5 check, plan, mapped shard writers, finalize.

A *job* is the dict the resolve task makes (``config``, inputs, ``sink_uri``, ``conn_id``,
``source_conn_id``, ``work_dir``, ``tasks``); every step gets it whole, so a mapped writer on any
worker has what it needs. The plan itself lives in the sink (``.imagenet_ops/plan.json.gz``), not in XCom.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.leases import LeasedJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def group_label(names: Sequence[str]) -> str:
    """``train-00000-of-01024 … train-00127-of-01024 (128)``: what a mapped task is called in the UI."""
    if not names:
        return "no units"
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)})"


class _TrainingJobOperator(LeasedJobOperator):
    input_keys = ("train", "validation", "validation_labels", "aux_path")

    def _config(self) -> Any:
        from imagenet_ops.training.pipeline import TrainingConfig

        return TrainingConfig.from_params(self.job["config"])


class TrainingChecksumOperator(_TrainingJobOperator):
    """Check the md5 of the big input tars when the job asks for it (CM's ``md5sum -c``); otherwise a no-op.

    :param job: the job dict from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.training.pipeline import archives_to_check, check_archive_md5

        config = self._config()
        if not config.check_md5:
            self.log.info("md5 check of the input tars is off (check_md5=false)")
            return {}
        todo = archives_to_check(train=self.job.get("train"), validation=self.job.get("validation"), config=config)
        if not todo:
            self.log.info("no single-tar inputs to check (folders have no published md5)")
        store = self._store()
        return {path: check_archive_md5(path=path, expected=md5, store=store).md5 for path, md5 in todo}


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
        from imagenet_ops.training.pipeline import plan_training

        plan = plan_training(
            config=self._config(),
            sink=self._sink(),
            train=self.job.get("train"),
            validation=self.job.get("validation"),
            validation_labels=self.job.get("validation_labels"),
            aux_path=self.job.get("aux_path"),
            work_dir=Path(self.job["work_dir"]),
            tasks=int(self.job["tasks"]),
            store=self._store(),
            checked=self.checked or {},
        )
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
        from imagenet_ops.training.pipeline import load_plan, write_units

        sink, indices = self._sink(), list(self.group)
        plan = load_plan(sink)
        context["shard_group"] = group_label([plan.units[i].name for i in indices])  # the mapped task's name in the UI
        results = write_units(
            sink=sink,
            plan=plan,
            indices=indices,
            work_dir=Path(self.job["work_dir"]),
            workers=int(self.workers) or os.cpu_count() or 1,
            store=self._store(),
        )
        written = [r for r in results if not r.skipped]
        self.log.info(
            "Group done: %d units written (%d records), %d already complete",
            len(written),
            sum(r.records for r in written),
            len(results) - len(written),
        )
        return {"units": len(results), "written": len(written), "records": sum(r.records for r in results)}


class TrainingFinalizeOperator(_TrainingJobOperator):
    """Verify every unit's record count, write the manifest, and return the CM env dict.

    :param job: the job dict from the resolve task. (templated)
    :param plan: the plan task's result (cache key, counts). (templated)
    """

    template_fields: Sequence[str] = ("job", "plan")
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], plan: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.training.pipeline import finalize_training

        done = finalize_training(sink=self._sink(), cache_key=self.plan["cache_key"], store=self._store())
        emit_artifact_event(self, context, done.publish)
        self.log.info(
            "Training data: %d train + %d validation images in %d files at %s",
            done.counts.get("train", 0),
            done.counts.get("validation", 0),
            done.publish.files,
            done.publish.uri,
        )
        return done.env
