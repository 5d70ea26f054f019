"""Two real CLI runs on one output (local, S3, GCS): the second fails at once naming the first; nothing mixes.

Regression (issue 10 item 1): ``preprocessed`` NCHW and NHWC into one folder left 66 of 400
``.npy`` files in the other layout under an NHWC manifest; ``training-data`` with 64 and 32 train
shards left both shard sets, so a ``train-*`` glob saw every image twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@dataclass
class Output:
    """An output location for the CLI, with a reader of its objects."""

    uri: str
    env: dict[str, str]
    keys: Callable[[], set[str]]
    read: Callable[[str], bytes]


@pytest.fixture(params=["local", "s3", "gs"])
def output(request: pytest.FixtureRequest, tmp_path: Path) -> Output:
    if request.param == "local":
        root = tmp_path / "out"
        return Output(
            str(root),
            {},
            lambda: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()},
            lambda k: (root / k).read_bytes(),
        )
    if request.param == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")

        def s3_keys() -> set[str]:
            listing = client.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
            return {o["Key"].removeprefix("out/") for o in listing}

        def s3_read(key: str) -> bytes:
            return client.get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read()

        endpoint = request.getfixturevalue("s3_endpoint")
        return Output(f"s3://{bucket}/out", {"AWS_ENDPOINT_URL": endpoint}, s3_keys, s3_read)
    client, bucket = request.getfixturevalue("gcs_conditional_bucket")
    endpoint = request.getfixturevalue("gcs_conditional_endpoint")
    return Output(
        f"gs://{bucket}/out",
        {"STORAGE_EMULATOR_HOST": endpoint},
        lambda: {b.name.removeprefix("out/") for b in client.list_blobs(bucket, prefix="out/")},
        lambda k: client.bucket(bucket).blob(f"out/{k}").download_as_bytes(),
    )


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imagenet_ops", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cli_to_end(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagenet_ops", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def _training_args(inputs: dict[str, str], uri: str, train_shards: int) -> list[str]:
    return [
        "training-data",
        *("--train", inputs["train"], "--validation", inputs["validation"], "--aux", inputs["aux_path"]),
        *("--train-shards", str(train_shards), "--validation-shards", "2", "--workers", "1", "--output", uri),
    ]


def _data_keys(output: Output) -> set[str]:
    return {k for k in output.keys() if not k.startswith(".imagenet_ops/")}


def assert_exactly_its_manifest(output: Output) -> dict[str, Any]:
    """The location holds the manifest's files, each with its recorded sha256 or CRC, and nothing else."""
    import google_crc32c

    manifest = json.loads(output.read("manifest.json"))
    listed = {f["path"] for f in manifest["files"]}
    assert _data_keys(output) == listed | {"manifest.json"}
    for f in manifest["files"]:
        data = output.read(f["path"])
        assert len(data) == f["size"], f["path"]
        if "sha256" in f:
            assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        elif str(f.get("checksum", "")).startswith("crc32c:"):
            assert f"crc32c:{google_crc32c.value(data):08x}" == f["checksum"], f["path"]
    return manifest


