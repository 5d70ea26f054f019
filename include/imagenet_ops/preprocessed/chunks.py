"""The chunks of a preprocessed set: the plan and results kept in the sink, and one chunk's work.

:func:`plan_chunks` splits the selected images into contiguous chunks; the DAG stores them in the
sink (``.chunks/plan-%05d.json``) so a mapped task on any worker reads its own rows there, and its
per-file result goes back there (``.chunks/chunk-%05d.json``): XCom carries only chunk indices and
counts. :func:`preprocess_chunk` reads a chunk's images, preprocesses them on ``workers`` processes
and writes each output to the sink (a retried chunk rewrites exactly its own files).

This module imports neither numpy nor OpenCV at the top (:mod:`.ops` is imported when a chunk runs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from imagenet_ops.core.cpus import available_cpus
from imagenet_ops.core.errors import ConfigError, ImageError, StorageError
from imagenet_ops.core.lease import guard_writes
from imagenet_ops.core.progress import Progress, human_bytes, human_seconds
from imagenet_ops.core.sinks import LocalSink, Sink
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.images import ImageRef
from imagenet_ops.preprocessed.config import PreprocessConfig
from imagenet_ops.preprocessed.sources import ImageLike, default_store, image_ref, read_remote

log = logging.getLogger(__name__)

BATCH = 8  # fewest images per task sent to a worker process
MAX_BATCH = 64
BATCHES_PER_WORKER = 16  # tasks each worker gets at least (while batches stay under MAX_BATCH): the tail stays short


def batch_size(images: int, workers: int) -> int:
    """Images per task: ``BATCH`` for small chunks, up to ``MAX_BATCH`` for large ones.

    Each task costs the parent some pickling and a wake-up (0.25 ms of parent CPU per image at 8
    images a task, 0.08 ms at 32, measured on 400 images with 2 workers). At least
    ``BATCHES_PER_WORKER`` tasks per worker keep the last one short, so no worker waits long
    for another to finish.
    """
    return max(BATCH, min(MAX_BATCH, images // (max(1, workers) * BATCHES_PER_WORKER)))


UPLOAD_THREADS = 8
CHUNKS_DIR = ".chunks"


def plan_chunks(items: Sequence[ImageLike], chunks: int) -> list[list[list[Any]]]:
    """Split ``items`` into at most ``chunks`` contiguous, near-equal, non-empty chunks of JSON rows."""
    if chunks < 1:
        raise ConfigError(f"chunks must be at least 1, got {chunks}")
    rows = [image_ref(i).as_list() for i in items]
    n = len(rows)
    k = min(chunks, n) or 1
    return [rows[i * n // k : (i + 1) * n // k] for i in range(k) if rows[i * n // k : (i + 1) * n // k]]


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk wrote: ``files`` entries ``{path, size, checksum}`` (paths relative to the sink; ``crc32c:<hex>``)."""

    count: int
    bytes: int
    bad: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    bad_reasons: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, value: ChunkResult | Mapping[str, Any]) -> ChunkResult:
        return value if isinstance(value, ChunkResult) else cls(**dict(value))

    def summary(self) -> dict[str, Any]:
        """Counts without the per-file list (small enough for an XCom)."""
        return {"count": self.count, "bytes": self.bytes, "bad": self.bad, "seconds": self.seconds}


def _chunk_key(index: int) -> str:
    return f"{CHUNKS_DIR}/chunk-{index:05d}.json"


def _plan_key(index: int) -> str:
    return f"{CHUNKS_DIR}/plan-{index:05d}.json"


def save_chunk_plan(*, sink: Sink, chunks: Sequence[Sequence[ImageLike]]) -> int:
    """Store each chunk's image rows in the sink (``.chunks/plan-%05d.json``); returns the chunk count.

    50,000 rows are ~6 MB: a mapped task can receive its chunk index and :func:`load_chunk_plan` it.
    """
    for index, chunk in enumerate(chunks):
        rows = [image_ref(i).as_list() for i in chunk]
        sink.put_bytes(json.dumps(rows, separators=(",", ":")).encode(), _plan_key(index))
    return len(chunks)


