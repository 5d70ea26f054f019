"""Preprocessed ImageNet sets (CM recipe get-preprocessed-dataset-imagenet): select, preprocess in chunks, publish.

Flow (one process in :func:`build_preprocessed`, one task per step in the DAG):

1. :func:`select_images`: the first N names of ``val_map.txt`` or of a calibration list, located in
   the source (folder, tar read in place, ``s3://``/``gs://`` prefix or tar);
2. :func:`check_cache`: a manifest with the same cache key means nothing to do; otherwise an old
   manifest is removed before any output changes;
3. :func:`plan_chunks` then :func:`preprocess_chunk` per chunk (mapped tasks): each reads its own
   images and writes its own outputs to the sink (a retried chunk rewrites exactly its files);
4. :func:`finalize_preprocessed`: list files, ``val_map.txt``, ``bad_images.txt``, and ``manifest.json`` last.

Outputs, as CM: reference ``<name>.npy`` (``ILSVRC2012_val_00000001.JPEG.npy``), generic
``<stem>.<ext>``; ``preprocessed_files.txt`` (full paths/URIs) and ``preprocessed_filenames.txt``
(names), sorted, joined by ``\\n`` without a trailing newline; ``val_map.txt`` is copied into the
output (never into the source). Differences from CM (see also the other ``preprocess_*`` modules):
existing outputs are overwritten, not skipped (a retry must not keep a half-written file); a missing
image is an error unless ``skip_bad_images`` (the reference skipped it silently); truncated and
corrupt images are errors too, or listed in ``bad_images.txt``.

This module imports neither numpy nor OpenCV at the top (DAG files import it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops import VERSION
from imagenet_ops.core.errors import ConfigError, ImageError, StorageError, ValidationError
from imagenet_ops.core.lease import guard_writes
from imagenet_ops.core.output_location import begin_output, finish_output, settle_output
from imagenet_ops.core.progress import Progress, human_bytes, human_seconds
from imagenet_ops.core.redact import redact_values
from imagenet_ops.core.storage import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    LocalSink,
    PublishResult,
    Sink,
    asset_uri,
    cache_key_for,
    open_sink,
    read_manifest,
)
from imagenet_ops.imagenet.images import ImageRef
from imagenet_ops.preprocessed.sources import (
    SourceImage,
    default_store,
    fetch_calibration_list,
    fetch_images,
    locate_images,
    read_remote,
    requested_names,
)
from imagenet_ops.preprocessed.variations import (
    ARTIFACT,
    PREPROCESS_RELEASE_NOTES,
    PREPROCESS_TABLE,
    PREPROCESS_VERSION,
    PreprocessConfig,
    config_env,
    resolve_preprocess_config,
)

log = logging.getLogger(__name__)

__all__ = [
    "ARTIFACT",
    "PREPROCESS_RELEASE_NOTES",
    "PREPROCESS_TABLE",
    "PREPROCESS_VERSION",
    "CacheCheck",
    "ChunkResult",
    "PreprocessConfig",
    "PreprocessedResult",
    "SourceImage",
    "build_preprocessed",
    "check_cache",
    "load_chunk_plan",
    "load_chunk_results",
    "save_chunk_plan",
    "save_chunk_result",
    "fetch_calibration_list",
    "fetch_images",
    "finalize_preprocessed",
    "plan_chunks",
    "preprocess_chunk",
    "preprocessed_env",
    "resolve_preprocess_config",
    "select_images",
]

FILES_LIST = "preprocessed_files.txt"
NAMES_LIST = "preprocessed_filenames.txt"
VAL_MAP = "val_map.txt"
BAD_IMAGES = "bad_images.txt"
GENERIC_FOF = "files.txt"  # CM's generic preprocessor writes it (CM_DATASET_SUBSET_FOF)
BATCH = 8  # images per task sent to a worker process
UPLOAD_THREADS = 8

ItemLike = SourceImage | ImageRef | Sequence[Any] | Mapping[str, Any]


# -- selection -------------------------------------------------------------------------------------


def select_images(
    *,
    config: PreprocessConfig,
    source: str,
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    store: Any = None,
) -> list[SourceImage]:
    """The images of the set, in list order: first ``config.size`` lines of val_map / the calibration list.

    Args:
        config: the resolved config (dataset type and size).
        source: a folder, a ``.tar``, or an ``s3://``/``gs://`` prefix or tar.
        val_map: the aux ``val.txt`` (validation).
        calibration_list: an MLPerf calibration list, option 1 or 2 format (calibration).
        store: an ``ObjectStore`` for object-storage sources (default clients otherwise).

    Returns:
        One :class:`SourceImage` per listed image; with ``skip_bad_images`` an image the source does
        not hold is kept with an empty container (reported as bad later).

    Raises:
        ConfigError: the needed list is missing, or the source is a URL.
        ValidationError: the list is malformed or too short, or (without ``skip_bad_images``) the
            source lacks listed images (the message names them).
    """
    names = requested_names(config=config, val_map=val_map, calibration_list=calibration_list)
    items = locate_images(source=source, names=names, store=store)
    missing = [i.name for i in items if i.missing]
    if missing and not config.skip_bad_images:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ValidationError(
            f"image source {source} lacks {len(missing)} of the {len(items)} listed images: {shown} "
            "(set skip_bad_images to skip them and list them in bad_images.txt)"
        )
    if missing:
        log.warning("image source %s lacks %d listed image(s), e.g. %s; they will be skipped", source, len(missing), missing[0])
    log.info("selected %d %s images from %s", len(items), config.dataset_type, source)
    return items


def plan_chunks(items: Sequence[ItemLike], chunks: int) -> list[list[list[Any]]]:
    """Split ``items`` into at most ``chunks`` contiguous, near-equal, non-empty chunks of JSON rows."""
    if chunks < 1:
        raise ConfigError(f"chunks must be at least 1, got {chunks}")
    rows = [SourceImage.of(i).as_list() for i in items]
    n = len(rows)
    k = min(chunks, n) or 1
    return [rows[i * n // k : (i + 1) * n // k] for i in range(k) if rows[i * n // k : (i + 1) * n // k]]


# -- one chunk -------------------------------------------------------------------------------------


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


CHUNKS_DIR = ".chunks"


def _chunk_key(index: int) -> str:
    return f"{CHUNKS_DIR}/chunk-{index:05d}.json"


def _plan_key(index: int) -> str:
    return f"{CHUNKS_DIR}/plan-{index:05d}.json"


def save_chunk_plan(*, sink: Sink, chunks: Sequence[Sequence[ItemLike]]) -> int:
    """Store each chunk's image rows in the sink (``.chunks/plan-%05d.json``); returns the chunk count.

    50,000 rows are ~6 MB: a mapped task can receive its chunk index and :func:`load_chunk_plan` it.
    """
    for index, chunk in enumerate(chunks):
        rows = [SourceImage.of(i).as_list() for i in chunk]
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
    items: Sequence[ItemLike],
    sink: Sink,
    workers: int | None = None,
    store: Any = None,
    progress_every: float = 5.0,
) -> ChunkResult:
    """Preprocess ``items`` and write each output to ``sink`` (local sinks: temp file + rename in place).

    Args:
        config: the resolved config.
        source: the image source (for messages; each item names its own container).
        items: this chunk's images (:class:`SourceImage`, JSON rows from :func:`plan_chunks`, ...).
        sink: destination; outputs go to its root under their output names.
        workers: processes (default ``os.cpu_count()``); 1 runs in this process.
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
    refs = [SourceImage.of(i) for i in items]
    requested = (os.cpu_count() or 1) if workers is None else workers
    workers = max(1, min(requested, len(refs) or 1))
    out_dir = str(sink.root) if isinstance(sink, LocalSink) else None
    if out_dir is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"sink {sink.uri}: cannot create {out_dir}: {exc}") from exc
    remote = any(r.remote for r in refs)
    if remote and store is None:
        store = default_store()

    def load(batch: list[SourceImage]) -> list[tuple[list[Any], bytes | None]]:
        return [(r.as_list(), read_remote(store, r) if r.remote else None) for r in batch]

    batches = [refs[i : i + BATCH] for i in range(0, len(refs), BATCH)]
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


