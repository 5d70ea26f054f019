"""``python -m imagenet_ops accuracy`` as a user runs it: one JSON env line, exit codes, every sink the README names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import object_storage, only_json, run_cli

from imagenet_ops.testing import accuracy_samples as samples

RAW_PIXELS = "_generic-preprocessor,_float32,_npy"
LABELS = {f"ILSVRC2012_val_{i:08d}.JPEG": (i * 71) % 1000 for i in range(1, 9)}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("published")
    model = samples.publish_onnx_variant(root / "onnx")
    return {
        "model": Path(model),
        "set": Path(samples.publish_set(str(root / "set"), LABELS, work_dir=root / "w1")),
        "nhwc": Path(samples.publish_set(str(root / "nhwc"), LABELS, work_dir=root / "w2", tags="_NHWC")),
        # raw pixels (no means subtracted): the colour reader gets most of them wrong
        "raw": Path(
            samples.publish_set(str(root / "raw"), LABELS, work_dir=root / "w3", tags="_generic-preprocessor,_float32,_npy")
        ),
    }


def test_local_pair_prints_one_env_line_then_cache_hit(published, tmp_path):
    args = (
        "accuracy",
        "--model",
        str(published["model"]),
        "--preprocessed",
        str(published["set"]),
        "--output",
        str(tmp_path / "acc"),
    )
    first = run_cli(*args, "--expected-top1", "100")
    assert first.returncode == 0, first.stderr
    env = only_json(first.stdout)
    assert (env["CM_MLPERF_ACCURACY_TOP1"], env["CM_MLPERF_ACCURACY_IMAGES"], env["CM_MLPERF_ACCURACY_PASSED"]) == (
        "100.0000",
        "8",
        "yes",
    )
    assert "score: scored 8 images" in first.stderr and "images/s" in first.stderr
    second = run_cli(*args, "--variations", "_expected_top1.100")  # the same option as a CM tag: the same result
    assert second.returncode == 0, second.stderr
    assert only_json(second.stdout) == env and "cache hit" in second.stderr


def test_refused_pair_is_one_error_line_naming_both(published, tmp_path):
    proc = run_cli(
        "accuracy",
        "--model",
        str(published["model"]),
        "--preprocessed",
        str(published["nhwc"]),
        "--output",
        str(tmp_path / "acc"),
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "onnx-fp32-argmax-opset11" in errors[0] and str(published["nhwc"]) in errors[0]
    assert "an NHWC set into an NCHW model" in errors[0]


def test_missed_expectation_exits_1_after_publishing(published, tmp_path):
    out = tmp_path / "acc"
    args = ("accuracy", "--model", str(published["model"]), "--preprocessed", str(published["raw"]), "--output", str(out))
    proc = run_cli(*args, "--expected-top1", "90")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    result = json.loads((out / "accuracy.json").read_text())  # published all the same: its report can be read
    assert result["verdict"]["passed"] is False
    (error,) = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert "onnx-fp32-argmax-opset11" in error and str(published["raw"]) in error
    assert f"measured top-1 {result['top1_percent']:.4f}%" in error and "vs expected 90.0%" in error


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_pair_and_result_on_object_storage(published, request, scheme):
    bucket, env, listing = object_storage(request, scheme)
    client = request.getfixturevalue("s3_bucket" if scheme == "s3" else "gcs_bucket")[0]
    for name in ("model", "set"):
        for path in sorted(p for p in published[name].rglob("*") if p.is_file() and ".imagenet_ops" not in p.parts):
            key = f"{name}/{path.relative_to(published[name]).as_posix()}"
            if scheme == "s3":
                client.upload_file(str(path), bucket, key)
            else:
                client.bucket(bucket).blob(key).upload_from_filename(str(path))
    out = f"{scheme}://{bucket}/accuracy"
    proc = run_cli(
        "accuracy",
        "--model",
        f"{scheme}://{bucket}/model",
        "--preprocessed",
        f"{scheme}://{bucket}/set",
        "--output",
        out,
        "--expected-top1",
        "100",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = only_json(proc.stdout)
    assert (
        result["CM_MLPERF_ACCURACY_TOP1"] == "100.0000" and result["CM_MLPERF_ACCURACY_FILE_WITH_PATH"] == f"{out}/accuracy.json"
    )
    assert {"accuracy/accuracy.json", "accuracy/manifest.json", "accuracy/report/report.md"} <= listing("accuracy/")
