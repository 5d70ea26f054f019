"""Shared DAG building blocks: the trigger form from a variation table, and run-time locations.

Locations come from Airflow Variables (``imagenet_ops_work_dir``, ``imagenet_ops_sink_root``),
then the environment (``IMAGENET_OPS_WORK_DIR``, ``IMAGENET_OPS_SINK_ROOT``), then defaults
under ``$AIRFLOW_HOME``. The work dir must be shared by all workers: tasks hand files over there.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, Variable

from imagenet_ops import errors
from imagenet_ops.variations import VariationTable

# Bad input cannot get better by waiting: fail at once. Network and storage errors retry with backoff.
BAD_INPUT_FAILS_FAST = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                errors.ChecksumMismatch,
                errors.UnsafeArchiveError,
                errors.ArchiveError,
                errors.ValidationError,
                errors.ConfigError,
                errors.ImageError,
            ],
            action=RetryAction.FAIL,
            reason="bad input: a retry would read the same bytes",
        )
    ]
)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ml-platform",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": BAD_INPUT_FAILS_FAST,
}
APPROVED_TAGS = frozenset({"imagenet", "mlperf", "aux", "model", "dataset", "training"})


def table_params(table: VariationTable) -> dict[str, Param]:
    """One typed, titled, described Param per field of ``table``, plus its CM tags field."""
    return {name: Param(**spec) for name, spec in table.param_specs().items()}


def output_params(artifact: str) -> dict[str, Param]:
    """Where to publish: sink URI and connection id."""
    return {
        "sink_uri": Param(
            None,
            type=["null", "string"],
            title="Sink URI",
            section="Output",
            description=(
                "Local folder, s3://bucket/prefix or gs://bucket/prefix. Empty: the Variable imagenet_ops_sink_root "
                f"(or $IMAGENET_OPS_SINK_ROOT, default ./artifacts) + /{artifact}."
            ),
        ),
        "conn_id": Param(
            None,
            type=["null", "string"],
            title="Connection id",
            section="Output",
            description="Airflow connection for the sink: an aws connection for s3://, google_cloud_platform for gs://. "
            "Empty: aws_default / google_cloud_default when defined, else the environment's credentials.",
        ),
    }


def input_param(title: str, description: str) -> Param:
    """An optional input location (local path, s3:// or gs://), in the Inputs section."""
    return Param(None, type=["null", "string"], title=title, description=description, section="Inputs")


def scale_out_params(
    *, tasks_name: str, tasks_default: int, tasks_title: str, tasks_description: str, what: str
) -> dict[str, Param]:
    """The mapped-task count, processes per task, and the input connection of a fanned-out DAG."""
    return {
        "source_conn_id": Param(
            None,
            type=["null", "string"],
            title="Input connection id",
            section="Inputs",
            description=f"Airflow connection for s3:// or gs:// {what}. Empty: the sink's connection.",
        ),
        tasks_name: Param(
            tasks_default,
            type="integer",
            minimum=1,
            maximum=1024,
            title=tasks_title,
            section="Scale-out",
            description=tasks_description,
        ),
        "workers": Param(
            0,
            type="integer",
            minimum=0,
            maximum=256,
            title="Processes per task",
            section="Scale-out",
            description="Processes inside each mapped task; 0 means all cores of the worker.",
        ),
    }


def _setting(variable: str, env: str, default: str) -> str:
    return Variable.get(variable, default=None) or os.environ.get(env) or default


def work_dir(dag_id: str, run_id: str) -> str:
    """This run's scratch folder on the shared work volume."""
    airflow_home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    root = _setting("imagenet_ops_work_dir", "IMAGENET_OPS_WORK_DIR", str(Path(airflow_home) / "imagenet_ops_work"))
    return str(Path(root) / dag_id / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))


def sink_uri(artifact: str, given: str | None) -> str:
    """The given sink, or the default root + ``/artifact``."""
    if given:
        return given
    root = _setting("imagenet_ops_sink_root", "IMAGENET_OPS_SINK_ROOT", str(Path("artifacts").resolve()))
    return f"{root.rstrip('/')}/{artifact}"


def sink_conn_id(uri: str, given: str | None) -> str | None:
    """The given connection, else the provider default for the scheme when it is defined."""
    if given:
        return given
    default = {"s3": "aws_default", "gs": "google_cloud_default"}.get(uri.split("://", 1)[0]) if "://" in uri else None
    if default is None:
        return None
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(default)
    except Exception:  # noqa: BLE001 - "not defined" surfaces as several exception types
        return None
    return default
