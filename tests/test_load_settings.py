"""scripts/load_settings.py on a real (SQLite) Airflow DB: the file is imported, and --only-missing,
what the compose file's airflow-init runs on every ``up``, never resets what an operator changed.

Regression (issue 12 item 5): airflow-init re-imported the settings on every ``up``, resizing a
pool an operator had set to 12 back to 4 and pointing connections back at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "airflow_settings.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
    }
    _airflow(env, "db", "migrate")
    return env


def _airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _load(env: dict[str, str], *flags: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load_settings.py"), *flags, str(SETTINGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _pool_slots(env: dict[str, str], name: str) -> int | None:
    pools = {p["pool"]: int(p["slots"]) for p in json.loads(_airflow(env, "pools", "list", "-o", "json"))}
    return pools.get(name)


def _connection_extra(env: dict[str, str], conn_id: str) -> dict:
    [conn] = json.loads(_airflow(env, "connections", "get", conn_id, "-o", "json"))
    return json.loads(conn["extra_dejson"]) if isinstance(conn["extra_dejson"], str) else conn["extra_dejson"]


def test_only_missing_keeps_what_an_operator_changed_and_adds_what_is_gone(airflow_env: dict[str, str]) -> None:
    env = airflow_env
    _load(env)  # the local default: the file is the truth
    assert _pool_slots(env, "imagenet_downloads") == 4
    assert _connection_extra(env, "local_s3")["endpoint_url"] == "http://127.0.0.1:5055"

    # an operator resizes the pool, repoints the connection and changes a variable
    _airflow(env, "pools", "set", "imagenet_downloads", "12", "resized by ops")
    _airflow(env, "connections", "delete", "local_s3")
    extra = json.dumps({"endpoint_url": "http://minio:9000", "region_name": "us-east-1"})
    _airflow(env, "connections", "add", "local_s3", "--conn-type", "aws", "--conn-extra", extra)
    _airflow(env, "variables", "set", "imagenet_ops_refresh_owner", "ops-team")
    _airflow(env, "connections", "delete", "local_gcs")  # and one object is gone

    _load(env, "--only-missing")  # what airflow-init runs on every `up`

    assert _pool_slots(env, "imagenet_downloads") == 12
    assert _connection_extra(env, "local_s3")["endpoint_url"] == "http://minio:9000"
    assert _airflow(env, "variables", "get", "imagenet_ops_refresh_owner").strip() == "ops-team"
    assert _connection_extra(env, "local_gcs")["endpoint_url"] == "http://127.0.0.1:9023", "a missing object is created"

    _load(env)  # an explicit full import still resets to the file
    assert _pool_slots(env, "imagenet_downloads") == 4
