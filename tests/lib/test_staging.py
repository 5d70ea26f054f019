"""A run's hand-over area in its sink, on a local folder, S3 and GCS (real servers on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.core.staging import STAGING_DIR, Staging, run_key
from imagenet_ops.core.store import ObjectStore


@pytest.fixture(params=["file", "s3", "gs"])
def staging(request: pytest.FixtureRequest, tmp_path: Path) -> Staging:
    if request.param == "file":
        sink, store = open_sink(str(tmp_path / "out")), ObjectStore()
    elif request.param == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")
        sink, store = open_sink(f"s3://{bucket}/out", s3_client=client), ObjectStore(s3_client=client)
    else:
        client, bucket = request.getfixturevalue("gcs_bucket")
        sink, store = open_sink(f"gs://{bucket}/out", gcs_client=client), ObjectStore(gcs_client=client)
    return Staging(sink=sink, run="imagenet_aux/manual__2026-12-01T10:00:00+00:00", store=store)


def test_a_file_and_a_folder_cross_to_another_task_and_go_with_the_run(staging: Staging, tmp_path: Path) -> None:
    src = tmp_path / "made-by-task-a"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"archive bytes")

    assert staging.put_file(archive, "download/x.tar.gz").endswith(f"{STAGING_DIR}/{run_key(staging.run)}/download/x.tar.gz")
    assert staging.put_dir(src, "extracted") == ["a.txt", "sub/b.bin"]

    # task B, on another host: its own scratch, nothing of task A's disk
    scratch = tmp_path / "task-b"
    got = staging.get_file("download/x.tar.gz", scratch / "x.tar.gz")
    assert got.read_bytes() == b"archive bytes"
    folder = staging.get_dir("extracted", scratch / "extracted")
    assert (folder / "a.txt").read_bytes() == b"alpha" and (folder / "sub" / "b.bin").read_bytes() == bytes(range(256))

    assert staging.remove() == 3
    assert staging.remove() == 0  # a retried clean-up is a no-op
    with pytest.raises(StorageError, match="missing .*did the task that stages it finish"):
        staging.get_file("download/x.tar.gz", scratch / "again")
    with pytest.raises(StorageError, match="nothing under|missing"):
        staging.get_dir("extracted", scratch / "again-dir")


def test_names_cannot_leave_the_runs_area(staging: Staging, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    for bad in ("../manifest.json", "a/../../b", "", "/"):
        with pytest.raises(StorageError, match="not a plain relative name"):
            staging.put_file(f, bad)


def test_run_keys_are_one_safe_segment() -> None:
    assert run_key("imagenet_aux/manual__2026-12-01T10:00:00+00:00") == "imagenet_aux_manual__2026-12-01T10_00_00_00_00"
    assert "/" not in run_key("a/b/../c") and run_key("..") == "run"


def test_removing_a_local_runs_area_leaves_the_output_and_other_runs(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "out"))
    mine, other = (Staging(sink=sink, run=r, store=ObjectStore()) for r in ("dag/run-1", "dag/run-2"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{}")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    mine.put_file(f, "a")
    other.put_file(f, "a")
    mine.remove()
    assert (tmp_path / "out" / "manifest.json").exists()
    assert Path(other.uri("a")).exists() and not Path(mine.uri("a")).exists()
    other.remove()
    assert not (tmp_path / "out" / STAGING_DIR).exists(), "empty staging folders go too"
