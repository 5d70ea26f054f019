"""Deadline alerts: a run that outlasts its form limit, or a multiple of its DAG's recent runtime, notifies.

Two form fields (section "Operations", the same in every DAG) set a run's deadlines:

- ``deadline_minutes``: the run must end this many minutes after it was queued. Empty: no limit;
- ``deadline_runtime_multiple``: the run must end within this multiple of the average runtime of
  the DAG's last ``RECENT_RUNS`` successful runs, once there are at least ``MIN_RECENT_RUNS`` of
  them. Empty: off. Default :data:`DEFAULT_RUNTIME_MULTIPLE`.

The deadlines are Airflow ``DeadlineAlert``\\ s with a reference of our own each, evaluated where the
run is created (the api-server for a trigger, the scheduler for a scheduled run), from the run's
conf. A run without a conf (a scheduled run) gets the Param defaults, which are the references'
own defaults here, so the two cannot drift apart. A reference that is off returns ``None`` and
Airflow creates no deadline. The references must be registered by a plugin
(``plugins/imagenet_deadlines_plugin.py``) for the scheduler and api-server to load them.

A missed deadline runs :func:`notify_deadline_missed` in the triggerer (an ``AsyncCallback``, so any
executor will do). It sends through the channels of :mod:`imagenet_operators.notify`: the same
Variable, e-mail and webhook, with the state "deadline missed", the limit, how late the run is,
and a link to the run. A run that ended (failed) before its deadline sends nothing: its failure
was notified already. A run that succeeds in time has its deadlines removed by Airflow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import AsyncCallback, DeadlineAlert
from airflow.sdk.definitions.deadline import BaseDeadlineReference, deadline_reference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

LIMIT_PARAM = "deadline_minutes"
MULTIPLE_PARAM = "deadline_runtime_multiple"
DEFAULT_RUNTIME_MULTIPLE = 3.0
RECENT_RUNS = 10
MIN_RECENT_RUNS = 3
STATE = "deadline missed"


class _RunReference(BaseDeadlineReference):
    """A reference computed from the run's row; its dataclass fields are serialized beside its type.

    A reference that cannot be computed logs why and makes no deadline: it must never stop the
    run from being created (Airflow evaluates it inside the trigger's or scheduler's transaction).
    """

    required_kwargs = {"dag_id", "run_id"}  # what the scheduler passes on to _evaluate_with

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        try:
            return self._deadline(session, dag_id, run_id)
        except Exception as exc:  # noqa: BLE001 - a bad conf value or a DB hiccup: no deadline, the run goes on
            log.error("%s run %s: no %s (%s: %s)", dag_id, run_id, type(self).__name__, type(exc).__name__, exc)
            return None

    def _deadline(self, session: Session, dag_id: str, run_id: str) -> datetime | None:
        raise NotImplementedError

    def serialize_reference(self) -> dict[str, Any]:
        return {**super().serialize_reference(), **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> BaseDeadlineReference:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in reference_data.items() if k in names})


@deadline_reference
@dataclass(frozen=True)
class RunLimitDeadline(_RunReference):
    """The run's queued time plus its form limit, ``conf[param]`` minutes; ``None`` without a limit."""

    param: str = LIMIT_PARAM

    def _deadline(self, session: Session, dag_id: str, run_id: str) -> datetime | None:
        conf, queued_at = _run_conf(session, dag_id, run_id)
        minutes = conf.get(self.param)
        if minutes is None:
            return None
        return queued_at + timedelta(minutes=float(minutes))


@deadline_reference
@dataclass(frozen=True)
class RuntimeMultipleDeadline(_RunReference):
    """The run's queued time plus ``multiple`` x the mean duration of the DAG's recent successful runs.

    ``None`` when the run's ``conf[param]`` is null, or fewer than ``min_runs`` successful runs
    exist. A run without the key uses ``default_multiple`` (the Param's default).
    """

    param: str = MULTIPLE_PARAM
    default_multiple: float = DEFAULT_RUNTIME_MULTIPLE
    max_runs: int = RECENT_RUNS
    min_runs: int = MIN_RECENT_RUNS

    def _deadline(self, session: Session, dag_id: str, run_id: str) -> datetime | None:
        conf, queued_at = _run_conf(session, dag_id, run_id)
        multiple = conf.get(self.param, self.default_multiple)
        if multiple is None:
            return None
        durations = recent_durations(session, dag_id, limit=self.max_runs)
        if len(durations) < self.min_runs:
            log.info("%s: no runtime deadline, %d successful runs of %d needed", dag_id, len(durations), self.min_runs)
            return None
        return queued_at + timedelta(seconds=float(multiple) * sum(durations) / len(durations))


