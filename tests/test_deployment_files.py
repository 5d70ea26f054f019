"""The compose deployment, read (Docker does not run here): queues, endpoints and settings that fit together.

Each check is a mistake that would only show on a real deployment: a heavy queue nobody consumes
(tasks queued for ever), a light worker that also takes heavy work (small runs starved again), a
connection to 127.0.0.1 (inside a container, the container itself), or a pool a DAG uses that
airflow-init never creates.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _defaults(text: str) -> str:
    """``${VAR:-default}`` -> ``default``: the file as ``docker compose`` reads it with no docker/.env."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def _env(service: dict) -> dict[str, str]:
    return {k: _defaults(str(v)) for k, v in service.get("environment", {}).items()}


def _workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if str(s.get("command", "")).startswith("celery worker")}


def _option(command: str, name: str) -> str:
    argv = shlex.split(_defaults(command))
    return argv[argv.index(name) + 1]


def test_each_queue_has_workers_of_its_own(compose):
    workers = _workers(compose)
    heavy_queue = _env(compose["x-airflow-common"])["IMAGENET_OPS_HEAVY_QUEUE"]
    queues = {name: set(_option(s["command"], "--queues").split(",")) for name, s in workers.items()}
    assert queues == {"airflow-worker": {"default"}, "airflow-worker-heavy": {heavy_queue}}, queues


def test_a_heavy_worker_splits_its_cpus_over_its_own_slots(compose):
    heavy = _workers(compose)["airflow-worker-heavy"]
    assert _env(heavy)["IMAGENET_OPS_HEAVY_TASKS_PER_HOST"] == _option(heavy["command"], "--concurrency")


def test_every_worker_gets_time_to_finish_its_tasks_on_a_redeploy(compose):
    for name, worker in _workers(compose).items():
        assert _defaults(worker["stop_grace_period"]) == "15m", name


def test_the_default_sink_is_the_minio_service_by_its_service_name(compose):
    env = _env(compose["x-airflow-common"])
    assert env["IMAGENET_OPS_SINK_ROOT"] == "s3://imagenet-artifacts"
    aws_default = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws_default["extra"]["endpoint_url"] == "http://minio:9000" and "minio" in compose["services"]
    init = compose["services"]["minio-init"]["command"][-1]
    assert "mb --ignore-existing deployment/imagenet-artifacts" in init


def test_no_service_talks_to_127_0_0_1_outside_its_healthcheck(compose):
    text, compose = COMPOSE.read_text(), copy.deepcopy(compose)
    for service in compose["services"].values():
        service.pop("healthcheck", None)
    loopback = re.compile(r"127\.0\.0\.1|localhost")
    assert not loopback.search(yaml.safe_dump(compose)), [line for line in text.splitlines() if loopback.search(line)]


def test_airflow_init_imports_the_deployments_settings_with_the_pools_the_dags_use():
    local = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    deployed = yaml.safe_load((ROOT / "docker" / "airflow_settings.yaml").read_text())["airflow"]
    assert not deployed.get("connections"), "connections of airflow_settings.yaml point at 127.0.0.1"
    assert {p["pool_name"]: p["pool_slot"] for p in deployed["pools"]} == {p["pool_name"]: p["pool_slot"] for p in local["pools"]}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "COPY --chown=airflow:0 docker/airflow_settings.yaml /opt/airflow/airflow_settings.yaml" in dockerfile
    assert "constraints.txt" in dockerfile
