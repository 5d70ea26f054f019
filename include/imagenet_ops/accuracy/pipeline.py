"""An accuracy check in steps: plan (read both sides, refuse a bad pair, check the cache), score chunks, publish.

Every step re-reads the two manifests, so a mapped chunk task on any worker needs only the job and
its chunk index: chunk ``i`` of ``n`` is the ``i``-th of ``n`` near-equal slices of the set's
images in ``val_map.txt`` order. Each chunk's scored rows go to the run's staging area in the
sink with both inputs' cache keys, and the publish step refuses rows scored against other bytes
(a model or set re-published mid-run). The CLI runs the same steps in one process.

Output: ``accuracy.json`` (the pair, the counts, top-1 / top-5, the per-class confusion summary
and the verdict), ``report/`` (worst classes, misclassified samples as a picture) and the
manifest. Only a pass (or a subset checked without an expectation) is reported as published; a
fail is published too, so its report can be read, and then raised as :class:`AccuracyGateError`.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from imagenet_ops.accuracy.job import AccuracyJob
from imagenet_ops.accuracy.pair import ModelSide, PairError, SetSide, check_pair, join, read_model, read_set
from imagenet_ops.accuracy.scoring import Row, Summary, Verdict, judge, rows_from_batch, summarize, to_labels
from imagenet_ops.accuracy.variations import ARTIFACT, DEFAULT_BATCH_SIZE, FULL_SET_IMAGES, VERSION
from imagenet_ops.core.errors import StorageError, ValidationError
from imagenet_ops.core.manifest import PublishResult, cache_key_for, cached_result, publish_dir, read_manifest
from imagenet_ops.core.progress import Progress
from imagenet_ops.core.sinks import Sink
from imagenet_ops.core.uris import is_remote

log = logging.getLogger(__name__)

RESULT = "accuracy.json"
CHUNK_RESULT = "accuracy-chunk-%05d.json"


class AccuracyGateError(ValidationError):
    """The pair was scored and published, and did not reach the figure it was held to."""


class CheckResult(NamedTuple):
    """What a check published: the publish facts, the CM env dict, the verdict."""

    publish: PublishResult
    env: dict[str, str]
    verdict: Verdict


@dataclass(frozen=True)
class Pair:
    """Both sides, read and checked."""

    model: ModelSide
    data: SetSide
    notes: list[str] = field(default_factory=list)

    @property
    def full_set(self) -> bool:
        """A set made from all 50,000 validation images (the images it skipped as bad count as wrong)."""
        return self.data.size == FULL_SET_IMAGES

    def upstream(self) -> dict[str, Any]:
        """What the result depends on besides the options: the bytes of both sides (their cache keys)."""
        return {"model": self.model.cache_key, "preprocessed": self.data.cache_key, "images": self.data.count}


def read_pair(job: AccuracyJob, store: Any) -> Pair:
    """Both sides of ``job`` from their manifests; a pair that cannot be scored fails here.

    Raises:
        PairError: layout, data type or resolution differ, or the set has no labels.
        ValidationError: a folder holds no such artifact.
    """
    model = read_model(store, str(job.model))
    data = read_set(store, str(job.preprocessed))
    notes = check_pair(model, data)
    for note in notes:
        log.warning("%s: %s", ARTIFACT, note)
    return Pair(model=model, data=data, notes=notes)


def cache_key(job: AccuracyJob, pair: Pair) -> str:
    return cache_key_for(artifact=ARTIFACT, params=job.config.cache_params(), upstream=pair.upstream())


def chunk_rows(data: SetSide, index: int, chunks: int) -> Sequence[tuple[str, str, int]]:
    """The ``index``-th of ``chunks`` near-equal slices of the set's rows."""
    n = data.count
    return data.rows[index * n // chunks : (index + 1) * n // chunks]


@dataclass(frozen=True)
class Plan:
    """What the plan step found: a cache hit, or the chunks to score."""

    hit: bool
    chunks: list[int]
    images: int
    cache_key: str
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"hit": self.hit, "chunks": self.chunks, "images": self.images, "cache_key": self.cache_key, "notes": self.notes}


