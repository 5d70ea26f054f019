"""The Asset event of a publish: its readable name, and the artifacts the run read as inlets (issue 13 item 6).

Through Airflow's own outlet-event accessors (what a task's ``context["outlet_events"]`` is), so
the test sees what the task runner sends to the api-server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import AssetAlias, BaseOperator
from airflow.sdk.execution_time.context import OutletEventAccessors

from imagenet_operators.assets import emit_artifact_event
from imagenet_ops.core.lineage import asset_name
from imagenet_ops.core.manifest import PublishResult


def _result(uri: str, *, artifact: str, cache_hit: bool = False) -> PublishResult:
    return PublishResult(
        uri=uri,
        asset_uri=uri,
        manifest_uri=f"{uri}/manifest.json",
        cache_hit=cache_hit,
        cache_key="k" * 64,
        files=3,
        bytes=300,
        manifest={"artifact": artifact, "library_version": "0.1.0", "upstream": {}},
    )


def _emit(result: PublishResult, **kwargs) -> list:
    alias = AssetAlias(result.manifest["artifact"])
    op = BaseOperator(task_id="finalize", outlets=[alias])
    events = OutletEventAccessors()
    emit_artifact_event(op, {"outlet_events": events, "dag": None, "run_id": "manual__1"}, result, **kwargs)
    return events[alias].asset_alias_events


def test_a_model_variants_event_names_its_asset_by_artifact_variant_and_sink():
    uri = "s3://models/resnet50_model/onnx-fp32-argmax-opset11"
    (event,) = _emit(_result(uri, artifact="resnet50_model"), variant="onnx-fp32-argmax-opset11")
    assert (event.dest_asset_key.name, event.dest_asset_key.uri) == (
        asset_name("resnet50_model", uri, variant="onnx-fp32-argmax-opset11"),
        uri,
    )
    assert event.dest_asset_key.name.startswith("resnet50_model/onnx-fp32-argmax-opset11@s3:")
    assert "inlets" not in event.extra, "the model reads no published artifact"


def test_a_dataset_event_lists_the_aux_artifact_it_read_by_the_name_its_producer_gave_it(tmp_path: Path):
    aux = tmp_path / "aux"
    aux.mkdir()
    out = "gs://sets/imagenet_preprocessed"
    # the location as the user typed it (relative parts, trailing slash) still names the producer's Asset
    (event,) = _emit(_result(out, artifact="imagenet_preprocessed"), inlets={"imagenet_aux": f"{tmp_path}/x/../aux/"})
    assert event.extra["inlets"] == [{"name": asset_name("imagenet_aux", aux.as_uri()), "uri": aux.as_uri()}]
    assert event.dest_asset_key.name == asset_name("imagenet_preprocessed", out)


@pytest.mark.parametrize("inlets", [None, {"imagenet_aux": "s3://b/aux"}])
def test_a_cache_hit_emits_no_event(inlets):
    assert _emit(_result("s3://b/td", artifact="imagenet_training_data", cache_hit=True), inlets=inlets) == []
