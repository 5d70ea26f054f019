"""Shared DAG building blocks: the trigger form from a variation table, refresh schedules, and run-time locations.

Scheduled refreshes are off unless an operator turns them on: ``IMAGENET_OPS_SCHEDULE_<DAG_ID>``
(e.g. ``IMAGENET_OPS_SCHEDULE_IMAGENET_AUX=@weekly``, read when the DAG file is parsed) sets the
schedule, and the Variable ``imagenet_ops_refresh_<dag_id>`` (a JSON object of params: mirror, url,
md5, sink_uri, conn_id …) is what a scheduled run uses over the Param defaults. Without them,
unpausing a DAG creates no run, so a manual run never waits behind a refresh nobody asked for.

Locations come from Airflow Variables (``imagenet_ops_work_dir``, ``imagenet_ops_sink_root``),
then the environment (``IMAGENET_OPS_WORK_DIR``, ``IMAGENET_OPS_SINK_ROOT``), then defaults
under ``$AIRFLOW_HOME``. The work dir is worker-local scratch: each task works in a folder of its
own there and removes it; files cross tasks through the run's staging area in the sink.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, Variable

from imagenet_operators import deadlines
from imagenet_operators.notify import notify_failure, notify_success
from imagenet_ops.core import errors
from imagenet_ops.core.lease import LeaseHeldError, LeaseLostError
from imagenet_ops.core.variations import VariationTable

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
        ),
        RetryRule(
            exception=[LeaseHeldError, LeaseLostError],
            action=RetryAction.FAIL,
            reason="another run is writing this output",
        ),
    ]
)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ml-platform",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": BAD_INPUT_FAILS_FAST,
    "on_failure_callback": notify_failure,  # only when a task fails for good; nothing is sent unless configured
}
DAG_CALLBACKS: dict[str, Any] = {
    "on_success_callback": notify_success,  # a run's success, when asked for
    "deadline": deadlines.deadline_alerts(),  # a run late by the form's limits (operations_params)
}
APPROVED_TAGS = frozenset({"imagenet", "mlperf", "aux", "model", "dataset", "training", "accuracy"})


def table_params(table: VariationTable) -> dict[str, Param]:
    """One typed, titled, described Param per field of ``table``, plus its CM tags field."""
    return {name: Param(**spec) for name, spec in table.param_specs().items()}


def declared_params(artifact: Any) -> dict[str, Param]:
    """The form fields an artifact declares: its variation table's fields, then its job's inputs."""
    inputs = {f.name: input_param(f.metadata["title"], f.metadata["description"]) for f in artifact.job.inputs()}
    return {**table_params(artifact.table), **inputs}


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


def operations_params() -> dict[str, Param]:
    """A run's deadlines: a limit in minutes, and a multiple of the recent average runtime (see ``deadlines``)."""
    return {
        deadlines.LIMIT_PARAM: Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=10_080,
            title="Deadline (minutes)",
            section="Operations",
            description="Notify (like a failure) when the run has not ended this many minutes after it was queued; "
            "the run goes on. Empty: no limit. Range: 1 to 10,080 (a week).",
        ),
        deadlines.MULTIPLE_PARAM: Param(
            deadlines.DEFAULT_RUNTIME_MULTIPLE,
            type=["null", "number"],
            minimum=1,
            maximum=100,
            title="Deadline (x recent average runtime)",
            section="Operations",
            description=f"Notify when the run takes longer than this multiple of the average of the DAG's last "
            f"{deadlines.RECENT_RUNS} successful runs (from queued; only once {deadlines.MIN_RECENT_RUNS} exist). "
            "Empty: off. Range: 1 to 100.",
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
            description=f"{tasks_description} Range: 1 to 1,024.",
        ),
        "workers": Param(
            0,
            type="integer",
            minimum=0,
            maximum=256,
            title="Processes per task",
            section="Scale-out",
            description="Processes inside each mapped task; 0 means all cores of the worker. Range: 0 to 256.",
        ),
    }


def refresh_schedule(dag_id: str) -> str | None:
    """The schedule an operator turned on with ``IMAGENET_OPS_SCHEDULE_<DAG_ID>``; ``None`` (manual only) otherwise."""
    value = os.environ.get(f"IMAGENET_OPS_SCHEDULE_{dag_id.upper()}", "").strip()
    return value if value and value.lower() not in ("none", "off", "false", "0") else None


