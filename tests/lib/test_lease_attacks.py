"""Hostile tests of the output leases and of "one artifact per output location", with real processes.

Each test came from attacking the feature; those named in the regression comments below were
defects (files outside the output or a user's own files deleted, a live holder's lease taken,
tracebacks on a bad lease record, a read-only cache hit refused, a planted work-dir symlink
followed) and are fixed; the others are behaviours verified to hold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from imagenet_ops.core.lease import LEASE_KEY, Lease, LeaseHeldError, LeaseRecord
from imagenet_ops.core.sinks import open_sink

pytestmark = pytest.mark.slow

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(scope="module")
def aux_source(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """CLI arguments of an ``aux`` run from a local sample archive (no network)."""
    from imagenet_ops.core.digests import file_digests

    folder = tmp_path_factory.mktemp("aux-src")
    subprocess.run(
        [sys.executable, "-m", "imagenet_ops", "sample", "--output", str(folder)], env=_ENV, check=True, capture_output=True
    )
    archive = folder / "caffe_ilsvrc12.tar.gz"
    return ["aux", "--url", archive.as_uri(), "--md5", file_digests(archive).md5]


def _cli(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagenet_ops", *args],
        env={**_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _script(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env={**_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_HOLDER = """
    import sys, time
    from imagenet_ops.core.lease import Lease
    from imagenet_ops.core.sinks import open_sink
    Lease(open_sink(sys.argv[1]), owner=sys.argv[2], ttl=float(sys.argv[3]), process_bound=True).acquire()
    print("holding", flush=True)
    time.sleep(600)
"""


def _holder(uri: str, owner: str = "cli:holder", ttl: float = 3600) -> subprocess.Popen[str]:
    proc = _script(_HOLDER, uri, owner, str(ttl))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding", proc.stderr and proc.stderr.read()
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.communicate()


# -- "only files this project wrote or announced are ever removed" --------------------------------


def test_a_users_dotfile_shaped_like_a_temporary_is_kept(tmp_path: Path, aux_source: list[str]) -> None:
    # Regression: every file named like .<name>.tmp-<hex> under the output was deleted, a user's included.
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / ".myconf.tmp-1").write_text("user")
    (out / "notes" / ".settings.tmp-cafe").write_text("user")
    assert _cli([*aux_source, "--output", str(out)]).returncode == 0
    assert (out / ".myconf.tmp-1").exists() and (out / "notes" / ".settings.tmp-cafe").exists()


def test_another_tools_manifest_json_does_not_get_user_files_deleted(tmp_path: Path, aux_source: list[str]) -> None:
    # Regression: any manifest.json with a files list was trusted, and the user files it named deleted.
    out = tmp_path / "out"
    out.mkdir()
    (out / "NOTES.txt").write_text("mine")
    (out / "manifest.json").write_text(json.dumps({"name": "my-webapp", "files": ["NOTES.txt"]}))
    assert _cli([*aux_source, "--output", str(out)]).returncode == 0
    assert (out / "NOTES.txt").read_text() == "mine"


@pytest.mark.parametrize("record", ["intent", "manifest"])
def test_paths_in_a_manifest_or_intent_never_reach_outside_the_output(tmp_path: Path, aux_source: list[str], record: str) -> None:
    # Regression: absolute and ../ paths listed in a manifest or intent record deleted files outside the output.
    out, victim = tmp_path / "out", tmp_path / "victim"
    (out / ".imagenet_ops").mkdir(parents=True)
    victim.mkdir()
    (victim / "abs.txt").write_text("precious")
    (victim / "rel.txt").write_text("precious")
    names = [str(victim / "abs.txt"), "../victim/rel.txt"]
    if record == "intent":
        (out / ".imagenet_ops" / "intent.json").write_text(json.dumps({"files": names}))
    else:
        files = [{"path": n, "size": 8, "sha256": "0" * 64} for n in names]
        (out / "manifest.json").write_text(json.dumps({"cache_key": "other", "files": files}))
    assert _cli([*aux_source, "--output", str(out)]).returncode == 0
    assert (victim / "abs.txt").exists() and (victim / "rel.txt").exists()


def test_a_run_on_a_parent_folder_keeps_a_live_nested_runs_temporaries(tmp_path: Path, aux_source: list[str]) -> None:
    # Regression: a run on a parent folder deleted the in-flight temporaries of a live run on a nested output.
    parent, child = tmp_path / "out", tmp_path / "out" / "child"
    holder = _holder(str(child))  # a live run writing the nested output
    try:
        tmp = child / ".train-00000-of-00004.tmp-1a2b3c4d"  # what LocalSink writes before its rename
        tmp.write_bytes(b"half a shard")
        assert _cli([*aux_source, "--output", str(parent)]).returncode == 0
        assert tmp.exists()
    finally:
        _stop(holder)


def test_user_files_survive_kills_and_reruns_of_other_subcommands(tmp_path: Path, aux_source: list[str]) -> None:
    """aux killed mid-run, then aux, then a training-data-shaped leftover: user files stay, exactly one artifact."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "USER.md").write_text("keep")
    (out / "sub" / "data.csv").write_text("keep")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagenet_ops", *aux_source, "--output", str(out)],
        env=_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert _cli([*aux_source, "--output", str(out)]).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    have = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".imagenet_ops" not in p.parts}
    assert have == {f["path"] for f in manifest["files"]} | {"manifest.json", "USER.md", "sub/data.csv"}


