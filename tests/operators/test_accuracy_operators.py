"""The accuracy operators' shape, and how a run picks the pair it checks (the form's, the newest published, the defaults)."""

from __future__ import annotations

import pytest

from imagenet_operators.accuracy import (
    AccuracyCleanupOperator,
    AccuracyPlanOperator,
    AccuracyPublishOperator,
    AccuracyScoreOperator,
    NothingToPair,
    newest_fitting,
    pair_locations,
)

OPERATORS = [
    AccuracyPlanOperator(task_id="plan", job={}),
    AccuracyScoreOperator(task_id="score", job={}, chunk=0),
    AccuracyPublishOperator(task_id="publish", job={}, plan={}),
    AccuracyCleanupOperator(task_id="cleanup", job=None),
]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda o: type(o).__name__)
def test_template_fields_are_constructor_attributes(op):
    assert op.template_fields and all(hasattr(op, name) for name in op.template_fields)


@pytest.fixture
def sink_root(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGENET_OPS_SINK_ROOT", str(tmp_path))
    return tmp_path


NEWEST = {"resnet50_model": "s3://b/models/tflite-fp32-no-argmax", "imagenet_preprocessed": "s3://b/sets/nhwc"}


def test_a_manual_run_with_empty_inputs_checks_the_default_variant_on_the_default_set(sink_root):
    paired = pair_locations({"model": None, "preprocessed": None, "sink_uri": None}, triggered=False, latest=NEWEST)
    assert paired["model"] == f"{sink_root}/resnet50_model/onnx-fp32-argmax-opset11"
    assert paired["preprocessed"] == f"{sink_root}/imagenet_preprocessed"
    assert paired["sink_uri"] == f"{sink_root}/imagenet_accuracy/onnx-fp32-argmax-opset11__imagenet_preprocessed"


def test_an_asset_triggered_run_pairs_the_newest_variant_with_the_newest_set(sink_root):
    paired = pair_locations({"model": None, "preprocessed": None, "sink_uri": "s3://b/acc"}, triggered=True, latest=NEWEST)
    assert (paired["model"], paired["preprocessed"], paired["sink_uri"]) == (*NEWEST.values(), "s3://b/acc")


def test_the_forms_inputs_win(sink_root):
    given = {"model": "/m/onnx", "preprocessed": None, "sink_uri": None}
    paired = pair_locations(given, triggered=True, latest=NEWEST)
    assert (paired["model"], paired["preprocessed"]) == ("/m/onnx", NEWEST["imagenet_preprocessed"])
    assert paired["sink_uri"] == f"{sink_root}/imagenet_accuracy/onnx__nhwc"


def test_an_asset_triggered_run_before_any_variant_has_nothing_to_pair(sink_root):
    with pytest.raises(NothingToPair, match="no resnet50_model has been published yet"):
        pair_locations({"model": None, "preprocessed": None}, triggered=True, latest={"imagenet_preprocessed": "/s"})


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The default ONNX variant (NCHW) and two sets: an NCHW one and a newer NHWC one."""
    from imagenet_ops.testing import accuracy_samples as samples

    root = tmp_path_factory.mktemp("published")
    labels = {f"ILSVRC2012_val_{i:08d}.JPEG": i * 7 for i in range(1, 5)}
    sets = {
        layout: samples.publish_set(str(root / layout), labels, work_dir=root / f"work-{layout}", tags=tags)
        for layout, tags in (("nchw", ""), ("nhwc", "_NHWC"))
    }
    return {"model": samples.publish_onnx_variant(root / "onnx"), **sets}


def test_a_new_variant_is_checked_on_the_newest_set_that_fits_it_not_the_newest_set(published):
    recent = {
        "resnet50_model": [(published["model"], 3)],
        "imagenet_preprocessed": [(published["nhwc"], 2), (published["nchw"], 1)],
    }
    chosen = newest_fitting({"model": None, "preprocessed": None}, recent)
    assert chosen == {"resnet50_model": published["model"], "imagenet_preprocessed": published["nchw"]}


def test_a_new_set_that_no_variant_fits_has_nothing_to_pair(published):
    """The NHWC set published last: the NCHW variant cannot read it, so the run has nothing to check (a skip)."""
    recent = {"resnet50_model": [(published["model"], 1)], "imagenet_preprocessed": [(published["nhwc"], 2)]}
    with pytest.raises(
        NothingToPair, match=r"fits none of the 1 newest published resnet50_model.*an NHWC set into an NCHW model"
    ):
        newest_fitting({"model": None, "preprocessed": None}, recent)


def test_the_forms_side_stays_fixed_and_the_other_is_searched(published):
    recent = {"resnet50_model": [], "imagenet_preprocessed": [(published["nhwc"], 2), (published["nchw"], 1)]}
    chosen = newest_fitting({"model": published["model"], "preprocessed": None}, recent)
    assert chosen == {"resnet50_model": published["model"], "imagenet_preprocessed": published["nchw"]}


def test_without_an_event_of_each_nothing_is_read_and_pair_locations_names_the_missing_one():
    chosen = newest_fitting({"model": None, "preprocessed": None}, {"resnet50_model": [], "imagenet_preprocessed": [("/s", 1)]})
    assert chosen == {"resnet50_model": None, "imagenet_preprocessed": "/s"}
    with pytest.raises(NothingToPair, match="no resnet50_model has been published yet"):
        pair_locations({"model": None, "preprocessed": None}, triggered=True, latest=chosen)
