"""Publish artifacts to a sink: a local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.

Readers trust a sink only through its ``manifest.json``. Publishing removes an old manifest
first, uploads the data, and writes the new manifest last, so a reader never sees a manifest
that describes files still being written. A manifest whose ``cache_key`` equals the one being
published means the work is already done (cache hit, nothing uploaded).

Clients are passed in (the Airflow operators build them from connections); without one, the
default boto3 / google-cloud-storage client of the environment is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from imagenet_ops import VERSION
from imagenet_ops.core.digests import file_digests
from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.gcs_requests import CONNECT_TIMEOUT, READ_TIMEOUT, call_options, endpoint_of, transient_errors
from imagenet_ops.core.progress import Progress, human_bytes
from imagenet_ops.core.redact import redact_values
from imagenet_ops.core.uris import split_uri

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
STATE_DIR = ".imagenet_ops"
"""The output's own state (lease, intent, plans, done-records), out of the way of readers that glob the folder."""
T = TypeVar("T")


class Sink(Protocol):
    """The few operations publishing needs; keys are ``/``-separated paths under the sink."""

    uri: str

    def put_file(self, local: Path, key: str) -> None: ...

    def put_bytes(self, data: bytes, key: str) -> None: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...

    def location(self, key: str = "") -> str: ...


@dataclass(frozen=True)
class RetrySettings:
    """Attempts and exponential backoff for transient sink errors, and the GCS request timeouts.

    ``gcs_timeout`` is ``(connect, read)`` seconds for each GCS request; with the defaults an
    unreachable GCS endpoint fails within the bounds listed in :mod:`imagenet_ops.core.gcs_requests`.
    (S3 clients carry their own timeouts in botocore's ``Config``.)
    """

    attempts: int = 4
    backoff: float = 1.0
    gcs_timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)


