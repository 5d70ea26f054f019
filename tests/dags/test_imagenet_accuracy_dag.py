"""``imagenet_accuracy`` run for real with dag.test(): mapped chunks, the verdict, refusals, the cache, teardowns."""

from __future__ import annotations

import json

import pytest

from imagenet_ops.testing import accuracy_samples as samples

pytestmark = pytest.mark.slow

LABELS = {f"ILSVRC2012_val_{i:08d}.JPEG": (i * 53) % 1000 for i in range(1, 13)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, str]:
    """One published colour-reading ONNX variant and two published sets (NCHW right, NHWC for the refusal)."""
    root = tmp_path_factory.mktemp("pair")
    model = samples.publish_onnx_variant(root / "onnx")
    nchw = samples.publish_set(str(root / "nchw"), LABELS, work_dir=root / "w1")
    nhwc = samples.publish_set(str(root / "nhwc"), LABELS, work_dir=root / "w2", tags="_NHWC")
    raw = samples.publish_set(str(root / "raw"), LABELS, work_dir=root / "w3", tags="_generic-preprocessor,_float32,_npy")
    return {"model": model, "nchw": nchw, "nhwc": nhwc, "raw": raw}


@pytest.fixture
def accuracy_dag(airflow_db):
    from local_run import load_dag

    return load_dag("imagenet_accuracy")


def test_mapped_chunks_pass_then_cache_hit(accuracy_dag, pair, tmp_path):
    from local_run import run_dag

    conf = {
        "model": pair["model"],
        "preprocessed": pair["nchw"],
        "chunks": 3,
        "workers": 1,
        "expected_top1": 100,
        "sink_uri": str(tmp_path / "out"),
    }
    run = run_dag(accuracy_dag, conf)
    assert run.state == "success", run.task_states
    assert len(run.xcoms("score")) == 3
    env = run.xcom("publish")
    assert (env["CM_MLPERF_ACCURACY_TOP1"], env["CM_MLPERF_ACCURACY_IMAGES"], env["CM_MLPERF_ACCURACY_PASSED"]) == (
        "100.0000",
        "12",
        "yes",
    )
    result = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert result["top1_correct"] == 12 and result["verdict"]["passed"] is True
    assert not (tmp_path / "out" / ".imagenet_ops" / "staging").exists() or not any(
        (tmp_path / "out" / ".imagenet_ops" / "staging").rglob("*.json")
    )
    again = run_dag(accuracy_dag, conf)
    assert again.state == "success" and again.xcoms("score") == []  # a cache hit scores nothing
    assert again.xcom("publish") == env


def test_a_missed_expectation_fails_the_run_after_publishing(accuracy_dag, pair, tmp_path):
    from local_run import run_dag

    conf = {"model": pair["model"], "preprocessed": pair["raw"], "expected_top1": 50, "sink_uri": str(tmp_path / "out")}
    run = run_dag(accuracy_dag, conf)
    assert run.state == "failed"
    assert run.task_states["publish"] == "failed" and run.task_states["cleanup"] == "success"
    assert run.task_states["release_lease"] == "success"
    result = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert result["verdict"]["passed"] is False and "FAILS" in result["verdict"]["message"]


def test_a_layout_mismatch_fails_in_plan(accuracy_dag, pair, tmp_path):
    from local_run import run_dag

    run = run_dag(accuracy_dag, {"model": pair["model"], "preprocessed": pair["nhwc"], "sink_uri": str(tmp_path / "out")})
    assert run.state == "failed" and run.task_states["plan"] == "failed"
    assert "score" not in run.task_states or run.task_states["score"] in ("upstream_failed", "skipped")
    assert not (tmp_path / "out" / "accuracy.json").exists()
