"""Model operators: each reads the variant dict, makes one library call and returns the dict plus its result."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from imagenet_operators import ModelDownloadOperator, ModelLoadCheckOperator, ModelPrepareOperator, ModelPublishOperator
from imagenet_ops.model.pipeline import resolve_model_config


@contextlib.contextmanager
def lease_passthrough(sink: object, context: object) -> Iterator[object]:
    """Stands in for the run's lease (tested for real in test_operator_leases.py)."""
    yield sink


CONFIG = resolve_model_config(variations="_tflite,_no-argmax")
VARIANT = {"config": CONFIG.as_params(), "work_dir": "/w/run/tflite", "sink_uri": "s3://b/m/tflite", "conn_id": "aws"}


@pytest.mark.parametrize("cls", [ModelDownloadOperator, ModelPrepareOperator, ModelLoadCheckOperator, ModelPublishOperator])
def test_variant_is_the_templated_field(cls):
    op = cls(task_id="t", variant=VARIANT)
    assert op.template_fields == ("variant",) and op.variant is VARIANT


def test_download_passes_config_and_dest_dir():
    fetched = [{"filename": "resnet50_v1.no-argmax.tflite", "path": "/w/x", "size": 1, "md5": "m", "url": "u"}]
    with mock.patch("imagenet_ops.model.pipeline.fetch_model", return_value=fetched) as fetch:
        out = ModelDownloadOperator(task_id="download", variant=VARIANT).execute(context={})
    fetch.assert_called_once_with(config=CONFIG, dest_dir=Path("/w/run/tflite/download"))
    assert out == {**VARIANT, "fetched": fetched}


def test_prepare_and_check_chain_the_variant():
    variant = {**VARIANT, "fetched": [{"filename": "f", "path": "/w/f"}]}
    prepared = {"dir": "/w/run/tflite/prepared", "model_file": "f", "starting_file": None, "files": ["f"]}
    with mock.patch("imagenet_ops.model.pipeline.prepare_model", return_value=prepared) as prepare:
        out = ModelPrepareOperator(task_id="prepare", variant=variant).execute(context={})
    prepare.assert_called_once_with(config=CONFIG, fetched=variant["fetched"], dest_dir=Path("/w/run/tflite/prepared"))
    assert out == {**variant, "prepared": prepared}

    check = {"framework": "tflite", "summary": "ok"}
    with mock.patch("imagenet_ops.model.pipeline.check_prepared_model", return_value=check) as check_model:
        out2 = ModelLoadCheckOperator(task_id="load_check", variant=out).execute(context={})
    check_model.assert_called_once_with(config=CONFIG, prepared=prepared)
    assert out2 == {**out, "check": check}


def test_publish_builds_the_sink_from_the_connection_and_returns_the_env():
    from imagenet_ops.core.storage import PublishResult
    from imagenet_ops.model.pipeline import ModelPublished

    variant = {**VARIANT, "fetched": [{"filename": "f"}], "prepared": {"dir": "/w/p", "model_file": "f"}, "check": {}}
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
        out = ModelPublishOperator(task_id="publish", variant=variant).execute(context=context)
    make_sink.assert_called_once_with("s3://b/m/tflite", "aws")
    lease.assert_called_once_with(sink, context)  # the publish runs under the run's lease
    publish.assert_called_once_with(config=CONFIG, prepared=variant["prepared"], fetched=variant["fetched"], sink=sink)
    assert out == {"CM_ML_MODEL": "RESNET50"}