def load_chunk_plan(*, sink: Sink, index: int) -> list[list[Any]]:
    """The image rows :func:`save_chunk_plan` stored for chunk ``index``.

    Raises:
        StorageError: there is no plan for that chunk.
    """
    raw = sink.get_bytes(_plan_key(index))
    if raw is None:
        raise StorageError(f"sink {sink.uri}: no plan for chunk {index} ({_plan_key(index)})")
    return json.loads(raw)


def save_chunk_result(*, sink: Sink, index: int, result: ChunkResult) -> str:
    """Store a chunk's result in the sink (``.chunks/chunk-%05d.json``); returns its location.

    A chunk's ``files`` list holds ~150 bytes per image (7 MB for 50,000): too much for an XCom.
    A mapped task can save its result here and hand on only ``result.summary()``.
    """
    sink.put_bytes(json.dumps(result.as_dict(), separators=(",", ":")).encode(), _chunk_key(index))
    return sink.location(_chunk_key(index))


def load_chunk_results(*, sink: Sink, count: int, remove: bool = False) -> list[ChunkResult]:
    """The results saved by :func:`save_chunk_result` for chunks ``0..count-1`` (``remove``: then delete
    the results and plans of those chunks).

    Raises:
        StorageError: a chunk's result is missing (that chunk did not finish).
    """
    results = []
    for index in range(count):
        raw = sink.get_bytes(_chunk_key(index))
        if raw is None:
            raise StorageError(f"sink {sink.uri}: no result for chunk {index} ({_chunk_key(index)}): did it finish?")
        results.append(ChunkResult.of(json.loads(raw)))
    if remove:
        remove_chunk_state(sink=sink, count=count)
    return results


def remove_chunk_state(*, sink: Sink, count: int) -> None:
    """Delete the plans and results of chunks ``0..count-1`` (after the manifest is written)."""
    for index in range(count):
        sink.delete(_chunk_key(index))
        sink.delete(_plan_key(index))


def _pool_context() -> Any:
    """``fork`` where available (cheap start, children inherit the loaded modules), else ``spawn``.

    A child forked while OpenCV's thread pool is running hangs in its first cv2 call; the caller
    therefore keeps OpenCV single-threaded in this process while the pool lives (:func:`_cv2_quiet`).
    """
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _cv2_quiet() -> Iterator[None]:
    """Stop OpenCV's worker threads in this process (if OpenCV is loaded) so that forking is safe."""
    if "cv2" not in sys.modules:
        yield
        return
    from imagenet_ops.preprocessed.ops import single_cv2_thread

    with single_cv2_thread():
        yield


def _prefetched(load: Callable[[Any], Any], batches: Sequence[Any], depth: int, threaded: bool) -> Iterator[Any]:
    """``load(batch)`` for each batch in order, ``depth`` batches ahead on threads when ``threaded``."""
    if not threaded:
        for batch in batches:
            yield load(batch)
        return
    with ThreadPoolExecutor(max_workers=max(2, depth), thread_name_prefix="preprocess-read") as pool:
        pending: deque[Future[Any]] = deque()
        it = iter(batches)
        for batch in it:
            pending.append(pool.submit(load, batch))
            if len(pending) >= depth:
                break
        for batch in it:
            yield pending.popleft().result()
            pending.append(pool.submit(load, batch))
        while pending:
            yield pending.popleft().result()


