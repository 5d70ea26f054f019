"""Which try of a mapped writer owns its shard group: a superseded writer stops before its next unit.

When a worker is lost, Airflow retries its writer task on another worker. The lost try should
be dead by then (it dies with its supervisor, and the retry waits for the heartbeat timeout),
but a try that is only cut off (a network partition, a frozen VM coming back) could still be
writing. So each try claims its group in the sink, ``.imagenet_ops/claims/<first unit>.json``,
with the run (the output lease's owner) and its try number. A newer try of the same run takes
the claim over; an older one never does. Before each unit, and before each done-record, a
writer checks that the claim is still its own, and stops with :class:`LeaseLostError` if not.

What this bounds: a superseded try may finish the one unit it is writing (its files are renamed
or uploaded whole, with the same bytes the new try writes, since the plan fixes them), and
never writes a done-record or starts a unit after the new try claimed the group. A try that
completes its group drops the claim, so none stays in a published output; a superseded try
that checks after that finds no claim and stops too, and one that starts only then finds every
unit complete and writes nothing. A claim of another run (an earlier run on this output) is
replaced: the output lease already lets one run at a time write here.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from imagenet_ops.core.lease import LeaseLostError
from imagenet_ops.core.sinks import STATE_DIR, Sink


@dataclass(frozen=True)
class GroupClaim:
    """One try of one run's writer of a shard group."""

    owner: str  # the run, as the output lease names it (dag_id/run_id)
    attempt: int  # Airflow's try number

    def key(self, group: str) -> str:
        return f"{STATE_DIR}/claims/{group}.json"

    def _is_mine(self, held: dict | None) -> bool:
        return bool(held) and (held.get("owner"), int(held.get("attempt", 0))) == (self.owner, self.attempt)

    def _held(self, sink: Sink, group: str) -> dict | None:
        raw = sink.get_bytes(self.key(group))
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None  # a torn record: whoever writes next owns the group

    def take(self, sink: Sink, group: str) -> None:
        """Claim ``group`` for this try, unless a newer try of the same run already has it."""
        held = self._held(sink, group)
        if held and held.get("owner") == self.owner and int(held.get("attempt", 0)) > self.attempt:
            raise self._superseded(group, held)
        record = {"owner": self.owner, "attempt": self.attempt, "host": socket.gethostname(), "pid": os.getpid()}
        sink.put_bytes(json.dumps(record, sort_keys=True).encode(), self.key(group))

    def check(self, sink: Sink, group: str) -> None:
        """Raise :class:`LeaseLostError` when another try (or run) has claimed ``group`` since :meth:`take`."""
        held = self._held(sink, group)
        if not self._is_mine(held):
            raise self._superseded(group, held)

    def release(self, sink: Sink, group: str) -> None:
        """Drop the claim once the group is complete (if it is still this try's): nothing stays behind."""
        if self._is_mine(self._held(sink, group)):
            sink.delete(self.key(group))

    def _superseded(self, group: str, held: dict | None) -> LeaseLostError:
        if held:
            by = f"try {held.get('attempt')} of {held.get('owner')} on {held.get('host')}"
        else:
            by = "no one: the claim was dropped (a newer try completed the group)"
        return LeaseLostError(
            f"shard group {group}: this writer (try {self.attempt} of {self.owner}) no longer owns it; "
            f"it is claimed by {by}. It stops here, before writing another unit"
        )
