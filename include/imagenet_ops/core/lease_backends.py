"""Where an output's lease record lives: conditional writes of ``.imagenet_ops/lease.json`` per sink kind.

Each backend offers ``read`` (record bytes and version), ``create`` (only if absent), ``replace``
(only if still at a version) and ``delete`` (only if still at a version); a lost race returns
``False``, never overwrites. See :mod:`imagenet_ops.core.lease` for the protocol on top.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.sinks import STATE_DIR

LEASE_KEY = f"{STATE_DIR}/lease.json"


class OutputReadOnlyError(StorageError):
    """The output folder cannot be written, so no lease can be kept there (only a cache hit can succeed)."""


class LocalBackend:
    """Compare-and-swap on a file, made atomic by an ``fcntl`` lock on a sibling lock file."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / STATE_DIR
        self.path = self.dir / "lease.json"
        self.where = str(self.path)
        self._live_fd: int | None = None

    def _open(self, name: str) -> int:
        """Open (create) one of the lease's lock files."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            return os.open(self.dir / name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise OutputReadOnlyError(f"lease {self.where}: the output cannot be written: {exc}") from exc
            raise StorageError(f"lease {self.where}: cannot open its lock file {name}: {exc}") from exc

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        fd = self._open("lease.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def read(self) -> tuple[bytes, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return raw, raw

    def _swap(self, expected: bytes | None, data: bytes | None) -> bool:
        with self._mutex():
            current = self.read()
            if (current[0] if current else None) != expected:
                return False
            if data is None:
                self.path.unlink(missing_ok=True)
            else:
                tmp = self.dir / f".lease.json.tmp-{os.getpid()}"
                tmp.write_bytes(data)
                os.replace(tmp, self.path)
            return True

    def create(self, data: bytes) -> bool:
        return self._swap(None, data)

    def replace(self, data: bytes, version: Any) -> bool:
        return self._swap(version, data)

    def delete(self, version: Any) -> bool:
        return self._swap(version, None)

    def _try_live_lock(self) -> int | None:
        """The live lock's descriptor, locked, or ``None`` when a live process holds it."""
        fd = self._open("lease.live")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def holder_alive(self) -> bool:
        """Whether some process still holds the live lock (a process-bound holder is running)."""
        fd = self._try_live_lock()
        if fd is None:
            return True
        os.close(fd)
        return False

    def bind_to_process(self) -> bool:
        """Hold the live lock for this process's life (kernel-released on any death); False if another has it."""
        if self._live_fd is None:
            self._live_fd = self._try_live_lock()
        return self._live_fd is not None

    def unbind(self) -> None:
        if self._live_fd is not None:
            os.close(self._live_fd)
            self._live_fd = None


class S3Backend:
    """Conditional ``PutObject``/``DeleteObject`` through the sink's client and retry loop."""

    _REFUSED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    def __init__(self, sink: Any) -> None:
        self.sink, self.client, self.bucket = sink, sink.client, sink.bucket
        self.key = "/".join(p for p in (sink.prefix, LEASE_KEY) if p)
        self.where = f"s3://{self.bucket}/{self.key}"

    def _code(self, exc: Any) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def _conditional(self, what: str, fn: Callable[[], Any]) -> bool:
        from botocore.exceptions import ClientError

        def attempt() -> bool:
            try:
                fn()
                return True
            except ClientError as exc:
                if self._code(exc) in (*self._REFUSED, "NoSuchKey", "404"):
                    return False
                raise

        return self.sink._call(f"{what} {self.key}", attempt)

    def read(self) -> tuple[bytes, Any] | None:
        from botocore.exceptions import ClientError

        def get() -> tuple[bytes, Any] | None:
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as exc:
                if self._code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            return got["Body"].read(), got["ETag"]

        return self.sink._call(f"read lease {self.key}", get)

    def create(self, data: bytes) -> bool:
        put = self.client.put_object
        return self._conditional("create lease", lambda: put(Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*"))

    def replace(self, data: bytes, version: Any) -> bool:
        put = self.client.put_object
        return self._conditional("renew lease", lambda: put(Bucket=self.bucket, Key=self.key, Body=data, IfMatch=version))

    def delete(self, version: Any) -> bool:
        rm = self.client.delete_object
        return self._conditional("release lease", lambda: rm(Bucket=self.bucket, Key=self.key, IfMatch=version))


class GCSBackend:
    """Uploads and deletes conditional on the object's generation, through the sink's retry loop."""

    def __init__(self, sink: Any) -> None:
        from google.api_core import exceptions as gexc

        self.sink, self.bucket = sink, sink.bucket
        self.key = "/".join(p for p in (sink.prefix, LEASE_KEY) if p)
        self.where = f"gs://{sink.bucket_name}/{self.key}"
        self._gexc = gexc
        self._opts = sink._opts  # bounded timeouts, no hidden library retries

    def _conditional(self, what: str, fn: Callable[[], Any]) -> bool:
        def attempt() -> bool:
            try:
                fn()
                return True
            except (self._gexc.PreconditionFailed, self._gexc.NotFound):
                return False

        return self.sink._call(f"{what} {self.key}", attempt)

    def read(self) -> tuple[bytes, Any] | None:
        def get() -> tuple[bytes, Any] | None:
            blob = self.bucket.get_blob(self.key, **self._opts)
            if blob is None:
                return None
            generation = blob.generation  # read first: a download may reset it from the answer's headers
            try:  # pinned to the generation just seen, so data and version belong together
                return blob.download_as_bytes(if_generation_match=generation, **self._opts), generation
            except (self._gexc.NotFound, self._gexc.PreconditionFailed):
                return get()  # replaced or removed in between: look again

        return self.sink._call(f"read lease {self.key}", get)

    def _upload(self, data: bytes, generation: int) -> None:
        self.bucket.blob(self.key).upload_from_string(data, if_generation_match=generation, **self._opts)

    def create(self, data: bytes) -> bool:
        return self._conditional("create lease", lambda: self._upload(data, 0))

    def replace(self, data: bytes, version: Any) -> bool:
        return self._conditional("renew lease", lambda: self._upload(data, int(version)))

    def delete(self, version: Any) -> bool:
        blob, gen = self.bucket.blob(self.key), int(version)
        return self._conditional("release lease", lambda: blob.delete(if_generation_match=gen, **self._opts))


def backend_for(sink: Any) -> Any:
    """The conditional-write backend for ``sink``'s kind (local folder, S3, GCS)."""
    from imagenet_ops.core.sinks import GCSSink, LocalSink, S3Sink

    if isinstance(sink, LocalSink):
        return LocalBackend(sink.root)
    if isinstance(sink, S3Sink):
        return S3Backend(sink)
    if isinstance(sink, GCSSink):
        return GCSBackend(sink)
    raise StorageError(f"sink {getattr(sink, 'uri', sink)!r}: no lease support for {type(sink).__name__}")
