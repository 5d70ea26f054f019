"""``imagenet_training_data`` with a validation wnid that is not a train class: the plan fails, once."""

from __future__ import annotations

import pytest

from imagenet_ops.testing.samples import make_train_tar, make_val_tar

pytestmark = pytest.mark.slow

WNIDS = ["n01440764", "n01443537", "n01484850"]


def test_a_validation_wnid_that_is_not_a_train_class_fails_the_plan_without_retries(airflow_db, tmp_path, capfd):
    # Regression (issue 10 item 4): a validation wnid that is not a train class shifted every later train label.
    from local_run import load_dag, run_dag

    labels = tmp_path / "imagenet_2012_validation_synset_labels.txt"
    labels.write_text("".join(w + "\n" for w in [WNIDS[0], WNIDS[2], "n01443000", WNIDS[1]]))
    conf = {
        "train": str(make_train_tar(tmp_path / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=2, width=24, height=16)),
        "validation": str(make_val_tar(tmp_path / "ILSVRC2012_img_val.tar", count=4, width=24, height=16)),
        "validation_labels": str(labels),
        "train_shards": 2,
        "validation_shards": 1,
        "workers": 1,
        "sink_uri": str(tmp_path / "td"),
    }
    run = run_dag(load_dag("imagenet_training_data"), conf)
    assert run.state == "failed" and run.task_states["plan"] == "failed", run.task_states
    assert run.tries["plan"] == 1, "bad input is not retried"
    assert not (tmp_path / "td" / "manifest.json").exists()
    out, err = capfd.readouterr()
    assert f"{labels}: line 3 gives ILSVRC2012_val_00000003.JPEG the wnid n01443000" in out + err