# -- the lease itself ------------------------------------------------------------------------------


def test_a_lease_taken_from_a_frozen_holder_is_not_stolen_while_its_new_holder_lives(tmp_path: Path) -> None:
    # Regression: after a takeover from a frozen holder, a third run took the live new holder's lease.
    uri = str(tmp_path / "out")
    frozen = _holder(uri, owner="cli:frozen", ttl=5)
    try:
        os.kill(frozen.pid, signal.SIGSTOP)
        time.sleep(5.5)  # its lease expires; it still holds lease.live
        taker = _holder(uri, owner="cli:taker", ttl=3600)  # takes over the expired lease (live for an hour)
        try:
            _stop(frozen)  # the frozen run wakes, learns it lost, and ends
            with pytest.raises(LeaseHeldError, match="cli:taker"):
                Lease(open_sink(uri), owner="cli:third", ttl=60, process_bound=True).acquire()
        finally:
            _stop(taker)
    finally:
        _stop(frozen)


_SLOW_BINDER = """
    import sys, time, pathlib
    from imagenet_ops.core import lease as L
    from imagenet_ops.core import lease_backends as B
    original = B.LocalBackend.create
    def slow(self, data):
        done = original(self, data)
        pathlib.Path(sys.argv[2]).write_text("record written")
        time.sleep(3)  # a preemption right after the record is written
        return done
    B.LocalBackend.create = slow
    from imagenet_ops.core.sinks import open_sink
    L.Lease(open_sink(sys.argv[1]), owner="cli:first", ttl=3600, process_bound=True).acquire()
    print("holding", flush=True)
    time.sleep(600)
"""


def test_no_window_between_writing_the_record_and_taking_the_live_lock(tmp_path: Path) -> None:
    # Regression: the record was written before lease.live was locked, leaving a window to steal it.
    uri, marker = str(tmp_path / "out"), tmp_path / "marker"
    first = _script(_SLOW_BINDER, uri, str(marker))
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(LeaseHeldError, match="cli:first"):
            Lease(open_sink(uri), owner="cli:second", ttl=60, process_bound=True).acquire()
    finally:
        _stop(first)


_BAD_RECORDS = {
    "nan_renewed": '{"owner":"x","host":"h","pid":1,"since":0,"renewed":NaN,"ttl":5}',
    "string_ttl": '{"owner":"x","host":"h","pid":1,"since":0,"renewed":"0","ttl":"5"}',
    "infinite_ttl": '{"owner":"x","host":"h","pid":1,"since":0,"renewed":0,"ttl":Infinity}',
    "year_33658": '{"owner":"x","host":"h","pid":1,"since":0,"renewed":1e12,"ttl":5}',
}


@pytest.mark.parametrize("name", sorted(_BAD_RECORDS))
def test_a_malformed_lease_record_gives_one_line_not_a_traceback(tmp_path: Path, aux_source: list[str], name: str) -> None:
    # Regression: NaN, string, infinite or far-future fields crashed every later run with a traceback.
    out = tmp_path / "out"
    (out / ".imagenet_ops").mkdir(parents=True)
    (out / LEASE_KEY).write_text(_BAD_RECORDS[name])
    done = _cli([*aux_source, "--output", str(out)])
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode in (0, 1)


@pytest.mark.parametrize("raw", [b'{"owner": "cli:x:1:ab", "host"', b"[1,2]", bytes(range(256)), b'{"owner":null}'])
def test_garbage_or_torn_lease_json_is_taken_over(tmp_path: Path, aux_source: list[str], raw: bytes) -> None:
    out = tmp_path / "out"
    (out / ".imagenet_ops").mkdir(parents=True)
    (out / LEASE_KEY).write_bytes(raw)
    done = _cli([*aux_source, "--output", str(out)])
    assert done.returncode == 0, done.stderr[-600:]
    assert not (out / LEASE_KEY).exists()


def test_a_lease_renewed_in_the_far_future_blocks_and_the_message_names_its_expiry(tmp_path: Path, aux_source: list[str]) -> None:
    out = tmp_path / "out"
    (out / ".imagenet_ops").mkdir(parents=True)
    record = LeaseRecord(owner="dag/skewed", host="fast-clock", pid=1, since=time.time(), renewed=4_000_000_000, ttl=900)
    (out / LEASE_KEY).write_bytes(record.to_bytes())
    done = _cli([*aux_source, "--output", str(out)])
    assert done.returncode == 1 and "dag/skewed" in done.stderr and "2096-" in done.stderr


