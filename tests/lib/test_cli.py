"""``python -m imagenet_ops``: end to end against the local HTTP server, S3 and GCS servers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagenet_ops import VERSION
from imagenet_ops.__main__ import main
from imagenet_ops.aux.report import REPORT_FILES
from imagenet_ops.aux.variations import ARCHIVE_NAME, AUX_FILES
from imagenet_ops.testing.samples import make_aux_archive

WRONG_MD5 = "0" * 32


@pytest.fixture
def aux_source(http_server) -> tuple[str, str]:
    """URL and md5 of the sample archive on the local HTTP server."""
    archive = make_aux_archive(http_server.root / ARCHIVE_NAME)
    return http_server.url(ARCHIVE_NAME), hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagenet_ops", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def only_json(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def object_storage(request: pytest.FixtureRequest, scheme: str) -> tuple[str, dict[str, str], Any]:
    """A fresh bucket on the S3 or GCS server: its name, the CLI's env for it, and a key lister."""
    if scheme == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")

        def listing(prefix: str) -> set[str]:
            return {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}

        return bucket, {"AWS_ENDPOINT_URL": request.getfixturevalue("s3_endpoint")}, listing
    client, bucket = request.getfixturevalue("gcs_bucket")

    def gcs_listing(prefix: str) -> set[str]:
        return {b.name for b in client.list_blobs(bucket, prefix=prefix)}

    return bucket, {"STORAGE_EMULATOR_HOST": request.getfixturevalue("gcs_endpoint")}, gcs_listing


def test_aux_to_a_folder_then_cache_hit(aux_source: tuple[str, str], tmp_path: Path) -> None:
    url, md5 = aux_source
    out = tmp_path / "artifacts" / "aux"

    first = run_cli("aux", "--url", url, "--md5", md5, "--output", str(out))
    second = run_cli("aux", "--url", url, "--md5", md5, "--output", str(out))

    assert first.returncode == 0, first.stderr
    assert only_json(first.stdout) == {"CM_DATASET_AUX_PATH": str(out.resolve()), "CM_DATASET_AUX_VER": "2012"}
    assert "INFO imagenet_ops" in first.stderr and "published" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*AUX_FILES, "manifest.json", ".imagenet_ops", "report"])
    # what stays of the output's lease: its two lock files (unlinking them would race), no record
    assert sorted(p.name for p in (out / ".imagenet_ops").iterdir()) == ["lease.live", "lease.lock"]
    assert json.loads((out / "manifest.json").read_text())["provenance"]["url"] == url

    assert second.returncode == 0, second.stderr
    assert only_json(second.stdout) == only_json(first.stdout)
    assert "cache hit" in second.stderr


def test_aux_wrong_md5_fails_and_publishes_nothing(aux_source: tuple[str, str], tmp_path: Path) -> None:
    url, md5 = aux_source
    out = tmp_path / "aux"

    proc = run_cli("aux", "--url", url, "--md5", WRONG_MD5, "--output", str(out))

    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"md5 {md5} is not any of the expected {WRONG_MD5}" in proc.stderr
    assert "ERROR" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_aux_to_object_storage_via_environment(
    aux_source: tuple[str, str], request: pytest.FixtureRequest, scheme: str, tmp_path: Path
) -> None:
    url, md5 = aux_source
    bucket, env, listing = object_storage(request, scheme)
    proc = run_cli("aux", "--url", url, "--md5", md5, "--output", f"{scheme}://{bucket}/aux/2012", env=env)

    assert proc.returncode == 0, proc.stderr
    assert only_json(proc.stdout) == {"CM_DATASET_AUX_PATH": f"{scheme}://{bucket}/aux/2012", "CM_DATASET_AUX_VER": "2012"}
    assert listing("aux/2012/") == {f"aux/2012/{name}" for name in (*AUX_FILES, *REPORT_FILES, "manifest.json")}


def test_sample_command_writes_the_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--output", str(tmp_path)]) == 0

    env = only_json(capsys.readouterr().out)
    assert env == {"IMAGENET_OPS_SAMPLE_AUX_ARCHIVE": str(tmp_path / ARCHIVE_NAME)}
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == make_aux_archive(tmp_path / "ref" / ARCHIVE_NAME).read_bytes()


def test_config_error_exits_1_without_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["aux", "--url", "http://127.0.0.1:9/download", "--output", str(tmp_path / "aux")])

    assert code == 1
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "aux").exists()


