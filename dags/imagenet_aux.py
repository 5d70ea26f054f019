"""ImageNet aux files (CM get-dataset-imagenet-aux): synsets, validation labels and the Caffe mean, published with a manifest.

Downloads ``caffe_ilsvrc12.tar.gz`` from the chosen mirror (fallbacks, resume, md5 check that
accepts either mirror's bytes), extracts it safely, validates the 8 files (1000 sorted wnids,
50,000 validation labels) and publishes them to the sink with a ``manifest.json``.

Every step may run on another worker with its own scratch disk: each works in a temporary folder
of its own, removed when it ends, and the archive crosses the steps in the run's staging area in
the sink (``<sink>/.imagenet_ops/staging/<run>/``), which the clean-up removes whatever happened.

Runs are manual unless an operator turns on the refresh: ``IMAGENET_OPS_SCHEDULE_IMAGENET_AUX=@weekly``
on the dag-processor and scheduler, and optionally the Variable ``imagenet_ops_refresh_imagenet_aux``
(a JSON object of params such as ``{"url": ..., "md5": ..., "sink_uri": ...}``) for the mirror and
sink the refresh uses. A refresh re-publishes only when the upstream bytes changed; otherwise the
publish task logs a cache hit and emits no Asset event, so consumer DAGs are not re-triggered.
Output (XCom of ``publish``): ``CM_DATASET_AUX_PATH``, ``CM_DATASET_AUX_VER``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from imagenet_operators import (
    ArchiveDownloadOperator,
    ArchiveExtractOperator,
    AuxPublishOperator,
    AuxValidateOperator,
    ChecksumVerifyOperator,
    RunNoteOperator,
)
from imagenet_operators.dag_helpers import (
    DAG_CALLBACKS,
    DEFAULT_ARGS,
    declared_params,
    operations_params,
    output_params,
    refresh_schedule,
    test_locally,
)
from imagenet_operators.task_docs import document_tasks
from imagenet_ops.aux import DECLARATION

ARTIFACT = DECLARATION.name

AUX_ASSET_ALIAS = AssetAlias(ARTIFACT)

with DAG(
    dag_id=Path(__file__).stem,
    dag_display_name="ImageNet aux files",
    description=__doc__.partition(".")[0],
    doc_md=__doc__,
    schedule=refresh_schedule(Path(__file__).stem),  # off unless an operator turns it on (suggested: @weekly)
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **DAG_CALLBACKS,  # notifications and deadline alerts (plugins/imagenet_operators/notify.py, deadlines.py)
    tags=["imagenet", "mlperf", "aux"],
    params={**declared_params(DECLARATION), **output_params(ARTIFACT), **operations_params()},
) as dag:

    @task(task_display_name="Resolve variations", multiple_outputs=True)
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any) -> dict[str, Any]:
        """Turn the form / CM tags into the run's job; bad combinations fail here, before any download.

        Config fields are returned at the top level too (per-key XComs, as they always were).
        """
        from imagenet_operators import dag_helpers

        return dag_helpers.resolve_job(DECLARATION, params=params, run_id=run_id, dag_run=dag_run)

    run = resolve()
    # Each step may run on another worker: the archive crosses them in the run's staging area.
    download = ArchiveDownloadOperator(
        task_id="download", task_display_name="Download archive", pool="imagenet_downloads", multiple_outputs=True, job=run
    )
    verify = ChecksumVerifyOperator(task_id="verify", task_display_name="Verify checksum", multiple_outputs=True, job=run)
    extract = ArchiveExtractOperator(task_id="extract", task_display_name="Extract safely", multiple_outputs=True, job=run)
    validate = AuxValidateOperator(task_id="validate", task_display_name="Validate aux files", multiple_outputs=True, job=run)
    publish = AuxPublishOperator(
        task_id="publish",
        task_display_name="Publish with manifest",
        job=run,
        archive=download.output,
        outlets=[AUX_ASSET_ALIAS],
    )
    download >> verify >> extract >> validate >> publish
    dag.add_result(publish.output)  # the CM env dict: GET .../dagRuns/{run}/wait returns it

    @task(task_display_name="Clean work dir")
    def cleanup(job: dict[str, Any] | None, dag_run: Any = None) -> None:
        """Remove the run's staging area and this worker's scratch, whatever happened upstream."""
        from imagenet_operators.files import clean_run

        clean_run([job] if job else None, run=f"{dag_run.dag_id}/{dag_run.run_id}")

    # a teardown: it runs when the steps are done, whatever their state, and the run's state stays theirs
    publish >> cleanup(run).as_teardown()
    # a teardown too: the run's note lists what was published, with its links (plugins/imagenet_operators/run_note.py)
    publish >> RunNoteOperator(task_id="run_note", task_display_name="Write run note", publish_task_id="publish").as_teardown()


document_tasks(dag)  # every task's doc_md: what it does, and what its failure usually means

if __name__ == "__main__":
    test_locally(dag)  # dag.test(), less the deadline alerts Airflow 3.3.2's dag.test() cannot finish with
