"""A small run is not starved by a big one (issue 12 item 4), on the compose deployment's layout.

The layout of ``docker/docker-compose.yaml``, with real processes on this machine's Postgres and
Redis: the DAGs parsed with ``IMAGENET_OPS_HEAVY_QUEUE=imagenet_heavy``, one Celery worker on
the default queue, one on the heavy queue. The pool ``imagenet_heavy`` is sized to the heavy
worker's slots: 1, on this 2-core machine.

An aux run is timed on the idle cluster (after a warm-up run), then again while a training run
asked for 64 shard writers (the small sample makes about 40 groups) waits for the heavy slot.
Before, the writers sat in ``default_pool`` and on the one queue: an aux run took 79 s instead of
7 s, and finished only when the training run did. Now it must finish
within twice its idle time, with the training run still going, and no more writers at once than
the heavy pool has slots.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow

HEAVY_QUEUE = "imagenet_heavy"
HEAVY_SLOTS = 1
WRITERS = 64


@pytest.fixture(scope="module")
def cluster(make_cluster):
    cluster = make_cluster(redis_db=13, extra_env={"IMAGENET_OPS_HEAVY_QUEUE": HEAVY_QUEUE})
    worker = [sys.executable, "-m", "airflow", "celery", "worker"]
    cluster.start("light-worker", [*worker, "--celery-hostname", "light", "--queues", "default", "--concurrency", "4"])
    heavy_env = {**cluster.env, "IMAGENET_OPS_HEAVY_TASKS_PER_HOST": str(HEAVY_SLOTS)}
    heavy = [*worker, "--celery-hostname", "heavy", "--queues", HEAVY_QUEUE, "--concurrency", str(HEAVY_SLOTS)]
    cluster.start("heavy-worker", heavy, env=heavy_env)
    cluster.login()
    for dag_id in ("imagenet_aux", "imagenet_training_data"):
        cluster.wait_for_dag(dag_id)
        assert cluster.api.patch(f"{cluster.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).ok
    resized = cluster.api.patch(
        f"{cluster.base}/api/v2/pools/imagenet_heavy",
        params={"update_mask": "slots"},
        json={"pool": "imagenet_heavy", "slots": HEAVY_SLOTS, "include_deferred": False},
        timeout=10,
    )
    assert resized.ok, resized.text
    return cluster


def _timed_aux_run(cluster, dag_inputs, name: str) -> float:
    """Seconds from trigger to success of an aux run into a sink of its own (no cache hit)."""
    started = time.monotonic()
    run_url = cluster.trigger("imagenet_aux", {**dag_inputs.inputs["imagenet_aux"], "sink_uri": str(cluster.home / name)})
    state = cluster.wait_for_run(run_url, 300)
    assert state == "success", cluster.task_errors("imagenet_aux")
    return time.monotonic() - started


def _writers(cluster, run_url: str) -> dict[str, int]:
    states: dict[str, int] = {}
    for t in cluster.task_instances(run_url):
        if t["task_id"] == "write_shards":
            states[t["state"] or "none"] = states.get(t["state"] or "none", 0) + 1
    return states


def test_an_aux_run_finishes_within_twice_its_idle_time_while_dozens_of_writers_wait(cluster, dag_inputs):
    _timed_aux_run(cluster, dag_inputs, "aux-warm-up")
    idle = _timed_aux_run(cluster, dag_inputs, "aux-idle")

    conf: dict[str, Any] = {
        **dag_inputs.inputs["imagenet_training_data"],
        "sink_uri": str(cluster.home / "training"),
        "parallel_tasks": WRITERS,
    }
    training = cluster.trigger("imagenet_training_data", conf)
    cluster.wait(lambda: _writers(cluster, training).get("running"), 180, "a shard writer to run")
    busy = _timed_aux_run(cluster, dag_inputs, "aux-busy")

    writers = _writers(cluster, training)
    try:
        assert cluster.run_state(training) == "running", writers  # the big run was going all along
        mapped = len(cluster.xcom(training, "groups"))  # the small sample makes fewer than 64 groups
        assert sum(writers.values()) == mapped >= 32 and writers.get("success", 0) < mapped // 2, (mapped, writers)
        assert writers.get("running", 0) + writers.get("queued", 0) <= HEAVY_SLOTS, writers
        assert busy <= 2 * idle, f"aux took {busy:.0f} s beside the training run, {idle:.0f} s on the idle cluster; {writers}"
    finally:  # the training run has made its point; stop it rather than wait for 64 writers
        cluster.api.patch(training, json={"state": "failed"}, timeout=10)
