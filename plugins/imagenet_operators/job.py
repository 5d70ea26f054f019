"""The one step-operator base: every step gets its run's typed job and makes one library call.

The resolve task makes the job (the artifact's :class:`~imagenet_ops.core.jobs.Job`, serialised
by ``to_xcom``) and every step gets it whole, so a mapped task on any worker has what it needs; each
step rebuilds it with :meth:`JobOperator.typed_job` and builds its sink and input store here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from imagenet_operators.masking import MasksURLSecrets

SUPERVISOR_TITLE = b"airflow supervisor"
"""How Airflow's executors title the supervisor process of a task (``setproctitle``)."""


def die_with_supervisor() -> bool:
    """Have the kernel SIGKILL this task process when its supervisor dies; True when it was asked to.

    A worker lost with ``kill -9`` (a host gone, an OOM kill of the worker) takes the supervisor
    with it, but the task process has a process group of its own and kept writing shards for half
    a minute with nobody heartbeating for it, while a retry could start on another worker (issue 12
    item 3). With this, it stops at once, and its pool children with it (they die with their parent).
    Only applies when the parent is a supervisor: ``dag.test()`` and the CLI run tasks in-process.
    """
    from imagenet_ops.core.process_pool import killed_with_parent

    parent = os.getppid()
    try:
        title = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return False
    if not title.startswith(SUPERVISOR_TITLE):
        return False
    killed_with_parent(parent)
    return True


class JobOperator(MasksURLSecrets, BaseOperator):
    """A step of a job: ``job`` is templated; the typed job, its sink and input store are built in ``execute``.

    :param job: the job from the resolve task, as its ``to_xcom`` dict. (templated)
    """

    template_fields: Sequence[str] = ("job",)
    template_fields_renderers = {"job": "json"}
    job_type: ClassVar[str | None] = None
    """``module:Class`` of the artifact's Job, imported only when a step runs (not at DAG parse)."""
    input_keys: tuple[str, ...] = ()
    """Job keys that may name s3:// or gs:// inputs, for steps without a ``job_type``."""

    def __init__(self, *, job: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job

    def pre_execute(self, context: Any) -> None:
        """Under a Task SDK supervisor, this task process dies with it (see :func:`die_with_supervisor`)."""
        die_with_supervisor()

    def typed_job(self) -> Any:
        """The artifact's frozen Job, rebuilt from the XCom dict."""
        import importlib

        if self.job_type is None:
            raise TypeError(f"{type(self).__name__} declares no job_type")
        module, _, name = self.job_type.partition(":")
        return getattr(importlib.import_module(module), name).from_xcom(self.job)

    def _sink(self) -> Any:
        """The job's sink, built once per task (the lease and the step share it)."""
        from imagenet_operators.sinks import sink_from_connection

        key = (self.job["sink_uri"], self.job["conn_id"])
        built = getattr(self, "_built_sink", None)
        if built is None or built[0] != key:  # one operator object may run several times (dag.test)
            built = self._built_sink = (key, sink_from_connection(*key))
        return built[1]

    def _staging(self, context: Any) -> Any:
        """This DAG run's hand-over area in the job's sink (:class:`~imagenet_ops.core.staging.Staging`):
        what a task leaves for the next one, since workers share no disk."""
        from imagenet_operators.sinks import store_from_connection
        from imagenet_ops.core.staging import Staging

        store = store_from_connection([self.job["sink_uri"]], self.job["conn_id"])  # the sink's credentials, not the inputs'
        return Staging(sink=self._sink(), run=f"{context['dag'].dag_id}/{context['run_id']}", store=store)

    def _store(self) -> Any:
        from imagenet_operators.sinks import store_from_connection
        from imagenet_ops.core.uris import is_remote

        if self.job_type is not None:
            uris = list(self.typed_job().input_locations())
        else:
            uris = [self.job.get(k) for k in self.input_keys]
        if is_remote(self.job["sink_uri"]):
            uris.append(self.job["sink_uri"])  # remote outputs are checked by size on re-runs
        return store_from_connection(uris, self.job.get("source_conn_id") or self.job["conn_id"])


class JobTeardownOperator(JobOperator):
    """A run's teardown over its job: runs whatever happened upstream, and does nothing without a job.

    Subclasses implement :meth:`tear_down` and name in ``without_job`` what there is then not to undo.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    without_job = "nothing to undo"

    def __init__(self, *, job: Mapping[str, Any] | None, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(job=job, **kwargs)

    def execute(self, context: Any) -> None:
        if not self.job or not self.job.get("sink_uri"):
            self.log.info("No job (resolve did not finish): %s", self.without_job)
            return
        self.tear_down(context)

    def tear_down(self, context: Any) -> None:
        raise NotImplementedError


class RunCleanupOperator(JobTeardownOperator):
    """Remove the run's staging area and this host's run folder; runs whatever happened upstream.

    Subclasses name their artifact's ``job_type`` and say in their docstring what was staged.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    without_job = "nothing was staged"

    def tear_down(self, context: Any) -> None:
        from imagenet_ops.core.staging import clean_up_run

        removed = clean_up_run(staging=self._staging(context), work_dir=self.job["work_dir"])
        self.log.info("Removed the run's staging area (%d staged file(s))", removed)
