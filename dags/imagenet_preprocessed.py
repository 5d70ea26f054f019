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

Flow: resolve -> inputs (downloads) -> select (first N of the list, cache check, chunks stored
in the sink) -> preprocess (mapped over ``chunks``; each task reads its images and writes its
outputs to the sink with ``workers`` processes) -> finalize (list files, ``val_map.txt``,
manifest) -> cleanup, release of the output's lease
(README "One run per output"). Output (XCom of ``finalize``): the ``CM_DATASET_*`` env dict.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from imagenet_operators import (
    PreprocessChunkOperator,
    PreprocessFinalizeOperator,
    PreprocessInputsOperator,
    PreprocessSelectOperator,
    ReleaseOutputLeaseOperator,
)
from imagenet_operators.dag_helpers import DEFAULT_ARGS, input_param, output_params, scale_out_params, table_params
from imagenet_ops.preprocessed.variations import ARTIFACT, PREPROCESS_TABLE

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
    tags=["imagenet", "mlperf", "dataset"],
    params={
        **table_params(PREPROCESS_TABLE),
        "images": input_param(
            "Validation images",
            "Folder of ILSVRC2012_val_*.JPEG, ILSVRC2012_img_val.tar, or an s3:// / gs:// prefix or tar. "
            "Empty: download the tar the size needs (500-image subset or full; see the custom-source fields).",
        ),
        "val_map": input_param("Validation labels (val.txt)", "The aux artifact's val.txt: 'name label' lines, in image order."),
        "aux_path": input_param("Aux artifact folder", "Folder (or s3:// / gs:// prefix) of imagenet_aux; its val.txt is used."),
        "calibration_list": input_param(
            "Calibration list", "An MLPerf calibration list file; empty: download the chosen option."
        ),
        **scale_out_params(
            tasks_name="chunks",
            tasks_default=16,
            tasks_title="Chunks",
            tasks_description="Mapped preprocess tasks (tens, never one per image); they spread over the workers.",
            what="images",
        ),
        **output_params(ARTIFACT),
    },
) as dag:

    @task(task_display_name="Resolve job")
    def resolve(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        """Config, inputs and locations in one dict; an invalid combination fails here, before any work."""
        from imagenet_operators.dag_helpers import sink_conn_id, sink_uri, work_dir
        from imagenet_ops.core.errors import ConfigError
        from imagenet_ops.preprocessed.variations import resolve_preprocess_config

        config = resolve_preprocess_config(PREPROCESS_TABLE.selections_from_form(params))
        if config.dataset_type == "validation" and not (params.get("val_map") or params.get("aux_path")):
            raise ConfigError("validation sets need labels: give val_map (the aux val.txt) or aux_path (the aux artifact)")
        uri = sink_uri(ARTIFACT, params.get("sink_uri"))
        return {
            "config": config.as_dict(),
            **{k: params.get(k) for k in ("images", "val_map", "aux_path", "calibration_list", "source_conn_id")},
            "sink_uri": uri,
            "conn_id": sink_conn_id(uri, params.get("conn_id")),
            "work_dir": work_dir(ARTIFACT, run_id),
            "chunks": params["chunks"],
        }

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
    ).expand(chunk=chunk_ids(selection.output))
    finalize = PreprocessFinalizeOperator(
        task_id="finalize",
        task_display_name="Lists and manifest",
        job=inputs.output,
        selection=selection.output,
        outlets=[PREPROCESSED_ASSET_ALIAS],
        trigger_rule="none_failed",  # a cache hit maps zero chunks
    )

    @task(task_display_name="Clean work dir", trigger_rule="none_failed")
    def cleanup(job: dict[str, Any]) -> None:
        """Remove this run's scratch files (downloads)."""
        shutil.rmtree(job["work_dir"], ignore_errors=True)

    processed >> finalize >> cleanup(inputs.output)
    # whatever happened upstream, the output is free again for the next run (its lease would expire otherwise)
    finalize >> ReleaseOutputLeaseOperator(task_id="release_lease", task_display_name="Release output lease", job=job)


if __name__ == "__main__":
    dag.test()