def _wait_for_lease(output: Output, proc: subprocess.Popen[str]) -> bool:
    """Poll until ``proc`` holds the output's lease; False if it ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ".imagenet_ops/lease.json" in output.keys():
            return True
        time.sleep(0.02)
    raise AssertionError("the first run never took the lease")


def _second_run_while_first_holds(output: Output, first_args: list[str], second_args: list[str], env: dict[str, str]) -> tuple:
    """Start run 1, freeze it (SIGSTOP) once it holds the lease, run 2 to its end, then let run 1 finish."""
    for _ in range(3):  # run 1 may finish before it is frozen; then try again
        first = _cli(first_args, env)
        if not _wait_for_lease(output, first):
            first.communicate()
            continue
        os.kill(first.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            second = _cli_to_end(second_args, env)
            second_seconds = time.monotonic() - started
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        return first, out, err, second, second_seconds
    pytest.fail("the first run always finished before it could be frozen")


def test_training_data_second_run_fails_fast_and_nothing_mixes(dag_inputs, output: Output) -> None:
    inputs = dag_inputs.inputs["imagenet_training_data"]
    env = output.env
    first, out, err, second, second_seconds = _second_run_while_first_holds(
        output, _training_args(inputs, output.uri, 4), _training_args(inputs, output.uri, 2), env
    )
    assert second.returncode == 1, second.stderr
    assert "is being written by another run" in second.stderr, second.stderr
    assert f"pid {first.pid}" in second.stderr and "cli:" in second.stderr
    assert "Traceback" not in second.stderr
    assert second_seconds < 60  # it did not wait for the first run
    assert first.returncode == 0, err
    manifest = assert_exactly_its_manifest(output)
    assert sorted(k for k in _data_keys(output) if k.startswith("train-")) == [f"train-{i:05d}-of-00004" for i in range(4)]
    assert ".imagenet_ops/lease.json" not in output.keys()  # released
    assert manifest["provenance"]["config"]["train_shards"] == 4

    # Then the 2-shard run, now alone: the 4-shard set goes, a train-* glob sees each image once.
    again = _cli_to_end(_training_args(inputs, output.uri, 2), env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == output.uri
    assert_exactly_its_manifest(output)
    assert sorted(k for k in _data_keys(output) if k.startswith("train-")) == [f"train-{i:05d}-of-00002" for i in range(2)]


def test_preprocessed_layouts_never_mix_in_one_folder(dag_inputs, tmp_path: Path) -> None:
    inputs = dag_inputs.inputs["imagenet_preprocessed"]
    root = tmp_path / "out"
    output = Output(
        str(root),
        {},
        lambda: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()},
        lambda k: (root / k).read_bytes(),
    )

    def args(layout: str) -> list[str]:
        return ["preprocessed", "--images", inputs["images"], "--labels", f"{inputs['aux_path']}/val.txt"] + [
            "--layout",
            layout,
            "--workers",
            "1",
            "--output",
            str(root),
        ]

    first, _, err, second, _ = _second_run_while_first_holds(output, args("NCHW"), args("NHWC"), {})
    assert first.returncode == 0, err
    assert second.returncode == 1 and "is being written by another run" in second.stderr, second.stderr
    assert "NCHW" in json.dumps(assert_exactly_its_manifest(output)["params"])

    # NHWC after NCHW, alone: every .npy is rewritten, the manifest's checksums all hold.
    after = _cli_to_end(args("NHWC"), {})
    assert after.returncode == 0, after.stderr
    assert "NHWC" in json.dumps(assert_exactly_its_manifest(output)["params"])


def test_wait_for_lease_lets_the_second_run_follow_the_first(dag_inputs, tmp_path: Path) -> None:
    inputs = dag_inputs.inputs["imagenet_training_data"]
    uri = str(tmp_path / "out")
    first = _cli([*_training_args(inputs, uri, 4), "--wait-for-lease", "300"], {})
    second = _cli([*_training_args(inputs, uri, 2), "--wait-for-lease", "300"], {})  # either may start first
    outcomes = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [e for _, e in outcomes]
    root = Path(uri)
    manifest = json.loads((root / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".imagenet_ops" not in p.parts}
    assert on_disk == listed | {"manifest.json"}  # whichever ran last, its artifact alone


def test_a_run_frozen_past_its_lease_stops_instead_of_writing_over_the_next_run(dag_inputs, output: Output) -> None:
    # A holder frozen (SIGSTOP, a stalled VM) longer than its ttl loses the lease to the next run;
    # when it wakes up it must fail, not publish over that run's artifact.
    inputs = dag_inputs.inputs["imagenet_training_data"]
    env = {**output.env, "IMAGENET_OPS_LEASE_TTL": "5"}
    first = _cli(_training_args(inputs, output.uri, 4), env)
    assert _wait_for_lease(output, first), "the first run ended before it could be frozen"
    os.kill(first.pid, signal.SIGSTOP)
    try:
        time.sleep(6)  # past its lease's expiry
        second = _cli_to_end(_training_args(inputs, output.uri, 2), env)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert second.returncode == 0, second.stderr
    assert "taking over from run 'cli:" in second.stderr and "(expired)" in second.stderr
    assert first.returncode == 1, err
    assert "no longer holds it" in err and "Traceback" not in err
    assert_exactly_its_manifest(output)
    assert sorted(k for k in _data_keys(output) if k.startswith("train-")) == [f"train-{i:05d}-of-00002" for i in range(2)]