def plan_check(job: AccuracyJob, *, sink: Sink, store: Any) -> Plan:
    """Read and check the pair, then look for a published result of the same inputs and options."""
    return plan_pair(job, read_pair(job, store), sink=sink)


def plan_pair(job: AccuracyJob, pair: Pair, *, sink: Sink) -> Plan:
    """The plan of a pair already read and checked: a cache hit, or the chunks to score."""
    key = cache_key(job, pair)
    manifest = read_manifest(sink)
    hit = bool(manifest and manifest.get("cache_key") == key and sink.get_bytes(RESULT) is not None)
    chunks = [] if hit else [i for i in range(min(job.chunks, pair.data.count)) if chunk_rows(pair.data, i, job.chunks)]
    log.info(
        "%s: %s on %s, %d images%s",
        ARTIFACT,
        pair.model.describe(),
        pair.data.describe(),
        pair.data.count,
        " (already checked: cache hit)" if hit else f" in {len(chunks)} chunk(s)",
    )
    return Plan(hit=hit, chunks=chunks, images=pair.data.count, cache_key=key, notes=pair.notes)


# -- scoring ------------------------------------------------------------------------------------


def batch_size(job: AccuracyJob, model: ModelSide) -> int:
    return model.fixed_batch or job.config.batch_size or DEFAULT_BATCH_SIZE


def _read_npy_into(path: str, out: np.ndarray) -> None:
    """Read a local ``.npy`` straight into ``out`` (one preallocated batch row): no parse-then-copy."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise ValidationError(f"{path}: not a .npy file ({exc})") from exc
        if shape != out.shape or dtype != out.dtype or fortran:
            raise ValidationError(
                f"{path}: a {dtype} array of shape {list(shape)}, the set's other tensors are {out.dtype} {list(out.shape)}"
            )
        if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ValidationError(f"{path}: truncated (fewer than {out.nbytes} data bytes)")


def load_tensor(data: SetSide, store: Any, file: str) -> np.ndarray:
    """One published tensor as an array (``.npy`` parsed; a raw file read with the dtype and shape its config gives)."""
    from imagenet_ops.preprocessed.viewable import channels_first, raw_dtype

    uri = join(data.location, file)
    raw = store.read(uri)
    try:
        if data.npy:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        side = data.side
        shape = (3, side, side) if channels_first(data.config) else (side, side, 3)
        itemsize, rest = divmod(len(raw), 3 * side * side)
        if rest or itemsize not in (1, 2, 4, 8):
            raise ValueError(f"{len(raw)} bytes is not a {list(shape)} tensor")
        return np.frombuffer(raw, dtype=raw_dtype(data.config, itemsize)).reshape(shape)
    except ValueError as exc:
        raise ValidationError(f"{uri}: not a tensor of this set ({exc})") from exc


class BatchReader:
    """Batches of a chunk's tensors, each read straight into its batch array.

    Read between inference calls, not beside them: the runtimes use every core (onnxruntime's
    threads spin between operators), and a reader thread beside them made the check 2x slower in
    wall time on 2 cores (bench/accuracy.py).
    """

    def __init__(self, data: SetSide, store: Any, rows: Sequence[tuple[str, str, int]], *, size: int, first: np.ndarray) -> None:
        self.data, self.store, self.rows, self.size, self.first = data, store, rows, size, first
        self.local = data.npy and not is_remote(data.location)

    def _batch(self, start: int) -> tuple[Sequence[tuple[str, str, int]], np.ndarray]:
        rows = self.rows[start : start + self.size]
        out = np.empty((len(rows), *self.first.shape), dtype=self.first.dtype)
        for i, (_, file, _) in enumerate(rows):
            if self.local:
                _read_npy_into(join(self.data.location, file), out[i])
            else:
                tensor = load_tensor(self.data, self.store, file)
                if tensor.shape != self.first.shape or tensor.dtype != self.first.dtype:
                    raise ValidationError(
                        f"{join(self.data.location, file)}: {tensor.dtype} {list(tensor.shape)}, "
                        f"the set's other tensors are {self.first.dtype} {list(self.first.shape)}"
                    )
                out[i] = tensor
        return rows, out

    def __iter__(self) -> Iterator[tuple[Sequence[tuple[str, str, int]], np.ndarray]]:
        for start in range(0, len(self.rows), self.size):
            yield self._batch(start)


@dataclass(frozen=True)
class ChunkScore:
    """One chunk's scored rows, with the inputs' cache keys they were scored against."""

    index: int
    rows: list[Row]
    seconds: float
    runtime: str
    batch: int
    upstream: dict[str, Any]

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "index": self.index,
                "rows": self.rows,
                "seconds": self.seconds,
                "runtime": self.runtime,
                "batch": self.batch,
                "upstream": self.upstream,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkScore:
        d = json.loads(raw)
        return cls(d["index"], [tuple(r) for r in d["rows"]], d["seconds"], d["runtime"], d["batch"], d["upstream"])

    def summary(self) -> dict[str, Any]:
        correct = sum(1 for r in self.rows if r[1] == r[2])
        return {"chunk": self.index, "images": len(self.rows), "top1_correct": correct, "seconds": round(self.seconds, 3)}


def _model_folder(model: ModelSide, store: Any, scratch: Path) -> Path:
    """A local folder with the variant's files: the published folder itself when local, else a download."""
    if not is_remote(model.location):
        return Path(model.location)
    for name in model.files:
        store.download(join(model.location, name), scratch / name)
    return scratch


