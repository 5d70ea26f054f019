"""Output leases for DAG runs: one run writes an output at a time (see ``imagenet_ops.core.lease``).

The owner of a DAG run's lease is ``<dag_id>/<run_id>``, so every task of the run (mapped ones
included, on any worker) holds the same lease, a retried task takes it back, and a task of any
other run, or a CLI run, fails at once naming the holder.

* Multi-task jobs (training data, preprocessed): every job step takes or renews the lease
  before its ``execute`` and renews it while it runs; :class:`ReleaseOutputLeaseOperator`, which runs
  whatever happened upstream, gives it up at the end. A run that dies without it releases
  nothing: its lease expires ``RUN_TTL`` (15 min, ``IMAGENET_OPS_LEASE_TTL``) after its last renewal.
* Single-task publishes (aux, model variants): :func:`publishing` holds the lease around the one
  library call and releases it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from imagenet_operators.job import JobOperator, JobTeardownOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_owner(context: Context) -> str:
    """The lease owner of the DAG run ``context`` belongs to."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


def run_lease(sink: Any, context: Context) -> Any:
    """This run's (not yet acquired) lease on ``sink``."""
    from imagenet_ops.core.lease import RUN_TTL, Lease, default_ttl

    return Lease(sink, owner=run_owner(context), ttl=default_ttl(RUN_TTL))


@contextlib.contextmanager
def publishing(sink: Any, context: Context) -> Iterator[Any]:
    """Hold this run's lease on ``sink`` for a block that writes it, then release it."""
    lease = run_lease(sink, context).acquire()
    try:
        with lease.keep_alive():
            yield sink
    finally:
        lease.release()


class LeasedJobOperator(JobOperator):
    """A job step that holds the run's lease on the job's sink while it runs (released by the release step).

    Each subclass's ``execute`` is wrapped: the lease is taken (or renewed) before it and renewed
    while it runs, and the renewals stop when it returns or raises.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inner = cls.__dict__.get("execute")
        if inner is None or getattr(inner, "holds_run_lease", False):
            return

        @functools.wraps(inner)
        def execute(self: LeasedJobOperator, *args: Any, **kw: Any) -> Any:
            context = kw["context"] if "context" in kw else args[0]
            with run_lease(self._sink(), context).acquire().keep_alive():
                return inner(self, *args, **kw)  # its self._sink() is the one built above

        execute.holds_run_lease = True  # type: ignore[attr-defined]
        cls.execute = execute  # type: ignore[method-assign]


class ReleaseOutputLeaseOperator(JobTeardownOperator):
    """Release the run's lease on the job's sink; runs after the last writer whatever its state.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    without_job = "no lease was taken"

    def tear_down(self, context: Context) -> None:
        run_lease(self._sink(), context).release()