# -- cache, finalize, env --------------------------------------------------------------------------


def _file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def preprocess_upstream(
    *, items: Sequence[ItemLike], val_map: Path | None = None, calibration_list: Path | None = None
) -> dict[str, Any]:
    """What the inputs are (part of the cache key): the located images and the list files' digests."""
    rows = json.dumps([SourceImage.of(i).as_list() for i in items], separators=(",", ":"))
    return {
        "images_sha256": hashlib.sha256(rows.encode()).hexdigest(),
        "images": len(items),
        "val_map_sha256": _file_sha256(val_map),
        "calibration_list_sha256": _file_sha256(calibration_list),
    }


def preprocess_cache_key(
    *, config: PreprocessConfig, items: Sequence[ItemLike], val_map: Path | None = None, calibration_list: Path | None = None
) -> str:
    upstream = preprocess_upstream(items=items, val_map=val_map, calibration_list=calibration_list)
    return cache_key_for(artifact=ARTIFACT, params=config.cache_params(), upstream=upstream)


def preprocessed_env(*, config: PreprocessConfig, sink: Sink, count: int) -> dict[str, str]:
    """The CM env of a published set: ``CM_DATASET_PREPROCESSED_*``, size, type, data type, layout, ..."""
    env = config_env(config)
    listed = VAL_MAP if config.dataset_type == "validation" else config.calibration_filename
    env.update(
        {
            "CM_DATASET_PREPROCESSED_PATH": sink.location(),
            "CM_DATASET_PREPROCESSED_IMAGES_LIST": sink.location(FILES_LIST),
            "CM_DATASET_PREPROCESSED_IMAGENAMES_LIST": sink.location(NAMES_LIST),
            "CM_DATASET_IMAGES_LIST": sink.location(listed),
            "CM_DATASET_SIZE": str(count),
        }
    )
    return env