class _Uploader:
    """Uploads encoded outputs to a remote sink on a few threads, at most ``limit`` in flight."""

    def __init__(self, sink: Sink, threads: int = UPLOAD_THREADS) -> None:
        self.sink = sink
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess-upload")
        self.pending: deque[Future[None]] = deque()
        self.limit = threads * 4

    def put(self, data: bytes, key: str) -> None:
        self.pending.append(self.pool.submit(self.sink.put_bytes, data, key))
        while len(self.pending) > self.limit:
            self.pending.popleft().result()

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def preprocess_chunk(
    *,
    config: PreprocessConfig,
    source: str,
    items: Sequence[ImageLike],
    sink: Sink,
    workers: int | None = None,
    store: Any = None,
    progress_every: float = 5.0,
) -> ChunkResult:
    """Preprocess ``items`` and write each output to ``sink`` (local sinks: temp file + rename in place).

    Args:
        config: the resolved config.
        source: the image source (for messages; each item names its own container).
        items: this chunk's images (:class:`ImageRef`, JSON rows from :func:`plan_chunks`, ...).
        sink: destination; outputs go to its root under their output names.
        workers: processes (default: the CPUs this process may use); 1 runs in this process.
        store: an ``ObjectStore`` for object-storage sources.
        progress_every: seconds between progress lines.

    Returns:
        Counts, bytes, bad images (with reasons) and one ``{path, size, checksum}`` per output file.

    Raises:
        ImageError: a bad image (missing, empty, truncated, corrupt) unless ``skip_bad_images``.
        StorageError: an output could not be written.
    """
    from imagenet_ops.preprocessed import ops as ops

    started = time.monotonic()
    refs = [image_ref(i) for i in items]
    requested = available_cpus() if workers is None else workers
    workers = max(1, min(requested, len(refs) or 1))
    out_dir = str(sink.root) if isinstance(sink, LocalSink) else None
    if out_dir is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"sink {sink.uri}: cannot create {out_dir}: {exc}") from exc
    remote = any(is_remote(r.container) for r in refs)
    if remote and store is None:
        store = default_store()

    def load(batch: list[ImageRef]) -> list[tuple[list[Any], bytes | None]]:
        return [(r.as_list(), read_remote(store, r) if is_remote(r.container) else None) for r in batch]

    size = batch_size(len(refs), workers)
    batches = [refs[i : i + size] for i in range(0, len(refs), size)]
    progress = Progress(f"preprocess {len(refs):,} images", total=len(refs), unit="images", logger=log, every=progress_every)
    files: list[dict[str, Any]] = []
    bad: dict[str, str] = {}
    uploader = _Uploader(sink) if out_dir is None else None

    def collect(results: list[ops.ImageResult]) -> None:
        guard_writes(sink)  # a run that lost its output's lease stops before its next batch
        for res in results:
            if res.error is not None:
                if not config.skip_bad_images:
                    raise ImageError(f"{res.error} (source {source}; set skip_bad_images to list bad images instead)")
                log.warning("skipping bad image %s", res.error)
                bad[res.name] = res.error
                continue
            if uploader is not None:
                uploader.put(res.payload, res.key)
            files.append({"path": res.key, "size": res.size, "checksum": res.checksum})
        progress.update(len(results))

    loaded = _prefetched(load, batches, depth=2 * workers + 2, threaded=remote)
    try:
        if workers == 1:
            from imagenet_ops.imagenet.images import ImageReader

            pre = ops.Preprocessor(config)
            with ops.single_cv2_thread(), ImageReader() as reader:
                for batch in loaded:
                    collect(ops.run_batch(pre, reader, out_dir, batch))
        else:
            ctx = _pool_context()
            from imagenet_ops.core.process_pool import task_pool

            initargs = (config.as_dict(), out_dir)
            with _cv2_quiet(), task_pool(workers, mp_context=ctx, initializer=ops.worker_init, initargs=initargs) as pool:
                for results in pool.imap(ops.worker_run, loaded):
                    collect(results)
    except OSError as exc:
        raise StorageError(f"sink {sink.uri}: writing outputs failed: {exc}") from exc
    finally:
        loaded.close()
        if uploader is not None:
            uploader.close()
    seconds = time.monotonic() - started
    total = sum(f["size"] for f in files)
    log.info(
        "preprocessed %d images (%s) in %s with %d worker(s): %.1f images/s, %d bad",
        len(files),
        human_bytes(total),
        human_seconds(seconds),
        workers,
        len(refs) / seconds if seconds > 0 else 0.0,
        len(bad),
    )
    return ChunkResult(
        count=len(files), bytes=total, bad=sorted(bad), files=files, bad_reasons=dict(sorted(bad.items())), seconds=seconds
    )
