"""Output leases for DAG runs: one run writes an output at a time (see ``imagenet_ops.lease``).

The owner of a DAG run's lease is ``<dag_id>/<run_id>``, so every task of the run (mapped ones
included, on any worker) holds the same lease, a retried task takes it back, and a task of any
other run, or a CLI run, fails at once naming the holder.

* Multi-task jobs (training data, preprocessed): every job step takes or renews the lease in
  ``pre_execute`` and renews it while it runs; :class:`ReleaseOutputLeaseOperator`, which runs
  whatever happened upstream, gives it up at the end. A run that dies without it releases
  nothing: its lease expires ``RUN_TTL`` (15 min, ``IMAGENET_OPS_LEASE_TTL``) after its last renewal.
* Single-task publishes (aux, model variants): :func:`publishing` holds the lease around the one
  library call and releases it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.job import JobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_owner(context: Context) -> str:
    """The lease owner of the DAG run ``context`` belongs to."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


def run_lease(sink: Any, context: Context) -> Any:
    """This run's (not yet acquired) lease on ``sink``."""
    from imagenet_ops.lease import RUN_TTL, Lease, default_ttl

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
    """A job step that holds the run's lease on the job's sink while it runs (released by the release step)."""

    def pre_execute(self, context: Context) -> None:
        super().pre_execute(context)
        self._lease_scope = contextlib.ExitStack()
        lease = run_lease(self._sink(), context).acquire()
        self._lease_scope.enter_context(lease.keep_alive())

    def post_execute(self, context: Context, result: Any = None) -> None:
        scope = getattr(self, "_lease_scope", None)
        if scope is not None:
            scope.close()  # stops the renewals; the lease stays with the run for its next step
        super().post_execute(context, result)


class ReleaseOutputLeaseOperator(JobOperator):
    """Release the run's lease on the job's sink; runs after the last writer whatever its state.

    :param job: the job dict from the resolve task, ``None`` when resolve failed. (templated)
    """

    template_fields: Sequence[str] = ("job",)

    def __init__(self, *, job: Mapping[str, Any] | None, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(job=job, **kwargs)

    def execute(self, context: Context) -> None:
        if not self.job or not self.job.get("sink_uri"):
            self.log.info("No job (resolve did not finish): no lease was taken")
            return
        run_lease(self._sink(), context).release()
