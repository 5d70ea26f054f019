"""A real Airflow (``airflow standalone``: LocalExecutor on SQLite) on 127.0.0.1 for the UI and scheduler tests.

The cluster runs in its own temporary ``AIRFLOW_HOME`` and process group, with the env that
``scripts/airflow_env.sh`` sets, a free API port and free log-server ports (nothing binds the
defaults). The DAGs' sample inputs come from the ``dag_inputs`` fixture of ``tests/conftest.py``
(generated once, downloads served by a DevServer on 127.0.0.1): tests only talk to 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
COMPONENTS = ("standalone", "api-server", "scheduler", "dag-processor", "triggerer")
DAG_IDS = ("imagenet_aux", "resnet50_model", "imagenet_training_data", "imagenet_preprocessed", "imagenet_accuracy")
TERMINAL = ("success", "failed")


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[Path, Path]:
    """Debian's chromium and chromium-driver; skipped when missing, except under CI (CI=true fails)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        why = f"{', '.join(missing)} missing: install the Debian packages chromium and chromium-driver"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)
    return CHROMIUM, CHROMEDRIVER


# -- the cluster -------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(home: Path, port: int) -> dict[str, str]:
    """The env of ``scripts/airflow_env.sh`` for a throwaway home, on free ports of 127.0.0.1."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db?timeout=30",  # as airflow_env.sh
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(_free_port()),
        "IMAGENET_OPS_WORK_DIR": str(home / "imagenet_ops_work"),
        "IMAGENET_OPS_SINK_ROOT": str(home / "artifacts"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "NO_GCE_CHECK": "true",
        "NO_COLOR": "1",
        # The OpenLineage provider (test-only) writes every event it would send as a JSON file here, so the
        # lineage tests read what a Marquez or DataHub would receive (it stays off unless a transport is set).
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(home / "openlineage" / "event")}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "imagenet_ops_tests",
    }
    env.pop("FORCE_COLOR", None)
    for name in [k for k in env if k.startswith("IMAGENET_OPS_SCHEDULE_")]:
        env.pop(name)  # the refresh schedules stay off, as on a fresh install
    return env


@dataclass
class Cluster:
    """A running ``airflow standalone`` and a logged-in REST session."""

    home: Path
    base: str
    password: str
    proc: subprocess.Popen
    log_path: Path
    api: requests.Session = field(default_factory=requests.Session)

    # -- diagnostics

    def component_logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each component (standalone prefixes every line with its name)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        by_name: dict[str, list[str]] = {}
        for line in text.splitlines():
            name, sep, rest = line.partition(" | ")
            if sep:
                by_name.setdefault(name.strip(), []).append(rest)
        return "\n".join(
            f"--- {name} (last {lines} lines) ---\n" + "\n".join(by_name.get(name, [])[-lines:]) for name in COMPONENTS
        )

    def unhealthy(self) -> str | None:
        """Why the cluster is down (the process exited, or a component is unhealthy), else None."""
        if self.proc.poll() is not None:
            return f"airflow standalone exited with {self.proc.returncode}"
        try:
            health = requests.get(f"{self.base}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None  # the api-server may be busy; the process check above catches a real death
        bad = {k: v.get("status") for k, v in health.items() if isinstance(v, dict) and v.get("status") == "unhealthy"}
        return f"unhealthy components: {bad}" if bad else None

    def wait(self, check: Callable[[], Any], timeout: float, what: str, *, interval: float = 1.0) -> Any:
        """Poll ``check`` until it returns a truthy value; fail with the component logs if Airflow died or on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"airflow standalone exited while waiting for {what}:\n{self.component_logs()}")
            try:
                value = check()
            except (requests.RequestException, ValueError, KeyError):
                value = None
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what} ({self.unhealthy() or 'all components healthy'}):\n"
                    f"{self.component_logs()}"
                )
            time.sleep(interval)

    def sink(self, kind: str, dag_id: str) -> str:
        """A fresh sink folder inside the home (one per kind of test, so no run is a cache hit of another)."""
        path = self.home / "sinks" / kind / dag_id
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def openlineage_events(self, job_name: str) -> list[dict[str, Any]]:
        """The OpenLineage events written so far for ``job_name`` (``<dag_id>.<task_id>``), oldest first."""
        events = []
        for path in sorted((self.home / "openlineage").glob("event*")):
            try:
                event = json.loads(path.read_text())
            except ValueError:
                continue  # still being written
            if event.get("job", {}).get("name") == job_name:
                events.append(event)
        return sorted(events, key=lambda e: e.get("eventTime", ""))

    # -- REST

    def login(self) -> None:
        token = requests.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": self.password}, timeout=10
        ).json()["access_token"]
        self.api.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.api.get(f"{self.base}/api/v2/{path}", params=params or None, timeout=15)
        resp.raise_for_status()
        return resp.json()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        resp = self.api.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": paused}, timeout=15)
        assert resp.ok, resp.text

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        resp = self.api.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=15)
        assert resp.ok, resp.text
        return resp.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"dags/{dag_id}/dagRuns", limit=100)["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1, try_number: int = 1) -> str:
        """A task's log as text, one event a line (the API serves application/x-ndjson)."""
        resp = self.api.get(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": "true"},
            headers={"Accept": "application/x-ndjson"},
            timeout=30,
        )
        if not resp.ok:
            return f"<log unavailable: HTTP {resp.status_code} {resp.text[:200]}>"
        lines = []
        for raw in resp.text.splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                lines.append(raw)
                continue
            lines.append(f"{event.get('level', '')} {event.get('event', '')}" if isinstance(event, dict) else raw)
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> Any:
        value = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value", map_index=map_index)[
            "value"
        ]
        return json.loads(value) if isinstance(value, str) else value

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run finishes; fail with the logs of its failed tasks unless it succeeded."""
        try:
            run = self.wait(
                lambda: (r := self.run(dag_id, run_id))["state"] in TERMINAL and r, timeout, f"{dag_id} run {run_id} to finish"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.failure_report(dag_id, run_id)}") from None
        if run["state"] != "success":
            raise AssertionError(f"{dag_id} run {run_id} ended {run['state']}:\n{self.failure_report(dag_id, run_id)}")
        return run

    def failure_report(self, dag_id: str, run_id: str, *, log_chars: int = 6000) -> str:
        """Task states, and the log tail of every task that did not succeed."""
        try:
            tis = self.task_instances(dag_id, run_id)
        except requests.RequestException as exc:
            return f"task instances unavailable: {exc}\n{self.component_logs()}"
        states = {f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]: t["state"] for t in tis}
        parts = [f"task states: {json.dumps(states, sort_keys=True)}"]
        for t in tis:
            if t["state"] in ("failed", "up_for_retry", "running"):
                for attempt in range(1, max(t.get("try_number") or 1, 1) + 1):
                    text = self.task_log(dag_id, run_id, t["task_id"], map_index=t["map_index"], try_number=attempt)
                    parts.append(f"--- log of {t['task_id']} map_index={t['map_index']} try {attempt} ---\n{text[-log_chars:]}")
        return "\n".join(parts)


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{what} failed (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``airflow standalone`` in its own process group on a fresh home; killed (the whole group) on teardown."""
    home = tmp_path_factory.mktemp("airflow-standalone")
    port = _free_port()
    env = cluster_env(home, port)
    (home / "openlineage").mkdir()
    airflow = [sys.executable, "-m", "airflow"]
    _run([*airflow, "db", "migrate"], env, "airflow db migrate")
    _run([sys.executable, str(ROOT / "scripts" / "load_settings.py"), str(ROOT / "airflow_settings.yaml")], env, "load_settings")

    log_path = home / "standalone.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*airflow, "standalone"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    c = Cluster(home=home, base=f"http://127.0.0.1:{port}", password="", proc=proc, log_path=log_path)
    try:
        c.wait(lambda: requests.get(f"{c.base}/api/v2/monitor/health", timeout=3).ok, 120, "api-server health")
        password_file = home / "simple_auth_manager_passwords.json.generated"
        c.password = c.wait(lambda: json.loads(password_file.read_text())["admin"], 60, "the admin password file")
        c.login()
        c.wait(lambda: all(c.api.get(f"{c.base}/api/v2/dags/{d}", timeout=5).ok for d in DAG_IDS), 180, "every DAG parsed")
        c.wait(
            lambda: all(
                v.get("status") == "healthy"
                for k, v in c.get("monitor/health").items()
                if k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ),
            60,
            "scheduler, triggerer and dag-processor healthy",
        )
        yield c
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the standalone's process group, then SIGKILL what is left of it."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure its children (components, executor workers) are too.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


