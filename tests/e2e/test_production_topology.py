"""``imagenet_aux`` on the production topology: Postgres metadata DB, CeleryExecutor on Redis.

Starts the real components as separate processes (api-server, scheduler, dag-processor, one
Celery worker) against the PostgreSQL and Redis servers on 127.0.0.1, triggers a run over the
REST API with params as a user would, and publishes to an S3-protocol server through an
Airflow connection. The weekly schedule is switched off (``use_job_schedule=False``) so that
no run goes to the real mirrors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imagenet_ops.aux.variations import AUX_FILES
from imagenet_ops.core.digests import file_digests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/{}"


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


@pytest.fixture(scope="module")
def cluster(services_up, tmp_path_factory, s3_endpoint, port_factory) -> Iterator[dict]:
    """A migrated Postgres DB, and api-server + scheduler + dag-processor + celery worker processes."""
    import redis

    name = f"imagenet_ops_e2e_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    redis_db = 11
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
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}",
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
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    # As the deployment's airflow-init does: pools (imagenet_downloads), connections, variables.
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load_settings.py"), str(ROOT / "airflow_settings.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )
    procs = _PROCS
    procs.clear()
    logs = []
    try:
        for component in (["api-server"], ["scheduler"], ["dag-processor"], ["celery", "worker"]):
            log = open(home / f"{component[-1]}.log", "wb")  # noqa: SIM115 - closed in the finally below
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *component],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: requests.get(f"{base}/api/v2/monitor/health", timeout=2).ok, 90, "api-server health", home)
        password_file = home / "simple_auth_manager_passwords.json.generated"
        _wait(password_file.exists, 30, "admin password file", home)
        password = json.loads(password_file.read_text())["admin"]
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=10).json()
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token['access_token']}"
        _wait(lambda: api.get(f"{base}/api/v2/dags/imagenet_aux", timeout=5).ok, 120, "DAG parsed by the dag-processor", home)
        yield {"api": api, "base": base, "home": home}
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        redis.Redis.from_url(REDIS_URL.format(redis_db)).flushdb()


_PROCS: list[subprocess.Popen] = []


def _wait(check, timeout: float, what: str, home: Path) -> None:
    """Poll ``check`` until true; fail at once, with the component logs, if a component died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args[3:] for p in _PROCS if p.poll() is not None]
        if dead:
            break
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    tails = {p.name: p.read_text(errors="replace")[-3000:] for p in home.glob("*.log")}
    why = f"component(s) {dead} exited" if dead else f"timed out after {timeout}s"
    raise AssertionError(f"{why} waiting for {what}; component logs:\n{json.dumps(tails, indent=1)}")


def test_triggered_run_executes_on_celery_workers_and_publishes_to_s3(cluster, http_server, aux_archive_bytes, s3_bucket):
    api, base = cluster["api"], cluster["base"]
    client, bucket = s3_bucket
    archive = http_server.root / "caffe_ilsvrc12.tar.gz"
    archive.write_bytes(aux_archive_bytes)
    conf = {
        "url": http_server.url(archive.name),
        "md5": file_digests(archive).md5,
        "sink_uri": f"s3://{bucket}/aux",
        "conn_id": "e2e_s3",
    }
    assert api.patch(f"{base}/api/v2/dags/imagenet_aux", json={"is_paused": False}, timeout=10).ok
    created = api.post(f"{base}/api/v2/dags/imagenet_aux/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10)
    assert created.ok, created.text
    run_id = created.json()["dag_run_id"]

    run_url = f"{base}/api/v2/dags/imagenet_aux/dagRuns/{run_id}"
    _wait(lambda: api.get(run_url, timeout=5).json()["state"] in ("success", "failed"), 240, "the run to finish", cluster["home"])
    tis = api.get(f"{run_url}/taskInstances", timeout=10).json()["task_instances"]
    states = {t["task_id"]: t["state"] for t in tis}
    assert api.get(run_url, timeout=5).json()["state"] == "success", states
    assert {t["hostname"] for t in tis} and all(t["executor"] in (None, "CeleryExecutor") for t in tis)

    xcom = api.get(f"{run_url}/taskInstances/publish/xcomEntries/return_value", timeout=10).json()["value"]
    env = xcom if isinstance(xcom, dict) else json.loads(xcom)
    assert env == {"CM_DATASET_AUX_PATH": f"s3://{bucket}/aux", "CM_DATASET_AUX_VER": "2012"}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"aux/{n}" for n in (*AUX_FILES, "manifest.json")}
    events = api.get(f"{base}/api/v2/assets/events", params={"source_dag_id": "imagenet_aux"}, timeout=10).json()
    assert [e["uri"] for e in events["asset_events"]] == [f"s3://{bucket}/aux"]
    assert events["asset_events"][0]["extra"]["files"] == len(AUX_FILES)