def _retrying(
    sink_uri: str, what: str, fn: Callable[[], T], retry: RetrySettings, transient: tuple[type[BaseException], ...]
) -> T:
    for attempt in range(retry.attempts):
        try:
            return fn()
        except transient as exc:
            if attempt + 1 == retry.attempts:
                raise StorageError(
                    f"sink {sink_uri}: {what} failed after {retry.attempts} attempts "
                    f"(is the endpoint reachable and are the credentials right?): {type(exc).__name__}: {exc}"
                ) from exc
            pause = retry.backoff * 2**attempt
            log.warning(
                "sink %s: %s failed (%s); retrying in %.1fs (attempt %d of %d)",
                sink_uri,
                what,
                exc,
                pause,
                attempt + 2,
                retry.attempts,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")


class LocalSink:
    """A folder on a local or shared filesystem; each file is written to a temp name and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def _atomic_write(self, key: str, write: Callable[[Path], None]) -> None:
        target = self._path(key)
        try:
            with disk_full_guard(target.parent):  # ENOSPC: a DiskFullError naming the path and the space left
                target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                with disk_full_guard(target):  # inside the cleanup, so the space left is measured before it
                    write(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"sink {self.uri}: cannot write {target}: {exc}") from exc

    def put_file(self, local: Path, key: str) -> None:
        def write(tmp: Path) -> None:
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)

        self._atomic_write(key, write)

    def put_bytes(self, data: bytes, key: str) -> None:
        self._atomic_write(key, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"sink {self.uri}: cannot read {self._path(key)}: {exc}") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def location(self, key: str = "") -> str:
        return str(self._path(key))


def _join(prefix: str, key: str) -> str:
    return "/".join(p for p in (prefix.strip("/"), key) if p)


class S3Sink:
    """An S3 (or S3-protocol) bucket prefix, written through a boto3 S3 client."""

    def __init__(self, *, client: Any, bucket: str, prefix: str = "", retry: RetrySettings = RetrySettings()) -> None:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

        self.client, self.bucket, self.prefix, self.retry = client, bucket, prefix.strip("/"), retry
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._transient = (BotoConnectionError, EndpointConnectionError, ReadTimeoutError)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError

        try:
            return _retrying(self.uri, what, fn, self.retry, self._transient)
        except (ClientError, S3UploadFailedError) as exc:  # upload_file wraps ClientError in S3UploadFailedError
            raise StorageError(f"sink {self.uri}: {what} failed: {exc}") from exc

    def put_file(self, local: Path, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"upload {k}", lambda: self.client.upload_file(str(local), self.bucket, k))

    def put_bytes(self, data: bytes, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"put {k}", lambda: self.client.put_object(Bucket=self.bucket, Key=k, Body=data))

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        k = _join(self.prefix, key)

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise

        return self._call(f"get {k}", get)

    def delete(self, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"delete {k}", lambda: self.client.delete_object(Bucket=self.bucket, Key=k))

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{_join(self.prefix, key)}".rstrip("/")


class GCSSink:
    """A Google Cloud Storage bucket prefix, written through a ``google.cloud.storage.Client``."""

    def __init__(self, *, client: Any, bucket: str, prefix: str = "", retry: RetrySettings = RetrySettings()) -> None:
        from google.api_core import exceptions as gexc

        self.client, self.prefix, self.retry = client, prefix.strip("/"), retry
        self.bucket_name = bucket
        self.bucket = client.bucket(bucket)
        self.uri = f"gs://{bucket}/{self.prefix}".rstrip("/")
        self._transient = transient_errors()
        self._gexc = gexc
        # Every request: bounded timeouts and no hidden library retries (see imagenet_ops.core.gcs_requests).
        self._opts = call_options(retry.gcs_timeout)
        self._endpoint = endpoint_of(client)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:  # a connection failure names the endpoint; an answer from it names the object
            return _retrying(self.uri, f"{what} via GCS endpoint {self._endpoint}", fn, self.retry, self._transient)
        except self._gexc.GoogleAPICallError as exc:
            raise StorageError(f"sink {self.uri}: {what} failed: {exc}") from exc

    def put_file(self, local: Path, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"upload {k}", lambda: self.bucket.blob(k).upload_from_filename(str(local), **self._opts))

    def put_bytes(self, data: bytes, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"put {k}", lambda: self.bucket.blob(k).upload_from_string(data, **self._opts))

    def get_bytes(self, key: str) -> bytes | None:
        k = _join(self.prefix, key)

        def get() -> bytes | None:
            try:
                return self.bucket.blob(k).download_as_bytes(**self._opts)
            except self._gexc.NotFound:
                return None

        return self._call(f"get {k}", get)

    def delete(self, key: str) -> None:
        k = _join(self.prefix, key)

        def delete() -> None:
            try:
                self.bucket.blob(k).delete(**self._opts)
            except self._gexc.NotFound:
                pass

        self._call(f"delete {k}", delete)

    def location(self, key: str = "") -> str:
        return f"gs://{self.bucket_name}/{_join(self.prefix, key)}".rstrip("/")


def default_gcs_client(*, project: str | None = None, endpoint: str | None = None, credentials: Any = None) -> Any:
    """A storage client; anonymous against an emulator (``endpoint`` or ``STORAGE_EMULATOR_HOST``).

    It makes no request of its own; the sinks and the object store bound and log each of theirs
    (:mod:`imagenet_ops.core.gcs_requests`).
    """
    from google.cloud import storage

    endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint and credentials is None:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
        project = project or "emulator"
    options = {"api_endpoint": endpoint} if endpoint else None
    client = storage.Client(project=project, credentials=credentials, client_options=options)
    # google-cloud-storage 3.x also fetches each bucket's metadata, for tracing only, in a background
    # thread with its own silent retries; without it every request is one the callers bound and log.
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


def open_sink(uri: str, *, s3_client: Any = None, gcs_client: Any = None, retry: RetrySettings = RetrySettings()) -> Sink:
    """Return the sink for ``uri``, using the given clients or the environment's defaults."""
    scheme, bucket, prefix = split_uri(uri)
    if scheme == "s3":
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3Sink(client=s3_client, bucket=bucket, prefix=prefix, retry=retry)
    if scheme == "gs":
        return GCSSink(client=gcs_client or default_gcs_client(), bucket=bucket, prefix=prefix, retry=retry)
    return LocalSink(Path(prefix))


def asset_uri(sink: Sink) -> str:
    """A URI naming the published artifact: ``file:///abs/path``, ``s3://…`` or ``gs://…``."""
    loc = sink.location()
    return loc if "://" in loc else Path(loc).as_uri()


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
    total = sum(e["size"] for e in entries)

    from imagenet_ops.core.output_location import begin_output  # it builds on this module

    begin_output(sink, files=[e["path"] for e in entries])  # the old manifest first, then an earlier artifact's files
    progress = Progress(f"publish to {sink.uri}", total=total, unit="bytes", logger=log, every=progress_every)

    def upload(entry: dict[str, Any]) -> None:
        sink.put_file(local_dir / entry["path"], entry["path"])
        progress.update(entry["size"])

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(upload, entries))

    return write_manifest(
        sink=sink,
        artifact=artifact,
        params=params,
        upstream=upstream,
        provenance=provenance,
        files=entries,
        previous=existing,
    )


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
    indent: int = 2,
) -> PublishResult:
    """Write ``manifest.json`` for files already in ``sink`` (the last step of every publish).

    Used directly when the data files were written to the sink by several tasks and their sizes
    and sha256 are already known (training shards), so nothing is read twice.

    Args:
        files: ``{"path", "size", "sha256", ...}`` per file, paths relative to the sink.
        previous: the manifest this one replaces, if any (its upstream is reported back).
        outputs: a summary of what was produced (counts, bad inputs), recorded as ``"outputs"``.
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
