"""Manifests: the cache key of an artifact, ``manifest.json`` written last, and the publish result.

Readers trust a sink only through its ``manifest.json``. Publishing removes an old manifest
first, uploads the data, and writes the new manifest last, so a reader never sees a manifest
that describes files still being written. A manifest whose ``cache_key`` equals the one being
published means the work is already done (cache hit, nothing uploaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops import VERSION
from imagenet_ops.core.digests import file_digests
from imagenet_ops.core.errors import DiskFullError
from imagenet_ops.core.lineage import artifact_uri
from imagenet_ops.core.progress import Progress, human_bytes
from imagenet_ops.core.redact import redact_values
from imagenet_ops.core.report import Report
from imagenet_ops.core.sinks import Sink

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1


def asset_uri(sink: Sink) -> str:
    """A URI naming the published artifact: ``file:///abs/path``, ``s3://…`` or ``gs://…`` (its Asset's URI)."""
    return artifact_uri(sink.location())


def cache_key_for(*, artifact: str, params: Mapping[str, Any], upstream: Mapping[str, Any] | None = None) -> str:
    """Stable key of what a publish would contain: artifact, library version, params, upstream sums."""
    # URL credentials never enter the key: a rotating presigned URL is the same artifact.
    payload = {
        "artifact": artifact,
        "library_version": VERSION,
        "params": redact_values(params),
        "upstream": redact_values(upstream or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(sink: Sink) -> dict[str, Any] | None:
    """Return the sink's manifest if it exists and is complete, else ``None``."""
    raw = sink.get_bytes(MANIFEST_NAME)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("sink %s: ignoring unreadable %s", sink.uri, MANIFEST_NAME)
        return None
    if not isinstance(manifest, dict) or "cache_key" not in manifest or "files" not in manifest:
        return None
    return manifest


@dataclass(frozen=True)
class PublishResult:
    """Where an artifact went and whether anything was uploaded."""

    uri: str
    asset_uri: str
    manifest_uri: str
    cache_hit: bool
    cache_key: str
    files: int
    bytes: int
    manifest: dict[str, Any] = field(repr=False)
    previous_upstream: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def publish_dir(
    *,
    local_dir: Path,
    sink: Sink,
    artifact: str,
    params: Mapping[str, Any],
    upstream: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    report: Report | None = None,
    workers: int = 4,
    progress_every: float = 5.0,
) -> PublishResult:
    """Publish every file under ``local_dir`` to ``sink`` with a ``manifest.json`` written last.

    Args:
        local_dir: folder whose files (recursively) make up the artifact.
        sink: destination, from :func:`open_sink`.
        artifact: artifact name recorded in the manifest (``imagenet_aux`` …).
        params: the resolved configuration; part of the cache key.
        upstream: facts about the input's bytes (sha256, size …); part of the cache key.
        provenance: where the input came from (url, etag …); recorded, not part of the key,
            so a mirror serving the same bytes is the same artifact.
        report: the artifact's data-quality report: its files are published and listed like the
            rest (not part of the key), and its summary is recorded as ``"report"``.
        workers: parallel uploads.
        progress_every: seconds between progress lines.

    Returns:
        The publish result; ``cache_hit`` is true when the sink already held this exact artifact.

    Raises:
        StorageError: the sink cannot be read or written after retries.
    """
    local_dir = Path(local_dir)
    key = cache_key_for(artifact=artifact, params=params, upstream=upstream)
    existing = read_manifest(sink)
    if existing and existing["cache_key"] == key:
        return cached_result(sink=sink, manifest=existing)

    paths = sorted(p for p in local_dir.rglob("*") if p.is_file())
    entries = []
    for p in paths:
        d = file_digests(p)
        entries.append({"path": p.relative_to(local_dir).as_posix(), "size": d.size, "sha256": d.sha256})
    extra = report.files() if report is not None else {}
    made = [{"path": k, "size": len(v), "sha256": hashlib.sha256(v).hexdigest()} for k, v in sorted(extra.items())]
    total = sum(e["size"] for e in entries)

    from imagenet_ops.core.output_location import begin_output  # it builds on this module

    begin_output(sink, files=[e["path"] for e in entries + made])  # the old manifest first, then an earlier artifact's files
    progress = Progress(f"publish to {sink.uri}", total=total, unit="bytes", logger=log, every=progress_every)

    def upload(entry: dict[str, Any]) -> None:
        sink.put_file(local_dir / entry["path"], entry["path"])
        progress.update(entry["size"])

    _run_until_failure(upload, entries, workers=workers)
    for key, data in sorted(extra.items()):
        sink.put_bytes(data, key)

    return write_manifest(
        sink=sink,
        artifact=artifact,
        params=params,
        upstream=upstream,
        provenance=provenance,
        files=entries + made,
        previous=existing,
        report=report,
    )


def _run_until_failure(fn: Callable[[Any], None], items: Iterable[Any], *, workers: int) -> None:
    """``fn`` on every item, ``workers`` at a time; after the first failure, nothing more starts.

    Of several failures, a full disk is raised as the one that measured the least free space: the
    other writers' cleanups free space, and the least figure was taken before any of them ran.
    """
    failed = threading.Event()

    def run(item: Any) -> None:
        if failed.is_set():
            return
        try:
            fn(item)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run, item) for item in items]
    failures = [e for e in (f.exception() for f in futures) if e is not None]
    if failures:
        full = [e for e in failures if isinstance(e, DiskFullError) and e.free is not None]
        raise min(full, key=lambda e: e.free) if full else failures[0]


