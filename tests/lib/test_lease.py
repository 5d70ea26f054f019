"""Output leases on a local folder, the S3 server and fake-gcs-server: one holder at a time, named to the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagenet_ops.core.lease import LEASE_KEY, Lease, LeaseHeldError, LeaseLostError, LeaseRecord
from imagenet_ops.core.sinks import open_sink


@dataclass
class Target:
    """An output location and how another process opens it."""

    uri: str
    env: dict[str, str]
    s3_client: Any = None
    gcs_client: Any = None

    def sink(self) -> Any:
        return open_sink(self.uri, s3_client=self.s3_client, gcs_client=self.gcs_client)


@pytest.fixture(params=["local", "s3", "gs"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return Target(str(tmp_path / "out"), {})
    if request.param == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")
        return Target(f"s3://{bucket}/out", {"AWS_ENDPOINT_URL": request.getfixturevalue("s3_endpoint")}, s3_client=client)
    client, bucket = request.getfixturevalue("gcs_conditional_bucket")
    endpoint = request.getfixturevalue("gcs_conditional_endpoint")
    return Target(f"gs://{bucket}/out", {"STORAGE_EMULATOR_HOST": endpoint}, gcs_client=client)


def test_a_second_owner_fails_at_once_naming_the_holder(target: Target) -> None:
    first = Lease(target.sink(), owner="imagenet_training_data/manual__1", ttl=60).acquire()
    started = time.monotonic()
    with pytest.raises(LeaseHeldError) as err:
        Lease(target.sink(), owner="cli:other:1:abcd", ttl=60).acquire()
    assert time.monotonic() - started < 10  # no waiting unless asked to
    message = str(err.value)
    assert "imagenet_training_data/manual__1" in message
    assert f"pid {os.getpid()}" in message and "since 20" in message and "expires 20" in message
    assert target.uri.rstrip("/") in message
    assert err.value.holder.owner == "imagenet_training_data/manual__1"
    first.release()
    Lease(target.sink(), owner="cli:other:1:abcd", ttl=60).acquire().release()


def test_the_same_owner_takes_it_back_and_keeps_since(target: Target) -> None:
    # Every task of one DAG run (and each retry) holds the run's lease.
    sink = target.sink()
    first = Lease(sink, owner="dag/run", ttl=60).acquire()
    since = first._held[0].since
    time.sleep(0.05)
    again = Lease(target.sink(), owner="dag/run", ttl=60).acquire()
    assert again._held[0].since == since and again._held[0].renewed > since
    again.release()
    assert sink.get_bytes(LEASE_KEY) is None


def test_release_by_another_owner_changes_nothing(target: Target) -> None:
    sink = target.sink()
    Lease(sink, owner="a", ttl=60).acquire()
    Lease(target.sink(), owner="b", ttl=60).release()
    assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == "a"


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost(target: Target) -> None:
    old = Lease(target.sink(), owner="dead-run", ttl=1).acquire()
    time.sleep(1.2)
    new = Lease(target.sink(), owner="new-run", ttl=60).acquire()
    with pytest.raises(LeaseLostError, match="new-run"):
        old.renew()
    with pytest.raises(LeaseLostError):
        old.check()
    old.release()  # not the holder any more: a no-op
    new.check()
    new.release()


def test_waiting_gets_the_lease_once_the_holder_releases_it(target: Target) -> None:
    holder = Lease(target.sink(), owner="first", ttl=60).acquire()
    threading.Timer(1.0, holder.release).start()
    waiter = Lease(target.sink(), owner="second", ttl=60).acquire(wait=20, poll=0.2)
    waiter.check()
    waiter.release()


def test_waiting_too_short_names_the_holder(target: Target) -> None:
    holder = Lease(target.sink(), owner="first", ttl=60).acquire()
    with pytest.raises(LeaseHeldError, match="still held after waiting 1s"):
        Lease(target.sink(), owner="second", ttl=60).acquire(wait=1, poll=0.2)
    holder.release()


def test_keep_alive_renews_while_the_work_runs(target: Target) -> None:
    sink = target.sink()
    lease = Lease(sink, owner="worker", ttl=60).acquire()
    before = LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).renewed
    with lease.keep_alive(every=0.1):
        time.sleep(0.8)
    after = LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).renewed
    assert after > before
    lease.release()


def test_keep_alive_reports_a_lost_lease_when_the_block_ends(target: Target) -> None:
    lease = Lease(target.sink(), owner="slow", ttl=1).acquire()
    with pytest.raises(LeaseLostError, match="thief"):
        with lease.keep_alive(every=3):  # renews too rarely for its ttl
            time.sleep(1.2)
            Lease(target.sink(), owner="thief", ttl=60).acquire()
            time.sleep(2.2)


def test_an_unreadable_lease_object_is_taken(target: Target) -> None:
    # A torn write of a dead run must not block the output for ever.
    sink = target.sink()
    sink.put_bytes(b"{not json", LEASE_KEY)
    Lease(sink, owner="next", ttl=60).acquire().release()


_RACER = textwrap.dedent(
    """
    import sys, time
    from imagenet_ops.core.lease import Lease, LeaseHeldError
    from imagenet_ops.core.sinks import open_sink
    uri, owner, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sink = open_sink(uri)
    lease = Lease(sink, owner=owner, ttl=60)
    lease._read()  # connections warm before the start
    time.sleep(max(0.0, start - time.time()))
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        print("held", exc.holder.owner)
    else:
        print("won", owner)
    """
)


def test_two_processes_racing_for_a_free_lease_never_both_win(target: Target) -> None:
    env = {**os.environ, **target.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    sink = target.sink()
    for trial in range(3):
        start = time.time() + 4
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, target.uri, f"racer-{trial}-{i}", str(start)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        outcomes = [p.communicate(timeout=120) for p in racers]
        lines = sorted(out.strip() for out, _ in outcomes)
        assert all(p.returncode == 0 for p in racers), [err for _, err in outcomes]
        winners = [line for line in lines if line.startswith("won")]
        assert len(winners) == 1, lines
        winner = winners[0].split()[1]
        assert [line for line in lines if line.startswith("held")] == [f"held {winner}"], lines
        assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == winner
        sink.delete(LEASE_KEY)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from imagenet_ops.core.lease import Lease
    from imagenet_ops.core.sinks import open_sink
    Lease(open_sink(sys.argv[1]), owner="cli:holder", ttl=3600, process_bound=True).acquire()
    print("holding", flush=True)
    time.sleep(600)
    """
)