# Every other DAG, triggered with only its inputs and sink: each param at its default, the
# training DAG at its default "Processes per task" (0 = all cores, a process pool under Celery).
DEFAULTS_RUNS = {
    "resnet50_model": ("publish", "CM_ML_MODEL_FILE_WITH_PATH", "onnx-fp32-argmax-opset11"),
    "imagenet_training_data": ("finalize", "CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH", "train-00000-of-01024"),
    "imagenet_preprocessed": ("finalize", "CM_DATASET_PREPROCESSED_PATH", "chunk 0: "),
}


@pytest.mark.parametrize("dag_id", list(DEFAULTS_RUNS))
def test_every_dag_succeeds_with_its_defaults_on_celery(cluster, dag_inputs, s3_bucket, dag_id):
    api, base = cluster["api"], cluster["base"]
    client, bucket = s3_bucket
    publish_task, env_key, label = DEFAULTS_RUNS[dag_id]
    conf = {**dag_inputs.inputs[dag_id], "sink_uri": f"s3://{bucket}/{dag_id}", "conn_id": "e2e_s3"}
    assert api.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).ok
    created = api.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10)
    assert created.ok, created.text
    run_url = f"{base}/api/v2/dags/{dag_id}/dagRuns/{created.json()['dag_run_id']}"
    _wait(lambda: api.get(run_url, timeout=5).json()["state"] in ("success", "failed"), 600, "the run to finish", cluster["home"])
    tis = api.get(f"{run_url}/taskInstances", params={"limit": 100}, timeout=10).json()["task_instances"]
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
    assert api.get(run_url, timeout=5).json()["state"] == "success", (states, _task_errors(cluster["home"], dag_id))
    assert all(t["executor"] in (None, "CeleryExecutor") for t in tis)
    # No run of this DAG other than the user's: unpausing created no scheduled refresh.
    runs = api.get(f"{base}/api/v2/dags/{dag_id}/dagRuns", timeout=10).json()["dag_runs"]
    assert [r["run_type"] for r in runs] == ["manual"]
    # Mapped tasks are named (variant, chunk range, shard group), not bare indexes.
    mapped = [t for t in tis if t["map_index"] >= 0]
    assert mapped and all(t["rendered_map_index"] for t in mapped), [(t["task_id"], t["rendered_map_index"]) for t in mapped]
    assert any(t["rendered_map_index"].startswith(label) for t in mapped), [t["rendered_map_index"] for t in mapped]

    xcom_url = f"{run_url}/taskInstances/{publish_task}/xcomEntries/return_value"
    xcom = api.get(xcom_url, params={"map_index": 0} if dag_id == "resnet50_model" else None, timeout=10).json()["value"]
    env = xcom if isinstance(xcom, dict) else json.loads(xcom)
    assert env[env_key].startswith(f"s3://{bucket}/{dag_id}"), env
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, MaxKeys=5000)["Contents"]}
    assert any(k.endswith("manifest.json") for k in keys), sorted(keys)[:20]


def _task_errors(home: Path, dag_id: str) -> list[str]:
    """The ERROR events of every task log of ``dag_id``: what a failure message needs."""
    errors = []
    for path in sorted((home / "logs").glob(f"dag_id={dag_id}/**/attempt=*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("level") == "error":
                detail = json.dumps(event.get("error_detail", ""))[-1500:]
                errors.append(f"{path.relative_to(home)}: {event.get('event')} {detail}")
    return errors[-10:]
