"""Read inputs where they are: ``s3://bucket/key``, ``gs://bucket/key`` or a plain local path.

The ImageNet inputs often already sit in a bucket, and ``ILSVRC2012_img_train.tar`` alone is
about 147 GB. Rather than copy a whole tar to local disk first, a task can list it and read
its members by offset straight from the bucket::

    store = ObjectStore(s3_client=client)  # or gcs_client=...; neither: the environment's default
    for obj in store.list("s3://datasets/imagenet"):  # every object under the prefix, by name
        log.info("%s: %d bytes", obj.name, obj.size)
    uri = "s3://datasets/imagenet/ILSVRC2012_img_val.tar"
    with store.open(uri) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        members = tar.getmembers()  # headers arrive through buffered ranged GETs
    jpeg = store.read_range(uri, members[0].offset_data, members[0].size)  # one GET per member

:meth:`ObjectStore.open` gives a seekable, read-only file: a :class:`io.BufferedReader` over
:class:`RangedReader`, which learns the size from one HEAD and then turns each buffer fill into
one ranged GET of up to ``buffer_size`` bytes. Seeks and reads inside the buffer cost no
request, so walking a tar of small members (the validation tar) costs about one request per
``buffer_size`` of archive. To hop over big members (the 1000 class tars inside the train tar)
pass a small ``buffer_size`` such as ``64 << 10``, or each 512-byte header costs a full buffer.
A plain (uncompressed) tar is needed: a compressed stream cannot be read by offset. ``open``
pins the object's version (S3 ETag, GCS generation), so replacing the object while it is read
is an error rather than a mix of two files.

Local paths (and ``file://`` URIs) are accepted everywhere so callers need not branch; there
``open`` is the builtin :func:`open`.

Errors: a missing object or bucket, a refused request, or a transient failure that persists
after the retries (the :class:`~imagenet_ops.core.clients.RetrySettings` the sinks use) raises
:class:`~imagenet_ops.core.errors.StorageError` naming the URI and what went wrong. A range that runs
past the end of the object raises :class:`ShortReadError`, which is both a ``StorageError`` and
an :class:`~imagenet_ops.core.errors.ArchiveError`.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from imagenet_ops.core.clients import GCSCalls, RetrySettings, S3Calls, default_gcs_client
from imagenet_ops.core.diskspace import disk_full_guard, is_disk_full
from imagenet_ops.core.errors import ArchiveError, StorageError
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.uris import Location as _Location
from imagenet_ops.core.uris import parse_location as _parse

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 1 << 20


class ShortReadError(StorageError, ArchiveError):
    """An object ends before the requested byte range does (a truncated input or a wrong offset)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object found by :meth:`ObjectStore.list`.

    Attributes:
        uri: the object's full URI (or local path), ready for the other ``ObjectStore`` methods.
        name: its key relative to the listed prefix, ``/``-separated.
        size: its size in bytes.
    """

    uri: str
    name: str
    size: int


def _parse_object(uri: str) -> _Location:
    loc = _parse(uri)
    if loc.scheme != "file" and not loc.key.strip("/"):
        raise StorageError(f"{uri}: no object key (expected {loc.scheme}://bucket/key)")
    return loc


class _S3(S3Calls):
    """The S3 reads the store needs (listing, stat, ranged and streamed gets)."""

    def list(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [(o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])]

    def stat(self, bucket: str, key: str) -> tuple[int, str] | None:
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except self.client_error as exc:
            if self.code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head["ContentLength"], head["ETag"]

    def get(self, bucket: str, key: str, start: int, end: int | None, version: str | None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if end is not None:
            kwargs["Range"] = f"bytes={start}-{end}"
        if version:
            kwargs["IfMatch"] = version
        try:
            return self.client.get_object(**kwargs)["Body"].read()
        except self.client_error as exc:
            if self.code(exc) == "InvalidRange":  # the range starts at or past the end
                return b""
            raise

    def stream(self, bucket: str, key: str, out: BinaryIO, start: int, version: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "IfMatch": version}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        for chunk in self.client.get_object(**kwargs)["Body"].iter_chunks(_CHUNK):
            out.write(chunk)


class _GCS(GCSCalls):
    """The GCS reads the store needs; every request carries ``self.opts`` (bounded, no library retries)."""

    def list(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        return [(b.name, b.size) for b in self.client.list_blobs(bucket, prefix=prefix, **self.opts)]

    def stat(self, bucket: str, key: str) -> tuple[int, int] | None:
        blob = self.client.bucket(bucket).get_blob(key, **self.opts)
        return None if blob is None else (blob.size, blob.generation)

    def get(self, bucket: str, key: str, start: int, end: int | None, version: int | None) -> bytes:
        blob = self.client.bucket(bucket).blob(key, generation=version)
        try:
            if end is None:
                return blob.download_as_bytes(**self.opts)
            return blob.download_as_bytes(start=start, end=end, **self.opts)  # end is inclusive
        except self.gexc.RequestRangeNotSatisfiable:  # the range starts at or past the end
            return b""
        except self.gexc.NotFound as exc:
            if version is None:
                raise
            raise self.gexc.PreconditionFailed(f"generation {version} is gone (replaced or deleted)") from exc

    def stream(self, bucket: str, key: str, out: BinaryIO, start: int, version: int) -> None:
        try:
            self.client.bucket(bucket).blob(key, generation=version).download_to_file(out, start=start or None, **self.opts)
        except self.gexc.NotFound as exc:
            raise self.gexc.PreconditionFailed(f"generation {version} is gone (replaced or deleted)") from exc


class RangedReader(io.RawIOBase):
    """A raw, seekable, read-only view of one remote object; each ``readinto`` is one ranged GET.

    Wrap it in :class:`io.BufferedReader` (as :meth:`ObjectStore.open` does) so that small reads
    and seeks are served from the buffer. ``requests`` counts the GETs issued.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], *, name: str, size: int) -> None:
        super().__init__()
        self.name, self.size, self.requests = name, size, 0
        self._fetch, self._pos = fetch, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"{self.name}: invalid whence {whence!r}")
        if pos < 0:
            raise ValueError(f"{self.name}: negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        n = min(len(buffer), self.size - self._pos)
        if n <= 0:
            return 0
        data = self._read(n)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def readall(self) -> bytes:
        self._check_open()
        return self._read(self.size - self._pos) if self._pos < self.size else b""

    def _read(self, n: int) -> bytes:
        data = self._fetch(self._pos, n)  # exactly n bytes, or an error
        self.requests += 1
        self._pos += n
        return data

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.name}: I/O operation on a closed file")