def _holder(uri: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, uri],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_a_live_cli_holder_on_a_local_folder_keeps_its_lease(tmp_path: Path) -> None:
    proc = _holder(str(tmp_path / "out"))
    try:
        with pytest.raises(LeaseHeldError, match=f"pid {proc.pid}"):
            Lease(open_sink(str(tmp_path / "out")), owner="dag/run", ttl=60).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_cli_holder_frees_a_local_folder_at_once(tmp_path: Path) -> None:
    # Its lease would expire only in an hour; the kernel drops its fcntl lock when it dies.
    proc = _holder(str(tmp_path / "out"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sink = open_sink(str(tmp_path / "out"))
    assert LeaseRecord.from_bytes(sink.get_bytes(LEASE_KEY)).owner == "cli:holder"
    Lease(sink, owner="next", ttl=60).acquire().release()


def test_the_record_says_who_when_and_until_when() -> None:
    record = LeaseRecord(owner="o", host="h", pid=7, since=0.0, renewed=60.0, ttl=30.0)
    assert record.expires == 90.0 and record.expired(now=90.0) and not record.expired(now=89.9)
    assert record.describe() == (
        "run 'o' on host h (pid 7) since 1970-01-01T00:00:00Z, renewed 1970-01-01T00:01:00Z, expires 1970-01-01T00:01:30Z"
    )
    assert LeaseRecord.from_bytes(record.to_bytes()) == record
    assert json.loads(record.to_bytes())["process_bound"] is False


def test_sibling_tasks_of_one_run_renew_at_once_without_losing_it(target: Target) -> None:
    # Mapped tasks of one DAG run share its lease and renew it concurrently; a lost race between
    # two siblings is not a lost lease.
    siblings = [Lease(target.sink(), owner="dag/run", ttl=60).acquire() for _ in range(3)]
    errors: list[BaseException] = []

    def renew_often(lease: Lease) -> None:
        try:
            for _ in range(8):
                lease.renew()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=renew_often, args=(s,)) for s in siblings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    siblings[0].release()
