"""Training-data operators: each reads the job dict, makes one library call and returns a small result."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from imagenet_operators import TrainingChecksumOperator, TrainingFinalizeOperator, TrainingPlanOperator, TrainingShardsOperator
from imagenet_ops.training.pipeline import PlanResult, UnitResult, resolve_training_config

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
    with mock.patch("imagenet_ops.training.pipeline.check_archive_md5") as check:
        assert TrainingChecksumOperator(task_id="c", job=JOB).execute(context={}) == {}
    check.assert_not_called()


def test_plan_passes_inputs_store_and_sink():
    plan = PlanResult(False, "k", [[0, 1], [2]], {"train": 3, "validation": 2}, 3, "/out/td/.imagenet_ops/plan.json.gz")
    sink, store = object(), object()
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=store) as make_store,
        mock.patch("imagenet_ops.training.pipeline.plan_training", return_value=plan) as plan_training,
    ):
        out = TrainingPlanOperator(task_id="plan", job=JOB, checked={"x.tar": "m"}).execute(context={})
    make_sink.assert_called_once_with("/out/td", None)
    make_store.assert_called_once_with([JOB["train"], JOB["validation"], JOB["validation_labels"], None], "raw_s3")
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
    plan = mock.Mock(units=[mock.Mock(), mock.Mock()])
    plan.units[0].name, plan.units[1].name = "train-00000-of-00004", "train-00001-of-00004"
    context: dict = {}
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink),
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=store),
        mock.patch("imagenet_ops.training.pipeline.load_plan", return_value=plan) as load_plan,
        mock.patch("imagenet_ops.training.pipeline.write_units", return_value=results) as write_units,
    ):
        out = TrainingShardsOperator(task_id="w", job=JOB, group=[0, 1], workers="2").execute(context=context)
    load_plan.assert_called_once_with(sink)
    write_units.assert_called_once_with(sink=sink, plan=plan, indices=[0, 1], work_dir=Path("/w/run"), workers=2, store=store)
    assert out == {"units": 2, "written": 1, "records": 9}
    # The mapped task's name in the UI (map_index_template="{{ shard_group }}").
    assert context["shard_group"] == "train-00000-of-00004 … train-00001-of-00004 (2)"
