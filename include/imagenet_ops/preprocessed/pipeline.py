"""Preprocessed ImageNet sets (CM recipe get-preprocessed-dataset-imagenet): select, preprocess in chunks, publish.

Flow (one process in :func:`build_preprocessed`; the DAG runs the same steps through :mod:`.steps`):

1. :func:`~imagenet_ops.preprocessed.sources.fetch_inputs`: download what the set lacks (the
   validation tar, the calibration list, an object-storage aux ``val.txt``);
2. :func:`select_set`: :func:`select_images` (the first N names of ``val_map.txt`` or of a
   calibration list, located in the source: folder, tar read in place, ``s3://``/``gs://`` prefix or
   tar) then :func:`check_cache` (a manifest with the same cache key means nothing to do; otherwise
   an old manifest is removed before any output changes);
3. :func:`~imagenet_ops.preprocessed.chunks.plan_chunks` then
   :func:`~imagenet_ops.preprocessed.chunks.preprocess_chunk` per chunk (mapped tasks): each reads
   its own images and writes its own outputs to the sink (a retried chunk rewrites exactly its files);
4. :func:`finalize_preprocessed`: list files, ``val_map.txt``, ``bad_images.txt``, and ``manifest.json`` last.

Outputs, as CM: reference ``<name>.npy`` (``ILSVRC2012_val_00000001.JPEG.npy``), generic
``<stem>.<ext>``; ``preprocessed_files.txt`` (full paths/URIs) and ``preprocessed_filenames.txt``
(names), sorted, joined by ``\\n`` without a trailing newline; ``val_map.txt`` is copied into the
output (never into the source). Differences from CM (see also the other modules of this package):
existing outputs are overwritten, not skipped (a retry must not keep a half-written file); a missing
image is an error unless ``skip_bad_images`` (the reference skipped it silently); truncated and
corrupt images are errors too, or listed in ``bad_images.txt``.

This module imports neither numpy nor OpenCV at the top (DAG files import it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import StorageError, ValidationError
from imagenet_ops.core.manifest import PublishResult, cache_key_for, cached_result, read_manifest, write_manifest
from imagenet_ops.core.output_location import begin_output
from imagenet_ops.core.progress import human_bytes, human_seconds
from imagenet_ops.core.report import build_report, put_report
from imagenet_ops.core.sinks import LocalSink, Sink, open_sink
from imagenet_ops.imagenet.images import ImageRef
from imagenet_ops.preprocessed.chunks import ChunkResult, plan_chunks, preprocess_chunk
from imagenet_ops.preprocessed.config import PreprocessConfig, config_env
from imagenet_ops.preprocessed.report import REPORT_FILES, preprocessed_report
from imagenet_ops.preprocessed.sources import ImageLike, fetch_inputs, image_ref, is_missing, locate_images, requested_names
from imagenet_ops.preprocessed.variations import ARTIFACT

log = logging.getLogger(__name__)

FILES_LIST = "preprocessed_files.txt"
NAMES_LIST = "preprocessed_filenames.txt"
VAL_MAP = "val_map.txt"
BAD_IMAGES = "bad_images.txt"
GENERIC_FOF = "files.txt"  # CM's generic preprocessor writes it (CM_DATASET_SUBSET_FOF)


# -- selection -------------------------------------------------------------------------------------


def select_images(
    *,
    config: PreprocessConfig,
    source: str,
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    store: Any = None,
) -> list[ImageRef]:
    """The images of the set, in list order: first ``config.size`` lines of val_map / the calibration list.

    Args:
        config: the resolved config (dataset type and size).
        source: a folder, a ``.tar``, or an ``s3://``/``gs://`` prefix or tar.
        val_map: the aux ``val.txt`` (validation).
        calibration_list: an MLPerf calibration list, option 1 or 2 format (calibration).
        store: an ``ObjectStore`` for object-storage sources (default clients otherwise).

    Returns:
        One :class:`ImageRef` per listed image; with ``skip_bad_images`` an image the source does
        not hold is kept with an empty container (reported as bad later).

    Raises:
        ConfigError: the needed list is missing, or the source is a URL.
        ValidationError: the list is malformed or too short, or (without ``skip_bad_images``) the
            source lacks listed images (the message names them).
    """
    names = requested_names(config=config, val_map=val_map, calibration_list=calibration_list)
    items = locate_images(source=source, names=names, store=store)
    missing = [i.name for i in items if is_missing(i)]
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


def select_set(
    *,
    config: PreprocessConfig,
    source: str,
    sink: Sink,
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    store: Any = None,
) -> tuple[list[ImageRef], CacheCheck]:
    """:func:`select_images` then :func:`check_cache`: the set's images, and whether ``sink`` already holds it."""
    items = select_images(config=config, source=source, val_map=val_map, calibration_list=calibration_list, store=store)
    return items, check_cache(config=config, sink=sink, items=items, val_map=val_map, calibration_list=calibration_list)


