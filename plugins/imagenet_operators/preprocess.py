"""Operators for preprocessed ImageNet sets: inputs, selection + cache check, mapped chunks, finalize.

A *job* is the dict the resolve task makes (``config``, ``images``, ``val_map``,
``calibration_list``, ``sink_uri``, ``conn_id``, ``source_conn_id``, ``work_dir``, ``chunks``).
The selected images, split into chunks, are kept in the sink (``.chunks/plan-%05d.json``), so a
mapped chunk task on any worker reads its own rows there, and its per-file result goes back there
(``.chunks/chunk-%05d.json``); XCom carries only chunk indices and counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.leases import LeasedJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _PreprocessJobOperator(LeasedJobOperator):
    input_keys = ("images", "aux_path")

    def _config(self) -> Any:
        from imagenet_ops.preprocessed.variations import PreprocessConfig

        return PreprocessConfig.from_dict(self.job["config"])

    def _path(self, key: str) -> Path | None:
        return Path(self.job[key]) if self.job.get(key) else None


class PreprocessInputsOperator(_PreprocessJobOperator):
    """Fetch what the job lacks into the work dir: the validation tar (``images`` empty), the calibration list.

    Downloads go through mirrors with resume and md5 checks; the aux ``val.txt`` of an object-storage
    aux folder is copied too. Returns the job with local paths filled in.

    :param job: the job dict from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.sources import fetch_calibration_list, fetch_images

        config, job, work = self._config(), dict(self.job), Path(self.job["work_dir"])
        if config.dataset_type == "calibration" and not job.get("calibration_list"):
            job["calibration_list"] = fetch_calibration_list(config=config, dest_dir=work / "calibration").path
            self.log.info("Calibration list %s: %s", config.calibration_option, job["calibration_list"])
        if not job.get("images") or job["images"] == "download":
            job["images"] = fetch_images(config=config, dest_dir=work / "images").path
            self.log.info("Validation images downloaded: %s", job["images"])
        aux = job.get("aux_path")
        if config.dataset_type == "validation" and not job.get("val_map") and aux:
            if aux.startswith(("s3://", "gs://")):
                job["val_map"] = str(self._store().download(f"{aux.rstrip('/')}/val.txt", work / "aux" / "val.txt"))
            else:
                job["val_map"] = str(Path(aux) / "val.txt")
        return job


class PreprocessSelectOperator(_PreprocessJobOperator):
    """Select the set's images (first N of the list), check the cache, and store the chunks in the sink.

    :param job: the job dict from the inputs task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.pipeline import check_cache, plan_chunks, save_chunk_plan, select_images

        config, sink = self._config(), self._sink()
        items = select_images(
            config=config,
            source=self.job["images"],
            val_map=self._path("val_map"),
            calibration_list=self._path("calibration_list"),
            store=self._store(),
        )
        cached = check_cache(
            config=config, sink=sink, items=items, val_map=self._path("val_map"), calibration_list=self._path("calibration_list")
        )
        if cached.hit:
            self.log.info("Cache hit at %s (key %s): no chunks to run", sink.uri, cached.cache_key[:12])
            return {"hit": True, "cache_key": cached.cache_key, "chunks": [], "images": len(items)}
        count = save_chunk_plan(sink=sink, chunks=plan_chunks(items, int(self.job["chunks"])))
        self.log.info("Selected %d images in %d chunks; cache key %s", len(items), count, cached.cache_key[:12])
        return {"hit": False, "cache_key": cached.cache_key, "chunks": list(range(count)), "images": len(items)}


def chunk_label(index: int, names: Sequence[str]) -> str:
    """``chunk 3: 500 images, ILSVRC2012_val_00001501.JPEG … ILSVRC2012_val_00002000.JPEG``."""
    if not names:
        return f"chunk {index}: no images"
    span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    return f"chunk {index}: {len(names)} image{'' if len(names) == 1 else 's'}, {span}"


class PreprocessChunkOperator(_PreprocessJobOperator):
    """Preprocess one chunk: read its images from the source, write its outputs to the sink.

    A retried chunk rewrites exactly its own files (each written to a temporary name and renamed).

    :param job: the job dict from the inputs task. (templated)
    :param chunk: index of the chunk in the stored plan. (templated)
    :param workers: processes; 0 means all cores. (templated)
    """

    template_fields: Sequence[str] = ("job", "chunk", "workers")

    def __init__(self, *, job: Mapping[str, Any], chunk: int, workers: int | str = 0, **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.chunk = chunk
        self.workers = workers

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.preprocessed.pipeline import load_chunk_plan, preprocess_chunk, save_chunk_result

        sink, index = self._sink(), int(self.chunk)
        items = load_chunk_plan(sink=sink, index=index)
        context["chunk_images"] = chunk_label(index, [row[0] for row in items])  # the mapped task's name in the UI
        result = preprocess_chunk(
            config=self._config(),
            source=self.job["images"],
            items=items,
            sink=sink,
            workers=int(self.workers) or os.cpu_count() or 1,
            store=self._store(),
        )
        save_chunk_result(sink=sink, index=index, result=result)
        return result.summary()


class PreprocessFinalizeOperator(_PreprocessJobOperator):
    """Write the list files, ``val_map.txt`` and the manifest; return the CM env dict (the cache hit's too).

    :param job: the job dict from the inputs task. (templated)
    :param selection: the select task's result (chunk indices; the results are read from the sink). (templated)
    """

    template_fields: Sequence[str] = ("job", "selection")
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        job: Mapping[str, Any],
        selection: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(job=job, **kwargs)
        self.selection = selection

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_ops.preprocessed.pipeline import (
            finalize_preprocessed,
            load_chunk_plan,
            load_chunk_results,
            remove_chunk_state,
        )

        config, sink = self._config(), self._sink()
        if self.selection["hit"]:
            publish, env = _cached(sink, config)
            emit_artifact_event(self, context, publish)  # logs the cache hit; no Asset event
            return env
        count = len(self.selection["chunks"])
        items = [row for index in range(count) for row in load_chunk_plan(sink=sink, index=index)]
        publish, env = finalize_preprocessed(
            config=config,
            sink=sink,
            items=items,
            chunk_results=load_chunk_results(sink=sink, count=count),
            val_map=self._path("val_map"),
            calibration_list=self._path("calibration_list"),
            source=self.job["images"],
        )
        remove_chunk_state(sink=sink, count=count)  # only now: a retried finalize still finds them
        emit_artifact_event(self, context, publish)
        self.log.info("Preprocessed set: %s images at %s", env.get("CM_DATASET_SIZE"), publish.uri)
        return env


def _cached(sink: Any, config: Any) -> tuple[Any, dict[str, str]]:
    from imagenet_ops.core.storage import cached_result, read_manifest
    from imagenet_ops.preprocessed.pipeline import preprocessed_env

    manifest = read_manifest(sink)
    if manifest is None:
        from imagenet_ops.core.errors import StorageError

        raise StorageError(f"sink {sink.uri}: the manifest of the cache hit is gone")
    count = int(manifest.get("outputs", {}).get("count", 0))
    return cached_result(sink=sink, manifest=manifest), preprocessed_env(config=config, sink=sink, count=count)
