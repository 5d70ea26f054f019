"""ImageNet aux files (CM get-dataset-imagenet-aux): synsets, validation labels and the Caffe mean, published with a manifest.

Downloads ``caffe_ilsvrc12.tar.gz`` from the chosen mirror (fallbacks, resume, md5 check that
accepts either mirror's bytes), extracts it safely, validates the 8 files (1000 sorted wnids,
50,000 validation labels) and publishes them to the sink with a ``manifest.json``.

Runs are manual unless an operator turns on the refresh: ``IMAGENET_OPS_SCHEDULE_IMAGENET_AUX=@weekly``
on the dag-processor and scheduler, and optionally the Variable ``imagenet_ops_refresh_imagenet_aux``
(a JSON object of params such as ``{"url": ..., "md5": ..., "sink_uri": ...}``) for the mirror and
sink the refresh uses. A refresh re-publishes only when the upstream bytes changed; otherwise the
publish task logs a cache hit and emits no Asset event, so consumer DAGs are not re-triggered.
Output (XCom of ``publish``): ``CM_DATASET_AUX_PATH``, ``CM_DATASET_AUX_VER``.
"""

from __future__ import annotations

import shutil
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
)
from imagenet_operators.dag_helpers import DEFAULT_ARGS, declared_params, output_params, refresh_schedule
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
    tags=["imagenet", "mlperf", "aux"],
    params={**declared_params(DECLARATION), **output_params(ARTIFACT)},
) as dag:

    @task(task_display_name="Resolve variations", multiple_outputs=True)
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any) -> dict[str, Any]:
        """Turn the form / CM tags into the run's job; bad combinations fail here, before any download.

        Config fields are returned at the top level too, so operators can take ``run["urls"]``.
        """
        from imagenet_operators import dag_helpers

        return dag_helpers.resolve_job(DECLARATION, params=params, run_id=run_id, dag_run=dag_run)

    run = resolve()
    download = ArchiveDownloadOperator(
        task_id="download",
        task_display_name="Download archive",
        pool="imagenet_downloads",
        multiple_outputs=True,
        urls=run["urls"],
        md5=run["md5"],
        sha256=run["sha256"],
        filename=run["filename"],
        verify_ssl=run["verify_ssl"],
        dest_dir="{{ ti.xcom_pull(task_ids='resolve', key='work_dir') }}/download",
    )
    verify = ChecksumVerifyOperator(
        task_id="verify",
        task_display_name="Verify checksum",
        multiple_outputs=True,
        path=download.output["path"],
        md5=run["md5"],
        sha256=run["sha256"],
    )
    extract = ArchiveExtractOperator(
        task_id="extract",
        task_display_name="Extract safely",
        multiple_outputs=True,
        archive=verify.output["path"],
        dest="{{ ti.xcom_pull(task_ids='resolve', key='work_dir') }}/extracted",
    )
    validate = AuxValidateOperator(
        task_id="validate", task_display_name="Validate aux files", path=extract.output["path"], multiple_outputs=True
    )
    publish = AuxPublishOperator(
        task_id="publish",
        task_display_name="Publish with manifest",
        job=run,
        extracted_dir=validate.output["path"],
        archive=download.output,
        outlets=[AUX_ASSET_ALIAS],
    )

    @task(task_display_name="Clean work dir")
    def cleanup(path: str) -> None:
        """Remove this run's scratch files once the artifact is published."""
        shutil.rmtree(path, ignore_errors=True)

    cleaned = cleanup(run["work_dir"])
    publish >> cleaned


if __name__ == "__main__":
    dag.test()
