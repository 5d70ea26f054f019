"""Where CPU-heavy tasks run, and how many processes each gets: so big runs never starve small ones.

The heavy tasks are the shard writers of ``imagenet_training_data`` and the chunks of
``imagenet_preprocessed`` (next: the accuracy chunks). They run:

- in the pool :data:`HEAVY_POOL` (``airflow_settings.yaml`` creates it with 2 slots; resize it in
  the UI). At most that many heavy tasks are queued or running at once, so the other tasks (every
  task of ``imagenet_aux`` and ``resnet50_model``, and each DAG's small steps) keep the rest of
  ``default_pool``, the executor's slots and the workers' slots;
- on the Celery queue ``IMAGENET_OPS_HEAVY_QUEUE`` (read when the DAG file is parsed). Unset, that
  is Airflow's default queue, and one worker command serves everything. The compose deployment
  sets it to ``imagenet_heavy`` and runs one worker per queue, so heavy work has hosts of its
  own and can never take a light worker's slot.

``workers=0`` (the forms' default "Processes per task") means the CPUs this task may use
(affinity and cgroup quota: :func:`imagenet_ops.core.cpus.available_cpus`) divided by the heavy
tasks that run at once on this host: ``IMAGENET_OPS_HEAVY_TASKS_PER_HOST``, else the Celery
worker's concurrency under the CeleryExecutor, else 1. Set it on a worker to the heavy tasks it
runs at once: on a heavy-queue worker, its ``--concurrency``.
"""

from __future__ import annotations

import os
from typing import Any

HEAVY_POOL = "imagenet_heavy"
HEAVY_QUEUE_ENV = "IMAGENET_OPS_HEAVY_QUEUE"
TASKS_PER_HOST_ENV = "IMAGENET_OPS_HEAVY_TASKS_PER_HOST"


def heavy_task_args() -> dict[str, Any]:
    """The operator arguments of a CPU-heavy task: its pool, and its queue when one is set."""
    queue = os.environ.get(HEAVY_QUEUE_ENV, "").strip()
    return {"pool": HEAVY_POOL, **({"queue": queue} if queue else {})}


def heavy_tasks_per_host() -> int:
    """How many heavy tasks run at once on this host (what ``workers=0`` divides the CPUs by)."""
    raw = os.environ.get(TASKS_PER_HOST_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"{TASKS_PER_HOST_ENV}={raw!r}: expected a whole number of tasks, e.g. 2") from None
    from airflow.configuration import conf

    if "CeleryExecutor" in conf.get("core", "executor", fallback=""):
        return max(1, conf.getint("celery", "worker_concurrency", fallback=1))
    return 1


def task_processes(requested: Any) -> int:
    """The processes a heavy task uses: ``requested``, or for 0 its share of this host's CPUs."""
    from imagenet_ops.core.cpus import processes_per_task

    return processes_per_task(int(requested), tasks_at_once=heavy_tasks_per_host())
