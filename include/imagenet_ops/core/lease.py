"""One writer per output location: an exclusive, expiring lease kept next to the artifact.

Two runs writing one output used to both succeed and leave a mix (NCHW and NHWC ``.npy`` files
under one manifest; 64- and 32-shard sets side by side). Every run that writes an output now
holds its lease first, and a second run fails at once with :class:`LeaseHeldError`, which names
the holder (run, host, pid, since, expiry). It waits only when asked to (``wait``).

The lease is the object ``.imagenet_ops/lease.json`` under the output, created and replaced by
conditional writes, so two runs can never both believe they hold it:

* **local folder:** the record is read and written under an ``fcntl`` lock on
  ``.imagenet_ops/lease.lock``. A CLI run also holds ``.imagenet_ops/lease.live`` locked for its
  whole life; the kernel drops that lock when the process dies (even by ``kill -9``), so the
  next run takes over a dead CLI's lease at once instead of waiting for the expiry.
* **S3:** ``PutObject`` with ``If-None-Match: *`` to create, ``If-Match: <etag>`` to renew or take over.
* **GCS:** uploads with ``ifGenerationMatch=0`` to create, ``ifGenerationMatch=<generation>`` after.

A lease expires ``ttl`` seconds after its last renewal; :meth:`Lease.keep_alive` renews it every
``ttl / 4`` (at most every 30 s) in a thread while work runs. An expired lease (its holder died
without releasing it, e.g. a killed run on S3) is taken over by the next run. The owner is a
stable name: ``cli:<host>:<pid>:<nonce>`` for a CLI run, ``<dag_id>/<run_id>`` for a DAG run, so
every task of one DAG run holds the same lease, and a retry of a task takes it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.lease_backends import LEASE_KEY, LocalBackend, OutputReadOnlyError, backend_for

log = logging.getLogger(__name__)

__all__ = [
    "CLI_TTL",
    "LEASE_KEY",
    "RUN_TTL",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseRecord",
    "OutputReadOnlyError",
    "cli_owner",
    "default_ttl",
    "ensure_still_held",
    "guard_writes",
    "held",
]

CLI_TTL = 120.0
"""Seconds a CLI run's lease outlives its last renewal (local folders: released at once on death)."""
RUN_TTL = 900.0
"""Seconds a DAG run's lease outlives its last renewal: it must span the gaps between its tasks."""
TTL_ENV = "IMAGENET_OPS_LEASE_TTL"
_LATEST = 32503680000.0  # 3000-01-01: later times in a record are corrupt
_LONGEST_TTL = 7 * 86400.0


