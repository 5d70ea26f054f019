"""The S3 and GCS calls every reader and writer makes: one retry loop, one error translation.

The sinks (write side, :mod:`imagenet_ops.core.sinks`), the object store (read side,
:mod:`imagenet_ops.core.store`) and the leases all call the clients through :class:`S3Calls` /
:class:`GCSCalls`: transient connection errors are retried with backoff and logged, and an answer
from the service becomes a :class:`~imagenet_ops.core.errors.StorageError` that says what went
wrong in words (no such bucket, access denied, replaced while read) and names the object.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.gcs_requests import CONNECT_TIMEOUT, READ_TIMEOUT, call_options, endpoint_of, transient_errors

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def retrying(label: str, what: str, fn: Callable[[], T], retry: RetrySettings, transient: tuple[type[BaseException], ...]) -> T:
    """``fn()``, retried on ``transient`` errors with exponential backoff; ``label`` names the sink or object in logs."""
    for attempt in range(retry.attempts):
        try:
            return fn()
        except transient as exc:
            if attempt + 1 == retry.attempts:
                raise StorageError(
                    f"{label}: {what} failed after {retry.attempts} attempts "
                    f"(is the endpoint reachable and are the credentials right?): {type(exc).__name__}: {exc}"
                ) from exc
            pause = retry.backoff * 2**attempt
            log.warning(
                "%s: %s failed (%s); retrying in %.1fs (attempt %d of %d)", label, what, exc, pause, attempt + 2, retry.attempts
            )
            time.sleep(pause)
    raise AssertionError("unreachable")


class S3Calls:
    """A boto3 S3 client's calls, retried and with botocore's errors turned into StorageError."""

    def __init__(self, client: Any, retry: RetrySettings) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore import exceptions as bexc

        self.client, self.retry, self.client_error = client, retry, bexc.ClientError
        self.failed = (bexc.ClientError, S3UploadFailedError)  # upload_file wraps ClientError in S3UploadFailedError
        # ConnectionError covers EndpointConnectionError and ConnectionClosedError; the others break a body mid-read.
        self.transient = (bexc.ConnectionError, bexc.ReadTimeoutError, bexc.IncompleteReadError, bexc.ResponseStreamingError)

    def call(self, label: str, what: str, fn: Callable[[], T]) -> T:
        try:
            return retrying(label, what, fn, self.retry, self.transient)
        except self.failed as exc:
            raise StorageError(f"{label}: {what} failed: {self.reason(exc)}") from exc

    @staticmethod
    def code(exc: Any) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def reason(self, exc: Any) -> str:
        code = self.code(exc)
        if code == "NoSuchBucket":
            return f"no such bucket ({code})"
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"no such object ({code})"
        if code in ("AccessDenied", "403", "Forbidden"):
            return f"access denied; check the credentials and the bucket policy ({code})"
        if code in ("PreconditionFailed", "412"):
            return f"the object was replaced while it was being read ({code})"
        return f"{type(exc).__name__}: {exc}"


class GCSCalls:
    """A ``google.cloud.storage.Client``'s calls: bounded timeouts, no library retries, one retry loop here.

    Every request gets ``opts`` (its timeout and ``retry=None``, see :mod:`imagenet_ops.core.gcs_requests`),
    and a connection failure names the endpoint.
    """

    def __init__(self, client: Any, retry: RetrySettings) -> None:
        from google.api_core import exceptions as gexc

        self.client, self.retry, self.gexc = client, retry, gexc
        self.transient = transient_errors()
        self.opts = call_options(retry.gcs_timeout)
        self.endpoint = endpoint_of(client)

    def call(self, label: str, what: str, fn: Callable[[], T]) -> T:
        try:  # a connection failure names the endpoint; an answer from it names the object
            return retrying(label, f"{what} via GCS endpoint {self.endpoint}", fn, self.retry, self.transient)
        except self.gexc.GoogleAPICallError as exc:
            raise StorageError(f"{label}: {what} failed: {self.reason(exc)}") from exc

    def reason(self, exc: Any) -> str:
        if isinstance(exc, self.gexc.NotFound):
            return f"no such bucket or object (404): {exc.message}"
        if isinstance(exc, self.gexc.Forbidden | self.gexc.Unauthorized):
            return f"access denied; check the credentials and the bucket's IAM ({exc.code}): {exc.message}"
        if isinstance(exc, self.gexc.PreconditionFailed):
            return f"the object was replaced while it was being read: {exc.message}"
        return f"{type(exc).__name__}: {exc}"


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
