"""Accuracy check: a published ResNet-50 variant scored on a published preprocessed validation set, against MLPerf's target.

Proves that a model and a set fit before the benchmark harness finds out: the set's layout, data
type and resolution must match the model's input (an NHWC set into an NCHW ONNX model is refused,
naming both), the set must have ``val_map.txt``, and the class offset is the variant's (1001-class
TF / ONNX / TFLite / ncnn models: label = argmax - 1; 1000-class PyTorch: none). The model runs
on CPU on its framework's own runtime: onnxruntime, TensorFlow (GraphDef), TFLite through
TensorFlow's interpreter, torch (the library's ResNet-50 for the state dict, or TorchScript), ncnn.

Verdict: on the full 50,000-image set, top-1 must reach 75.6954% (99% of 76.46%, the submission
checker's bar; the variant's own ``CM_ML_MODEL_ACCURACY`` is reported beside it); on any other set,
the form's expected top-1, or no verdict when none is given. Only a pass (or no verdict) adds an
Asset event; a fail is published with its report and then fails the run, naming the model, the set
and measured vs expected.

Inputs: ``model`` (a variant's folder, as ``resnet50_model`` publishes it) and ``preprocessed`` (a
set's folder), local or ``s3://`` / ``gs://``. Empty: on an Asset-triggered run the artifact
published last and the newest of the other that fits it (the run is skipped, not failed, when
nothing fits, when that artifact is a calibration set, or until both exist); otherwise the
default variant's folder and ``imagenet_preprocessed`` in the sink root. The DAG is scheduled on
both artifacts' Assets, so a new variant or set triggers a check (paused until an operator
unpauses it).

Flow: resolve -> plan (both manifests, refusals, cache check) -> score (mapped over ``chunks``;
progress with images/s and ETA) -> publish (``accuracy.json``, report, manifest; XCom: the env with
``CM_MLPERF_ACCURACY_TOP1``) -> cleanup of the run's staging area, release of the output's lease
and the run note, whatever happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from imagenet_operators import ReleaseOutputLeaseOperator, RunNoteOperator
from imagenet_operators.accuracy import (
    AccuracyCleanupOperator,
    AccuracyPlanOperator,
    AccuracyPublishOperator,
    AccuracyScoreOperator,
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
from imagenet_ops.accuracy import DECLARATION
from imagenet_ops.accuracy.job import MODEL_ARTIFACT, PREPROCESSED_ARTIFACT

ARTIFACT = DECLARATION.name

ACCURACY_ASSET_ALIAS = AssetAlias(ARTIFACT)
MODEL_ASSETS = AssetAlias(MODEL_ARTIFACT)
PREPROCESSED_ASSETS = AssetAlias(PREPROCESSED_ARTIFACT)


with DAG(
    dag_id=Path(__file__).stem,
    dag_display_name="Accuracy check (model x preprocessed set)",
    description=__doc__.partition(".")[0],
    doc_md=__doc__,
    schedule=MODEL_ASSETS | PREPROCESSED_ASSETS,  # a new variant or a new set
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    **DAG_CALLBACKS,  # notifications and deadline alerts (plugins/imagenet_operators/notify.py, deadlines.py)
    tags=["imagenet", "mlperf", "accuracy"],
    params={
        **declared_params(DECLARATION),
        **scale_out_params(
            tasks_name="chunks",
            tasks_default=4,
            tasks_title="Chunks",
            tasks_description="Mapped scoring tasks (each loads the model once); they spread over the workers.",
            what="models and sets",
        ),
        **output_params(f"{ARTIFACT}/<variant folder>__<set folder>"),
        **operations_params(),
    },
) as dag:

    @task(task_display_name="Resolve job", inlets=[MODEL_ASSETS, PREPROCESSED_ASSETS])
    def resolve(params: dict[str, Any], run_id: str, dag_run: Any = None, inlet_events: Any = None) -> dict[str, Any]:
        """The pair (the form's, else the newest published or the defaults), options and locations in one job."""
        from imagenet_operators import dag_helpers
        from imagenet_operators.accuracy import RECENT_EVENTS, NothingToPair, newest_fitting, pair_locations
        from imagenet_ops.core.lineage import location_of

        def recent(alias: AssetAlias) -> list[tuple[str, Any]]:
            try:
                events = list(inlet_events[alias].ascending(False).limit(RECENT_EVENTS))
            except Exception:  # noqa: BLE001 - no events (or no event API in a local test run): the defaults
                return []
            return [(location_of(e.asset.uri), e.timestamp) for e in events]

        triggered = getattr(dag_run.run_type, "value", dag_run.run_type) == "asset_triggered"
        try:
            latest = (
                newest_fitting(params, {MODEL_ARTIFACT: recent(MODEL_ASSETS), PREPROCESSED_ARTIFACT: recent(PREPROCESSED_ASSETS)})
                if triggered
                else {}
            )
            paired = pair_locations(params, triggered=triggered, latest=latest)
        except NothingToPair as nothing:
            import logging

            from airflow.sdk.exceptions import AirflowSkipException

            logging.getLogger(__name__).info("Nothing to check, so the run is skipped: %s", nothing)  # Airflow logs no reason
            raise AirflowSkipException(str(nothing)) from None  # the run ends without a check, not as a failure
        return dag_helpers.resolve_job(DECLARATION, params=paired, run_id=run_id, dag_run=dag_run)

    job = resolve()
    plan = AccuracyPlanOperator(task_id="plan", task_display_name="Check the pair, check cache", job=job)

    @task(task_display_name="Chunk list")
    def chunk_ids(plan: dict[str, Any]) -> list[int]:
        """The chunks to map over (none on a cache hit)."""
        return plan["chunks"]

    scored = AccuracyScoreOperator.partial(
        task_id="score",
        task_display_name="Score chunk",
        job=job,
        workers="{{ params.workers }}",
        map_index_template="{{ chunk_images }}",  # set by the operator: the chunk's image range
        **heavy_task_args(),
    ).expand(chunk=chunk_ids(plan.output))
    publish = AccuracyPublishOperator(
        task_id="publish",
        task_display_name="Judge and publish",
        job=job,
        plan=plan.output,
        outlets=[ACCURACY_ASSET_ALIAS],
        trigger_rule="none_failed_min_one_success",  # a cache hit maps zero chunks; a skipped resolve skips it
    )

    cleanup = AccuracyCleanupOperator(task_id="cleanup", task_display_name="Remove staged rows", job=job)
    release = ReleaseOutputLeaseOperator(task_id="release_lease", task_display_name="Release output lease", job=job)
    scored >> publish >> [cleanup.as_teardown(), release.as_teardown()]
    dag.add_result(publish.output)  # the env dict with CM_MLPERF_ACCURACY_TOP1
    publish >> RunNoteOperator(task_id="run_note", task_display_name="Write run note", publish_task_id="publish").as_teardown()

document_tasks(dag)  # every task's doc_md: what it does, and what its failure usually means

if __name__ == "__main__":
    test_locally(dag)  # dag.test(), less the deadline alerts Airflow 3.3.2's dag.test() cannot finish with
