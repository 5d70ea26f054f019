"""The production topology for the e2e tests: Airflow's components as separate processes.

:func:`production_cluster` creates a fresh PostgreSQL database (the server on 127.0.0.1), migrates
it, loads the deployment's settings as ``airflow-init`` does, and starts api-server, scheduler
and dag-processor against it, with CeleryExecutor on one database of the Redis server on
127.0.0.1; the caller starts the Celery worker(s). :class:`Cluster` drives it over the REST API
as a user would: unpause, trigger with a conf, wait, read task instances and XComs. Test modules
get clusters from the ``make_cluster`` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/{}"
FINISHED = ("success", "failed")


def _pg_admin():
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def services_up() -> None:
    """PostgreSQL and Redis must be running on 127.0.0.1 (they are on this project's machines)."""
    import redis

    try:
        _pg_admin().close()
        redis.Redis.from_url(REDIS_URL.format(0), socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL/Redis not reachable on 127.0.0.1 ({exc}); start them to run the production-topology test")


class Cluster:
    """Running Airflow components (one log file each under ``home``) and a REST API session to them."""

    def __init__(self, home: Path, env: dict[str, str], base: str) -> None:
        self.home, self.env, self.base = home, env, base
        self.procs: dict[str, subprocess.Popen] = {}  # the components that must stay up
        self._started: list[subprocess.Popen] = []
        self.api = requests.Session()
        self._logs: list[Any] = []

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``argv`` as component ``name`` in a session of its own, output to ``<home>/<name>.log``."""
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        proc = subprocess.Popen(list(argv), env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self._started.append(proc)
        return proc

    def lost(self, name: str) -> subprocess.Popen:
        """Stop watching component ``name``: a test killed it on purpose (:meth:`stop` still reaps it)."""
        return self.procs.pop(name)

    def stop(self) -> None:
        """SIGTERM every component's process group; after 30 s, SIGKILL whatever is left in its session.

        The session, not only the group: task processes run in process groups of their own.
        """
        for proc in self._started:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self._started:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            for pid in session_pids(proc.pid):
                _signal(pid, signal.SIGKILL)
            proc.wait()
        for log in self._logs:
            log.close()

    def wait(self, check: Callable[[], Any], timeout: float, what: str, *, interval: float = 1.0) -> Any:
        """Poll ``check`` until it returns a true value; fail at once, with the logs, if a component died."""
        deadline = time.monotonic() + timeout
        dead: list[str] = []
        while time.monotonic() < deadline:
            dead = [name for name, p in self.procs.items() if p.poll() is not None]
            if dead:
                break
            try:
                result = check()
                if result:
                    return result
            except requests.RequestException:
                pass
            time.sleep(interval)
        why = f"component(s) {dead} exited" if dead else f"timed out after {timeout}s"
        raise AssertionError(f"{why} waiting for {what}; component logs:\n{json.dumps(self.log_tails(), indent=1)}")

    def log_tails(self, chars: int = 3000) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace")[-chars:] for p in self.home.glob("*.log")}

    def login(self) -> None:
        """A bearer token for the simple auth manager's generated admin user."""
        self.wait(lambda: requests.get(f"{self.base}/api/v2/monitor/health", timeout=2).ok, 90, "api-server health")
        password_file = self.home / "simple_auth_manager_passwords.json.generated"
        self.wait(password_file.exists, 30, "admin password file")
        password = json.loads(password_file.read_text())["admin"]
        body = {"username": "admin", "password": password}
        token = requests.post(f"{self.base}/auth/token", json=body, timeout=10).json()
        self.api.headers["Authorization"] = f"Bearer {token['access_token']}"

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        self.wait(lambda: self.api.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=5).ok, timeout, f"{dag_id} parsed")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause ``dag_id``, trigger a manual run with ``conf``; the run's REST URL."""
        assert self.api.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).ok
        created = self.api.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
        )
        assert created.ok, created.text
        return f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{created.json()['dag_run_id']}"

    def run_state(self, run_url: str) -> str:
        return self.api.get(run_url, timeout=5).json()["state"]

    def wait_for_run(self, run_url: str, timeout: float) -> str:
        """The run's final state (``success`` or ``failed``)."""

        def finished() -> str | None:
            state = self.run_state(run_url)
            return state if state in FINISHED else None

        return self.wait(finished, timeout, "the run to finish")

    def task_instances(self, run_url: str) -> list[dict[str, Any]]:
        return self.api.get(f"{run_url}/taskInstances", params={"limit": 1000}, timeout=10).json()["task_instances"]

    def xcom(self, run_url: str, task_id: str, *, map_index: int | None = None) -> Any:
        url = f"{run_url}/taskInstances/{task_id}/xcomEntries/return_value"
        params = {"map_index": map_index} if map_index is not None else None
        value = self.api.get(url, params=params, timeout=10).json()["value"]
        return value if isinstance(value, dict | list) else json.loads(value)

    def task_errors(self, dag_id: str) -> list[str]:
        """The ERROR events of every task log of ``dag_id``: what a failure message needs."""
        errors = []
        for path in sorted((self.home / "logs").glob(f"dag_id={dag_id}/**/attempt=*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("level") == "error":
                    detail = json.dumps(event.get("error_detail", ""))[-1500:]
                    errors.append(f"{path.relative_to(self.home)}: {event.get('event')} {detail}")
        return errors[-10:]


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (``/proc/<pid>/stat`` field 6)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def production_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    s3_endpoint: str,
    port_factory: Callable[[], int],
    redis_db: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """A migrated Postgres DB with the deployment's settings, and api-server + scheduler + dag-processor.

    The S3 server is reachable through the Airflow connection ``e2e_s3``. Every process started
    through the yielded :class:`Cluster` (workers included) is stopped, and the database and
    the Redis database are dropped, whatever happens.
    """
    import redis

    name = f"imagenet_ops_e2e_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(REDIS_URL.format(redis_db)).flushdb()

    home = tmp_path_factory.mktemp("airflow-prod")
    port = port_factory()
    sql = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL.format(redis_db),
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port_factory()),
        "AIRFLOW__CELERY__WORKER_LOG_SERVER_PORT": str(port_factory()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(port_factory()),
        "IMAGENET_OPS_WORK_DIR": str(home / "work"),
        "AIRFLOW_CONN_E2E_S3": json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
        **(extra_env or {}),
    }
    cluster = Cluster(home, env, f"http://127.0.0.1:{port}")
    try:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        # As the deployment's airflow-init does: pools (imagenet_downloads), connections, variables.
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "load_settings.py"), str(ROOT / "airflow_settings.yaml")],
            env=env,
            check=True,
            capture_output=True,
        )
        for component in ("api-server", "scheduler", "dag-processor"):
            cluster.start(component, [sys.executable, "-m", "airflow", component])
        yield cluster
    finally:
        cluster.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        redis.Redis.from_url(REDIS_URL.format(redis_db)).flushdb()


@pytest.fixture(scope="module")
def make_cluster(services_up, tmp_path_factory, s3_endpoint, port_factory) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(redis_db=N, extra_env={...})``: a :func:`production_cluster`, stopped at the module's end."""
    with ExitStack() as stack:

        def make(*, redis_db: int, extra_env: dict[str, str] | None = None) -> Cluster:
            return stack.enter_context(
                production_cluster(
                    tmp_path_factory, s3_endpoint=s3_endpoint, port_factory=port_factory, redis_db=redis_db, extra_env=extra_env
                )
            )

        yield make
