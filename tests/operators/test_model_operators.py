"""Model operators: each rebuilds the variant's job, makes one library call and returns only its own result."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from imagenet_operators import ModelDownloadOperator, ModelLoadCheckOperator, ModelPrepareOperator, ModelPublishOperator
from imagenet_ops.model.interface import ModelCheckResult
from imagenet_ops.model.pipeline import FetchedFile, ModelFetched, ModelPrepared
from imagenet_ops.model.variations import ModelJob, resolve_model_config


@contextlib.contextmanager
def lease_passthrough(sink: object, context: object) -> Iterator[object]:
    """Stands in for the run's lease (tested for real in test_operator_leases.py)."""
    yield sink


CONFIG = resolve_model_config(variations="_tflite,_no-argmax")
JOB = {"config": CONFIG.as_params(), "work_dir": "/w/run/tflite", "sink_uri": "s3://b/m/tflite", "conn_id": "aws"}
FETCHED = ModelFetched((FetchedFile(filename="resnet50_v1.no-argmax.tflite", path="/w/x", url="u", size=1, md5="m", sha256="s"),))
PREPARED = ModelPrepared("/w/run/tflite/prepared", "f", None, ("f",))

OPERATORS = [
    (ModelDownloadOperator, {}),
    (ModelPrepareOperator, {"fetched": FETCHED.as_dict()}),
    (ModelLoadCheckOperator, {"prepared": PREPARED.as_dict()}),
    (ModelPublishOperator, {"fetched": FETCHED.as_dict(), "prepared": PREPARED.as_dict()}),
]


@pytest.mark.parametrize(("cls", "results"), OPERATORS, ids=lambda o: getattr(o, "__name__", ""))
def test_the_job_and_the_step_inputs_are_the_templated_fields(cls, results):
    op = cls(task_id="t", job=JOB, **results)
    assert op.template_fields == ("job", *results) and op.job is JOB
    for name, value in results.items():
        assert getattr(op, name) is value
    assert op.typed_job() == ModelJob(config=CONFIG, sink_uri="s3://b/m/tflite", conn_id="aws", work_dir="/w/run/tflite")


def test_download_passes_config_and_dest_dir():
    with mock.patch("imagenet_ops.model.pipeline.fetch_model", return_value=FETCHED) as fetch:
        out = ModelDownloadOperator(task_id="download", job=JOB).execute(context={})
    fetch.assert_called_once_with(config=CONFIG, dest_dir=Path("/w/run/tflite/download"))
    assert out == FETCHED.as_dict()
    assert out["files"][0] == {
        "filename": "resnet50_v1.no-argmax.tflite",
        "path": "/w/x",
        "url": "u",
        "size": 1,
        "md5": "m",
        "sha256": "s",
        "etag": None,
        "last_modified": None,
        "resumed_from": 0,
        "reused": False,
    }


def test_prepare_and_check_take_the_earlier_results_explicitly():
    with mock.patch("imagenet_ops.model.pipeline.prepare_model", return_value=PREPARED) as prepare:
        out = ModelPrepareOperator(task_id="prepare", job=JOB, fetched=FETCHED.as_dict()).execute(context={})
    prepare.assert_called_once_with(config=CONFIG, fetched=FETCHED, dest_dir=Path("/w/run/tflite/prepared"))
    assert out == {"dir": "/w/run/tflite/prepared", "model_file": "f", "starting_file": None, "files": ["f"]}

    check = ModelCheckResult("tflite", ["/w/f"], "tflite", {}, {}, "ok")
    with mock.patch("imagenet_ops.model.pipeline.check_prepared_model", return_value=check) as check_model:
        out2 = ModelLoadCheckOperator(task_id="load_check", job=JOB, prepared=out).execute(context={})
    check_model.assert_called_once_with(config=CONFIG, prepared=PREPARED)
    assert out2 == check.as_dict() and out2["summary"] == "ok"


def test_publish_builds_the_sink_from_the_connection_and_returns_the_env():
    from imagenet_ops.core.manifest import PublishResult
    from imagenet_ops.model.pipeline import ModelPublished

    result = PublishResult(
        uri="s3://b/m/tflite",
        asset_uri="s3://b/m/tflite",
        manifest_uri="s3://b/m/tflite/manifest.json",
        cache_hit=True,
        cache_key="k",
        files=1,
        bytes=3,
        manifest={"upstream": {}},
    )
    sink = object()
    context: dict = {"outlet_events": {}}
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
        mock.patch("imagenet_operators.leases.publishing", side_effect=lease_passthrough) as lease,
        mock.patch(
            "imagenet_ops.model.pipeline.publish_model", return_value=ModelPublished(result, {"CM_ML_MODEL": "RESNET50"})
        ) as publish,
    ):
        op = ModelPublishOperator(task_id="publish", job=JOB, fetched=FETCHED.as_dict(), prepared=PREPARED.as_dict())
        out = op.execute(context=context)
    make_sink.assert_called_once_with("s3://b/m/tflite", "aws")
    lease.assert_called_once_with(sink, context)  # the publish runs under the run's lease
    publish.assert_called_once_with(config=CONFIG, prepared=PREPARED, fetched=FETCHED, sink=sink)
    assert out == {"CM_ML_MODEL": "RESNET50"}
