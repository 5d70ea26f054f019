"""ResNet-50 model variants (CM get-ml-model-resnet50): download, fix-input-shape, load check and publish, per variant.

Every CM variation is a Param (framework, precision, model output, opset, batch size,
fix-input-shape, from-tf, huggingface default) and CM tags are accepted. Unsupported
combinations fail in the first task, before any download, listing the supported ones.

Manual runs build the form's variant, or every entry of ``variants`` (a list of CM tag
strings). Runs are manual unless an operator turns on the refresh:
``IMAGENET_OPS_SCHEDULE_RESNET50_MODEL=@monthly`` on the dag-processor and scheduler, and
optionally the Variable ``imagenet_ops_refresh_resnet50_model`` (a JSON object of params such as
``{"mirror": ..., "md5_by_file": ..., "sink_uri": ...}``). A scheduled run refreshes every
supported variant unless that Variable lists ``variants``. Each variant is
mapped over download -> prepare -> load check -> publish and lands in ``<sink>/<variant id>``
with its own manifest, so only variants whose upstream bytes changed are re-published.
Every step may run on another worker with its own scratch disk: each works in a temporary folder
of its own, removed when it ends, and a variant's files cross the steps in the run's staging area
in its sink (``<sink>/<variant id>/.imagenet_ops/staging/<run>/<variant id>/``), which the clean-up
removes whatever happened.
Output (XCom of each mapped ``publish``): the ``CM_ML_MODEL_*`` env dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

from imagenet_operators import (
    ModelDownloadOperator,
    ModelLoadCheckOperator,
    ModelPrepareOperator,
    ModelPublishOperator,
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
from imagenet_ops.model import DECLARATION

ARTIFACT = DECLARATION.name

MODEL_ASSET_ALIAS = AssetAlias(ARTIFACT)


# One variant's job and the results of its earlier steps, zipped by map index -> a step's arguments.
def _job_and_fetched(values: tuple[Any, ...]) -> dict[str, Any]:
    job, fetched = values
    return {"job": job, "fetched": fetched}


def _job_and_prepared(values: tuple[Any, ...]) -> dict[str, Any]:
    job, prepared = values
    return {"job": job, "prepared": prepared}


def _publish_inputs(values: tuple[Any, ...]) -> dict[str, Any]:
    job, fetched, prepared, checked = values
    return {"job": job, "fetched": fetched, "prepared": prepared, "checked": checked}


with DAG(
    dag_id=Path(__file__).stem,
    dag_display_name="ResNet-50 model variants",
    description=__doc__.partition(".")[0],
    doc_md=__doc__,
    schedule=refresh_schedule(Path(__file__).stem),  # off unless an operator turns it on (suggested: @monthly)
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **DAG_CALLBACKS,  # notifications and deadline alerts (plugins/imagenet_operators/notify.py, deadlines.py)
    tags=["imagenet", "mlperf", "model"],
    params={
        **declared_params(DECLARATION),
        "variants": Param(
            None,
            type=["array", "null"],
            items={"type": "string"},
            title="Several variants",
            section="Variants",
            description="CM tag strings, one variant each (e.g. _onnx / _tflite,_no-argmax / _ncnn). Empty: the form's "
            "single variant. Scheduled runs with this empty refresh every supported variant. Optional.",
        ),
        "md5_by_file": Param(
            None,
            type=["object", "null"],
            title="md5 per file name",
            section="Custom source",
            description='Accepted md5 of a download by file name (e.g. {"resnet50_v1.onnx": "..."}), for an internal '
            "mirror that serves other bytes than the reference. Format: a JSON object of file name to 32 hex digits. Optional.",
        ),
        **output_params(ARTIFACT),
        **operations_params(),
    },
) as dag:

    @task(task_display_name="Resolve variants")
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any) -> list[dict[str, Any]]:
        """One job per variant (config, work dir, sink); bad combinations fail here, before any download."""
        from imagenet_operators import dag_helpers

        return dag_helpers.resolve_job(DECLARATION, params=params, run_id=run_id, dag_run=dag_run)

    variants = resolve()
    by_variant = "{{ task.job.config.variant_id }}"  # mapped tasks are named by variant in the UI
    downloaded = ModelDownloadOperator.partial(
        task_id="download", task_display_name="Download model", pool="imagenet_downloads", map_index_template=by_variant
    ).expand(job=variants)
    prepared = ModelPrepareOperator.partial(
        task_id="prepare", task_display_name="Prepare (fix input shape)", map_index_template=by_variant
    ).expand_kwargs(variants.zip(downloaded.output).map(_job_and_fetched))
    checked = ModelLoadCheckOperator.partial(
        task_id="load_check", task_display_name="Load check", map_index_template=by_variant
    ).expand_kwargs(variants.zip(prepared.output).map(_job_and_prepared))
    published = ModelPublishOperator.partial(
        task_id="publish", task_display_name="Publish with manifest", outlets=[MODEL_ASSET_ALIAS], map_index_template=by_variant
    ).expand_kwargs(variants.zip(downloaded.output, prepared.output, checked.output).map(_publish_inputs))
    checked >> published  # only a load-checked variant is published; its report shows what the check found
    dag.add_result(published.output)  # one CM env dict per variant: GET .../dagRuns/{run}/wait returns them

    @task(task_display_name="Clean work dir")
    def cleanup(variants: list[dict[str, Any]] | None, dag_run: Any = None) -> None:
        """Remove the run's staging area and this worker's scratch for every variant, whatever happened upstream."""
        from imagenet_operators.files import clean_run

        # prune 2: a variant's own folder, then the artifact's root, when the staging alone made them
        clean_run(variants, run=f"{dag_run.dag_id}/{dag_run.run_id}", prune_levels=2)

    # a teardown: it runs when the steps are done, whatever their state, and the run's state stays theirs
    published >> cleanup(variants).as_teardown()
    # a teardown too: the run's note lists what was published, with its links (plugins/imagenet_operators/run_note.py)
    published >> RunNoteOperator(task_id="run_note", task_display_name="Write run note", publish_task_id="publish").as_teardown()


document_tasks(dag)  # every task's doc_md: what it does, and what its failure usually means

if __name__ == "__main__":
    test_locally(dag)  # dag.test(), less the deadline alerts Airflow 3.3.2's dag.test() cannot finish with
