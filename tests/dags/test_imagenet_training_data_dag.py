"""``imagenet_training_data`` run for real with dag.test(): mapped shard groups to a local folder and to S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_ops.testing.samples import make_train_tar, make_val_tar, val_synset_labels
from imagenet_ops.training.report import REPORT_FILES
from imagenet_ops.training.tfrecord import iter_tfrecords

pytestmark = pytest.mark.slow

WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("in")
    labels = root / "imagenet_2012_validation_synset_labels.txt"
    labels.write_text(val_synset_labels(8, WNIDS))
    return {
        "train": str(make_train_tar(root / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=4, width=40, height=30)),
        "validation": str(make_val_tar(root / "ILSVRC2012_img_val.tar", count=8, width=32, height=24)),
        "validation_labels": str(labels),
    }


@pytest.fixture
def training_dag(airflow_db):
    from local_run import load_dag

    return load_dag("imagenet_training_data")


def _records(folder: Path) -> dict[str, int]:
    return {p.name: sum(1 for _ in iter_tfrecords(p)) for p in sorted(folder.glob("*-of-*"))}


def test_mapped_groups_to_a_local_folder_then_a_cache_hit(training_dag, inputs, tmp_path):
    from local_run import run_dag

    conf = {
        **inputs,
        "train_shards": 4,
        "validation_shards": 2,
        "parallel_tasks": 3,
        "workers": 1,
        "sink_uri": str(tmp_path / "td"),
    }
    run = run_dag(training_dag, conf)
    assert run.state == "success", run.task_states
    assert sorted(k for k in run.task_states if k.startswith("write_shards[")) == [f"write_shards[{i}]" for i in range(3)]
    env = run.xcom("finalize")
    assert env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == str(tmp_path / "td")
    assert (env["CM_MLPERF_TRAINING_RESNET_TRAIN_IMAGES"], env["CM_MLPERF_TRAINING_RESNET_VALIDATION_IMAGES"]) == ("12", "8")
    counts = _records(tmp_path / "td")
    assert counts == {
        **{f"train-{i:05d}-of-00004": 3 for i in range(4)},
        "validation-00000-of-00002": 4,
        "validation-00001-of-00002": 4,
    }
    manifest = json.loads((tmp_path / "td" / "manifest.json").read_text())
    assert {f["path"]: f["records"] for f in manifest["files"] if "records" in f and not f["path"].startswith("idx/")} == counts
    assert {f["path"]: f["records"] for f in manifest["files"] if f["path"].startswith("idx/")} == {
        f"idx/{name}.idx": n for name, n in counts.items()
    }, "every shard's DALI index is published and listed"
    assert sum(r["records"] for r in run.xcoms("write_shards")) == 20

    again = run_dag(training_dag, conf)
    assert again.state == "success", again.task_states
    assert again.xcom("plan")["cache_hit"] is True
    assert not any(k.startswith("write_shards[") for k in again.task_states), "a cache hit maps no writers"
    assert again.xcom("finalize") == env


def test_nvidia_to_s3_through_a_connection(training_dag, inputs, s3_bucket, s3_endpoint, monkeypatch):
    from local_run import run_dag

    client, bucket = s3_bucket
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_TEST_S3", json.dumps(conn))
    client.upload_file(inputs["train"], bucket, "raw/ILSVRC2012_img_train.tar")
    conf = {
        "train": f"s3://{bucket}/raw/ILSVRC2012_img_train.tar",
        "validation": inputs["validation"],
        "validation_labels": inputs["validation_labels"],
        "variations": "_nvidia",
        "sink_uri": f"s3://{bucket}/mxnet",
        "conn_id": "test_s3",
        "workers": 1,
    }
    run = run_dag(training_dag, conf)
    assert run.state == "success", run.task_states
    assert run.xcom("finalize")["CM_MLPERF_TRAINING_NVIDIA_RESNET_PREPROCESSED_PATH"] == f"s3://{bucket}/mxnet"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="mxnet/")["Contents"] if "/." not in o["Key"]}
    report = {f"mxnet/{k}" for k in REPORT_FILES}  # announced pictures the data makes all: both splits are there
    assert keys == {f"mxnet/{s}.{e}" for s in ("train", "val") for e in ("rec", "idx", "lst")} | {"mxnet/manifest.json"} | report
    lst = client.get_object(Bucket=bucket, Key="mxnet/train.lst")["Body"].read().decode().splitlines()
    assert len(lst) == 12 and all(line.split("\t")[2].split("/")[0] in WNIDS for line in lst)


def test_missing_inputs_fail_in_resolve(training_dag, tmp_path):
    from local_run import run_dag

    run = run_dag(training_dag, {"sink_uri": str(tmp_path / "x")})
    assert run.state == "failed" and run.task_states["resolve"] == "failed"
    assert run.tries["resolve"] == 1, "bad input is not retried"


def test_missing_labels_fail_the_plan_without_retries(training_dag, inputs, tmp_path):
    from local_run import run_dag

    conf = {**inputs, "validation_labels": str(tmp_path / "missing.txt"), "train_shards": 2, "validation_shards": 1}
    run = run_dag(training_dag, {**conf, "sink_uri": str(tmp_path / "x")})
    assert run.state == "failed" and run.task_states["plan"] == "failed"
    assert run.tries["plan"] == 1
    assert not (tmp_path / "x" / "manifest.json").exists()
