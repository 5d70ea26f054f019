"""The embedded default's API under load: many writes at once, while tasks start and heartbeat.

On SQLite, Airflow 3.3.2's api-server used to deadlock itself: its audit-log dependency commits
on the event loop, and waits there for a lock held by a request that needs the event loop to
commit. Writes then failed with HTTP 500 "Database error" every 5 s (SQLite's busy timeout),
form triggers and task starts among them. ``plugins/airflow_local_settings.py`` moves that commit
to a worker thread. Here, 300 audited writes from 6 threads, sent while two DAG runs are going,
must all succeed and each leave its audit row. The runs must succeed too.
"""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
import requests

pytestmark = pytest.mark.slow

WRITES = 300
THREADS = 6
BUSY_DAGS = ("imagenet_training_data", "imagenet_preprocessed")
RUN_TIMEOUT = 420  # s; generous: the runs share two cores with the writes


def test_audited_writes_all_succeed_while_runs_go(cluster, dag_inputs):
    pool = f"api-load-{uuid.uuid4().hex[:8]}"
    created = cluster.api.post(f"{cluster.base}/api/v2/pools", json={"name": pool, "slots": 1}, timeout=30)
    assert created.ok, created.text
    runs = {}
    for dag_id in BUSY_DAGS:
        cluster.set_paused(dag_id, False)
        runs[dag_id] = cluster.trigger(dag_id, {**dag_inputs.inputs[dag_id], "sink_uri": cluster.sink("api-load", dag_id)})
    audited_before = cluster.get("eventLogs", event="patch_pool", limit=1)["total_entries"]

    def write(i: int) -> tuple[int, str]:
        try:
            resp = cluster.api.patch(
                f"{cluster.base}/api/v2/pools/{pool}",
                json={"name": pool, "slots": 1, "description": f"write {i}", "include_deferred": False},
                timeout=60,
            )
        except requests.RequestException as exc:  # a deadlocked api-server answers nothing
            return 0, repr(exc)
        return resp.status_code, resp.text[:300]

    with concurrent.futures.ThreadPoolExecutor(THREADS) as threads:
        results = list(threads.map(write, range(WRITES)))

    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {WRITES} writes failed, e.g. {failed[:2]}"
    audited = cluster.get("eventLogs", event="patch_pool", limit=1)["total_entries"] - audited_before
    assert audited == WRITES, f"{audited} audit rows for {WRITES} writes"
    for dag_id, run_id in runs.items():
        cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    cluster.api.delete(f"{cluster.base}/api/v2/pools/{pool}", timeout=30)