def score_rows(
    pair: Pair,
    rows: Sequence[tuple[str, str, int]],
    *,
    store: Any,
    batch: int,
    threads: int,
    scratch: Path,
    what: str,
    index: int = 0,
) -> ChunkScore:
    """Run the model over ``rows`` and score each image; logs progress with images/s and the ETA."""
    from imagenet_ops.accuracy.runtimes import check_input, open_runner

    started = time.monotonic()
    runner = open_runner(pair.model, _model_folder(pair.model, store, scratch), threads=threads, batch=batch)
    first = load_tensor(pair.data, store, rows[0][1])
    check_input(runner, pair.model, first, where=join(pair.data.location, rows[0][1]), set_description=pair.data.describe())
    log.info(
        "%s: %d images on %s, batch %d, %s thread(s) (model loaded in %.1fs)",
        what,
        len(rows),
        runner.runtime,
        runner.batch,
        threads or "all",
        time.monotonic() - started,
    )
    progress = Progress(what, total=len(rows), unit="images", logger=log)
    scored: list[Row] = []
    correct = 0
    for batch_rows, tensors in BatchReader(pair.data, store, rows, size=runner.batch, first=first):
        n = len(batch_rows)
        if n < runner.batch and runner.batch > 1 and pair.model.fixed_batch:  # a fixed-shape graph: pad the last batch
            tensors = np.concatenate([tensors, np.repeat(tensors[-1:], runner.batch - n, axis=0)])
        out = runner.run(tensors)
        predicted, top5 = to_labels(out.top1[:n], None if out.scores is None else out.scores[:n], offset=pair.model.offset)
        if out.scores is not None and out.scores.shape[1] != pair.model.classes:
            raise PairError(
                f"{pair.model.describe()}: its output has {out.scores.shape[1]} classes, "
                f"the variant declares {pair.model.classes}"
            )
        new = rows_from_batch([r[0] for r in batch_rows], [r[2] for r in batch_rows], predicted, top5)
        correct += sum(1 for r in new if r[1] == r[2])
        scored += new
        progress.update(n)
    seconds = time.monotonic() - started
    log.info(
        "%s: scored %d images in %.1fs (%.1f images/s), top-1 so far %.2f%%",
        what,
        len(scored),
        seconds,
        len(scored) / max(seconds, 1e-9),
        100.0 * correct / max(len(scored), 1),
    )
    return ChunkScore(index, scored, seconds, runner.runtime, runner.batch, pair.upstream())


def score_chunk(job: AccuracyJob, *, index: int, sink: Sink, store: Any, staging: Any, threads: int, scratch: Path) -> ChunkScore:
    """Score chunk ``index`` and keep its rows in the run's staging area."""
    pair = read_pair(job, store)
    rows = chunk_rows(pair.data, index, job.chunks)
    if not rows:
        raise ValidationError(f"{ARTIFACT}: chunk {index} of {job.chunks} has no images (the set has {pair.data.count})")
    score = score_rows(
        pair,
        rows,
        store=store,
        batch=batch_size(job, pair.model),
        threads=threads,
        scratch=scratch,
        what=f"score chunk {index}",
        index=index,
    )
    sink.put_bytes(score.as_json(), staging.key(CHUNK_RESULT % index))
    return score


