"""Preprocessed ImageNet sets (CM get-preprocessed-dataset-imagenet): validation or calibration images, bit-exact with MLPerf.

Every CM variation is a Param (dataset type, calibration option, size, resolution, layout,
precision, interpolation, model, extension, preprocessor, pytorch, tflite_tpu and the generic
options) and CM tags such as ``_for.resnet50,_NCHW,_uint8`` are accepted. Invalid combinations
fail in the first task, naming the conflict.

The reference preprocessor (default) writes ``<image>.npy`` byte-identical to MLPerf's
``pre_process_vgg`` / ``_mobilenet`` / ``_imagenet_pytorch`` / ``_imagenet_tflite_tpu``; the
generic one writes raw ``<stem>.<ext>`` with CM's bugs fixed (int8 saturates, raw bytes never
named ``.npy``, a short list is an error).

Images: a folder of ``ILSVRC2012_val_*.JPEG``, ``ILSVRC2012_img_val.tar`` (read in place), an
``s3://``/``gs://`` prefix or tar, or empty to download the 500-image / full tar (mirror and md5
overridable). Labels: ``val_map`` (the aux ``val.txt``) or the aux artifact folder ``aux_path``.

Flow: resolve -> inputs (downloads, staged in the run's staging area in the sink) -> select
(first N of the list, cache check, chunks stored in the sink) -> preprocess (mapped over
``chunks``; each task reads its images and writes its outputs to the sink with ``workers``
processes) -> finalize (list files, ``val_map.txt``, manifest) -> cleanup (the staging area) and
release of the output's lease (README "One run per output"), both whatever happened. Workers
share no disk: no task reads a file another wrote on its own disk. Output (XCom of
``finalize``): the ``CM_DATASET_*`` env dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

from imagenet_operators import (
    PreprocessChunkOperator,
    PreprocessFinalizeOperator,
    PreprocessInputsOperator,
    PreprocessSelectOperator,
    ReleaseOutputLeaseOperator,
    RunNoteOperator,
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
from imagenet_operators.preprocess import PreprocessCleanupOperator
from imagenet_operators.task_docs import document_tasks
from imagenet_ops.preprocessed import DECLARATION
from imagenet_ops.preprocessed.job import IMAGES_PER_CHUNK

ARTIFACT = DECLARATION.name

PREPROCESSED_ASSET_ALIAS = AssetAlias(ARTIFACT)


with DAG(
    dag_id=Path(__file__).stem,
    dag_display_name="Preprocessed ImageNet (validation / calibration)",
    description=__doc__.partition(".")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    **DAG_CALLBACKS,  # notifications and deadline alerts (plugins/imagenet_operators/notify.py, deadlines.py)
    tags=["imagenet", "mlperf", "dataset"],
    params={
        **declared_params(DECLARATION),
        **scale_out_params(
            tasks_name="chunks",
            tasks_default=16,
            tasks_title="Chunks",
            tasks_description="Mapped preprocess tasks (tens, never one per image); they spread over the workers.",
            what="images",
        ),
        # empty by default: one chunk per 25,000 images, so a mapped task's fixed cost stays under 5% of its work
        "chunks": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=1024,
            title="Chunks",
            section="Scale-out",
            description="Mapped preprocess tasks; they spread over the workers. Empty: one per "
            f"{IMAGES_PER_CHUNK:,} images (the full set: 2), so each task's fixed cost (about 1.5 s) stays under 5% of "
            "its work. Range: 1 to 1,024.",
        ),
        **output_params(ARTIFACT),
        **operations_params(),
    },
) as dag:

    @task(task_display_name="Resolve job")
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any = None) -> dict[str, Any]:
        """Config, inputs and locations in one dict; an invalid combination fails here, before any work."""
        from imagenet_operators import dag_helpers

        return dag_helpers.resolve_job(DECLARATION, params=params, run_id=run_id, dag_run=dag_run)

    job = resolve()
    inputs = PreprocessInputsOperator(task_id="inputs", task_display_name="Fetch inputs", job=job, pool="imagenet_downloads")
    selection = PreprocessSelectOperator(task_id="select", task_display_name="Select images, check cache", job=inputs.output)

    @task(task_display_name="Chunk list")
    def chunk_ids(selection: dict[str, Any]) -> list[int]:
        """The chunks to map over (none on a cache hit)."""
        return selection["chunks"]

    processed = PreprocessChunkOperator.partial(
        task_id="preprocess",
        task_display_name="Preprocess chunk",
        job=inputs.output,
        workers="{{ params.workers }}",
        map_index_template="{{ chunk_images }}",  # set by the operator: the chunk's image range
        **heavy_task_args(),  # their own pool (and queue, when set): small runs keep their slots
    ).expand(chunk=chunk_ids(selection.output))
    finalize = PreprocessFinalizeOperator(
        task_id="finalize",
        task_display_name="Lists and manifest",
        job=inputs.output,
        selection=selection.output,
        outlets=[PREPROCESSED_ASSET_ALIAS],
        trigger_rule="none_failed",  # a cache hit maps zero chunks
    )

    # Teardowns: they run whatever happened and leave the run's state to finalize (its last real step).
    cleanup = PreprocessCleanupOperator(task_id="cleanup", task_display_name="Remove staged inputs", job=job)
    release = ReleaseOutputLeaseOperator(task_id="release_lease", task_display_name="Release output lease", job=job)
    # the staged downloads go, and the output is free again for the next run (its lease would expire otherwise)
    processed >> finalize >> [cleanup.as_teardown(), release.as_teardown()]
    dag.add_result(finalize.output)  # the CM env dict: GET .../dagRuns/{run}/wait returns it
    # a teardown too: the run's note lists what was published, with its links (plugins/imagenet_operators/run_note.py)
    finalize >> RunNoteOperator(task_id="run_note", task_display_name="Write run note", publish_task_id="finalize").as_teardown()

document_tasks(dag)  # every task's doc_md: what it does, and what its failure usually means

if __name__ == "__main__":
    test_locally(dag)  # dag.test(), less the deadline alerts Airflow 3.3.2's dag.test() cannot finish with
