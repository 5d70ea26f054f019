"""Failure (and, if asked, success) notifications: e-mail over SMTP and a JSON webhook, set by connection ids.

The settings are one Airflow Variable, ``imagenet_ops_notify`` (a JSON object), read when a
notification is due, so changing it needs no redeploy::

    {
      "email": {"conn_id": "smtp_default", "to": ["ops@example.com"], "from": "airflow@example.com"},
      "webhook": {"conn_id": "ops_webhook", "endpoint": ""},
      "on_success": false
    }

- ``email`` goes through the SMTP provider's ``SmtpNotifier`` and an ``smtp`` connection;
- ``webhook`` POSTs JSON through the HTTP provider's ``HttpNotifier`` and an ``http``
  connection (its host is the URL; ``endpoint`` is appended). The body has Slack's ``text``
  field, so a Slack incoming webhook shows it, and the same facts as fields of their own;
- ``on_success``: also notify when a run succeeds (default: failures only).

A missed deadline (:mod:`imagenet_operators.deadlines`) is sent the same way, through
:func:`deliver`, by the triggerer.

A task notifies when it fails for good (not on a retry), with its error and log link. A run
notifies on success once, at its end. With no Variable, or neither channel in it, nothing is
sent and nothing fails. A channel that cannot be reached is logged, never raised: the task's
own outcome stands. The error text passes through Airflow's secrets masker first.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import Any

log = logging.getLogger(__name__)

SETTINGS_VARIABLE = "imagenet_ops_notify"
ERROR_CHARS = 2000
_LINKS = {"log_url": "log", "run_url": "run"}  # facts shown as links: key -> the link's label in chat


def notify_failure(context: Any) -> None:
    """``on_failure_callback``: a task failed for good."""
    _send(context, "failed", settings())


def notify_success(context: Any) -> None:
    """A DAG's ``on_success_callback``: the run succeeded (sent only when ``on_success`` is true)."""
    current = settings()  # one read of the Variable per notification
    if current.get("on_success"):
        _send(context, "success", current)


def settings() -> dict[str, Any]:
    """The Variable ``imagenet_ops_notify``; ``{}`` (nothing is sent) when unset or not a JSON object."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True)
    except Exception as exc:  # noqa: BLE001 - a bad setting must not fail the task it reports on
        log.error("notifications are off: the Variable %s is not a JSON object (%s)", SETTINGS_VARIABLE, exc)
        return {}
    if value is not None and not isinstance(value, dict):
        log.error("notifications are off: the Variable %s must be a JSON object, not %s", SETTINGS_VARIABLE, type(value).__name__)
        return {}
    return value or {}


def message(context: Any, state: str) -> dict[str, Any]:
    """The facts a notification carries: DAG, run, task, state, error, log link."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", None)
    facts: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": getattr(dag_run, "run_id", None) or context.get("run_id") or getattr(ti, "run_id", None),
        "state": state,
    }
    if ti is not None and state == "failed":
        facts |= {"task_id": ti.task_id, "map_index": ti.map_index, "try_number": ti.try_number}
        with contextlib.suppress(Exception):  # a context without a full task instance: the rest stands
            facts["log_url"] = ti.log_url
    error = (context.get("exception") or context.get("reason")) if state == "failed" else None  # a success's reason is "success"
    if error:
        facts["error"] = _redacted(f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error))
    return facts


def summary(facts: dict[str, Any]) -> str:
    """One line for a chat message or a mail subject."""
    where = f"{facts['dag_id']} run {facts['run_id']}"
    if facts.get("task_id"):
        map_index = facts.get("map_index")
        index = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""  # map index 0 too
        where += f", task {facts['task_id']}{index} (try {facts.get('try_number')})"
    text = f"[imagenet_ops] {facts['state'].upper()}: {where}"
    if facts.get("error"):
        text += f": {facts['error'].splitlines()[0][:300]}"
    if facts.get("limit"):  # a missed deadline
        text += f": over {facts['deadline']} ({facts['limit']})"
        if facts.get("late_by"):
            text += f" by {facts['late_by']}"
    return text


def _send(context: Any, state: str, current: dict[str, Any]) -> None:
    if current.get("email") or current.get("webhook"):
        deliver(message(context, state), current, context)


def deliver(facts: dict[str, Any], current: dict[str, Any], context: Any) -> None:
    """Send ``facts`` (with their :func:`summary` line) by each channel ``current`` settings name."""
    text = summary(facts)
    if current.get("email"):
        _channel("e-mail", lambda: _email(current["email"], facts, text, context))
    if current.get("webhook"):
        _channel("webhook", lambda: _webhook(current["webhook"], facts, text, context))


def _email(cfg: dict[str, Any], facts: dict[str, Any], text: str, context: Any) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    rows = "".join(f"<tr><th align=left>{html.escape(k)}</th><td>{_cell(k, v)}</td></tr>" for k, v in facts.items())
    SmtpNotifier(
        to=cfg["to"],
        from_email=cfg.get("from"),
        smtp_conn_id=cfg.get("conn_id"),
        subject=text[:200],
        html_content=f"<p>{html.escape(text)}</p><table>{rows}</table>",
    ).notify(context)  # not __call__: nothing here is a template (an error text may contain "{{")


def _webhook(cfg: dict[str, Any], facts: dict[str, Any], text: str, context: Any) -> None:
    from airflow.providers.http.notifications.http import HttpNotifier

    HttpNotifier(
        http_conn_id=cfg.get("conn_id", "http_default"),
        endpoint=cfg.get("endpoint") or None,
        json={"text": text + "".join(f"\n<{facts[k]}|{name}>" for k, name in _LINKS.items() if facts.get(k)), **facts},
        headers={"Content-Type": "application/json"},
    ).notify(context)


def _channel(name: str, send: Any) -> None:
    try:
        send()
        log.info("notification sent by %s", name)
    except Exception as exc:  # noqa: BLE001 - the task's own outcome stands; the ops team reads this line
        log.error("notification by %s failed: %s", name, _redacted(str(exc)))


def _cell(key: str, value: Any) -> str:
    text = html.escape(str(value))
    return f'<a href="{text}">{text}</a>' if key in _LINKS else f"<pre>{text}</pre>" if key == "error" else text


def _redacted(text: str) -> str:
    """Credentials in URLs as ``***``, then whatever Airflow's secrets masker knows (connection passwords …)."""
    from imagenet_ops.core.redact import redact_text

    text = redact_text(text)
    with contextlib.suppress(Exception):
        from airflow.sdk._shared.secrets_masker import redact  # what airflow.sdk.log uses

        text = str(redact(text))
    return text[:ERROR_CHARS]