def _publish_result(sink: Sink, manifest: Mapping[str, Any], *, hit: bool) -> PublishResult:
    return PublishResult(
        uri=sink.location(),
        asset_uri=asset_uri(sink),
        manifest_uri=sink.location(MANIFEST_NAME),
        cache_hit=hit,
        cache_key=manifest["cache_key"],
        files=len(manifest["files"]),
        bytes=sum(f["size"] for f in manifest["files"]),
        manifest=dict(manifest),
        previous_upstream=manifest.get("upstream") if hit else None,
    )


@dataclass(frozen=True)
class CacheCheck:
    """Result of :func:`check_cache`: the key, and on a hit the published facts and env."""

    cache_key: str
    hit: bool
    publish: PublishResult | None = None
    env: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        publish = self.publish.as_dict() if self.publish else None
        return {"cache_key": self.cache_key, "hit": self.hit, "publish": publish, "env": self.env}


def check_cache(
    *,
    config: PreprocessConfig,
    sink: Sink,
    items: Sequence[ItemLike],
    val_map: Path | None = None,
    calibration_list: Path | None = None,
) -> CacheCheck:
    """A hit when the sink's manifest has this cache key; on a miss an old manifest is deleted first
    (readers must not trust it while chunks overwrite files)."""
    key = preprocess_cache_key(config=config, items=items, val_map=val_map, calibration_list=calibration_list)
    existing = read_manifest(sink)
    if existing and existing["cache_key"] == key:
        damaged = _damaged_local_files(sink, existing["files"])
        if not damaged:
            count = int(existing.get("outputs", {}).get("count", 0))
            env = preprocessed_env(config=config, sink=sink, count=count)
            return CacheCheck(key, True, _publish_result(sink, existing, hit=True), env)
        # Regression: a damaged output under an intact manifest was trusted on re-runs.
        log.warning(
            "%s has this set's manifest, but %d file(s) are missing or damaged (%s); rebuilding",
            sink.uri,
            len(damaged),
            ", ".join(damaged[:5]) + (" …" if len(damaged) > 5 else ""),
        )
    # the old manifest first, then what an earlier set or a killed run left that this set will not overwrite
    begin_output(sink, files=_possible_outputs(config, items))
    return CacheCheck(key, False)


