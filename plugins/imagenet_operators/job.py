"""The base of operators that share one *job* dict (config, inputs, sink, connections, work dir).

The training-data and preprocessed-set DAGs resolve a job once and hand it whole to every step,
so a mapped task on any worker has what it needs; each step builds its sink and input store here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from imagenet_operators.masking import MasksURLSecrets


class JobOperator(MasksURLSecrets, BaseOperator):
    """A step of a job: ``job`` is templated; the sink and input store are built in ``execute``.

    :param job: the job dict from the resolve task. (templated)
    """

    template_fields: Sequence[str] = ("job",)
    template_fields_renderers = {"job": "json"}
    input_keys: tuple[str, ...] = ()
    """Job keys that may name s3:// or gs:// inputs (their clients come from ``source_conn_id``)."""

    def __init__(self, *, job: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job

    def _sink(self) -> Any:
        """The job's sink, built once per task (the lease and the step share it)."""
        from imagenet_operators.sinks import sink_from_connection

        key = (self.job["sink_uri"], self.job["conn_id"])
        built = getattr(self, "_built_sink", None)
        if built is None or built[0] != key:  # one operator object may run several times (dag.test)
            built = self._built_sink = (key, sink_from_connection(*key))
        return built[1]

    def _store(self) -> Any:
        from imagenet_operators.sinks import store_from_connection

        uris = [self.job.get(k) for k in self.input_keys]
        if self.job["sink_uri"].startswith(("s3://", "gs://")):
            uris.append(self.job["sink_uri"])  # remote outputs are checked by size on re-runs
        return store_from_connection(uris, self.job.get("source_conn_id") or self.job["conn_id"])