def recent_durations(session: Session, dag_id: str, *, limit: int) -> list[float]:
    """Seconds from start to end of the DAG's latest ``limit`` successful runs, newest first."""
    from airflow.models import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import func, select

    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", DagRun.end_date - DagRun.start_date)
    else:  # SQLite (the dev default); MySQL is not a deployment of this project
        seconds = (func.julianday(DagRun.end_date) - func.julianday(DagRun.start_date)) * 86400.0
    query = (
        select(seconds)
        .where(
            DagRun.dag_id == dag_id,
            DagRun.state == DagRunState.SUCCESS,
            DagRun.start_date.is_not(None),
            DagRun.end_date.is_not(None),
        )
        .order_by(DagRun.end_date.desc())  # not logical_date, which a manual run does not have
        .limit(limit)
    )
    return [round(float(s), 3) for s in session.scalars(query)]  # SQLite's julianday is off by some microseconds


def _run_conf(session: Session, dag_id: str, run_id: str) -> tuple[dict[str, Any], datetime]:
    from airflow.models import DagRun
    from sqlalchemy import select

    row = session.execute(
        select(DagRun.conf, DagRun.queued_at, DagRun.run_after).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
    ).one()
    conf, queued_at, run_after = row
    return conf or {}, queued_at or run_after


# -- the alerts --------------------------------------------------------------------------------

ALERTS = {
    "run_limit": ("the run limit set in the form", RunLimitDeadline()),
    "runtime_multiple": (f"the multiple of the average of the last {RECENT_RUNS} successful runs", RuntimeMultipleDeadline()),
}


def deadline_alerts() -> list[DeadlineAlert]:
    """The two alerts every DAG carries (``DAG(deadline=...)``); the references hold the whole limit."""
    return [
        DeadlineAlert(
            name=name,
            reference=reference,
            interval=timedelta(0),
            callback=AsyncCallback(notify_deadline_missed, kwargs={"alert": name}),
        )
        for name, (_, reference) in ALERTS.items()
    ]


async def notify_deadline_missed(alert: str, context: dict[str, Any] | None = None) -> None:
    """The alerts' callback, in the triggerer: notify by the configured channels (blocking senders in a thread)."""
    facts = deadline_message(context or {}, alert, now=datetime.now(UTC))
    if facts is None:
        return
    await asyncio.to_thread(_deliver, facts, context or {})


def _deliver(facts: dict[str, Any], context: dict[str, Any]) -> None:
    from imagenet_operators.notify import deliver, settings

    deliver(facts, settings(), context)


def deadline_message(context: dict[str, Any], alert: str, *, now: datetime) -> dict[str, Any] | None:
    """The facts of a deadline miss (DAG, run, limit, how late, run link); ``None`` if the run ended in time."""
    run = context.get("dag_run") or {}
    deadline_time = _datetime(context.get("deadline", {}).get("deadline_time"))
    ended = _datetime(run.get("end_date"))
    if ended and deadline_time and ended <= deadline_time:
        log.info(
            "%s run %s ended (%s) before its deadline: nothing to send",
            run.get("dag_id"),
            run.get("dag_run_id"),
            run.get("state"),
        )
        return None
    queued = _datetime(run.get("queued_at")) or _datetime(run.get("run_after"))
    facts: dict[str, Any] = {"dag_id": run.get("dag_id"), "run_id": run.get("dag_run_id"), "state": STATE}
    facts["deadline"] = ALERTS[alert][0] if alert in ALERTS else alert
    if deadline_time and queued:
        facts["limit"] = _duration(deadline_time - queued)
    if deadline_time:
        facts["deadline_time"] = deadline_time.isoformat()
        facts["late_by"] = _duration(now - deadline_time)
    if url := _run_url(facts["dag_id"], facts["run_id"]):
        facts["run_url"] = url
    return facts


def _run_url(dag_id: str | None, run_id: str | None) -> str | None:
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if not (dag_id and run_id and base.startswith(("http://", "https://"))):
        return None
    return f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def _datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _duration(delta: timedelta) -> str:
    """``1 h 2 min 3 s`` (whole seconds; negative as 0 s)."""
    hours, rest = divmod(max(int(delta.total_seconds()), 0), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (seconds, "s")) if n]
    return " ".join(parts) or "0 s"