def test_a_cache_hit_on_a_read_only_mount_still_reports_the_artifact(tmp_path: Path, aux_source: list[str]) -> None:
    # Regression: a cache hit on a read-only artifact failed once leases came (no lock file could be made).
    out, mnt = tmp_path / "out", tmp_path / "ro"
    assert _cli([*aux_source, "--output", str(out)]).returncode == 0
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(out), str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        done = _cli([*aux_source, "--output", str(mnt)])
        assert done.returncode == 0, done.stderr[-400:]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("value", ["-5", "nan"])
def test_wait_for_lease_refuses_negative_and_nan(tmp_path: Path, aux_source: list[str], value: str) -> None:
    # Regression: --wait-for-lease took -5 (as 0) and nan.
    done = _cli([*aux_source, "--output", str(tmp_path / "out"), "--wait-for-lease", value])
    assert done.returncode == 2


@pytest.mark.parametrize("spelling", ["link", "./real/", "real/../real", "file://{root}/real", "{root}//real"])
def test_every_spelling_of_one_folder_sees_one_lease(tmp_path: Path, aux_source: list[str], spelling: str) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    holder = _holder(str(real))
    try:
        done = _cli([*aux_source, "--output", spelling.format(root=tmp_path)], cwd=tmp_path)
        assert done.returncode == 1 and "cli:holder" in done.stderr, done.stderr[-400:]
        assert "Traceback" not in done.stderr
    finally:
        _stop(holder)


def test_the_lease_record_holds_no_secret(tmp_path: Path) -> None:
    lease = Lease(open_sink(str(tmp_path / "out")), owner="dag/run", ttl=60).acquire()
    try:
        doc = json.loads((tmp_path / "out" / LEASE_KEY).read_text())
        assert set(doc) == {"owner", "host", "pid", "since", "renewed", "ttl", "process_bound"}
        assert not any(k in json.dumps(doc).lower() for k in ("secret", "token", "password", "aws_", "key="))
    finally:
        lease.release()


_TAKER = """
    import sys, time
    from imagenet_ops.core.lease import Lease, LeaseHeldError
    from imagenet_ops.core.sinks import open_sink
    lease = Lease(open_sink(sys.argv[1]), owner=sys.argv[2], ttl=60)
    while time.time() < float(sys.argv[3]):
        pass
    try:
        lease.acquire()
        print("won", sys.argv[2])
    except LeaseHeldError as exc:
        print("held", exc.holder.owner)
"""


@pytest.fixture(params=["local", "s3", "gs"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str], Any]:
    if request.param == "local":
        return str(tmp_path / "out"), {}, open_sink(str(tmp_path / "out"))
    if request.param == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")
        uri = f"s3://{bucket}/out"
        return uri, {"AWS_ENDPOINT_URL": request.getfixturevalue("s3_endpoint")}, open_sink(uri, s3_client=client)
    client, bucket = request.getfixturevalue("gcs_conditional_bucket")
    uri = f"gs://{bucket}/out"
    return uri, {"STORAGE_EMULATOR_HOST": request.getfixturevalue("gcs_conditional_endpoint")}, open_sink(uri, gcs_client=client)


def test_racing_takeovers_of_an_expired_lease_have_one_winner(remote: tuple[str, dict[str, str], Any]) -> None:
    uri, env, sink = remote
    for trial in range(2):
        dead = LeaseRecord(owner="dag/dead", host="gone", pid=1, since=0, renewed=time.time() - 1000, ttl=5)
        sink.put_bytes(dead.to_bytes(), LEASE_KEY)
        start = time.time() + 5
        racers = [_script(_TAKER, uri, f"taker-{trial}-{i}", str(start), env=env) for i in range(3)]
        lines = sorted(p.communicate(timeout=120)[0].strip() for p in racers)
        winners = [line.split()[1] for line in lines if line.startswith("won")]
        assert len(winners) == 1, lines
        assert lines.count(f"held {winners[0]}") == 2, lines
        assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == winners[0]
        sink.delete(LEASE_KEY)


def test_a_planted_symlink_at_the_default_work_dir_is_not_followed(tmp_path: Path, aux_source: list[str]) -> None:
    # Regression: a symlink planted at the predictable default work dir was followed.
    import hashlib

    tmpdir, planted, out = tmp_path / "tmp", tmp_path / "planted", tmp_path / "out"
    tmpdir.mkdir()
    planted.mkdir()
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    (tmpdir / f"imagenet_ops-work-{digest}").symlink_to(planted)
    done = _cli([*aux_source, "--output", str(out)], env={"TMPDIR": str(tmpdir)})
    assert done.returncode in (0, 1)
    assert list(planted.iterdir()) == []
