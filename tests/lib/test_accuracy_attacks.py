"""The accuracy CLI attacked: a second run on the same output, a run killed with SIGKILL, hostile inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import only_json, run_cli

from imagenet_ops.core.lease import Lease
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.testing import accuracy_samples as samples

LABELS = {f"ILSVRC2012_val_{i:08d}.JPEG": (i * 29) % 1000 for i in range(1, 161)}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("attacked")
    model = samples.publish_onnx_variant(root / "onnx")
    return {"model": model, "set": samples.publish_set(str(root / "set"), LABELS, work_dir=root / "w1")}


def _args(published, out: Path, *extra: str) -> list[str]:
    return ["accuracy", "--model", published["model"], "--preprocessed", published["set"], "--output", str(out), *extra]


def test_a_second_run_on_a_held_output_fails_at_once_naming_the_holder(published, tmp_path):
    out = tmp_path / "acc"
    out.mkdir()
    holder = Lease(open_sink(str(out)), owner="cli:other-run", ttl=120).acquire()
    try:
        proc = run_cli(*_args(published, out))
    finally:
        holder.release()
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert "cli:other-run" in proc.stderr
    assert not (out / "accuracy.json").exists()
    assert run_cli(*_args(published, out)).returncode == 0  # free again: the next run goes


def test_a_run_killed_mid_scoring_leaves_nothing_and_the_rerun_is_byte_identical(published, tmp_path):
    reference = tmp_path / "reference"
    assert run_cli(*_args(published, reference, "--batch-size", "1")).returncode == 0
    out = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagenet_ops", *_args(published, out, "--batch-size", "1")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # kill once scoring has started
        if "images on onnxruntime" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "accuracy.json").exists() and not (out / "manifest.json").exists()
    again = run_cli(*_args(published, out, "--batch-size", "1"))
    assert again.returncode == 0, again.stderr
    assert only_json(again.stdout)["CM_MLPERF_ACCURACY_TOP1"] == "100.0000"
    assert (out / "accuracy.json").read_bytes().replace(str(out).encode(), b"") == (
        (reference / "accuracy.json").read_bytes().replace(str(reference).encode(), b"")
    )


def test_hostile_manifests_and_labels_are_named(published, tmp_path):
    import shutil

    bad = tmp_path / "bad_set"
    shutil.copytree(published["set"], bad)
    (bad / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 1234\n")
    proc = run_cli(*_args({**published, "set": str(bad)}, tmp_path / "a"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}/val_map.txt line 1: expected 'name label' with a label 0..999" in proc.stderr

    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["params"] = {"layout": "NCHW"}
    (bad / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli(*_args({**published, "set": str(bad)}, tmp_path / "b"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not an imagenet_preprocessed manifest this version reads" in proc.stderr

    (bad / "manifest.json").write_bytes(b"\x00\xff not json")
    proc = run_cli(*_args({**published, "set": str(bad)}, tmp_path / "c"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "not a JSON manifest" in proc.stderr
