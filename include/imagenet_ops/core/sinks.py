"""Where artifacts are written: a local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.

A sink offers the few operations publishing needs (put a file or bytes, get, delete, name a
key). Local files are written to a temporary sibling and renamed; objects are written whole.
Clients are passed in (the Airflow operators build them from connections); without one, the
default boto3 / google-cloud-storage client of the environment is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from imagenet_ops.core.clients import GCSCalls, RetrySettings, S3Calls, default_gcs_client
from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.uris import split_uri

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
        self.client, self.bucket, self.prefix, self.retry = client, bucket, prefix.strip("/"), retry
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._calls = S3Calls(client, retry)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self._calls.call(f"sink {self.uri}", what, fn)

    def put_file(self, local: Path, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"upload {k}", lambda: self.client.upload_file(str(local), self.bucket, k))

    def put_bytes(self, data: bytes, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"put {k}", lambda: self.client.put_object(Bucket=self.bucket, Key=k, Body=data))

    def get_bytes(self, key: str) -> bytes | None:
        k = _join(self.prefix, key)

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
            except self._calls.client_error as exc:
                if self._calls.code(exc) in ("NoSuchKey", "404"):
                    return None
                raise

        return self._call(f"get {k}", get)

    def delete(self, key: str) -> None:
        k = _join(self.prefix, key)
        self._call(f"delete {k}", lambda: self.client.delete_object(Bucket=self.bucket, Key=k))

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{_join(self.prefix, key)}".rstrip("/")

    def abort_incomplete_uploads(self, keys: set[str]) -> list[str]:
        """Abort the unfinished multipart uploads of ``keys`` (under this sink) that a killed writer left.

        They are no objects, so no reader sees them, but S3 keeps (and bills) their parts until
        they are aborted. Only uploads of ``keys`` are touched: another writer's, under the same
        bucket, are not ours to judge.
        """
        wanted = {_join(self.prefix, k) for k in keys}
        aborted = []
        pages = self._call(
            "list unfinished uploads",
            lambda: list(self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)),
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                if key in wanted:
                    self._call(
                        f"abort upload of {key}",
                        lambda key=key, upload_id=upload_id: self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=upload_id
                        ),
                    )
                    aborted.append(f"s3://{self.bucket}/{key} (upload {upload_id[:12]})")
        return aborted


class GCSSink:
    """A Google Cloud Storage bucket prefix, written through a ``google.cloud.storage.Client``."""

    def __init__(self, *, client: Any, bucket: str, prefix: str = "", retry: RetrySettings = RetrySettings()) -> None:
        self.client, self.prefix, self.retry = client, prefix.strip("/"), retry
        self.bucket_name = bucket
        self.bucket = client.bucket(bucket)
        self.uri = f"gs://{bucket}/{self.prefix}".rstrip("/")
        self._calls = GCSCalls(client, retry)
        self._gexc = self._calls.gexc
        self._opts = self._calls.opts  # every request: bounded timeouts and no hidden library retries

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self._calls.call(f"sink {self.uri}", what, fn)

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