class LeaseHeldError(StorageError):
    """Another run holds the output's lease; the message names it (run, host, since, expiry)."""

    def __init__(self, message: str, holder: LeaseRecord) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLostError(StorageError):
    """This run's lease was taken over (it had expired) or removed while the run still wrote."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LeaseRecord:
    """The lease object's content.

    Attributes:
        owner: who holds it (``cli:host:pid:nonce`` or ``dag_id/run_id``).
        host, pid: where the process that last took or renewed it runs.
        since: when the owner first took it (epoch seconds).
        renewed: the last renewal (epoch seconds).
        ttl: seconds after ``renewed`` at which the lease expires.
        process_bound: the lease lives and dies with one process (a CLI run).
    """

    owner: str
    host: str
    pid: int
    since: float
    renewed: float
    ttl: float
    process_bound: bool = False

    @property
    def expires(self) -> float:
        return self.renewed + self.ttl

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    def describe(self) -> str:
        return (
            f"run {self.owner!r} on host {self.host} (pid {self.pid}) since {_iso(self.since)}, "
            f"renewed {_iso(self.renewed)}, expires {_iso(self.expires)}"
        )

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> LeaseRecord | None:
        # Unreadable or implausible (a torn write, a hand edit, NaN, a year-33658 time): treated as
        # expired, so it never blocks the output nor breaks a run with a traceback.
        try:
            d = json.loads(raw)
            record = cls(
                owner=d["owner"],
                host=d["host"],
                pid=d["pid"],
                since=float(d["since"]),
                renewed=float(d["renewed"]),
                ttl=float(d["ttl"]),
                process_bound=d.get("process_bound") is True,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None
        plausible = (
            isinstance(record.owner, str)
            and isinstance(record.host, str)
            and isinstance(record.pid, int)
            and all(0.0 <= t <= _LATEST for t in (record.since, record.renewed))
            and 0.0 < record.ttl <= _LONGEST_TTL
        )
        return record if plausible else None


# -- the lease --------------------------------------------------------------------------------------


def cli_owner() -> str:
    """The owner name of this CLI process."""
    return f"cli:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def default_ttl(fallback: float) -> float:
    raw = os.environ.get(TTL_ENV)
    if not raw:
        return fallback
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if ttl < 5:
        raise StorageError(f"{TTL_ENV}={raw!r}: expected seconds >= 5")
    return ttl


class Lease:
    """The lease of one sink's output for one owner.

    Args:
        sink: the output (:class:`~imagenet_ops.core.sinks.LocalSink`, ``S3Sink`` or ``GCSSink``).
        owner: the holder's stable name (:func:`cli_owner`, or ``dag_id/run_id``).
        ttl: seconds the lease outlives its last renewal.
        process_bound: the lease belongs to this process alone (the CLI); on a local folder it
            is then released by the kernel when the process dies.
    """

    def __init__(self, sink: Any, *, owner: str, ttl: float = CLI_TTL, process_bound: bool = False) -> None:
        self.sink, self.owner, self.ttl, self.process_bound = sink, owner, ttl, process_bound
        self._backend = backend_for(sink)
        self.where = self._backend.where
        self._held: tuple[LeaseRecord, Any] | None = None
        self._lock = threading.Lock()
        self._renewed_at = 0.0  # monotonic time of the last successful take or renewal
        self.lost: LeaseLostError | None = None

    def _record(self, since: float | None = None) -> LeaseRecord:
        now = time.time()
        return LeaseRecord(
            owner=self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            since=now if since is None else since,
            renewed=now,
            ttl=self.ttl,
            process_bound=self.process_bound,
        )

    def _read(self) -> tuple[LeaseRecord | None, Any] | None:
        got = self._backend.read()
        if got is None:
            return None
        raw, version = got
        return LeaseRecord.from_bytes(raw), version

    def _free(self, current: LeaseRecord | None) -> bool:
        """Whether ``current`` may be taken: unreadable, ours, expired, or a dead process's."""
        if current is None or current.owner == self.owner or current.expired():
            return True
        if current.process_bound and isinstance(self._backend, LocalBackend):
            return not self._backend.holder_alive()
        return False

    def _try_take(self) -> LeaseRecord | None:
        """Take the lease if free; return the foreign holder otherwise."""
        found = self._read()
        if found is None:
            record = self._bound_record(None)
            if self._backend.create(record.to_bytes()):
                self._taken(record)
                return None
            self._unbind()
            return self._try_take_existing()
        current, version = found
        if not self._free(current):
            assert current is not None
            return current
        if current is not None and current.owner != self.owner:
            why = "expired" if current.expired() else "its process is gone"
            log.warning("lease %s: taking over from %s (%s)", self.where, current.describe(), why)
        since = current.since if current is not None and current.owner == self.owner else None
        record = self._bound_record(since)
        if self._backend.replace(record.to_bytes(), version):
            self._taken(record)
            return None
        self._unbind()
        return self._try_take_existing()

    def _bound_record(self, since: float | None) -> LeaseRecord:
        """The record to write; a process-bound lease on a folder takes the live lock *before* it is
        written, so no reader ever sees a process-bound record without its live lock."""
        record = self._record(since)
        if record.process_bound and isinstance(self._backend, LocalBackend) and not self._backend.bind_to_process():
            # A frozen (not dead) holder we take over from still has the live lock: this lease is
            # then freed by its expiry only, and says so, so that nobody takes it for a dead process's.
            log.info("lease %s: the previous holder's process still runs; this lease frees by expiry", self.where)
            record = replace(record, process_bound=False)
        return record

    def _unbind(self) -> None:
        if isinstance(self._backend, LocalBackend):
            self._backend.unbind()

    def _try_take_existing(self) -> LeaseRecord | None:
        found = self._read()  # lost a race: someone wrote between our read and write
        if found is None or self._free(found[0]):
            return self._try_take()
        return found[0]

    def _taken(self, record: LeaseRecord) -> None:
        self._renewed_at, self.lost = time.monotonic(), None
        found = self._read()
        self._held = (record, found[1] if found else None)

    def acquire(self, *, wait: float = 0.0, poll: float = 2.0) -> Lease:
        """Take the lease, or fail at once (``wait=0``) or after ``wait`` seconds.

        Raises:
            LeaseHeldError: another live run holds it; the message names that run.
            StorageError: the lease object cannot be read or written.
        """
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            with self._lock:
                holder = self._try_take()
            if holder is None:
                log.info("lease %s: held by %s (expires %ds after each renewal)", self.where, self.owner, self.ttl)
                return self
            if time.monotonic() >= deadline:
                hint = "wait for it to finish" if wait <= 0 else f"still held after waiting {wait:.0f}s"
                raise LeaseHeldError(
                    f"output {self.sink.location()} is being written by another run: {holder.describe()}. "
                    f"Two runs on one output would mix their files; {hint}, or write to another output "
                    "(the CLI's --wait-for-lease SECONDS waits for it). If that run is gone and its lease is "
                    f"wrong (e.g. a host clock far ahead), delete {self.where} to free the output.",
                    holder,
                )
            log.info("lease %s: waiting for %s", self.where, holder.describe())
            time.sleep(min(poll, max(0.05, deadline - time.monotonic())))

    def renew(self) -> None:
        """Extend the lease; raise :class:`LeaseLostError` if another run took it meanwhile."""
        with self._lock:
            found = self._read()
            if found is None or found[0] is None or found[0].owner != self.owner:
                who = found[0].describe() if found and found[0] else "nobody (the lease object is gone)"
                self._held = None
                raise LeaseLostError(f"lease {self.where}: {self.owner!r} no longer holds it; now {who}")
            current, version = found
            record = replace(current, host=socket.gethostname(), pid=os.getpid(), renewed=time.time(), ttl=self.ttl)
            if not self._backend.replace(record.to_bytes(), version):
                after = self._read()  # changed in between: a sibling task of this run renewed it, or a thief
                if after is None or after[0] is None or after[0].owner != self.owner:
                    raise LeaseLostError(f"lease {self.where}: taken from {self.owner!r} while it renewed it")
            after = self._read()
            self._held = (record, after[1] if after else None)
            self._renewed_at = time.monotonic()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this owner still holds the lease (a cheap read)."""
        found = self._read()
        if found is None or found[0] is None or found[0].owner != self.owner:
            who = found[0].describe() if found and found[0] else "nobody"
            raise LeaseLostError(f"lease {self.where}: {self.owner!r} no longer holds it; now {who}")

    def guard(self) -> None:
        """A cheap check between writes: raise if the lease is known lost, and read it when the
        last renewal is older than half the ttl (the process was frozen, or renewals failed)."""
        if self.lost is not None:
            raise self.lost
        if time.monotonic() - self._renewed_at > self.ttl / 2:
            self.check()

    def release(self) -> None:
        """Give the lease up (a no-op when another run holds it by now)."""
        with self._lock:
            found = self._read()
            if found is not None and found[0] is not None and found[0].owner == self.owner:
                self._backend.delete(found[1])
                log.info("lease %s: released by %s", self.where, self.owner)
            self._held = None
            if isinstance(self._backend, LocalBackend):
                self._backend.unbind()

    @contextlib.contextmanager
    def keep_alive(self, *, every: float | None = None) -> Iterator[Lease]:
        """Renew the lease in a thread while the block runs; a lost lease fails the block's end."""
        interval = every if every is not None else min(30.0, self.ttl / 4)
        stop = threading.Event()
        lost: list[BaseException] = []

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew()
                except LeaseLostError as exc:
                    log.error("%s", exc)
                    self.lost = exc
                    lost.append(exc)
                    return
                except StorageError as exc:  # transient: the next beat tries again, expiry is far off
                    log.warning("lease %s: renewal failed (%s); retrying in %.0fs", self.where, exc, interval)

        thread = threading.Thread(target=beat, name="imagenet-ops-lease", daemon=True)
        thread.start()
        _ACTIVE.append(self)
        try:
            yield self
        finally:
            _ACTIVE.remove(self)
            stop.set()
            thread.join()
        if lost:
            raise lost[0]


