"""``imagenet_aux`` on the production topology: Postgres metadata DB, CeleryExecutor on Redis.

Starts the real components as separate processes (api-server, scheduler, dag-processor, one
Celery worker) against the PostgreSQL and Redis servers on 127.0.0.1, triggers a run over the
REST API with params as a user would, and publishes to an S3-protocol server through an
Airflow connection. The weekly schedule is switched off (``use_job_schedule=False``) so that
no run goes to the real mirrors.
"""

from __future__ import annotations

import json
import sys

import pytest

from imagenet_ops.aux.report import REPORT_FILES
from imagenet_ops.aux.variations import AUX_FILES
from imagenet_ops.core.digests import file_digests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(make_cluster):
    """A migrated Postgres DB, and api-server + scheduler + dag-processor + celery worker processes."""
    cluster = make_cluster(redis_db=11)
    # One heavy task at a time per host, so workers=0 gives each the host's CPUs: a process pool inside a Celery task.
    env = {**cluster.env, "IMAGENET_OPS_HEAVY_TASKS_PER_HOST": "1"}
    cluster.start("worker", [sys.executable, "-m", "airflow", "celery", "worker"], env=env)
    cluster.login()
    cluster.wait_for_dag("imagenet_aux")
    return cluster


def test_triggered_run_executes_on_celery_workers_and_publishes_to_s3(cluster, http_server, aux_archive_bytes, s3_bucket):
    api, base = cluster.api, cluster.base
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
    cluster.wait_for_run(run_url, 240)
    tis = api.get(f"{run_url}/taskInstances", timeout=10).json()["task_instances"]
    states = {t["task_id"]: t["state"] for t in tis}
    assert api.get(run_url, timeout=5).json()["state"] == "success", states
    assert {t["hostname"] for t in tis} and all(t["executor"] in (None, "CeleryExecutor") for t in tis)

    xcom = api.get(f"{run_url}/taskInstances/publish/xcomEntries/return_value", timeout=10).json()["value"]
    env = xcom if isinstance(xcom, dict) else json.loads(xcom)
    assert env == {"CM_DATASET_AUX_PATH": f"s3://{bucket}/aux", "CM_DATASET_AUX_VER": "2012"}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"aux/{n}" for n in (*AUX_FILES, *REPORT_FILES, "manifest.json")}
    events = api.get(f"{base}/api/v2/assets/events", params={"source_dag_id": "imagenet_aux"}, timeout=10).json()
    assert [e["uri"] for e in events["asset_events"]] == [f"s3://{bucket}/aux"]
    assert events["asset_events"][0]["extra"]["files"] == len(AUX_FILES) + len(REPORT_FILES)


# Every other DAG, triggered with only its inputs and sink: each param at its default, the
# training DAG at its default "Processes per task" (0 = all cores, a process pool under Celery).
DEFAULTS_RUNS = {
    "resnet50_model": ("publish", "CM_ML_MODEL_FILE_WITH_PATH", "onnx-fp32-argmax-opset11"),
    "imagenet_training_data": ("finalize", "CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH", "train-00000-of-01024"),
    "imagenet_preprocessed": ("finalize", "CM_DATASET_PREPROCESSED_PATH", "chunk 0: "),
}


@pytest.mark.parametrize("dag_id", list(DEFAULTS_RUNS))
def test_every_dag_succeeds_with_its_defaults_on_celery(cluster, dag_inputs, s3_bucket, dag_id):
    api, base = cluster.api, cluster.base
    client, bucket = s3_bucket
    publish_task, env_key, label = DEFAULTS_RUNS[dag_id]
    conf = {**dag_inputs.inputs[dag_id], "sink_uri": f"s3://{bucket}/{dag_id}", "conn_id": "e2e_s3"}
    assert api.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).ok
    created = api.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10)
    assert created.ok, created.text
    run_url = f"{base}/api/v2/dags/{dag_id}/dagRuns/{created.json()['dag_run_id']}"
    cluster.wait_for_run(run_url, 600)
    tis = api.get(f"{run_url}/taskInstances", params={"limit": 100}, timeout=10).json()["task_instances"]
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
    assert api.get(run_url, timeout=5).json()["state"] == "success", (states, cluster.task_errors(dag_id))
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