def _possible_outputs(config: PreprocessConfig, items: Sequence[ItemLike]) -> list[str]:
    """Every key :func:`finalize_preprocessed` may publish for ``items`` (bad images drop some later)."""
    lists = [FILES_LIST, NAMES_LIST, VAL_MAP, BAD_IMAGES, GENERIC_FOF]
    if config.dataset_type == "calibration":
        lists.append(config.calibration_filename)
    return [config.output_name(SourceImage.of(i).name) for i in items] + lists


def _damaged_local_files(sink: Sink, files: Sequence[Mapping[str, Any]]) -> list[str]:
    """Files of a local sink's manifest whose size or CRC-32C no longer match (object stores write whole objects)."""
    from imagenet_ops.core.digests import file_crc32c

    if not isinstance(sink, LocalSink):
        return []
    damaged = []
    for f in files:
        path = Path(sink.location(f["path"]))
        if not path.is_file() or path.stat().st_size != f["size"]:
            damaged.append(f["path"])
        elif str(f.get("checksum", "")).startswith("crc32c:") and f"crc32c:{file_crc32c(path)}" != f["checksum"]:
            damaged.append(f["path"])
    return damaged


def _entry(data: bytes, path: str) -> dict[str, Any]:
    import google_crc32c

    return {"path": path, "size": len(data), "checksum": f"crc32c:{google_crc32c.value(data):08x}"}


def finalize_preprocessed(
    *,
    config: PreprocessConfig,
    sink: Sink,
    items: Sequence[ItemLike],
    chunk_results: Sequence[ChunkResult | Mapping[str, Any]],
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    source: str | None = None,
) -> tuple[PublishResult, dict[str, str]]:
    """Write the list files, ``val_map.txt`` / the calibration list, ``bad_images.txt`` and ``manifest.json`` last.

    Args:
        config: the resolved config.
        sink: the sink the chunks wrote to.
        items: every selected image (from :func:`select_images`).
        chunk_results: one result per chunk (objects or their ``as_dict()``).
        val_map: copied into the output as ``val_map.txt`` (validation).
        calibration_list: copied into the output under the calibration list's name (calibration).
        source: recorded in the manifest's provenance.

    Returns:
        The publish facts and the CM env dict.

    Raises:
        StorageError: a listed image has neither an output nor a bad-image entry (a chunk is missing).
    """
    refs = [SourceImage.of(i) for i in items]
    results = [ChunkResult.of(r) for r in chunk_results]
    outputs = {f["path"]: f for r in results for f in r.files}
    reasons = {name: r.bad_reasons.get(name, "bad image") for r in results for name in r.bad}
    unaccounted = [i.name for i in refs if config.output_name(i.name) not in outputs and i.name not in reasons]
    if unaccounted:
        raise StorageError(
            f"sink {sink.uri}: {len(unaccounted)} selected image(s) have no output and are not listed as bad, e.g. "
            f"{', '.join(unaccounted[:5])}: did every chunk run?"
        )
    keys = sorted({config.output_name(i.name) for i in refs if i.name not in reasons})
    extra: dict[str, bytes] = {
        FILES_LIST: "\n".join(sink.location(k) for k in keys).encode(),
        NAMES_LIST: "\n".join(keys).encode(),
    }
    if not config.is_reference:
        extra[GENERIC_FOF] = "".join(f"{config.output_name(i.name)}\n" for i in refs if i.name not in reasons).encode()
    if config.dataset_type == "validation" and val_map is not None:
        # Skipped images leave val_map.txt too: a reader must not look for an output that is not there.
        extra[VAL_MAP] = b"".join(
            line
            for line in Path(val_map).read_bytes().splitlines(keepends=True)
            if not line.split() or line.split()[0].decode("utf-8", "replace") not in reasons
        )
    if config.dataset_type == "calibration" and calibration_list is not None:
        extra[config.calibration_filename] = Path(calibration_list).read_bytes()
    if reasons:
        extra[BAD_IMAGES] = "".join(f"{name}\t{why}\n" for name, why in sorted(reasons.items())).encode()
    entries = [outputs[k] for k in keys]
    for name, data in extra.items():
        sink.put_bytes(data, name)
        entries.append(_entry(data, name))
    upstream = preprocess_upstream(items=refs, val_map=val_map, calibration_list=calibration_list)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "artifact": ARTIFACT,
        "library_version": VERSION,
        "cache_key": cache_key_for(artifact=ARTIFACT, params=config.cache_params(), upstream=upstream),
        "params": redact_values(config.cache_params()),
        "upstream": redact_values(upstream),
        "provenance": redact_values({"source": source, "tags": config.tags}),
        "outputs": {"count": len(keys), "bad": sorted(reasons)},
        "files": sorted(entries, key=lambda e: e["path"]),
    }
    settle_output(sink, files=[e["path"] for e in entries])  # announced lists this set did not write go
    sink.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n", MANIFEST_NAME)
    finish_output(sink)
    publish = _publish_result(sink, manifest, hit=False)
    log.info(
        "published %d preprocessed images (%s) and %d list files to %s; %d bad",
        len(keys),
        human_bytes(publish.bytes),
        len(extra),
        sink.uri,
        len(reasons),
    )
    return publish, preprocessed_env(config=config, sink=sink, count=len(keys))


