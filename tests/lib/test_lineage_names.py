"""Asset names of published artifacts: readable, one per sink, the same on every run (issue 13 item 6)."""

from __future__ import annotations

from pathlib import Path

from imagenet_ops.core.lineage import artifact_uri, asset_name
from imagenet_ops.core.manifest import asset_uri
from imagenet_ops.core.sinks import LocalSink


def test_a_name_says_the_artifact_its_variant_and_which_sink():
    assert asset_name("imagenet_aux", "s3://bucket/aux").startswith("imagenet_aux@s3:")
    model = asset_name("resnet50_model", "file:///a/resnet50_model/onnx-fp32-argmax-opset11", variant="onnx-fp32-argmax-opset11")
    assert model.startswith("resnet50_model/onnx-fp32-argmax-opset11@file:")
    assert len(model.rpartition(":")[2]) == 8


def test_two_sinks_of_one_artifact_have_two_names_and_one_sink_keeps_its_name():
    # Airflow keeps names and URIs each unique among active assets: one name per sink, or one is never activated
    local, s3 = asset_name("imagenet_aux", "file:///data/aux"), asset_name("imagenet_aux", "s3://bucket/aux")
    assert local != s3
    assert asset_name("imagenet_aux", "s3://bucket/aux") == s3, "a pure function of artifact and URI"
    variants = {asset_name("resnet50_model", f"s3://b/m/{v}", variant=v) for v in ("onnx-fp32", "tflite-fp32")}
    assert len(variants) == 2


def test_an_inlet_location_gives_the_uri_its_producer_published(tmp_path: Path):
    # a consumer's aux_path, as the user typed it, must name the asset imagenet_aux's event carried
    (tmp_path / "aux").mkdir()
    assert artifact_uri(str(tmp_path / "x" / ".." / "aux")) == asset_uri(LocalSink(tmp_path / "aux"))
    assert artifact_uri("s3://bucket/imagenet/aux/") == "s3://bucket/imagenet/aux"
    assert artifact_uri("gs://bucket/aux") == "gs://bucket/aux"
    assert artifact_uri("file:///data/aux") == "file:///data/aux"
