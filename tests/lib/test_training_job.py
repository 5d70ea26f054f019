"""The training job: declared once (inputs with their form titles), resolved from the form, round-tripped through XCom."""

from __future__ import annotations

import json

import pytest

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.training.units import group_label
from imagenet_ops.training.variations import TrainingJob, resolve_job, resolve_training_config

FORM = {
    "implementation": "reference",
    "train_shards": 4,
    "validation_shards": 2,
    "train": "s3://raw/ILSVRC2012_img_train.tar",
    "validation": "/data/ILSVRC2012_img_val.tar",
    "validation_labels": None,
    "aux_path": "/aux",
    "source_conn_id": "raw_s3",
    "parallel_tasks": 3,
    "workers": 0,
    "sink_uri": None,
    "conn_id": None,
}


def _resolve(form):
    return resolve_job(form, sink_uri="/out/td", conn_id=None, work_dir="/w/run")


def test_the_job_dict_has_the_keys_the_resolve_task_always_returned():
    data = _resolve(FORM).to_xcom()
    assert set(data) == {
        "config",
        "train",
        "validation",
        "validation_labels",
        "aux_path",
        "source_conn_id",
        "sink_uri",
        "conn_id",
        "work_dir",
        "tasks",
    }
    assert data["config"] == resolve_training_config({"train_shards": 4, "validation_shards": 2}).as_params()
    assert (data["train"], data["aux_path"], data["source_conn_id"], data["tasks"]) == (FORM["train"], "/aux", "raw_s3", 3)
    assert TrainingJob.from_xcom(json.loads(json.dumps(data))) == _resolve(FORM)


def test_inputs_are_declared_once_in_form_order_with_titles():
    assert [(f.name, f.metadata["title"]) for f in TrainingJob.inputs()] == [
        ("train", "Train images"),
        ("validation", "Validation images"),
        ("validation_labels", "Validation labels file"),
        ("aux_path", "Aux artifact folder"),
    ]
    assert _resolve(FORM).input_locations() == [FORM["train"], FORM["validation"], "/aux"]


def test_no_images_or_a_bad_variation_fail_in_resolve():
    with pytest.raises(ConfigError, match="give train and/or validation images"):
        _resolve({**FORM, "train": None, "validation": ""})
    with pytest.raises(ConfigError, match="layout split"):
        _resolve({**FORM, "implementation": "nvidia", "layout": "split"})


def test_a_mapped_writer_is_named_by_its_first_and_last_unit():
    assert group_label([]) == "no units"
    assert group_label(["train-00000-of-00004"]) == "train-00000-of-00004"
    names = ["train-00000-of-00004", "train-00001-of-00004"]
    assert group_label(names) == "train-00000-of-00004 … train-00001-of-00004 (2)"


@pytest.mark.parametrize(
    ("change", "uses_aux"),
    [
        ({}, True),  # validation images, no labels file: the aux artifact labels them
        ({"validation_labels": "/labels.txt"}, False),  # a labels file wins over the aux artifact
        ({"validation": None}, False),  # no validation split: no labels read at all
        ({"validation_shards": 0}, False),  # the validation split skipped
        ({"aux_path": None}, False),  # labels downloaded from labels_url
    ],
)
def test_the_aux_artifact_is_an_upstream_artifact_only_when_it_labels_the_validation_split(change, uses_aux):
    # issue 13 item 6: the publishing task names the aux artifact as its inlet only when the run read it
    job = _resolve({**FORM, **change})
    assert job.upstream_artifacts() == ({"imagenet_aux": "/aux"} if uses_aux else {})
