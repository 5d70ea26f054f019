"""HTTP(S) downloads: mirrors in order, resume with Range, retries with backoff, checksum gate.

The file appears under its final name only after it verified; until then it lives in
``<name>.part`` (kept between attempts and task retries so a cut download resumes).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from imagenet_ops.core.digests import AcceptedChecksums, file_digests
from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.errors import ChecksumMismatch, DownloadError
from imagenet_ops.core.progress import Progress, human_bytes, human_seconds
from imagenet_ops.core.redact import redact_text, redact_url

log = logging.getLogger(__name__)

# Small reads: a broken connection loses at most one chunk of what it delivered.
_CHUNK = 1 << 16
_RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` delivered: the verified file and where it came from."""

    path: str
    url: str
    size: int
    md5: str
    sha256: str
    etag: str | None = None
    last_modified: str | None = None
    resumed_from: int = 0
    reused: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        """``<path>: <n> bytes from <url> (md5 …, ETag …[, resumed at …])``, the line a download task logs."""
        resumed = f", resumed at {self.resumed_from}" if self.resumed_from else ""
        return f"{self.path}: {self.size} bytes from {self.url} (md5 {self.md5}, ETag {self.etag}{resumed})"


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per mirror and exponential backoff (``backoff * 2**n``, capped at ``max_backoff``)."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 60.0
    min_rate: float = 16 * 1024
    """Bytes/s a download must average over each ``min_rate_window`` once that long has passed."""
    min_rate_window: float = 120.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), self.max_backoff)


class _Retryable(Exception):
    """A failure worth another attempt on the same mirror."""


def filename_from_url(url: str) -> str:
    """CM's rule: the URL path's basename without the query; ``index.html`` if it has no dot."""
    name = os.path.basename(urlsplit(url).path)
    return name if "." in name else "index.html"


def download(
    *,
    urls: Sequence[str],
    dest_dir: Path,
    accepted: AcceptedChecksums,
    filename: str | None = None,
    verify_ssl: bool = True,
    retry: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
    progress_every: float = 5.0,
) -> DownloadResult:
    """Download the first mirror that delivers a file matching ``accepted``.

    Args:
        urls: mirror URLs, tried in order.
        dest_dir: folder for the file (created if missing).
        accepted: checksums the file may have (any one passes); empty means unchecked.
        filename: final file name; defaults to the first URL's basename.
        verify_ssl: verify TLS certificates (CM's ``_skip_ssl_verification`` turns it off).
        retry: attempts and backoff per mirror, for connection errors, cuts and 5xx.
        session: a ``requests.Session`` to reuse (a new one by default).
        progress_every: seconds between progress lines.

    Returns:
        The verified file's path, source URL, size, md5, sha256 and HTTP validators.

    Raises:
        ChecksumMismatch: every mirror delivered bytes with the wrong sums (names both sums).
        DownloadError: no mirror delivered the file; names every URL and its failure.
        DiskFullError: ``dest_dir``'s filesystem filled up (names the file and the space left);
            no further mirror is tried, it would fill up too. The ``.part`` file is kept for a resume.
    """
    if not urls:
        raise DownloadError("no URL to download from")
    name = filename or filename_from_url(urls[0])
    dest_dir = Path(dest_dir)
    with disk_full_guard(dest_dir):
        dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / name

    if final.exists():
        digests = file_digests(final)
        if not accepted.mismatch(digests):
            log.info("%s already present and verified (md5 %s); not downloading again", final, digests.md5)
            return DownloadResult(path=str(final), url=redact_url(urls[0]), reused=True, **digests.as_dict())
        log.warning("%s exists but does not verify; downloading it again", final)
        final.unlink()

    http = session or requests.Session()
    failures: list[str] = []
    mismatches = 0
    for url in urls:
        part = dest_dir / f"{name}.part"
        shown = redact_url(url)  # what is logged and recorded; the request uses the URL as given
        try:
            meta = _fetch_with_retries(http, url, part, verify_ssl, retry, progress_every)
        except DownloadError as exc:
            failures.append(f"{shown}: {exc}")
            log.warning("mirror failed: %s: %s", shown, exc)
            continue
        digests = file_digests(part)
        problem = accepted.mismatch(digests)
        if problem:
            mismatches += 1
            failures.append(f"{shown}: checksum mismatch: {problem}")
            log.warning("mirror %s delivered bytes with the wrong checksum: %s", shown, problem)
            _discard(part)
            _discard(_marker(part))
            continue
        os.replace(part, final)
        _discard(_marker(part))
        log.info("downloaded %s from %s (%s, md5 %s)", final, shown, human_bytes(digests.size), digests.md5)
        return DownloadResult(path=str(final), url=shown, **digests.as_dict(), **meta)

    detail = "\n  ".join(failures)
    if mismatches == len(urls):
        raise ChecksumMismatch(f"checksum mismatch for {name} from every mirror:\n  {detail}")
    raise DownloadError(f"could not download {name} from any of {len(urls)} mirror(s):\n  {detail}")