# -- cache, finalize, env --------------------------------------------------------------------------


def _file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def preprocess_upstream(
    *, items: Sequence[ImageLike], val_map: Path | None = None, calibration_list: Path | None = None
) -> dict[str, Any]:
    """What the inputs are (part of the cache key): the located images and the list files' digests."""
    rows = json.dumps([image_ref(i).as_list() for i in items], separators=(",", ":"))
    return {
        "images_sha256": hashlib.sha256(rows.encode()).hexdigest(),
        "images": len(items),
        "val_map_sha256": _file_sha256(val_map),
        "calibration_list_sha256": _file_sha256(calibration_list),
    }


def preprocess_cache_key(
    *, config: PreprocessConfig, items: Sequence[ImageLike], val_map: Path | None = None, calibration_list: Path | None = None
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


def cached_set(*, config: PreprocessConfig, sink: Sink, manifest: Mapping[str, Any]) -> tuple[PublishResult, dict[str, str]]:
    """The publish facts and CM env of a set ``sink`` already holds (its ``manifest``): a cache hit."""
    count = int(manifest.get("outputs", {}).get("count", 0))
    return cached_result(sink=sink, manifest=manifest), preprocessed_env(config=config, sink=sink, count=count)


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
    items: Sequence[ImageLike],
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
            publish, env = cached_set(config=config, sink=sink, manifest=existing)
            return CacheCheck(key, True, publish, env)
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


def _possible_outputs(config: PreprocessConfig, items: Sequence[ImageLike]) -> list[str]:
    """Every key :func:`finalize_preprocessed` may publish for ``items`` (bad images drop some later)."""
    lists = [FILES_LIST, NAMES_LIST, VAL_MAP, BAD_IMAGES, GENERIC_FOF]
    if config.dataset_type == "calibration":
        lists.append(config.calibration_filename)
    return [config.output_name(image_ref(i).name) for i in items] + lists + list(REPORT_FILES)


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
    items: Sequence[ImageLike],
    chunk_results: Sequence[ChunkResult | Mapping[str, Any]],
    val_map: Path | None = None,
    calibration_list: Path | None = None,
    source: str | None = None,
    store: Any = None,
) -> tuple[PublishResult, dict[str, str]]:
    """Write the list files, ``val_map.txt`` / the calibration list, ``bad_images.txt``, ``report/`` and ``manifest.json`` last.

    Args:
        config: the resolved config.
        sink: the sink the chunks wrote to.
        items: every selected image (from :func:`select_images`).
        chunk_results: one result per chunk (objects or their ``as_dict()``).
        val_map: copied into the output as ``val_map.txt`` (validation).
        calibration_list: copied into the output under the calibration list's name (calibration).
        source: recorded in the manifest's provenance: the images as the user gave them, or the URL they were downloaded from.
        store: reads object-storage images, for the report's samples.

    Returns:
        The publish facts and the CM env dict.

    Raises:
        StorageError: a listed image has neither an output nor a bad-image entry (a chunk is missing).
    """
    refs = [image_ref(i) for i in items]
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
    report = build_report(
        ARTIFACT,
        lambda: preprocessed_report(
            config=config,
            sink=sink,
            refs=refs,
            published=[i.name for i in refs if i.name not in reasons],
            reasons=reasons,
            val_map=val_map if config.dataset_type == "validation" else None,
            total_bytes=sum(e["size"] for e in entries),
            store=store,
        ),
    )
    if report is not None:
        entries += put_report(report, sink)
    # write_manifest settles the announced outputs this set did not write, then writes manifest.json last
    publish = write_manifest(
        sink=sink,
        artifact=ARTIFACT,
        params=config.cache_params(),
        files=entries,
        upstream=preprocess_upstream(items=refs, val_map=val_map, calibration_list=calibration_list),
        provenance={"source": source, "tags": config.tags},
        outputs={"count": len(keys), "bad": sorted(reasons)},
        report=report,
        indent=1,
    )
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
    aux_path: str | None = None,
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
        aux_path: the aux artifact (folder, ``s3://`` or ``gs://``) whose ``val.txt`` labels a validation
            set given no ``val_map``.
        calibration_list: the calibration list; downloaded into ``work_dir`` when omitted.
        workers: processes per chunk (default: the CPUs this process may use).
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
        inputs = fetch_inputs(
            config=config,
            images=source,
            work_dir=work,
            val_map=val_map,
            aux_path=aux_path,
            calibration_list=calibration_list,
            store=store,
        )
        source, val_map, calibration_list = inputs.images, inputs.val_map, inputs.calibration_list
        sink = sink or open_sink(output)
        items, cached = select_set(
            config=config, source=source, sink=sink, val_map=val_map, calibration_list=calibration_list, store=store
        )
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
            source=inputs.source,  # the URL of a downloaded tar, not its temporary path
            store=store,
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