class ObjectStore:
    """Read objects from S3, GCS or the local filesystem by URI.

    Args:
        s3_client: a boto3 S3 client; ``boto3.client("s3")`` is created on first use if omitted.
        gcs_client: a ``google.cloud.storage.Client``; :func:`~imagenet_ops.core.clients.default_gcs_client`
            is created on first use if omitted.
        retry: attempts and backoff for transient errors (connection failures, timeouts, 5xx).
    """

    def __init__(self, *, s3_client: Any = None, gcs_client: Any = None, retry: RetrySettings = RetrySettings()) -> None:
        self.s3_client, self.gcs_client, self.retry = s3_client, gcs_client, retry
        self._backends: dict[str, _S3 | _GCS] = {}
        self._lock = threading.Lock()

    def _backend(self, scheme: str) -> _S3 | _GCS:
        with self._lock:
            if scheme not in self._backends:
                if scheme == "s3":
                    if self.s3_client is None:
                        import boto3

                        self.s3_client = boto3.client("s3")
                    self._backends[scheme] = _S3(self.s3_client, self.retry)
                else:
                    if self.gcs_client is None:
                        self.gcs_client = default_gcs_client()
                    self._backends[scheme] = _GCS(self.gcs_client, self.retry)
            return self._backends[scheme]

    def list(self, uri_prefix: str) -> list[ObjectInfo]:
        """Every object under ``uri_prefix``, recursively, sorted by name.

        The prefix is a folder: ``s3://b/imagenet`` lists ``imagenet/...`` but not
        ``imagenet2/...``. If it names a single object (or file), that object is the one entry,
        under its base name. Keys ending in ``/`` (console "folders") are skipped.

        Raises:
            StorageError: nothing is there, the bucket does not exist, or listing failed.
        """
        loc = _parse(uri_prefix)
        if loc.scheme == "file":
            found = self._list_local(uri_prefix, loc.path)
        else:
            be = self._backend(loc.scheme)
            folder = f"{loc.key.strip('/')}/" if loc.key.strip("/") else ""
            root = f"{loc.scheme}://{loc.bucket}/"
            entries = be.call(uri_prefix, "list", lambda: be.list(loc.bucket, folder))
            found = [ObjectInfo(root + k, k[len(folder) :], size) for k, size in entries if not k.endswith("/")]
            if not found and folder:
                key = folder.rstrip("/")
                stat = be.call(uri_prefix, "list", lambda: be.stat(loc.bucket, key))
                if stat is not None:
                    found = [ObjectInfo(root + key, key.rpartition("/")[2], stat[0])]
        if not found:
            raise StorageError(f"{uri_prefix}: list found no objects (is the prefix right?)")
        return sorted(found, key=lambda o: o.name)

    @staticmethod
    def _list_local(uri: str, root: Path) -> list[ObjectInfo]:
        try:
            if root.is_file():
                return [ObjectInfo(str(root), root.name, root.stat().st_size)]
            if not root.is_dir():
                raise StorageError(f"{uri}: list failed: no such file or folder")
            files = (p for p in root.rglob("*") if p.is_file())
            return [ObjectInfo(str(p), p.relative_to(root).as_posix(), p.stat().st_size) for p in files]
        except OSError as exc:
            raise StorageError(f"{uri}: list failed: {exc}") from exc

    def read(self, uri: str) -> bytes:
        """The whole object (for small inputs: label files, checksums, manifests)."""
        loc = _parse_object(uri)
        if loc.scheme == "file":
            return _local(uri, "read", loc.path.read_bytes)
        be = self._backend(loc.scheme)
        return be.call(uri, "read", lambda: be.get(loc.bucket, loc.key, 0, None, None))

    def read_range(self, uri: str, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes starting at ``offset`` (one ranged GET for remote objects).

        Raises:
            ShortReadError: the object ends before ``offset + size``.
            StorageError: the object cannot be read.
        """
        return self._read_range(uri, _parse_object(uri), offset, size, None)

    def _read_range(self, uri: str, loc: _Location, offset: int, size: int, version: Any) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError(f"{uri}: offset and size must be >= 0, got offset={offset} size={size}")
        if size == 0:
            return b""
        what = f"read {size} bytes at offset {offset}"
        if loc.scheme == "file":

            def read_local() -> bytes:
                with open(loc.path, "rb") as f:
                    f.seek(offset)
                    return f.read(size)

            data = _local(uri, what, read_local)
        else:
            be = self._backend(loc.scheme)
            data = be.call(uri, what, lambda: be.get(loc.bucket, loc.key, offset, offset + size - 1, version))
        if len(data) < size:
            raise ShortReadError(
                f"{uri}: {what} got only {len(data)} bytes: the object ends before byte {offset + size} "
                "(truncated input or wrong offset?)"
            )
        if len(data) > size:  # a server that ignores Range would send the whole object on every read
            raise StorageError(f"{uri}: {what} returned {len(data)} bytes: the server ignored the Range header")
        return data

    def size(self, uri: str) -> int:
        """The object's size in bytes (one HEAD)."""
        return self._stat(uri, _parse_object(uri))[0]

    def _stat(self, uri: str, loc: _Location) -> tuple[int, Any]:
        if loc.scheme == "file":
            st = _local(uri, "size", loc.path.stat)
            return st.st_size, None
        be = self._backend(loc.scheme)
        stat = be.call(uri, "size", lambda: be.stat(loc.bucket, loc.key))
        if stat is None:
            raise StorageError(f"{uri}: no such object")
        return stat

    def exists(self, uri: str) -> bool:
        """Whether the object (or local file) exists; a missing bucket counts as missing."""
        loc = _parse_object(uri)
        if loc.scheme == "file":
            return loc.path.is_file()
        be = self._backend(loc.scheme)
        return be.call(uri, "exists", lambda: be.stat(loc.bucket, loc.key)) is not None

    def open(self, uri: str, *, buffer_size: int = 8 << 20) -> BinaryIO:
        """A seekable, read-only binary file over the object; close it (or use ``with``).

        Remote objects are read with ranged GETs of up to ``buffer_size`` bytes (see the module
        docstring for choosing it); reads and seeks inside the buffer cost nothing. The object's
        version is pinned at open: if it is replaced, the next GET raises StorageError.
        """
        loc = _parse_object(uri)
        if loc.scheme == "file":
            return _local(uri, "open", lambda: open(loc.path, "rb"))
        size, version = self._stat(uri, loc)
        raw = RangedReader(lambda offset, n: self._read_range(uri, loc, offset, n, version), name=uri, size=size)
        return io.BufferedReader(raw, buffer_size)

    def download(self, uri: str, local_path: Path) -> Path:
        """Copy the object to ``local_path`` atomically (a temp sibling, then ``os.replace``).

        Remote objects are streamed; after a transient failure the download resumes where it
        stopped, pinned to the version seen at the start. Returns ``local_path``.

        Raises:
            DiskFullError: ``local_path``'s filesystem filled up (names it and the space left).
            StorageError: the object cannot be read.
        """
        loc = _parse_object(uri)
        local_path = Path(local_path)
        if loc.scheme == "file" and _same_file(loc.path, local_path):
            return local_path
        tmp = local_path.with_name(f".{local_path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with disk_full_guard(local_path):
                self._download_to(uri, loc, local_path, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        return local_path

    def _download_to(self, uri: str, loc: _Location, local_path: Path, tmp: Path) -> None:
        _local(uri, "download", lambda: local_path.parent.mkdir(parents=True, exist_ok=True))
        if loc.scheme == "file":
            _local(uri, f"download to {local_path}", lambda: shutil.copyfile(loc.path, tmp))
        else:
            self._download_remote(uri, loc, tmp)
            log.info("downloaded %s (%s) to %s", uri, human_bytes(tmp.stat().st_size), local_path)
        _local(uri, f"download to {local_path}", lambda: os.replace(tmp, local_path))

    def _download_remote(self, uri: str, loc: _Location, tmp: Path) -> None:
        size, version = self._stat(uri, loc)
        be = self._backend(loc.scheme)
        with open(tmp, "wb") as out:

            def attempt() -> None:
                done = out.tell()  # bytes kept from earlier attempts
                if done < size:
                    be.stream(loc.bucket, loc.key, out, done, version)

            be.call(uri, "download", attempt)
            got = out.tell()
        if got != size:
            raise ShortReadError(f"{uri}: download got {got} of {size} bytes")


def _local(uri: str, what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except FileNotFoundError as exc:
        raise StorageError(f"{uri}: {what} failed: no such file ({exc.filename})") from exc
    except OSError as exc:
        if is_disk_full(exc):
            raise  # the writer's disk_full_guard names the path and the space left
        raise StorageError(f"{uri}: {what} failed: {exc}") from exc


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