def _marker(part: Path) -> Path:
    return part.with_name(part.name + ".url")


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _read_marker(marker: Path) -> dict[str, str | None]:
    try:
        data = json.loads(marker.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _fetch_with_retries(
    http: requests.Session, url: str, part: Path, verify_ssl: bool, retry: RetryPolicy, every: float
) -> dict[str, object]:
    """Fill ``part`` from ``url``; resumes a partial file left by an earlier attempt from the same URL.

    The marker ``<part>.url`` records the URL and ETag the partial bytes came from; a resume sends
    ``If-Range`` with that ETag, so a server whose file changed answers with the whole new file.
    """
    if urlsplit(url).scheme == "file":
        return _copy_local(url, part)
    marker, shown = _marker(part), redact_url(url)
    if part.exists() and _read_marker(marker).get("url") != shown:
        _discard(part)  # a partial file from another mirror may be other bytes
    last_error = "no attempt made"
    for attempt in range(retry.attempts):
        if attempt:
            pause = retry.delay(attempt - 1)
            wait = human_seconds(pause)
            log.info("retrying %s in %s (attempt %d/%d): %s", shown, wait, attempt + 1, retry.attempts, last_error)
            time.sleep(pause)
        try:
            return _fetch_once(http, url, part, marker, verify_ssl, retry, every)
        except _Retryable as exc:
            last_error = redact_text(str(exc))
        except _RETRYABLE as exc:
            last_error = redact_text(f"{type(exc).__name__}: {exc}")
        except requests.RequestException as exc:  # a bad URL or port, a redirect loop: no retry helps
            raise DownloadError(redact_text(f"{type(exc).__name__}: {exc}")) from None
    raise DownloadError(f"gave up after {retry.attempts} attempts; last error: {last_error}")


def _copy_local(url: str, part: Path) -> dict[str, object]:
    """A ``file://`` URL (an artifact store mounted on the worker): copied like a download."""
    import shutil
    from urllib.request import url2pathname

    source = Path(url2pathname(urlsplit(url).path))
    try:
        with disk_full_guard(part):
            shutil.copyfile(source, part)
    except OSError as exc:
        raise DownloadError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return {"resumed_from": 0}


class _SlowGuard:
    """Fails a download that averages under ``min_rate`` bytes/s over a ``window`` of seconds.

    The failure is a :class:`DownloadError`, so the next mirror is tried at once: retrying a
    trickling mirror would cost another window per attempt.
    """

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate, self.window = min_rate, window
        self.since, self.start_bytes = time.monotonic(), None

    def check(self, done: int) -> None:
        if self.start_bytes is None:
            self.start_bytes = done
        elapsed = time.monotonic() - self.since
        if elapsed < self.window:
            return
        rate = (done - self.start_bytes) / elapsed
        if rate < self.min_rate:
            raise DownloadError(
                f"too slow: {human_bytes(rate)}/s over the last {human_seconds(elapsed)} "
                f"(the minimum is {human_bytes(self.min_rate)}/s)"
            )
        self.since, self.start_bytes = time.monotonic(), done


def _fetch_once(
    http: requests.Session,
    url: str,
    part: Path,
    marker: Path,
    verify_ssl: bool,
    retry: RetryPolicy,
    every: float,
) -> dict[str, object]:
    shown = redact_url(url)
    offset = part.stat().st_size if part.exists() else 0
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = _read_marker(marker).get("etag")
        if etag:
            headers["If-Range"] = etag
    with http.get(url, headers=headers, stream=True, timeout=retry.timeout, verify=verify_ssl) as resp:
        if resp.status_code == 416 and offset:
            log.info("%s: server says the %s already held are the whole file", shown, human_bytes(offset))
            return {**_validators(resp), "resumed_from": offset}
        if resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code >= 400:
            raise DownloadError(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code == 206:
            got = resp.headers.get("Content-Range", "")
            if not got.startswith(f"bytes {offset}-"):
                _discard(part)
                raise _Retryable(f"server answered Range {offset}- with Content-Range {got!r}; restarting from 0")
            mode = "ab"
            log.info("resuming %s at %s", shown, human_bytes(offset))
        else:
            if offset:
                log.info("%s sent the whole file (Range ignored or file changed); restarting from 0", shown)
            offset, mode = 0, "wb"
        with disk_full_guard(marker):
            marker.write_text(json.dumps({"url": shown, "etag": resp.headers.get("ETag")}))
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        progress = Progress(f"download {part.name[:-5]}", total=total, unit="bytes", logger=log, every=every, initial=offset)
        slow = _SlowGuard(retry.min_rate, retry.min_rate_window)
        with disk_full_guard(part), open(part, mode) as fh:
            # Raw bytes: never let a Content-Encoding header decompress a .tar.gz behind our back.
            # read1 returns what has arrived (up to a chunk), so a trickle still logs progress on time.
            while chunk := resp.raw.read1(_CHUNK, decode_content=False):
                fh.write(chunk)
                progress.update(len(chunk))
                slow.check(progress.done)
        if total is not None and progress.done != total:
            raise _Retryable(f"connection closed after {progress.done} of {total} bytes")
        log.info("%s (%.1fs)", progress.line(), progress.elapsed())
        return {**_validators(resp), "resumed_from": offset}


def _validators(resp: requests.Response) -> dict[str, object]:
    return {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