# -- publishing ---------------------------------------------------------------------------------


def accuracy_env(*, sink: Sink, pair: Pair, summary: Summary, verdict: Verdict) -> dict[str, str]:
    """The CM-style env of a check: top-1 / top-5 in percent, images counted, the verdict, both inputs."""
    env = {
        "CM_MLPERF_ACCURACY_TOP1": f"{summary.top1:.4f}",
        "CM_MLPERF_ACCURACY_TOP1_CORRECT": str(summary.top1_correct),
        "CM_MLPERF_ACCURACY_IMAGES": str(summary.images),
        "CM_MLPERF_ACCURACY_PASSED": {True: "yes", False: "no", None: "no-verdict"}[verdict.passed],
        "CM_MLPERF_ACCURACY_RULE": verdict.rule,
        "CM_MLPERF_ACCURACY_PATH": sink.location(),
        "CM_MLPERF_ACCURACY_FILE_WITH_PATH": sink.location(RESULT),
        "CM_ML_MODEL_FILE_WITH_PATH": pair.model.env["CM_ML_MODEL_FILE_WITH_PATH"],
        "CM_ML_MODEL_FRAMEWORK": pair.model.framework,
        "CM_DATASET_PREPROCESSED_PATH": pair.data.location,
    }
    if summary.top5 is not None:
        env["CM_MLPERF_ACCURACY_TOP5"] = f"{summary.top5:.4f}"
    if verdict.expected_top1 is not None:
        env["CM_MLPERF_ACCURACY_EXPECTED_TOP1"] = f"{verdict.expected_top1:.4f}"
    return env


def result_document(
    job: AccuracyJob, pair: Pair, summary: Summary, verdict: Verdict, scores: Sequence[ChunkScore]
) -> dict[str, Any]:
    """What ``accuracy.json`` holds: no timings (a re-run publishes the same bytes)."""
    return {
        "artifact": ARTIFACT,
        "version": VERSION,
        "model": {
            "location": pair.model.location,
            "variant": pair.model.variant_id,
            "framework": pair.model.framework,
            "classes": pair.model.classes,
            "class_offset": pair.model.offset,
            "accuracy_stated": pair.model.accuracy,
        },
        "preprocessed": {
            "location": pair.data.location,
            "tags": pair.data.tags,
            "layout": pair.data.layout,
            "dtype": pair.data.dtype,
            "preprocessing": pair.data.preprocessing,
            "images_without_file": list(pair.data.missing),
        },
        "runtime": sorted({s.runtime for s in scores}),
        "batch_size": sorted({s.batch for s in scores}),
        "notes": pair.notes,
        "verdict": verdict.as_dict(),
        **summary.as_dict(),
    }


def publish_result(
    job: AccuracyJob, pair: Pair, scores: Sequence[ChunkScore], *, sink: Sink, store: Any, work_dir: Path
) -> CheckResult:
    """Merge the chunks, judge, and publish ``accuracy.json`` with its report and manifest."""
    from imagenet_ops.accuracy.report import accuracy_report
    from imagenet_ops.core.report import build_report

    stale = [s.index for s in scores if s.upstream != pair.upstream()]
    if stale:
        raise ValidationError(
            f"{ARTIFACT}: chunk(s) {stale} were scored against other bytes of the model or set "
            f"(re-published during this run?); run the check again"
        )
    ordered = sorted(scores, key=lambda s: s.index)
    rows = [r for s in ordered for r in s.rows]
    if len(rows) != pair.data.count:
        raise ValidationError(f"{ARTIFACT}: {len(rows)} images scored, the set has {pair.data.count}")
    summary = summarize(rows)
    if pair.full_set and pair.data.missing:  # MLPerf scores every image: a skipped one is a wrong one
        summary = summary.with_unscored(len(pair.data.missing))
    verdict = judge(
        summary,
        full_set=pair.full_set,
        expected_top1=job.config.expected_top1,
        model_accuracy=pair.model.accuracy,
        model=pair.model.describe(),
        data=pair.data.describe(),
    )
    document = result_document(job, pair, summary, verdict, ordered)
    folder = Path(tempfile.mkdtemp(prefix="accuracy-", dir=work_dir))
    (folder / RESULT).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    report = build_report(ARTIFACT, lambda: accuracy_report(pair=pair, summary=summary, verdict=verdict, rows=rows, store=store))
    result = publish_dir(
        local_dir=folder,
        sink=sink,
        artifact=ARTIFACT,
        params=job.config.cache_params(),
        upstream=pair.upstream(),
        provenance={"model": pair.model.location, "preprocessed": pair.data.location},
        report=report,
    )
    log.info("%s", verdict.message)
    return CheckResult(result, accuracy_env(sink=sink, pair=pair, summary=summary, verdict=verdict), verdict)


