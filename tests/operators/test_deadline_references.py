"""Deadline references against real DagRun rows, and the missed-deadline notice outside a scheduler.

The references go the scheduler's way: serialized as a DAG file serializes them, decoded through
the plugin registry (``plugins/imagenet_deadlines_plugin.py``), then ``evaluate_with`` on the
metadata DB (SQLite here). The real-scheduler test is ``tests/ui/test_deadlines.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagenet_operators.deadlines import RunLimitDeadline, RuntimeMultipleDeadline, deadline_message, notify_deadline_missed

QUEUED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _evaluate(reference: Any, dag_id: str, run_id: str) -> datetime | None:
    """Encode as the DAG processor does, decode as the scheduler does, evaluate as at run creation."""
    from airflow.serialization.decoders import decode_deadline_reference
    from airflow.serialization.definitions.deadline import SerializedReferenceModels
    from airflow.serialization.encoders import encode_deadline_reference
    from airflow.utils.session import create_session

    decoded = decode_deadline_reference(encode_deadline_reference(reference))
    assert isinstance(decoded, SerializedReferenceModels.SerializedCustomReference)  # found through the plugin
    with create_session() as session:
        return decoded.evaluate_with(session=session, interval=timedelta(0), dag_id=dag_id, run_id=run_id)


def _add_runs(dag_id: str, *runs: dict[str, Any]) -> list[str]:
    """DagRun rows: each ``{"state", "minutes" (start to end), "conf"}``; started 10 hours apart, oldest first."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    ids = []
    with create_session() as session:
        for i, run in enumerate(runs):
            start = QUEUED - timedelta(hours=10 * (len(runs) - i))
            row = DagRun(
                dag_id=dag_id,
                run_id=f"manual__{uuid.uuid4().hex}",
                run_type=DagRunType.MANUAL,
                state=run["state"],
                queued_at=start,
                run_after=start,
                start_date=start,
                conf=run.get("conf"),
            )
            row.end_date = start + timedelta(minutes=run["minutes"]) if "minutes" in run else None
            session.add(row)
            ids.append(row.run_id)
    return ids


def _running(dag_id: str, conf: dict[str, Any] | None) -> str:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    with create_session() as session:
        row = DagRun(
            dag_id=dag_id,
            run_id=f"manual__{uuid.uuid4().hex}",
            run_type=DagRunType.MANUAL,
            state="running",
            queued_at=QUEUED,
            run_after=QUEUED,
            conf=conf,
        )
        session.add(row)
        return row.run_id


@pytest.fixture
def dag_id(airflow_db) -> str:
    return f"deadline_test_{uuid.uuid4().hex[:8]}"


def test_the_form_limit_counts_from_the_queued_time_and_is_off_when_empty(dag_id):
    assert _evaluate(RunLimitDeadline(), dag_id, _running(dag_id, {"deadline_minutes": 5})) == QUEUED + timedelta(minutes=5)
    assert _evaluate(RunLimitDeadline(), dag_id, _running(dag_id, {"deadline_minutes": None})) is None
    assert _evaluate(RunLimitDeadline(), dag_id, _running(dag_id, None)) is None  # a scheduled run: the default, no limit


def test_a_bad_conf_value_makes_no_deadline_and_does_not_raise(dag_id, caplog):
    # The reference runs inside the trigger's transaction: raising would refuse the run.
    assert _evaluate(RunLimitDeadline(), dag_id, _running(dag_id, {"deadline_minutes": "soon"})) is None
    assert "no RunLimitDeadline" in caplog.text


def test_fewer_than_the_minimum_successful_runs_make_no_runtime_deadline(dag_id):
    # Two successes, and failed runs (however long) that do not count.
    _add_runs(
        dag_id, {"state": "success", "minutes": 10}, {"state": "failed", "minutes": 90}, {"state": "success", "minutes": 20}
    )
    assert _evaluate(RuntimeMultipleDeadline(), dag_id, _running(dag_id, None)) is None


def test_the_runtime_deadline_is_a_multiple_of_the_last_successful_runs(dag_id):
    # 12 successes: the 2 oldest (100 min) fall outside the last 10 (average 12 min); a failure never counts.
    runs = [{"state": "success", "minutes": 100}] * 2 + [{"state": "success", "minutes": m} for m in (6, 18) * 5]
    _add_runs(dag_id, *runs, {"state": "failed", "minutes": 500})
    default = _evaluate(RuntimeMultipleDeadline(), dag_id, _running(dag_id, None))  # no conf: the Param default, 3
    assert default == QUEUED + timedelta(minutes=3 * 12)
    assert _evaluate(
        RuntimeMultipleDeadline(), dag_id, _running(dag_id, {"deadline_runtime_multiple": 1.5})
    ) == QUEUED + timedelta(minutes=18)
    assert _evaluate(RuntimeMultipleDeadline(), dag_id, _running(dag_id, {"deadline_runtime_multiple": None})) is None


def _context(**run: Any) -> dict[str, Any]:
    """What the scheduler hands the callback: the run as the REST API shows it, and the deadline."""
    dag_run = {"dag_id": "imagenet_aux", "dag_run_id": "manual__1", "queued_at": QUEUED.isoformat(), "end_date": None, **run}
    return {"dag_run": dag_run, "deadline": {"id": "d1", "deadline_time": QUEUED + timedelta(minutes=30)}}


def test_a_run_that_failed_before_its_deadline_sends_nothing():
    ended = (QUEUED + timedelta(minutes=2)).isoformat()
    assert deadline_message(_context(end_date=ended, state="failed"), "run_limit", now=QUEUED + timedelta(hours=1)) is None


def test_the_callback_sends_the_miss_through_the_notify_channels(monkeypatch, webhook):
    webhook.received.clear()
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": webhook.url}))
    monkeypatch.setenv("AIRFLOW_VAR_IMAGENET_OPS_NOTIFY", json.dumps({"webhook": {"conn_id": "ops_webhook"}}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    asyncio.run(notify_deadline_missed(alert="runtime_multiple", context=_context()))
    [got] = [r["json"] for r in webhook.received]
    assert {k: got[k] for k in ("dag_id", "run_id", "state", "limit")} == {
        "dag_id": "imagenet_aux",
        "run_id": "manual__1",
        "state": "deadline missed",
        "limit": "30 min",
    }
    assert got["run_url"] == "http://airflow.example:8080/dags/imagenet_aux/runs/manual__1"
    assert got["text"].startswith(
        "[imagenet_ops] DEADLINE MISSED: imagenet_aux run manual__1: over the multiple of the average of the last 10 "
        "successful runs (30 min) by "
    )