@pytest.mark.parametrize(
    ("argv", "stream", "text"),
    [
        (["--version"], "out", VERSION),
        (["aux", "--output", "x", "--source", "nowhere"], "err", "invalid choice: 'nowhere'"),
        (["aux"], "err", "the following arguments are required: --output"),
        # Regression: --workers -3 was accepted.
        (["training-data", "--workers", "-3", "--output", "x"], "err", "argument --workers: -3 is outside 0 to 256"),
        (["preprocessed", "--images", "x", "--output", "y", "--workers", "many"], "err", "'many' is not an integer"),
        (["preprocessed", "--images", "x", "--output", "y", "--chunks", "0"], "err", "0 is outside 1 to 1024"),
    ],
)
def test_argument_handling(argv: list[str], stream: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)

    assert text in getattr(capsys.readouterr(), stream)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_training_data_to_object_storage_then_cache_hit(dag_inputs, request: pytest.FixtureRequest, scheme: str) -> None:
    # Regression (issue 10 item 2): every unit was uploaded, then the run failed with "10 of 10
    # units are not complete" and re-runs re-uploaded everything: the CLI passed no object store
    # to the completeness check of remote units.
    bucket, env, listing = object_storage(request, scheme)
    inputs = dag_inputs.inputs["imagenet_training_data"]
    args = ["training-data", "--train", inputs["train"], "--validation", inputs["validation"], "--aux", inputs["aux_path"]]
    args += ["--train-shards", "4", "--validation-shards", "2", "--workers", "2", "--output", f"{scheme}://{bucket}/td"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    env_out = only_json(first.stdout)
    assert env_out["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == f"{scheme}://{bucket}/td"
    shards = {f"td/train-{i:05d}-of-00004" for i in range(4)} | {f"td/validation-{i:05d}-of-00002" for i in range(2)}
    assert shards | {"td/manifest.json"} <= listing("td/")

    second = run_cli(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert only_json(second.stdout) == env_out
    assert "cache hit" in second.stderr.lower() or "already complete" in second.stderr, second.stderr[-2000:]


def test_unreachable_gcs_input_is_one_error_line_after_logged_retries(closed_port_url: str, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): an unreachable GCS endpoint failed only after 85-119 s, logging nothing.
    from imagenet_ops.testing.preprocess_samples import val_map_text

    labels = tmp_path / "val_map.txt"
    labels.write_text(val_map_text([f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 11)]))
    args = ["preprocessed", "--subset", "1", "--images", "gs://imagenet-in/val", "--labels", str(labels)]
    proc = run_cli(*args, "--output", str(tmp_path / "out"), env={"STORAGE_EMULATOR_HOST": closed_port_url})

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    retries = [line for line in proc.stderr.splitlines() if " WARNING " in line and "retrying in" in line]
    assert [line.rpartition("(")[2] for line in retries] == ["attempt 2 of 4)", "attempt 3 of 4)", "attempt 4 of 4)"]
    assert all(f"list via GCS endpoint {closed_port_url} failed (" in line for line in retries), retries
    [error] = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    expected = f"ERROR imagenet_ops: gs://imagenet-in/val/: list via GCS endpoint {closed_port_url} failed after 4 attempts"
    assert expected in error, error


def test_malformed_aux_val_txt_is_one_error_line_naming_file_and_line(http_server, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): a malformed aux val.txt gave a traceback.
    from imagenet_ops.testing.samples import aux_file_contents

    lines = aux_file_contents()["val.txt"].decode().splitlines()
    lines[6] = "ILSVRC2012_val_00000007.JPEG 12 extra"
    archive = make_aux_archive(http_server.root / ARCHIVE_NAME, overrides={"val.txt": "\n".join(lines).encode() + b"\n"})
    md5 = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    work = tmp_path / "work"

    proc = run_cli(
        "aux", "--url", http_server.url(ARCHIVE_NAME), "--md5", md5, "--output", str(tmp_path / "aux"), "--work-dir", str(work)
    )

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert error.endswith(
        f"ERROR imagenet_ops: {work}/extracted/val.txt: line 7 'ILSVRC2012_val_00000007.JPEG 12 extra' has 3 fields; "
        "expected '<image name> <label>'"
    ), error


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_model_to_object_storage_then_cache_hit(dag_inputs, request: pytest.FixtureRequest, scheme: str) -> None:
    # Every documented remote-output command runs against the S3 and GCS servers (issue 10 item 2).
    bucket, env, listing = object_storage(request, scheme)
    source = dag_inputs.inputs["resnet50_model"]
    args = ["model", "--url", source["url"], "--md5", source["md5"], "--output", f"{scheme}://{bucket}/m"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    env_out = only_json(first.stdout)
    assert env_out["CM_ML_MODEL_FILE_WITH_PATH"].startswith(f"{scheme}://{bucket}/m/")
    assert {"m/manifest.json", "m/resnet50_v1.onnx"} <= listing("m/")
    assert not any(k.startswith("m/.imagenet_ops/") for k in listing("m/")), "no lease or intent record stays"

    second = run_cli(*args, env=env)
    assert second.returncode == 0 and "cache hit" in second.stderr, second.stderr[-2000:]
    assert only_json(second.stdout) == env_out


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_preprocessed_to_object_storage_then_cache_hit(dag_inputs, request: pytest.FixtureRequest, scheme: str) -> None:
    # Every documented remote-output command runs against the S3 and GCS servers (issue 10 item 2).
    bucket, env, listing = object_storage(request, scheme)
    inputs = dag_inputs.inputs["imagenet_preprocessed"]
    args = ["preprocessed", "--images", inputs["images"], "--labels", f"{inputs['aux_path']}/val.txt"]
    args += ["--variations", "_for.resnet50,_NHWC,_uint8", "--workers", "2", "--output", f"{scheme}://{bucket}/pre"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    env_out = only_json(first.stdout)
    assert env_out["CM_DATASET_PREPROCESSED_PATH"] == f"{scheme}://{bucket}/pre"
    keys = listing("pre/")
    assert {"pre/manifest.json", "pre/val_map.txt"} <= keys
    assert "pre/ILSVRC2012_val_00000001.rgb32" in keys, sorted(keys)[:5]  # the generic preprocessor's name
    assert not any(k.startswith("pre/.imagenet_ops/lease") for k in keys), "the lease is released"

    second = run_cli(*args, env=env)
    assert second.returncode == 0 and "cache hit" in second.stderr, second.stderr[-2000:]
    assert only_json(second.stdout) == env_out


def test_a_full_stdout_is_one_error_line_not_a_traceback() -> None:
    # Regression: printing the env dict to a full stdout ended in a traceback.
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "imagenet_ops", "model", "--list"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert done.returncode == 1
    assert "cannot write the result to stdout" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_each_input_has_the_forms_name_on_the_command_line(dag_inputs, tmp_path: Path) -> None:
    # Regression (issue 11): the form said val_map / aux_path where the CLI said --labels / --aux, and the
    # preprocessed CLI could not take the aux artifact at all. The old flags stay accepted.
    inputs = dag_inputs.inputs["imagenet_preprocessed"]
    common = ["preprocessed", "--images", inputs["images"], "--subset", "1", "--workers", "1"]
    outputs = {}
    for name, given in {
        "val-map": ["--val-map", f"{inputs['aux_path']}/val.txt"],
        "labels": ["--labels", f"{inputs['aux_path']}/val.txt"],
        "aux-path": ["--aux-path", inputs["aux_path"]],
    }.items():
        out = tmp_path / name
        proc = run_cli(*common, *given, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        files = [p for p in out.iterdir() if p.is_file() and p.name != "manifest.json"]
        outputs[name] = {p.name: p.read_bytes().replace(str(out).encode(), b"OUT") for p in files}  # lists name the folder
    assert outputs["val-map"] == outputs["labels"] == outputs["aux-path"]
    assert "val_map.txt" in outputs["aux-path"]
    helps = {cmd: run_cli(cmd, "--help").stdout for cmd in ("preprocessed", "training-data")}
    for flag in ("--images", "--val-map", "--aux-path", "--calibration-list"):
        assert flag in helps["preprocessed"], flag
    for flag in ("--train", "--validation", "--validation-labels", "--aux-path"):
        assert flag in helps["training-data"], flag


def test_a_validation_set_without_labels_is_refused_like_in_the_form(dag_inputs, tmp_path: Path) -> None:
    # Regression (issue 11): the rule lived in the DAG, so the CLI published sets that no accuracy run can score.
    inputs = dag_inputs.inputs["imagenet_preprocessed"]
    proc = run_cli("preprocessed", "--images", inputs["images"], "--subset", "1", "--output", str(tmp_path / "out"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "validation sets need labels: give val_map" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
