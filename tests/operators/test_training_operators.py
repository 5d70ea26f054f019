"""Training-data operators: each reads the job dict, makes one library call and returns a small result."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from imagenet_operators import TrainingChecksumOperator, TrainingFinalizeOperator, TrainingPlanOperator, TrainingShardsOperator
from imagenet_ops.training.plan import PlanResult
from imagenet_ops.training.units import UnitResult
from imagenet_ops.training.variations import resolve_training_config

CONFIG = resolve_training_config({"train_shards": 4, "validation_shards": 2})
JOB = {
    "config": CONFIG.as_params(),
    "train": "s3://raw/ILSVRC2012_img_train.tar",
    "validation": "/data/ILSVRC2012_img_val.tar",
    "validation_labels": "/data/labels.txt",
    "aux_path": None,
    "source_conn_id": "raw_s3",
    "sink_uri": "/out/td",
    "conn_id": None,
    "work_dir": "/w/run",
    "tasks": 3,
}


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (TrainingChecksumOperator, {}),
        (TrainingPlanOperator, {"checked": {"a": "b"}}),
        (TrainingShardsOperator, {"group": [0, 1], "workers": 2}),
        (TrainingFinalizeOperator, {"plan": {"cache_key": "k"}}),
    ],
)
def test_template_fields_are_attributes(cls, kwargs):
    op = cls(task_id="t", job=JOB, **kwargs)
    assert "job" in op.template_fields and op.job is JOB
    for name in op.template_fields:
        assert getattr(op, name) is (JOB if name == "job" else kwargs[name])


def test_checksum_is_a_no_op_unless_asked():
    with mock.patch("imagenet_ops.training.inputs.check_archive_md5") as check:
        assert TrainingChecksumOperator(task_id="c", job=JOB).execute(context={}) == {}
    check.assert_not_called()


def test_plan_passes_inputs_store_and_sink():
    plan = PlanResult(False, "k", [[0, 1], [2]], {"train": 3, "validation": 2}, 3, "/out/td/.imagenet_ops/plan.json.gz")
    sink, store = object(), object()
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=store) as make_store,
        mock.patch("imagenet_ops.training.plan.plan_training", return_value=plan) as plan_training,
    ):
        out = TrainingPlanOperator(task_id="plan", job=JOB, checked={"x.tar": "m"}).execute(context={})
    make_sink.assert_called_once_with("/out/td", None)
    make_store.assert_called_once_with([JOB["train"], JOB["validation"], JOB["validation_labels"]], "raw_s3")
    plan_training.assert_called_once_with(
        config=CONFIG,
        sink=sink,
        train=JOB["train"],
        validation=JOB["validation"],
        validation_labels=JOB["validation_labels"],
        aux_path=None,
        work_dir=Path("/w/run"),
        tasks=3,
        store=store,
        checked={"x.tar": "m"},
    )
    assert out == plan.as_dict()


def test_shards_write_their_group_and_count_records():
    results = [
        UnitResult("train-00000-of-00004", "train", 5, ({"path": "train-00000-of-00004", "size": 9, "checksum": "s"},)),
        UnitResult(
            "train-00001-of-00004", "train", 4, ({"path": "train-00001-of-00004", "size": 8, "checksum": "t"},), skipped=True
        ),
    ]
    sink, store = object(), object()
    label = "train-00000-of-00004 … train-00001-of-00004 (2)"

    def write_units_(**kwargs):
        kwargs["on_group_label"](label)  # the library names the group before it writes
        return results

    from imagenet_ops.training.claims import GroupClaim

    ti = mock.Mock(try_number=3)
    context: dict = {"ti": ti, "dag": mock.Mock(dag_id="imagenet_training_data"), "run_id": "manual__1"}
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink),
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=store),
        mock.patch("imagenet_ops.training.pipeline.write_units", side_effect=write_units_) as write_units,
    ):
        out = TrainingShardsOperator(task_id="w", job=JOB, group=[0, 1], workers="2").execute(context=context)
    write_units.assert_called_once_with(
        sink=sink,
        indices=[0, 1],
        work_dir=Path("/w/run"),
        workers=2,
        store=store,
        on_group_label=mock.ANY,
        claim=GroupClaim(owner="imagenet_training_data/manual__1", attempt=3),  # this try claims its group
    )
    assert out == {"units": 2, "written": 1, "records": 9}
    # The mapped task's name in the UI (map_index_template="{{ shard_group }}").
    assert context["shard_group"] == label


def test_checksum_checks_every_single_tar_input_the_job_asks_for():
    job = {**JOB, "config": resolve_training_config({"check_md5": True}).as_params()}
    store = object()
    with (
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=store),
        mock.patch("imagenet_ops.training.inputs.check_archive_md5", return_value=mock.Mock(md5="m")) as check,
    ):
        out = TrainingChecksumOperator(task_id="c", job=job).execute(context={})
    assert out == {JOB["train"]: "m", JOB["validation"]: "m"}
    assert [c.kwargs["path"] for c in check.call_args_list] == [JOB["train"], JOB["validation"]]
    assert all(c.kwargs["store"] is store for c in check.call_args_list)
