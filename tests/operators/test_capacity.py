"""Heavy tasks: their own pool, the queue an operator sets, and their share of a host's CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_operators.capacity import HEAVY_POOL, heavy_task_args, heavy_tasks_per_host, task_processes
from imagenet_ops.core.cpus import available_cpus

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {("imagenet_training_data", "write_shards"), ("imagenet_preprocessed", "preprocess"), ("imagenet_accuracy", "score")}


def _parsed_tasks(extra_env: dict[str, str]) -> dict[tuple[str, str], tuple[str, str]]:
    """``(dag_id, task_id) -> (pool, queue)`` of every task, from a DagBag parsed in a process with ``extra_env``."""
    code = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag; "
        "bag = DagBag(dag_folder=sys.argv[1]); "
        "print(json.dumps([[d.dag_id, t.task_id, t.pool, t.queue] for d in bag.dags.values() for t in d.tasks]))"
    )
    env = {**os.environ, **extra_env}
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags")], env=env, capture_output=True, text=True, check=True)
    return {(d, t): (pool, queue) for d, t, pool, queue in json.loads(done.stdout.strip().splitlines()[-1])}


def test_only_the_cpu_heavy_tasks_are_in_the_heavy_pool_and_queue():
    tasks = _parsed_tasks({"IMAGENET_OPS_HEAVY_QUEUE": "imagenet_heavy"})
    heavy = {k for k, (pool, _) in tasks.items() if pool == HEAVY_POOL}
    assert heavy == HEAVY
    assert {k for k, (_, queue) in tasks.items() if queue == "imagenet_heavy"} == HEAVY
    assert {queue for k, (_, queue) in tasks.items() if k not in HEAVY} == {"default"}  # aux, model and every small step


def test_without_a_heavy_queue_everything_is_on_the_default_queue():
    """One worker command then serves every task: a heavy queue nobody consumes would leave tasks queued for ever."""
    tasks = _parsed_tasks({"IMAGENET_OPS_HEAVY_QUEUE": ""})
    assert {queue for _, queue in tasks.values()} == {"default"}
    assert {k for k, (pool, _) in tasks.items() if pool == HEAVY_POOL} == HEAVY


def test_heavy_task_args(monkeypatch):
    monkeypatch.delenv("IMAGENET_OPS_HEAVY_QUEUE", raising=False)
    assert heavy_task_args() == {"pool": HEAVY_POOL}
    monkeypatch.setenv("IMAGENET_OPS_HEAVY_QUEUE", " heavy ")
    assert heavy_task_args() == {"pool": HEAVY_POOL, "queue": "heavy"}


def test_processes_per_task_divide_the_cpus_by_the_heavy_tasks_per_host(monkeypatch):
    cpus = available_cpus()
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.delenv("IMAGENET_OPS_HEAVY_TASKS_PER_HOST", raising=False)
    assert heavy_tasks_per_host() == 1 and task_processes(0) == cpus
    assert task_processes("3") == 3  # the form's explicit count is kept
    # Regression (issue 12 item 4): under Celery, workers=0 started os.cpu_count() processes in each of the worker's 16 slots.
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", "16")
    assert heavy_tasks_per_host() == 16 and task_processes(0) == max(1, cpus // 16)
    monkeypatch.setenv("IMAGENET_OPS_HEAVY_TASKS_PER_HOST", "1")  # a heavy-queue worker that runs one task at a time
    assert task_processes(0) == cpus


def test_a_bad_tasks_per_host_names_the_setting(monkeypatch):
    monkeypatch.setenv("IMAGENET_OPS_HEAVY_TASKS_PER_HOST", "two")
    with pytest.raises(ValueError, match=r"IMAGENET_OPS_HEAVY_TASKS_PER_HOST='two': expected a whole number"):
        heavy_tasks_per_host()
