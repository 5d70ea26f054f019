"""DAG runs hold their output's lease: a run meets a busy output by failing at once, naming the holder.

Regression (issue 10 item 1): two runs writing one output both succeeded and left a mix, and
``imagenet_preprocessed`` had no guard at all.
"""

from __future__ import annotations

import pytest

from imagenet_ops.core.lease import LEASE_KEY, Lease, LeaseRecord
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.testing.samples import make_train_tar, make_val_tar

pytestmark = pytest.mark.slow

WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def training_conf(tmp_path) -> dict:
    labels = tmp_path / "imagenet_2012_validation_synset_labels.txt"
    labels.write_text("".join(w + "\n" for w in [WNIDS[0], WNIDS[2], WNIDS[1], WNIDS[0]]))
    return {
        "train": str(make_train_tar(tmp_path / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=2, width=24, height=16)),
        "validation": str(make_val_tar(tmp_path / "ILSVRC2012_img_val.tar", count=4, width=24, height=16)),
        "validation_labels": str(labels),
        "train_shards": 2,
        "validation_shards": 1,
        "workers": 1,
        "sink_uri": str(tmp_path / "td"),
    }


def test_a_training_run_on_a_busy_output_fails_at_once_and_leaves_the_holder_alone(airflow_db, training_conf, capfd):
    from local_run import load_dag, run_dag

    sink = open_sink(training_conf["sink_uri"])
    holder = Lease(sink, owner="cli:somewhere:4242:feedbeef", ttl=600).acquire()
    run = run_dag(load_dag("imagenet_training_data"), training_conf)
    assert run.state == "failed", run.task_states
    assert run.task_states["check_md5"] == "failed" and run.tries["check_md5"] == 1, "a busy output is not retried"
    assert run.task_states["release_lease"] == "success"
    assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == holder.owner, "another run's lease is kept"
    assert not (sink.root / "manifest.json").exists()
    out, err = capfd.readouterr()
    assert "is being written by another run: run 'cli:somewhere:4242:feedbeef'" in out + err
    holder.release()


def test_a_training_run_takes_and_releases_its_lease(airflow_db, training_conf):
    from local_run import load_dag, run_dag

    run = run_dag(load_dag("imagenet_training_data"), training_conf)
    assert run.state == "success", run.task_states
    assert run.task_states["release_lease"] == "success"
    assert open_sink(training_conf["sink_uri"]).get_bytes(LEASE_KEY) is None


def test_a_failed_run_still_releases_its_lease_and_stays_failed(airflow_db, training_conf):
    from local_run import load_dag, run_dag

    conf = {**training_conf, "validation_labels": training_conf["train"]}  # not a labels file: the plan fails
    run = run_dag(load_dag("imagenet_training_data"), conf)
    assert run.state == "failed" and run.task_states["plan"] == "failed", run.task_states
    assert run.tries["plan"] == 1, "bad input is not retried (a tar as labels file was, 3 times: 4 minutes)"
    assert run.task_states["release_lease"] == "success"
    assert open_sink(conf["sink_uri"]).get_bytes(LEASE_KEY) is None, "the next run need not wait for the expiry"


def test_a_preprocessed_run_on_a_busy_output_fails_at_once(airflow_db, dag_inputs, tmp_path, capfd):
    from local_run import load_dag, run_dag

    sink = open_sink(str(tmp_path / "pre"))
    holder = Lease(sink, owner="imagenet_preprocessed/manual__other", ttl=600).acquire()
    conf = {**dag_inputs.inputs["imagenet_preprocessed"], "sink_uri": str(tmp_path / "pre"), "workers": 1}
    run = run_dag(load_dag("imagenet_preprocessed"), conf)
    assert run.state == "failed" and run.task_states["inputs"] == "failed", run.task_states
    assert run.tries["inputs"] == 1
    assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == holder.owner
    out, err = capfd.readouterr()
    assert "run 'imagenet_preprocessed/manual__other'" in out + err
    holder.release()