# -- everything in one process (the CLI) -----------------------------------------------------------


@dataclass(frozen=True)
class PreprocessedResult:
    """Result of :func:`build_preprocessed`: the publish facts, the CM env dict and the chunk results."""

    publish: PublishResult
    env: dict[str, str]
    chunks: list[ChunkResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"publish": self.publish.as_dict(), "env": self.env, "chunks": [c.as_dict() for c in self.chunks]}


def build_preprocessed(
    *,
    config: PreprocessConfig,
    source: str,
    output: str,
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    workers: int | None = None,
    chunks: int = 1,
    work_dir: Path | None = None,
    store: Any = None,
    sink: Sink | None = None,
    progress_every: float = 5.0,
) -> PreprocessedResult:
    """Select, preprocess and publish in one call; a re-run with the same inputs is a cache hit.

    Args:
        config: the resolved config.
        source: folder, ``.tar``, ``s3://``/``gs://`` prefix or tar, or ``download`` (the config's
            validation tar, fetched into ``work_dir``).
        output: local folder or ``s3://``/``gs://`` prefix (ignored when ``sink`` is given).
        val_map: the aux ``val.txt`` (validation).
        calibration_list: the calibration list; downloaded into ``work_dir`` when omitted.
        workers: processes per chunk (default ``os.cpu_count()``).
        chunks: chunks run one after the other (the DAG maps them to tasks instead).
        work_dir: scratch folder for downloads (default: a temporary folder, removed after).
        store: an ``ObjectStore`` for object-storage sources.
        sink: a ready sink (overrides ``output``).
        progress_every: seconds between progress lines.
    """
    started = time.monotonic()
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="imagenet_ops-preprocess-")) if temporary else Path(work_dir)
    try:
        if config.dataset_type == "calibration" and calibration_list is None:
            calibration_list = Path(fetch_calibration_list(config=config, dest_dir=work / "calibration").path)
        if str(source) == "download":
            source = fetch_images(config=config, dest_dir=work / "images").path
        sink = sink or open_sink(output)
        items = select_images(config=config, source=source, val_map=val_map, calibration_list=calibration_list, store=store)
        cached = check_cache(config=config, sink=sink, items=items, val_map=val_map, calibration_list=calibration_list)
        if cached.hit:
            assert cached.publish is not None and cached.env is not None
            log.info("preprocessed %s: cache hit at %s (key %s), nothing to do", config.tags, sink.uri, cached.cache_key[:12])
            return PreprocessedResult(publish=cached.publish, env=cached.env)
        results = [
            preprocess_chunk(
                config=config,
                source=source,
                items=chunk,
                sink=sink,
                workers=workers,
                store=store,
                progress_every=progress_every,
            )
            for chunk in plan_chunks(items, chunks)
        ]
        publish, env = finalize_preprocessed(
            config=config,
            sink=sink,
            items=items,
            chunk_results=results,
            val_map=val_map,
            calibration_list=calibration_list,
            source=source,
        )
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    count = sum(r.count for r in results)
    log.info(
        "preprocessed %s: %d images to %s in %s (%.1f images/s), %d bad",
        config.tags,
        count,
        sink.uri,
        human_seconds(seconds),
        count / seconds if seconds > 0 else 0.0,
        sum(len(r.bad) for r in results),
    )
    return PreprocessedResult(publish=publish, env=env, chunks=results)
