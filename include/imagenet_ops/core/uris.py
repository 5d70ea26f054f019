"""The one URI parser: local paths, ``file://``, ``s3://bucket/key`` and ``gs://bucket/key``.

Two readings of one grammar:

* :func:`split_uri` is the strict one for *outputs*: it refuses an invalid bucket, ``?``/``#``
  (``urlsplit`` would drop what follows) and ``.``/``..`` segments (keys outside the prefix).
* :func:`parse_location` is the reading for *inputs*: object keys may hold ``#`` or ``?``, so the
  bucket is split off and the key kept as given.

Every scheme test of the project goes through :func:`is_remote` or :func:`scheme_of`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from imagenet_ops.core.errors import SinkURIError, StorageError

REMOTE_SCHEMES = ("s3", "gs")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def scheme_of(uri: str) -> str:
    """``"s3"``, ``"gs"`` or ``"file"`` (local paths and ``file://`` URIs), without validating the rest."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep and scheme.lower() in REMOTE_SCHEMES else "file"


def is_remote(uri: str) -> bool:
    """True for ``s3://`` and ``gs://`` URIs; false for local paths and ``file://`` URIs."""
    return scheme_of(uri) != "file"


def is_url(uri: str) -> bool:
    """True for ``http://``, ``https://`` and ``file://`` URLs (downloaded, never read in place)."""
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https", "file")


def split_uri(uri: str) -> tuple[str, str, str]:
    """Split a sink URI into ``(scheme, bucket, prefix)``; a plain path gives ``("file", "", path)``.

    Raises:
        SinkURIError: no or an invalid bucket name; ``?`` or ``#`` in the URI (``urlsplit`` would
            silently drop what follows them); a ``.`` or ``..`` segment, which would write keys
            outside the prefix (``s3://b/../../etc`` wrote keys named ``../../etc/*``).
    """
    parts = urlsplit(uri)
    if parts.scheme in REMOTE_SCHEMES:
        if not parts.netloc:
            raise SinkURIError(f"sink {uri!r}: missing bucket name (expected {parts.scheme}://bucket/prefix)")
        if not _BUCKET_NAME.match(parts.netloc):
            raise SinkURIError(
                f"sink {uri!r}: invalid bucket name {parts.netloc!r} (3-63 lowercase letters, digits, '.', '-' or '_', "
                "starting and ending with a letter or digit)"
            )
        if "?" in uri or "#" in uri:
            raise SinkURIError(f"sink {uri!r}: '?' and '#' are not allowed in an object prefix (percent-encode them)")
        segments = parts.path.strip("/").split("/")
        if any(seg in (".", "..") for seg in segments):
            raise SinkURIError(f"sink {uri!r}: '.' and '..' segments would write keys outside the prefix")
        return parts.scheme, parts.netloc, parts.path.strip("/")
    if parts.scheme == "file":
        return "file", "", parts.path
    if parts.scheme and len(parts.scheme) > 1:
        raise SinkURIError(f"sink {uri!r}: unsupported scheme {parts.scheme!r} (use a local path, s3:// or gs://)")
    return "file", "", uri


@dataclass(frozen=True)
class Location:
    """An input location: ``scheme`` ``"s3"``, ``"gs"`` or ``"file"``; ``bucket`` empty for files; ``key``
    the object key or the local path."""

    scheme: str
    bucket: str
    key: str

    @property
    def path(self) -> Path:
        return Path(self.key)


def parse_location(uri: str) -> Location:
    """Read an input URI; object keys keep ``#`` and ``?`` (no URL parsing after the bucket).

    Raises:
        StorageError: a remote URI without a bucket, or an unsupported scheme.
    """
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() in REMOTE_SCHEMES:
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{uri}: missing bucket name (expected {scheme.lower()}://bucket/key)")
        return Location(scheme.lower(), bucket, key)
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Location("file", "", unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive
        raise StorageError(f"{uri}: unsupported scheme {parts.scheme!r} (use a local path, s3:// or gs://)")
    return Location("file", "", uri)


def browse_url(uri: str, *, endpoint: str | None = None, folder: bool = True) -> str:
    """A URL a person can open for ``uri`` (a sink folder, or an object when ``folder`` is false).

    A local path becomes ``file://``; ``s3://`` and ``gs://`` open in the AWS S3 or the Google
    Cloud console. An S3-protocol server of its own (``endpoint``: MinIO, Ceph …) gets its
    path-style URL instead, since the AWS console cannot show it; so does a GCS emulator.
    """
    loc = parse_location(uri)
    if loc.scheme == "file":
        return Path(loc.key).resolve().as_uri()
    key = loc.key.strip("/") + ("/" if folder and loc.key.strip("/") else "")
    aws = loc.scheme == "s3" and (not endpoint or "amazonaws.com" in endpoint)
    google = loc.scheme == "gs" and (not endpoint or "storage.googleapis.com" in endpoint)
    if aws:
        kind = "buckets" if folder else "object"
        return f"https://s3.console.aws.amazon.com/s3/{kind}/{loc.bucket}?prefix={quote(key)}"
    if google:
        return f"https://console.cloud.google.com/storage/browser/{'' if folder else '_details/'}{loc.bucket}/{quote(key)}"
    return f"{str(endpoint).rstrip('/')}/{loc.bucket}/{quote(key)}"
