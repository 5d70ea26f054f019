"""ResNet-50 training data (CM recipe prepare-training-data-resnet): TFRecords or RecordIO.

Two implementations, one variation ``implementation``:

* ``reference``: the TF/TPU ``imagenet_to_gcs`` converter's TFRecord shards (1024 train / 128
  validation by default, ``train-%05d-of-01024``), in one flat folder (what the MLPerf readers
  want) or ``train/`` + ``validation/`` (the converter's scratch layout).
* ``nvidia``: ``train.{lst,rec,idx}`` and ``val.{lst,rec,idx}`` as NVIDIA's
  ``prepare_imagenet.sh`` makes them with ``im2rec.py --list --recursive`` then
  ``--pass-through`` (raw bytes, labels 0..999, seed-100 shuffle), without MXNet or docker.

The work is split in steps so an orchestrator can fan it out; this module holds the flow:

0. :func:`~imagenet_ops.training.inputs.check_input_archives` (optional, ``check_md5``) reads the
   big tars once to check their md5; tars with the published md5 get the header-only fast path.
1. :func:`~imagenet_ops.training.plan.plan_training` lists the images straight from the tars (never
   extracted), fixes the global order (:mod:`imagenet_ops.training.order`), writes the plan to the sink
   (``.imagenet_ops/plan.json.gz``) and returns the work units (shards, or one unit per RecordIO split)
   in groups. An unchanged input and config is a cache hit.
2. :func:`write_units` writes some units (:mod:`imagenet_ops.training.units`): each goes to a temporary
   name and is renamed (local) or uploaded as one object (S3/GCS) when complete, followed by a
   done-record (``.imagenet_ops/done/``) with its plan digest, size and checksum; a retried or re-run
   task skips units whose output still matches.
3. :func:`finalize_training` checks that every unit is complete with the planned record count
   and writes ``manifest.json`` from the done-records (no file is read again).

:func:`build_training_data` runs them all in one process (the CLI).

Validation labels come from the 50,000-line ``imagenet_2012_validation_synset_labels.txt`` (a
file, or downloaded), or from the aux artifact (``val.txt`` label k names line k of
``synsets.txt``): both give the same wnid for every image.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.lease import guard_writes
from imagenet_ops.core.manifest import PublishResult, cached_result, read_manifest, write_manifest
from imagenet_ops.core.process_pool import worker_pool
from imagenet_ops.core.progress import Progress, human_bytes, human_seconds
from imagenet_ops.core.report import build_report, put_report
from imagenet_ops.core.sinks import LocalSink, Sink
from imagenet_ops.core.staging import task_scratch
from imagenet_ops.core.uris import is_remote
from imagenet_ops.training.claims import GroupClaim
from imagenet_ops.training.inputs import check_input_archives
from imagenet_ops.training.plan import TrainingPlan, load_plan, plan_training
from imagenet_ops.training.units import (
    Unit,
    UnitResult,
    completed_unit,
    group_label,
    record_unit,
    write_unit_files,
    write_unit_job,
)
from imagenet_ops.training.variations import ARTIFACT, TrainingConfig

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Write


def write_units(
    *,
    sink: Sink,
    indices: Sequence[int],
    work_dir: Path,
    workers: int = 1,
    store: Any = None,
    plan: TrainingPlan | None = None,
    on_group_label: Callable[[str], None] | None = None,
    claim: GroupClaim | None = None,
) -> list[UnitResult]:
    """Write the plan's units ``indices`` into ``sink``, skipping complete ones.

    On a local sink the files are written in place under temporary names and renamed; on S3/GCS
    they are written to this call's own scratch folder under ``work_dir``, uploaded (``workers``
    uploads in parallel) and removed; the folder goes when the call ends, whatever happened.
    Each finished unit gets a done-record under ``.imagenet_ops/done/``.

    Args:
        workers: processes writing units at once (1: in this process).
        store: an ``ObjectStore`` for s3:// and gs:// inputs, and to check remote outputs.
        plan: the plan (read from the sink when ``None``).
        on_group_label: called with the group's :func:`~imagenet_ops.training.units.group_label`
            (first … last unit) before anything is written: a mapped task's name in the UI.
        claim: this try of the run's writer (:mod:`imagenet_ops.training.claims`): it claims the
            group first, and stops with ``LeaseLostError`` once a newer try has claimed it.
    """
    plan = plan or load_plan(sink)
    units = [plan.units[i] for i in indices]
    if on_group_label is not None:
        on_group_label(group_label([u.name for u in units]))
    claimed = units[0].name if claim is not None and units else None  # a group is named by its first unit
    fence = None
    if claimed is not None:
        claim.take(sink, claimed)
        fence = lambda: claim.check(sink, claimed)  # noqa: E731 - checked before each unit and done-record
    results: dict[int, UnitResult] = {}
    todo = []
    for i, unit in zip(indices, units, strict=True):
        done = completed_unit(unit, sink, store)
        if done:
            log.info("%s already complete (%d records); skipped", unit.name, done.records)
            results[i] = done
        else:
            todo.append((i, unit))
    images = sum(len(u.shard.items) for _, u in todo)
    progress = Progress(f"write {len(todo)} of {len(units)} units", total=images, unit="images", logger=log)
    started = time.monotonic()
    local = isinstance(sink, LocalSink)
    with contextlib.ExitStack() as stack:
        scratch = None if local else stack.enter_context(task_scratch(work_dir))  # remote: files wait here to upload
        _write_todo(sink, todo, results, progress, scratch, workers, store, fence)
    if claimed is not None:
        claim.release(sink, claimed)
    written = [results[i] for i, _ in todo]
    in_bytes = sum(it.ref.size for _, u in todo for it in u.shard.items)
    elapsed = time.monotonic() - started
    log.info(
        "wrote %d units (%d images, %s in, %s/s, %.1f images/s) and skipped %d complete ones in %s",
        len(written),
        images,
        human_bytes(in_bytes),
        human_bytes(in_bytes / max(elapsed, 1e-9)),
        images / max(elapsed, 1e-9),
        len(units) - len(todo),
        human_seconds(elapsed),
    )
    return [results[i] for i in indices]


def _write_todo(
    sink: Sink,
    todo: Sequence[tuple[int, Unit]],
    results: dict[int, UnitResult],
    progress: Progress,
    scratch: Path | None,
    workers: int,
    store: Any,
    fence: Callable[[], None] | None = None,
) -> None:
    """Write the units ``todo`` into ``sink`` (in place on a local sink, else via ``scratch``), filling ``results``.

    ``fence`` raises once this writer no longer owns its group: it is called before each unit
    is started and before each done-record.
    """
    fence = fence or (lambda: None)
    local = scratch is None
    uploads = ThreadPoolExecutor(max_workers=4) if not local else None
    pending = []

    def out_dir_for(unit: Unit) -> Path:
        if scratch is None:
            return Path(sink.location(unit.folder))
        return scratch / uuid.uuid4().hex[:8]

    def finish(i: int, unit: Unit, result: UnitResult, staged: Path) -> None:
        guard_writes(sink)  # a run that lost its output's lease stops before its next upload
        fence()
        if not local:
            for f in result.files:
                name = unit.relative(f["path"])  # the shard, or its index under idx/
                sink.put_file(staged / name, f["path"])
                (staged / name).unlink(missing_ok=True)
        record_unit(sink, unit, result)
        results[i] = result

    try:
        if workers <= 1 or len(todo) <= 1 or _reads_remote(todo):  # remote reads need this process's clients
            for i, unit in todo:
                fence()
                staged = out_dir_for(unit)
                result = write_unit_files(unit, staged, store)
                progress.update(result.records)
                if uploads:
                    pending.append(uploads.submit(finish, i, unit, result, staged))
                else:
                    finish(i, unit, result, staged)
        else:
            with worker_pool(workers) as pool:
                futures = {}
                for i, unit in todo:
                    staged = out_dir_for(unit)
                    fut = pool.submit(
                        write_unit_job, unit.shard.as_dict(), unit.implementation, unit.layout, str(staged), unit.md5_verified
                    )
                    futures[fut] = (i, unit, staged)
                for fut in as_completed(futures):
                    i, unit, staged = futures[fut]
                    result = UnitResult.from_dict(fut.result())
                    progress.update(result.records)
                    if uploads:
                        pending.append(uploads.submit(finish, i, unit, result, staged))
                    else:
                        finish(i, unit, result, staged)
        for p in pending:
            p.result()
    finally:
        if uploads:
            uploads.shutdown(wait=True)


def _reads_remote(todo: Sequence[tuple[int, Unit]]) -> bool:
    return any(is_remote(item.ref.container) for _, u in todo for item in u.shard.items[:1])


# --------------------------------------------------------------------------------------------
# Finalize


@dataclass(frozen=True)
class TrainingPublished:
    """The published artifact and its CM env dict."""

    publish: PublishResult
    env: dict[str, str]
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"publish": self.publish.as_dict(), "env": self.env, "counts": self.counts}


def training_env(*, location: str, config: TrainingConfig, counts: Mapping[str, int]) -> dict[str, str]:
    """CM's exports: the data path, the TFRecords or NVIDIA path, plus counts per split."""
    env = {
        "CM_MLPERF_TRAINING_RESNET_DATA_PATH": location,
        "CM_MLPERF_TRAINING_RESNET_TRAIN_IMAGES": str(counts.get("train", 0)),
        "CM_MLPERF_TRAINING_RESNET_VALIDATION_IMAGES": str(counts.get("validation", 0)),
    }
    if config.implementation == "nvidia":
        env["CM_MLPERF_TRAINING_NVIDIA_RESNET_PREPROCESSED_PATH"] = location
    else:
        env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] = location
        env["CM_MLPERF_TRAINING_RESNET_TRAIN_SHARDS"] = str(config.train_shards if counts.get("train") else 0)
        env["CM_MLPERF_TRAINING_RESNET_VALIDATION_SHARDS"] = str(config.validation_shards if counts.get("validation") else 0)
    return env


