"""Run a DAG in-process with ``dag.test()`` and read back task states and XComs.

Used by the DAG tests and the demo command (the embedded default: SQLite, local execution). It uses
Airflow internals (the XCom model, sessions), so it is test support, not shipped with the plugins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LocalRun:
    """The outcome of one local DAG run."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """The XCom ``key`` of an unmapped ``task_id`` in this run (``None`` if absent)."""
        values = self.xcoms(task_id, key)
        return values[0] if values else None

    def xcoms(self, task_id: str, key: str = "return_value") -> list[Any]:
        """The XComs of ``task_id``: one per map index of a mapped task, in map-index order."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(XComModel.get_many(run_id=self.run_id, key=key, task_ids=task_id, dag_ids=self.dag_id)).all()
            return [XComModel.deserialize_value(r) for r in sorted(rows, key=lambda r: r.map_index)]


def load_dag(dag_id: str, dags_folder: Path | None = None) -> Any:
    """Parse the DAG folder and return ``dag_id``; import errors are raised with their text."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder) if dags_folder else None)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {bag.dag_folder}")
    return dag


def run_dag(dag: Any, conf: dict[str, Any] | None = None) -> LocalRun:
    """``dag.test(run_conf=conf)`` and collect the final task states and try numbers.

    Mapped task instances are keyed ``task_id[map_index]``.
    """
    from imagenet_operators.dag_helpers import test_locally

    dr = test_locally(dag, conf)  # without the deadline alerts: Airflow 3.3.2's dag.test() cannot finish with them
    tis = dr.get_task_instances()

    def key(ti: Any) -> str:
        return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"

    return LocalRun(
        dag_id=dag.dag_id,
        run_id=dr.run_id,
        state=str(dr.state.value if hasattr(dr.state, "value") else dr.state),
        task_states={key(ti): str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis},
        tries={key(ti): ti.try_number for ti in tis},
    )
