"""``resnet50_model`` run for real with dag.test(): one variant, several variants (mapped), failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_ops.core.staging import STAGING_DIR

pytestmark = pytest.mark.slow


@pytest.fixture
def model_dag(airflow_db):
    from local_run import load_dag

    return load_dag("resnet50_model")


def test_one_variant_from_the_form(model_dag, model_mirror, tmp_path):
    from local_run import run_dag

    md5 = model_mirror["md5_by_file"]["resnet50_v1.onnx"]
    run = run_dag(model_dag, {"framework": "onnx", "mirror": model_mirror["mirror"], "md5": md5, "sink_uri": str(tmp_path / "m")})
    assert run.state == "success", run.task_states
    (env,) = run.xcoms("publish")
    assert env["CM_ML_MODEL_FILE_WITH_PATH"] == str(tmp_path / "m" / "onnx-fp32-argmax-opset11" / "resnet50_v1.onnx")
    assert env["CM_ML_MODEL_INPUT_LAYERS"] == "input_tensor:0"
    (check,) = run.xcoms("load_check")
    assert check["framework"] == "onnx"
    assert not list((tmp_path / "m").glob(f"*/{STAGING_DIR}")), "the run's staging area goes with the run"
    manifest = json.loads((tmp_path / "m" / "onnx-fp32-argmax-opset11" / "manifest.json").read_text())
    (source,) = manifest["provenance"].values()
    assert list(manifest["provenance"]) == ["resnet50_v1.onnx"] and set(source) == {"url", "etag"}, "only user-facing sources"
    assert source["url"] == f"{model_mirror['mirror']}/resnet50_v1.onnx"


def test_several_variants_are_mapped_and_a_rerun_republishes_nothing(model_dag, model_mirror, tmp_path):
    from local_run import run_dag

    conf = {
        "variants": ["_onnx", "_tflite", "_tensorflow,_fix-input-shape", "_pytorch", "_ncnn"],
        "mirror": model_mirror["mirror"],
        "md5_by_file": model_mirror["md5_by_file"],
        "sink_uri": str(tmp_path / "m"),
    }
    run = run_dag(model_dag, conf)
    assert run.state == "success", run.task_states
    assert sum(1 for k in run.task_states if k.startswith("publish[")) == 5
    envs = run.xcoms("publish")
    assert [Path(e["CM_ML_MODEL_FILE_WITH_PATH"]).parent.name for e in envs] == [
        "onnx-fp32-argmax-opset11",
        "tflite-fp32-argmax",
        "tensorflow-fp32-argmax-fixed-bs1",
        "pytorch-fp32",
        "ncnn-fp32",
    ]
    assert envs[2]["CM_ML_MODEL_STARTING_FILE_PATH"].endswith("tensorflow-fp32-argmax-fixed-bs1/original/resnet50_v1.pb")
    for env in envs:
        assert Path(env["CM_ML_MODEL_FILE_WITH_PATH"]).is_file()
    manifests = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "m").glob("*/manifest.json")}
    assert len(manifests) == 5
    assert not list((tmp_path / "m").glob(f"*/{STAGING_DIR}")), "every variant's staging area goes with the run"
    assert run.task_states["cleanup"] == "success"

    # every mapped step is named by its variant in the UI (map_index_template reads the job)
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        names = session.execute(
            select(TaskInstance.task_id, TaskInstance.rendered_map_index).where(TaskInstance.run_id == run.run_id)
        ).all()
    by_task = {t: sorted(n for task, n in names if task == t) for t in ("download", "prepare", "load_check", "publish")}
    assert all(v == sorted(manifests) for v in by_task.values()), by_task

    again = run_dag(model_dag, conf)
    assert again.state == "success"
    assert {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "m").glob("*/manifest.json")} == manifests


def test_wrong_framework_file_fails_the_load_check_and_publishes_nothing(model_dag, model_mirror, tmp_path):
    from local_run import run_dag

    root = model_mirror["server"].root
    (root / "resnet50_v1.no-argmax.tflite").write_bytes((root / "resnet50_v1.onnx").read_bytes())
    md5 = model_mirror["md5_by_file"]["resnet50_v1.onnx"]
    run = run_dag(
        model_dag,
        {"variations": "_tflite,_no-argmax", "mirror": model_mirror["mirror"], "md5": md5, "sink_uri": str(tmp_path / "m")},
    )
    assert run.state == "failed"
    assert run.task_states["load_check[0]"] == "failed"
    assert run.tries["load_check[0]"] == 1, "a failed load check must not be retried"
    assert run.task_states["cleanup"] == "success", "the clean-up runs whatever happened"
    assert not (tmp_path / "m").exists(), "the staged files went with the run, and the folders the staging made too"


def test_unsupported_combination_fails_before_any_download(model_dag, model_mirror, tmp_path):
    from local_run import run_dag

    run = run_dag(
        model_dag, {"variations": "_tflite,_int8,_argmax", "mirror": model_mirror["mirror"], "sink_uri": str(tmp_path / "m")}
    )
    assert run.state == "failed" and run.task_states["resolve"] == "failed"
    assert model_mirror["server"].requests == []
    assert json.dumps(run.task_states).count("download") <= 1
