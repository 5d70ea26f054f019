"""Notifications on a real scheduler: what a real SMTP server and a webhook receiver on 127.0.0.1 get.

The settings are made as an operator makes them, over the REST API: an ``smtp`` and an ``http``
connection, and the Variable ``imagenet_ops_notify``. A run of ``imagenet_aux`` with a wrong md5
fails (bad input fails at once, without retries): one e-mail and one webhook call name the DAG,
the run, the task, the error and the log link. With ``on_success``, a good run notifies its
success once. The Variable is removed at the end: the other tests run without notifications.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 300


def _wait_for(items: list, count: int, what: str, timeout: float = 60, *, mine=lambda item: True) -> list:
    """The ``mine`` items of ``items`` (a list the receivers append to), once ``count`` of them arrived."""

    def found() -> list:
        return [item for item in list(items) if mine(item)]

    deadline = time.monotonic() + timeout
    while len(found()) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(found()) >= count, f"{what}: {len(found())} of {count} arrived within {timeout:.0f}s"
    return found()


def _of_run(run_id: str):
    """Whether a webhook call is this run's: other DAGs' runs in this cluster (Asset-triggered ones too) notify as they end."""
    return lambda hook: hook["json"].get("run_id") == run_id


def test_a_failed_run_sends_one_mail_and_one_webhook_with_its_facts(cluster, dag_inputs, notifications, smtp_server, webhook):
    _, inbox = smtp_server
    received = webhook.received
    inbox.messages.clear(), received.clear()
    cluster.set_paused("imagenet_aux", False)
    conf = {**dag_inputs.inputs["imagenet_aux"], "md5": "0" * 32, "sink_uri": cluster.sink("notify-failed", "imagenet_aux")}
    run_id = cluster.trigger("imagenet_aux", conf)
    finished = cluster.wait(lambda: cluster.run("imagenet_aux", run_id)["state"] in ("success", "failed"), RUN_TIMEOUT, "the run")
    assert finished and cluster.run("imagenet_aux", run_id)["state"] == "failed"

    [failed] = [t["task_id"] for t in cluster.task_instances("imagenet_aux", run_id) if t["state"] == "failed"]

    ours = _of_run(run_id)

    def our_mail(mail) -> bool:
        return run_id in mail["Subject"]

    [hook] = _wait_for(received, 1, "webhook calls", mine=ours)
    facts = hook["json"]
    assert hook["path"] == "/hooks/imagenet" and hook["content_type"] == "application/json"
    assert {k: facts[k] for k in ("dag_id", "run_id", "task_id", "state")} == {
        "dag_id": "imagenet_aux",
        "run_id": run_id,
        "task_id": failed,
        "state": "failed",
    }
    assert "ChecksumMismatch" in facts["error"] and "0" * 32 in facts["error"], facts["error"]
    assert facts["log_url"].startswith(f"{cluster.base}/dags/imagenet_aux/runs/") and f"/tasks/{failed}" in facts["log_url"]
    assert facts["text"].startswith(f"[imagenet_ops] FAILED: imagenet_aux run {run_id}, task {failed} (try 1)")  # Slack's field

    [mail] = _wait_for(inbox.messages, 1, "e-mails", mine=our_mail)
    assert (mail["From"], mail["To"]) == ("airflow@example.com", "ops@example.com")
    assert mail["Subject"].startswith("[imagenet_ops] FAILED: imagenet_aux run")
    body = mail.get_body(preferencelist=("html",)).get_content()
    assert "ChecksumMismatch" in body and facts["log_url"].replace("&", "&amp;") in body
    time.sleep(3)
    hooks, mails = _wait_for(received, 1, "webhook calls", mine=ours), _wait_for(inbox.messages, 1, "e-mails", mine=our_mail)
    assert len(hooks) == 1 and len(mails) == 1, "one notification per failure: none for the skipped tasks"


def test_a_good_run_notifies_its_success_when_asked(cluster, dag_inputs, notifications, webhook):
    """The DAG's success callback (run by the dag-processor). Off by default: tests/operators/test_notify.py."""
    received = webhook.received
    received.clear()
    notifications["put"]({**notifications["settings"], "on_success": True, "email": None})
    conf = {**dag_inputs.inputs["imagenet_aux"], "sink_uri": cluster.sink("notify-success", "imagenet_aux")}
    run_id = cluster.trigger("imagenet_aux", conf)
    cluster.wait_for_run("imagenet_aux", run_id, RUN_TIMEOUT)
    of_run = _of_run(run_id)
    _wait_for(received, 1, "the success webhook", mine=of_run)
    time.sleep(3)
    ours = [h["json"] for h in received if of_run(h)]
    assert [(h.get("dag_id"), h.get("state")) for h in ours] == [("imagenet_aux", "success")], received
    assert "task_id" not in ours[0] and ours[0]["text"] == f"[imagenet_ops] SUCCESS: imagenet_aux run {run_id}"