def finalize_training(
    *, sink: Sink, cache_key: str | None = None, store: Any = None, checked: Sequence[UnitResult] = ()
) -> TrainingPublished:
    """Check every unit is complete with its planned record count, then write ``report/`` and the manifest.

    A cache hit (the sink's manifest has ``cache_key``) returns the existing artifact. ``checked``:
    units this process has just written or verified (:func:`write_units`' results); their files'
    sizes are checked against the done-records, their checksums not recomputed (that would read
    every shard again).

    Raises:
        ValidationError: a unit is missing, incomplete, or has the wrong record count (named).
    """
    existing = read_manifest(sink)
    if cache_key and existing and existing["cache_key"] == cache_key:
        counts = existing["provenance"]["counts"]
        config = TrainingConfig.from_params(existing["provenance"]["config"])
        env = training_env(location=sink.location(), config=config, counts=counts)
        return TrainingPublished(cached_result(sink=sink, manifest=existing), env, counts)
    plan = load_plan(sink)
    files: list[dict[str, Any]] = []
    problems = []
    converted = 0
    fresh = {r.name for r in checked}
    for unit in plan.units:
        done = completed_unit(unit, sink, store, verify=unit.name not in fresh)
        if done is None:
            problems.append(f"{unit.name}: missing or incomplete")
        elif done.records != len(unit.shard.items):
            problems.append(f"{unit.name}: {done.records} records, planned {len(unit.shard.items)}")
        else:
            files += [{**f, "records": done.records} for f in done.files]
            converted += done.converted
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValidationError(f"{sink.uri}: {len(problems)} of {len(plan.units)} units are not complete: {shown}")
    from imagenet_ops.training.report import training_report

    report = build_report(
        ARTIFACT,
        lambda: training_report(units=plan.units, sink=sink, config=plan.config, files=files, converted=converted, store=store),
    )
    publish = write_manifest(
        sink=sink,
        artifact=ARTIFACT,
        params=plan.config.output_params(),
        upstream={"input_digest": plan.upstream["input_digest"]},
        provenance={
            "config": plan.config.as_params(),
            "labels_source": plan.labels_source,
            "classes": plan.classes,
            **{k: v for k, v in plan.upstream.items() if k != "input_digest"},
        },
        files=files + (put_report(report, sink) if report else []),
        previous=existing,
        report=report,
    )
    # the manifest's upstream is the cache key's; counts live in provenance and are mirrored for cache hits
    env = training_env(location=sink.location(), config=plan.config, counts=plan.counts)
    return TrainingPublished(publish, env, plan.counts)