def run_params(params: dict[str, Any], dag_run: Any, dag_id: str) -> dict[str, Any]:
    """``params``, with the operator's refresh settings (Variable ``imagenet_ops_refresh_<dag_id>``) on scheduled runs."""
    if not is_scheduled(dag_run):
        return params
    import json

    from imagenet_ops.core.errors import ConfigError

    raw = Variable.get(f"imagenet_ops_refresh_{dag_id}", default=None)
    if not raw:
        return params
    try:
        overrides = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ConfigError(f"Variable imagenet_ops_refresh_{dag_id}: not a JSON object ({exc})") from exc
    if not isinstance(overrides, dict):
        kind = type(overrides).__name__
        raise ConfigError(f"Variable imagenet_ops_refresh_{dag_id}: expected a JSON object of params, got {kind}")
    return {**params, **overrides}


def resolve_job(artifact: Any, *, params: dict[str, Any], run_id: str, dag_run: Any) -> Any:
    """The one resolve step of every DAG: the run's params, its locations, then the artifact's ``resolve_job``.

    Args:
        artifact: the artifact's :class:`~imagenet_ops.core.jobs.Artifact` declaration; its
            ``resolve_job(params, *, sink_uri, conn_id, work_dir, scheduled)`` holds every rule about
            the params and returns one Job or a list of them.
        params: the form's params (a scheduled run's refresh settings are laid over them here).

    Returns:
        The job's ``to_xcom()`` dict, or a list of them when the artifact makes several jobs.
    """
    params = run_params(params, dag_run, artifact.name)
    uri = sink_uri(artifact.name, params.get("sink_uri"))
    jobs = artifact.resolve_job(
        params,
        sink_uri=uri,
        conn_id=sink_conn_id(uri, params.get("conn_id")),
        work_dir=work_dir(artifact.name, run_id),
        scheduled=is_scheduled(dag_run),
    )
    return [j.to_xcom() for j in jobs] if isinstance(jobs, list) else jobs.to_xcom()


def is_scheduled(dag_run: Any) -> bool:
    """True for a run the scheduler created from the DAG's schedule (not a manual trigger)."""
    return getattr(dag_run.run_type, "value", dag_run.run_type) == "scheduled"


def _setting(variable: str, env: str, default: str) -> str:
    return Variable.get(variable, default=None) or os.environ.get(env) or default


def work_dir(dag_id: str, run_id: str) -> str:
    """This run's scratch root on a worker (each task makes and removes its own folder under it)."""
    airflow_home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    root = _setting("imagenet_ops_work_dir", "IMAGENET_OPS_WORK_DIR", str(Path(airflow_home) / "imagenet_ops_work"))
    return str(Path(root) / dag_id / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))


def sink_uri(artifact: str, given: str | None) -> str:
    """The given sink, or the default root + ``/artifact``; a malformed one fails here, before any work.

    Raises:
        SinkURIError: no or an invalid bucket, ``?``/``#``, or ``.``/``..`` segments.
    """
    from imagenet_ops.core.uris import split_uri

    if not given:
        root = _setting("imagenet_ops_sink_root", "IMAGENET_OPS_SINK_ROOT", str(Path("artifacts").resolve()))
        given = f"{root.rstrip('/')}/{artifact}"
    split_uri(given)
    return given


def sink_conn_id(uri: str, given: str | None) -> str | None:
    """The given connection, else the provider default for the scheme when it is defined."""
    if given:
        return given
    from imagenet_ops.core.uris import scheme_of

    default = {"s3": "aws_default", "gs": "google_cloud_default"}.get(scheme_of(uri))
    if default is None:
        return None
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(default)
    except Exception:  # noqa: BLE001 - "not defined" surfaces as several exception types
        return None
    return default


def test_locally(dag: Any, conf: dict[str, Any] | None = None) -> Any:
    """``dag.test(run_conf=conf)`` without the DAG's deadline alerts; returns the run.

    Airflow 3.3.2's ``dag.test()`` keeps the encoded alerts where a run's success expects their DB
    ids (``DagRun.update_state`` -> ``DeadlineAlertModel.get_by_id(<dict>)``: "'dict' object has no
    attribute 'hex'"), so every successful local run of a DAG with a deadline crashes at its end; a
    scheduler reads the ids and is unaffected. The local run goes without its alerts
    (``tests/ui/test_deadlines.py`` checks them on a real scheduler).
    """
    deadline, dag.deadline = dag.deadline, None
    try:
        return dag.test(run_conf=conf or {})
    finally:
        dag.deadline = deadline
