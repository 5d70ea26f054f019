"""Deadline alerts on a real scheduler: a run over its form limit notifies by e-mail and webhook.

The run of ``imagenet_aux`` downloads its archive from a server on 127.0.0.1 that sends a byte a
second until the test lets it finish, so the run cannot end before its 1-minute limit, however
fast the machine. The api-server creates the run's deadline from the form value (our reference,
loaded by the plugin); the scheduler sees it missed; the triggerer runs the callback, which reads
the Variable and the connections and sends. A run without a limit gets no deadline at all.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow

DAG_ID = "imagenet_aux"
RUN_TIMEOUT = 300
MISS_TIMEOUT = 240  # the 1-minute limit, plus the scheduler's and triggerer's loops on a busy machine


class SlowDownload:
    """Serves one file a byte a second (never idle long enough for a read timeout) until released."""

    def __init__(self, data: bytes) -> None:
        self.data, self.released = data, threading.Event()
        slow = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(slow.data)))
                self.end_headers()
                sent = 0
                while sent < len(slow.data) - 1 and not slow.released.wait(1.0):
                    self.wfile.write(slow.data[sent : sent + 1])
                    self.wfile.flush()
                    sent += 1
                self.wfile.write(slow.data[sent:])

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/caffe_ilsvrc12.tar.gz"


@pytest.fixture
def slow_download(dag_inputs) -> Iterator[SlowDownload]:
    slow = SlowDownload((Path(dag_inputs.server.root) / "caffe_ilsvrc12.tar.gz").read_bytes())
    threading.Thread(target=slow.server.serve_forever, daemon=True).start()
    yield slow
    slow.released.set()
    slow.server.shutdown()


def _deadlines(cluster, run_id: str) -> list[dict[str, Any]]:
    """The run's deadlines, from the api-server's UI route (the public REST API has none in 3.3)."""
    resp = cluster.api.get(f"{cluster.base}/ui/dags/{DAG_ID}/dagRuns/{run_id}/deadlines", timeout=15)
    resp.raise_for_status()
    return resp.json()["deadlines"]


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_run_over_its_limit_notifies_a_missed_deadline(cluster, dag_inputs, notifications, smtp_server, webhook, slow_download):
    _, inbox = smtp_server
    received = webhook.received
    inbox.messages.clear(), received.clear()
    cluster.set_paused(DAG_ID, False)
    conf = {
        **dag_inputs.inputs[DAG_ID],
        "url": slow_download.url,
        "sink_uri": cluster.sink("deadline-missed", DAG_ID),
        "deadline_minutes": 1,
        "deadline_runtime_multiple": None,
    }
    run_id = cluster.trigger(DAG_ID, conf)

    [deadline] = _deadlines(cluster, run_id)  # created with the run; the runtime multiple is off
    queued_at = _when(cluster.run(DAG_ID, run_id)["queued_at"])
    assert deadline["alert_name"] == "run_limit" and _when(deadline["deadline_time"]) == queued_at + timedelta(minutes=1)

    ours = cluster.wait(
        lambda: [h for h in received if h["json"].get("run_id") == run_id], MISS_TIMEOUT, "the deadline-missed webhook"
    )
    [hook] = ours
    facts = hook["json"]
    assert hook["path"] == "/hooks/imagenet" and hook["content_type"] == "application/json"
    assert {k: facts[k] for k in ("dag_id", "run_id", "state", "limit")} == {
        "dag_id": DAG_ID,
        "run_id": run_id,
        "state": "deadline missed",
        "limit": "1 min",
    }
    assert facts["late_by"] and facts["run_url"] == f"{cluster.base}/dags/{DAG_ID}/runs/{quote(run_id)}"  # as log_url
    assert facts["text"].startswith(
        f"[imagenet_ops] DEADLINE MISSED: {DAG_ID} run {run_id}: over the run limit set in the form (1 min) by "
    ), facts["text"]
    assert f"<{facts['run_url']}|run>" in facts["text"]

    # Only this run's, as the webhook above: other runs in the cluster notify too (CI once got another run's mail first).
    [mail] = cluster.wait(lambda: [m for m in inbox.messages if run_id in m["Subject"]], 60, "the deadline-missed e-mail")
    assert mail["Subject"].startswith(f"[imagenet_ops] DEADLINE MISSED: {DAG_ID} run {run_id}")
    assert facts["run_url"] in mail.get_body(preferencelist=("html",)).get_content()
    assert cluster.run(DAG_ID, run_id)["state"] == "running", "a missed deadline notifies; the run goes on"

    slow_download.released.set()
    cluster.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    assert [d["missed"] for d in _deadlines(cluster, run_id)] == [True]


def test_a_run_without_a_limit_gets_no_deadline(cluster, dag_inputs, notifications, webhook):
    # deadline_runtime_multiple null too: how many successful runs the session made is not this test's business
    received = webhook.received
    received.clear()
    cluster.set_paused(DAG_ID, False)
    conf = {**dag_inputs.inputs[DAG_ID], "sink_uri": cluster.sink("no-deadline", DAG_ID), "deadline_runtime_multiple": None}
    run_id = cluster.trigger(DAG_ID, conf)
    assert _deadlines(cluster, run_id) == []
    cluster.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    assert _deadlines(cluster, run_id) == [] and not [h for h in received if h["json"].get("run_id") == run_id]
