"""Notifications outside a scheduler: settings, silence by default, redaction, and a channel that is down.

The real-scheduler tests (an SMTP server and a webhook receiver on 127.0.0.1 getting a failed and a
succeeded run's facts) are in ``tests/ui/test_notifications.py``. Settings here come from the
environment (``AIRFLOW_VAR_*``, ``AIRFLOW_CONN_*``), as a deployment may also give them.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

from imagenet_operators.notify import message, notify_failure, notify_success, summary

SECRET = "s3cr3t-Pa55"


def _context(error: BaseException | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(
        task_id="verify", map_index=-1, try_number=2, dag_id="imagenet_aux", run_id="manual__1", log_url="http://ui/log"
    )
    return {"ti": ti, "dag": SimpleNamespace(dag_id="imagenet_aux"), "run_id": "manual__1", "exception": error}


def _configure(monkeypatch, url: str, **settings: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": url}))
    monkeypatch.setenv("AIRFLOW_VAR_IMAGENET_OPS_NOTIFY", json.dumps({"webhook": {"conn_id": "ops_webhook"}, **settings}))


def test_nothing_is_configured_so_nothing_is_sent_and_nothing_fails(monkeypatch, webhook, caplog):
    webhook.received.clear()
    monkeypatch.delenv("AIRFLOW_VAR_IMAGENET_OPS_NOTIFY", raising=False)
    with caplog.at_level(logging.INFO, logger="imagenet_operators.notify"):
        notify_failure(_context(RuntimeError("boom")))
        notify_success(_context())
    assert webhook.received == [] and not caplog.records


def _bodies(webhook) -> list[dict[str, Any]]:
    return [r["json"] for r in webhook.received]


def test_a_failure_is_sent_and_a_success_only_when_asked(monkeypatch, webhook):
    webhook.received.clear()
    _configure(monkeypatch, webhook.url)
    notify_failure(_context(ValueError("bad md5")))
    notify_success(_context())  # on_success is off by default
    got = _bodies(webhook)
    assert [g["state"] for g in got] == ["failed"]
    assert got[0]["error"] == "ValueError: bad md5" and got[0]["log_url"] == "http://ui/log"
    assert (
        got[0]["text"]
        == "[imagenet_ops] FAILED: imagenet_aux run manual__1, task verify (try 2): ValueError: bad md5\n<http://ui/log|log>"
    )
    _configure(monkeypatch, webhook.url, on_success=True)
    notify_success({"dag_run": SimpleNamespace(dag_id="imagenet_aux", run_id="manual__1"), "reason": "success"})
    got = _bodies(webhook)
    assert got[-1]["state"] == "success" and got[-1]["text"].startswith("[imagenet_ops] SUCCESS: imagenet_aux run manual__1")


def test_a_credential_in_the_error_never_reaches_a_notification(monkeypatch, webhook):
    webhook.received.clear()
    _configure(monkeypatch, webhook.url)
    notify_failure(_context(OSError(f"cannot fetch https://ops:{SECRET}@mirror.example/ILSVRC2012_img_val.tar")))
    got = _bodies(webhook)
    assert SECRET not in json.dumps(got) and "https://ops:***@mirror.example" in got[0]["error"], got


def test_a_channel_that_is_down_is_logged_and_the_task_outcome_stands(monkeypatch, caplog, closed_port_url):
    _configure(monkeypatch, closed_port_url)  # nobody listens there
    with caplog.at_level(logging.ERROR, logger="imagenet_operators.notify"):
        notify_failure(_context(RuntimeError("boom")))  # no exception
    assert any("notification by webhook failed" in r.getMessage() for r in caplog.records), caplog.text


def test_a_bad_setting_turns_notifications_off_with_one_clear_line(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_VAR_IMAGENET_OPS_NOTIFY", "[1, 2]")
    with caplog.at_level(logging.ERROR, logger="imagenet_operators.notify"):
        notify_failure(_context(RuntimeError("boom")))
    assert "the Variable imagenet_ops_notify must be a JSON object, not list" in caplog.text


def test_the_message_names_a_mapped_task():
    ctx = _context(RuntimeError("x"))
    for map_index in (0, 3):
        ctx["ti"].map_index = map_index
        expected = f"[imagenet_ops] FAILED: imagenet_aux run manual__1, task verify[{map_index}] (try 2)"
        assert summary(message(ctx, "failed")).startswith(expected)