_ACTIVE: list[Lease] = []
"""The leases this process is renewing (inside :meth:`Lease.keep_alive`)."""


def _of(sink: Any) -> list[Lease]:
    return [lease for lease in list(_ACTIVE) if lease.sink.location() == sink.location()]


def ensure_still_held(sink: Any) -> None:
    """Raise :class:`LeaseLostError` unless this process still holds the lease it renews on ``sink``.

    Called before the steps that change what readers see (clearing a location, writing a
    manifest), so a run that was frozen past its expiry and lost its lease to another run
    stops there instead of writing over that run's artifact.
    """
    for lease in _of(sink):
        lease.check()


def guard_writes(sink: Any) -> None:
    """Between the writes of a run: :meth:`Lease.guard` for every lease this process renews on ``sink``."""
    for lease in _of(sink):
        lease.guard()


@contextlib.contextmanager
def held(
    sink: Any, *, owner: str, ttl: float, process_bound: bool = False, wait: float = 0.0, release: bool = True
) -> Iterator[Lease]:
    """Take ``sink``'s lease, renew it while the block runs, and release it after (if ``release``)."""
    lease = Lease(sink, owner=owner, ttl=ttl, process_bound=process_bound).acquire(wait=wait)
    try:
        with lease.keep_alive():
            yield lease
    finally:
        if release:
            lease.release()