# -- notifications: a real SMTP server and the settings an operator makes ------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp_server(port_factory) -> Iterator[tuple[int, Inbox]]:
    """An SMTP server (aiosmtpd) on 127.0.0.1 and the inbox it fills."""
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), port_factory()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


@pytest.fixture(scope="module")
def notifications(cluster, smtp_server, webhook) -> Iterator[dict[str, Any]]:
    """Connections and the Variable ``imagenet_ops_notify``, made over REST; removed afterwards."""
    port, _ = smtp_server
    connections = [
        {
            "connection_id": "ops_smtp",
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": json.dumps({"disable_ssl": True, "disable_tls": True, "timeout": 10}),
        },
        {"connection_id": "ops_webhook", "conn_type": "http", "host": webhook.url},
    ]
    for conn in connections:
        resp = cluster.api.post(f"{cluster.base}/api/v2/connections", json=conn, timeout=15)
        assert resp.ok, resp.text
    settings = {
        "email": {"conn_id": "ops_smtp", "to": ["ops@example.com"], "from": "airflow@example.com"},
        "webhook": {"conn_id": "ops_webhook", "endpoint": "/hooks/imagenet"},
        "on_success": False,
    }

    def put(value: dict[str, Any]) -> None:
        body = {"key": "imagenet_ops_notify", "value": json.dumps(value)}
        resp = cluster.api.post(f"{cluster.base}/api/v2/variables", json=body, timeout=15)
        if resp.status_code == 409:
            resp = cluster.api.patch(f"{cluster.base}/api/v2/variables/imagenet_ops_notify", json=body, timeout=15)
        assert resp.ok, resp.text

    put(settings)
    yield {"put": put, "settings": settings}
    cluster.api.delete(f"{cluster.base}/api/v2/variables/imagenet_ops_notify", timeout=15)
    for conn in connections:
        cluster.api.delete(f"{cluster.base}/api/v2/connections/{conn['connection_id']}", timeout=15)