def write_manifest(
    *,
    sink: Sink,
    artifact: str,
    params: Mapping[str, Any],
    files: list[dict[str, Any]],
    upstream: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    previous: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    report: Report | None = None,
    indent: int = 2,
) -> PublishResult:
    """Write ``manifest.json`` for files already in ``sink`` (the last step of every publish).

    Used directly when the data files were written to the sink by several tasks and their sizes
    and sha256 are already known (training shards), so nothing is read twice.

    Args:
        files: ``{"path", "size", "sha256", ...}`` per file, paths relative to the sink.
        previous: the manifest this one replaces, if any (its upstream is reported back).
        outputs: a summary of what was produced (counts, bad inputs), recorded as ``"outputs"``.
        report: the data-quality report (its files already in ``files``); its summary (path,
            pictures, failed checks) is recorded as ``"report"``.
        indent: JSON indent; a preprocessed set lists 50,000 files and keeps its manifest at 1.
    """
    from imagenet_ops.core.output_location import finish_output, settle_output  # it builds on this module

    key = cache_key_for(artifact=artifact, params=params, upstream=upstream)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "artifact": artifact,
        "library_version": VERSION,
        "cache_key": key,
        "params": redact_values(dict(params)),
        "upstream": redact_values(dict(upstream or {})),
        "provenance": redact_values(dict(provenance or {})),
        **({"outputs": dict(outputs)} if outputs is not None else {}),
        **({"report": report.summary()} if report is not None else {}),
        "files": sorted(files, key=lambda f: f["path"]),
    }
    total = sum(f["size"] for f in files)
    settle_output(sink, files=[f["path"] for f in files])
    sink.put_bytes(json.dumps(manifest, indent=indent, sort_keys=True).encode() + b"\n", MANIFEST_NAME)
    finish_output(sink)
    log.info("published %d files (%s) to %s", len(files), human_bytes(total), sink.uri)
    return PublishResult(
        uri=sink.location(),
        asset_uri=asset_uri(sink),
        manifest_uri=sink.location(MANIFEST_NAME),
        cache_hit=False,
        cache_key=key,
        files=len(files),
        bytes=total,
        manifest=manifest,
        previous_upstream=previous.get("upstream") if previous else None,
    )


def cached_result(*, sink: Sink, manifest: Mapping[str, Any]) -> PublishResult:
    """The :class:`PublishResult` of a cache hit on ``manifest`` (nothing uploaded)."""
    return PublishResult(
        uri=sink.location(),
        asset_uri=asset_uri(sink),
        manifest_uri=sink.location(MANIFEST_NAME),
        cache_hit=True,
        cache_key=manifest["cache_key"],
        files=len(manifest["files"]),
        bytes=sum(f["size"] for f in manifest["files"]),
        manifest=dict(manifest),
        previous_upstream=manifest.get("upstream"),
    )