def cached_check(job: AccuracyJob, pair: Pair, *, sink: Sink) -> CheckResult:
    """The published result of the same inputs and options (a cache hit), with its stored verdict."""
    manifest = read_manifest(sink)
    raw = sink.get_bytes(RESULT)
    if manifest is None or raw is None:
        raise StorageError(f"{sink.uri}: the cached result went away; run the check again")
    document = json.loads(raw)
    summary = Summary(
        images=document["images"],
        top1_correct=document["top1_correct"],
        top5_correct=document["top5_correct"],
        per_class={int(k): (v[0], v[1]) for k, v in document["per_class"].items()},
        confusions=[],
    )
    v = document["verdict"]
    verdict = Verdict(v["passed"], v["expected_top1"], v["rule"], v["message"])
    return CheckResult(
        cached_result(sink=sink, manifest=manifest),
        accuracy_env(sink=sink, pair=pair, summary=summary, verdict=verdict),
        verdict,
    )


def finalize_check(
    job: AccuracyJob, *, sink: Sink, store: Any, staging: Any, plan: dict[str, Any], work_dir: Path
) -> CheckResult:
    """Publish the result from the staged chunk rows (or return the cache hit's)."""
    pair = read_pair(job, store)
    if plan.get("hit"):
        return cached_check(job, pair, sink=sink)
    scores = []
    for index in plan["chunks"]:
        raw = sink.get_bytes(staging.key(CHUNK_RESULT % index))
        if raw is None:
            raise StorageError(f"staging: chunk {index}'s result is missing (did its task finish?)")
        scores.append(ChunkScore.from_json(raw))
    return publish_result(job, pair, scores, sink=sink, store=store, work_dir=work_dir)


def raise_unless_passed(verdict: Verdict) -> None:
    """A failed verdict as an error naming the model, the set and measured vs expected."""
    if verdict.passed is False:
        raise AccuracyGateError(verdict.message)


def build_accuracy(
    job: AccuracyJob,
    *,
    sink: Sink,
    store: Any,
    work_dir: Path,
    threads: int = 0,
) -> CheckResult:
    """Every step in one process (the CLI): plan, score every chunk, publish (or the cache hit).

    A failed verdict is returned, not raised (:func:`raise_unless_passed`), so a caller can report the publish first.
    """
    pair = read_pair(job, store)
    plan = plan_pair(job, pair, sink=sink)
    if plan.hit:
        return cached_check(job, pair, sink=sink)
    scratch = Path(tempfile.mkdtemp(prefix="model-", dir=work_dir))
    scores = [
        score_rows(
            pair,
            chunk_rows(pair.data, i, job.chunks),
            store=store,
            batch=batch_size(job, pair.model),
            threads=threads,
            scratch=scratch,
            what=f"score chunk {i}" if len(plan.chunks) > 1 else "score",
            index=i,
        )
        for i in plan.chunks
    ]
    return publish_result(job, pair, scores, sink=sink, store=store, work_dir=work_dir)


__all__ = [
    "AccuracyGateError",
    "build_accuracy",
    "finalize_check",
    "plan_check",
    "raise_unless_passed",
    "score_chunk",
]