def build_training_data(
    *,
    config: TrainingConfig,
    sink: Sink,
    train: str | Path | None,
    validation: str | Path | None,
    validation_labels: str | Path | None = None,
    aux_path: str | Path | None = None,
    work_dir: Path,
    workers: int = 1,
    store: Any = None,
) -> TrainingPublished:
    """Check (optional), plan, write every unit and finalize in one process (what the CLI runs).

    Without ``store``, remote inputs and a remote sink are read through an :class:`ObjectStore` on
    the environment's credentials (the completeness check of S3/GCS units needs it).
    """
    inputs = [str(x) for x in (train, validation, validation_labels, aux_path) if x]
    if store is None and any(is_remote(u) for u in (*inputs, sink.uri)):
        from imagenet_ops.core.store import ObjectStore

        store = ObjectStore()
    checked = check_input_archives(config=config, train=train, validation=validation, store=store)
    plan = plan_training(
        config=config,
        sink=sink,
        train=train,
        validation=validation,
        validation_labels=validation_labels,
        aux_path=aux_path,
        work_dir=work_dir,
        tasks=1,
        store=store,
        checked=checked,
    )
    written: list[UnitResult] = []
    if not plan.cache_hit:
        written = write_units(sink=sink, indices=range(plan.units), work_dir=work_dir, workers=workers, store=store)
    return finalize_training(sink=sink, cache_key=plan.cache_key, store=store, checked=written)
