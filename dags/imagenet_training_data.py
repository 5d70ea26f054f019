"""ResNet-50 training data (CM prepare-training-data-resnet): ImageNet to TFRecords or RecordIO, straight from the tars.

``implementation`` picks the output: ``reference`` writes the TF/TPU ``imagenet_to_gcs``
TFRecord shards (1024 train / 128 validation, labels 1..1000, PNG/CMYK train files re-encoded);
``nvidia`` writes ``train``/``val`` ``.lst/.rec/.idx`` as NVIDIA's ``im2rec --pass-through``
(raw bytes, labels 0..999). CM tags (``_nvidia``, ``_layout.split`` …) are accepted too.

Inputs: the train tar (``ILSVRC2012_img_train.tar``), a folder of the 1000 ``<wnid>.tar`` or of
``<wnid>/`` folders; the validation tar or a flat folder; local or ``s3://`` / ``gs://`` (read by
range, never extracted). Leave a split empty (or its shards at 0) to skip it. Validation labels:
a labels file, else the aux artifact folder (``val.txt`` + ``synsets.txt``, same mapping), else a
download from ``labels_url``.

Flow: resolve -> md5 check (optional) -> plan (global order, stored in the sink) -> write shards
(mapped over ``parallel_tasks`` groups; each task uses ``workers`` processes, writes every
shard under a temporary name and skips complete ones on retries) -> finalize (record counts per
shard, manifest) -> cleanup, release of the output's lease
(README "One run per output"). Output (XCom of ``finalize``): the ``CM_MLPERF_TRAINING_*`` env dict.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from imagenet_operators import (
    ReleaseOutputLeaseOperator,
    RunNoteOperator,
    TrainingChecksumOperator,
    TrainingFinalizeOperator,
    TrainingPlanOperator,
    TrainingShardsOperator,
)
from imagenet_operators.capacity import heavy_task_args
from imagenet_operators.dag_helpers import (
    DAG_CALLBACKS,
    DEFAULT_ARGS,
    declared_params,
    operations_params,
    output_params,
    scale_out_params,
    test_locally,
)
from imagenet_operators.task_docs import document_tasks
from imagenet_ops.training import DECLARATION

ARTIFACT = DECLARATION.name

TRAINING_ASSET_ALIAS = AssetAlias(ARTIFACT)


with DAG(
    dag_id=Path(__file__).stem,
    dag_display_name="ResNet-50 training data (TFRecords / RecordIO)",
    description=__doc__.partition(".")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **DAG_CALLBACKS,  # notifications and deadline alerts (plugins/imagenet_operators/notify.py, deadlines.py)
    tags=["imagenet", "mlperf", "training"],
    params={
        **declared_params(DECLARATION),
        **scale_out_params(
            tasks_name="parallel_tasks",
            tasks_default=4,  # the full train set: 320,000 images a group, a mapped task's fixed cost under 5% (README)
            tasks_title="Parallel tasks",
            tasks_description="Mapped writer tasks (groups of shards); they spread over the Celery/Kubernetes workers. "
            "The default 4 keeps each task's fixed cost (about 0.6 s) under 5% of its work on the full train set.",
            what="inputs",
        ),
        **output_params(ARTIFACT),
        **operations_params(),
    },
) as dag:

    @task(task_display_name="Resolve job")
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any = None) -> dict[str, Any]:
        """The run's TrainingJob as a dict; a bad variation or missing input fails here, before any read."""
        from imagenet_operators import dag_helpers

        return dag_helpers.resolve_job(DECLARATION, params=params, run_id=run_id, dag_run=dag_run)

    job = resolve()
    checked = TrainingChecksumOperator(task_id="check_md5", task_display_name="Check md5 of the input tars", job=job)
    plan = TrainingPlanOperator(task_id="plan", task_display_name="Plan shards", job=job, checked=checked.output)

    @task(task_display_name="Shard groups")
    def groups(plan: dict[str, Any]) -> list[list[int]]:
        """The groups to map over (none on a cache hit)."""
        return plan["groups"]

    written = TrainingShardsOperator.partial(
        task_id="write_shards",
        task_display_name="Write shards",
        job=job,
        workers="{{ params.workers }}",
        map_index_template="{{ shard_group }}",  # set by the operator: first … last shard of the group
        **heavy_task_args(),  # their own pool (and queue, when set): small runs keep their slots
    ).expand(group=groups(plan.output))
    finalize = TrainingFinalizeOperator(
        task_id="finalize",
        task_display_name="Verify and publish manifest",
        job=job,
        plan=plan.output,
        outlets=[TRAINING_ASSET_ALIAS],
        trigger_rule="none_failed",  # a cache hit maps zero writers
    )

    @task(task_display_name="Clean work dir", trigger_rule="none_failed")
    def cleanup(job: dict[str, Any]) -> None:
        """Remove what a killed step left of this run's work dir on this host (each step removes its own scratch)."""
        shutil.rmtree(job["work_dir"], ignore_errors=True)

    written >> finalize >> cleanup(job)
    dag.add_result(finalize.output)  # the CM env dict: GET .../dagRuns/{run}/wait returns it
    # a teardown too: the run's note lists what was published, with its links (plugins/imagenet_operators/run_note.py)
    finalize >> RunNoteOperator(task_id="run_note", task_display_name="Write run note", publish_task_id="finalize").as_teardown()
    # whatever happened upstream, the output is free again for the next run (its lease would expire otherwise)
    finalize >> ReleaseOutputLeaseOperator(task_id="release_lease", task_display_name="Release output lease", job=job)


document_tasks(dag)  # every task's doc_md: what it does, and what its failure usually means

if __name__ == "__main__":
    test_locally(dag)  # dag.test(), less the deadline alerts Airflow 3.3.2's dag.test() cannot finish with
