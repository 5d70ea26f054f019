"""download(): mirrors in order, resume with Range, retries with backoff, checksum gate, reuse."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from imagenet_ops.core import download as download_mod
from imagenet_ops.core.digests import AcceptedChecksums
from imagenet_ops.core.download import RetryPolicy, download, filename_from_url
from imagenet_ops.core.errors import ChecksumMismatch, DownloadError

ARCHIVE = "caffe_ilsvrc12.tar.gz"
FAST = RetryPolicy(attempts=3, backoff=0.01)
WRONG_MD5 = "0" * 32


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gets(server, name: str) -> list:
    return [r for r in server.requests_for(name) if r.method == "GET"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz", "caffe_ilsvrc12.tar.gz"),
        ("https://www.dropbox.com/s/92n2fyej3lzy3s3/caffe_ilsvrc12.tar.gz?dl=1", "caffe_ilsvrc12.tar.gz"),
        ("https://host/a/b/file.tgz?x=1&y=two.zip#frag", "file.tgz"),
        ("https://host/download", "index.html"),
        ("https://host/", "index.html"),
        ("https://host", "index.html"),
        ("https://host/dir.v2/latest?name=x.tar.gz", "index.html"),
    ],
)
def test_filename_from_url(url: str, expected: str) -> None:
    assert filename_from_url(url) == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetryPolicy(backoff=1.0), [1.0, 2.0, 4.0, 8.0]),
        (RetryPolicy(backoff=0.5, max_backoff=1.5), [0.5, 1.0, 1.5, 1.5]),
    ],
)
def test_retry_policy_delay_doubles_and_is_capped(policy: RetryPolicy, expected: list[float]) -> None:
    assert [policy.delay(n) for n in range(4)] == expected


def test_download_round_trip(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    accepted = AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)], sha256=[sha256_of(aux_archive_bytes)])

    result = download(urls=[served_archive], dest_dir=tmp_path / "dl", accepted=accepted, retry=FAST)

    assert Path(result.path) == tmp_path / "dl" / ARCHIVE
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert (result.url, result.size, result.md5) == (served_archive, len(aux_archive_bytes), md5_of(aux_archive_bytes))
    assert result.sha256 == sha256_of(aux_archive_bytes)
    assert result.etag == f'"{md5_of(aux_archive_bytes)}"'
    assert result.last_modified
    assert (result.resumed_from, result.reused) == (0, False)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [ARCHIVE]


@pytest.mark.parametrize(
    ("faults", "first_mirror_gets"),
    [
        pytest.param(None, 1, id="404"),
        pytest.param(("503", "503", "503"), 3, id="503-until-exhausted"),
    ],
)
def test_mirrors_are_tried_in_order(
    http_server, aux_archive_bytes: bytes, tmp_path: Path, faults: tuple[str, ...] | None, first_mirror_gets: int
) -> None:
    first, second = f"m1/{ARCHIVE}", f"m2/{ARCHIVE}"
    (http_server.root / "m2").mkdir()
    (http_server.root / second).write_bytes(aux_archive_bytes)
    if faults:  # the first mirror has the file but answers 503 to every attempt
        (http_server.root / "m1").mkdir()
        (http_server.root / first).write_bytes(aux_archive_bytes)
        http_server.fail(first, *faults)
    urls = [http_server.url(first), http_server.url(second)]

    result = download(urls=urls, dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST)

    assert result.url == urls[1]
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert len(gets(http_server, first)) == first_mirror_gets  # a 404 is final, a 503 is retried
    assert len(gets(http_server, second)) == 1
    order = [r.path for r in http_server.requests]
    assert order.index("/" + second) > max(i for i, p in enumerate(order) if p == "/" + first)


def test_unreachable_mirror_falls_back(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, closed_port: int) -> None:
    dead = f"http://127.0.0.1:{closed_port}/{ARCHIVE}"

    result = download(
        urls=[dead, served_archive],
        dest_dir=tmp_path,
        accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]),
        retry=RetryPolicy(attempts=2, backoff=0.01, timeout=5),
    )

    assert result.url == served_archive
    assert Path(result.path).read_bytes() == aux_archive_bytes


def test_every_mirror_failing_names_each_url(http_server, tmp_path: Path) -> None:
    urls = [http_server.url(f"m{i}/{ARCHIVE}") for i in (1, 2)]

    with pytest.raises(DownloadError, match=r"could not download caffe_ilsvrc12\.tar\.gz from any of 2 mirror") as info:
        download(urls=urls, dest_dir=tmp_path, accepted=AcceptedChecksums(), retry=FAST)

    for url in urls:
        assert f"{url}: HTTP 404" in str(info.value)
    assert not (tmp_path / ARCHIVE).exists()


def test_no_url_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no URL"):
        download(urls=[], dest_dir=tmp_path, accepted=AcceptedChecksums())


@pytest.mark.parametrize("status", ["503", "500"])
def test_5xx_is_retried_with_exponential_backoff(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(download_mod.time, "sleep", pauses.append)
    http_server.fail(ARCHIVE, status, status)

    result = download(
        urls=[served_archive],
        dest_dir=tmp_path,
        accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]),
        retry=RetryPolicy(attempts=3, backoff=0.25),
    )

    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert len(gets(http_server, ARCHIVE)) == 3
    assert pauses == [0.25, 0.5]


def test_cut_download_resumes_with_range(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imagenet_ops.core.download")
    size = len(aux_archive_bytes)
    http_server.fail(ARCHIVE, "cut:100000")

    result = download(
        urls=[served_archive], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    first, *later = gets(http_server, ARCHIVE)
    assert first.range is None
    offsets = [int(m.group(1)) for r in later if r.range and (m := re.fullmatch(r"bytes=(\d+)-", r.range))]
    assert offsets and 0 < offsets[0] < size
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert any(msg.startswith("resuming ") for msg in caplog.messages)


# Bug: _fetch_with_retries sets meta["resumed_from"] to the size of the .part *before* the first
# attempt, so a download cut and resumed within one call reports resumed_from=0.
def test_resume_within_one_call_reports_resumed_from(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    http_server.fail(ARCHIVE, "cut:100000")

    result = download(
        urls=[served_archive], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert result.resumed_from > 0


def test_part_left_by_a_failed_call_is_resumed_by_the_next(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    accepted = AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)])
    http_server.fail(ARCHIVE, "cut:100000")
    with pytest.raises(DownloadError, match="gave up after 1 attempts"):
        download(urls=[served_archive], dest_dir=tmp_path, accepted=accepted, retry=RetryPolicy(attempts=1, backoff=0.01))
    held = (tmp_path / f"{ARCHIVE}.part").stat().st_size
    assert 0 < held < len(aux_archive_bytes)

    result = download(urls=[served_archive], dest_dir=tmp_path, accepted=accepted, retry=FAST)

    assert result.resumed_from == held
    assert gets(http_server, ARCHIVE)[-1].range == f"bytes={held}-"
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert not (tmp_path / f"{ARCHIVE}.part").exists()


def test_complete_part_from_the_same_url_is_finished_on_416(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / f"{ARCHIVE}.part").write_bytes(aux_archive_bytes)
    (dest / f"{ARCHIVE}.part.url").write_text(json.dumps({"url": served_archive, "etag": None}))

    result = download(
        urls=[served_archive], dest_dir=dest, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    assert [r.range for r in gets(http_server, ARCHIVE)] == [f"bytes={len(aux_archive_bytes)}-"]
    assert result.resumed_from == len(aux_archive_bytes)
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert sorted(p.name for p in dest.iterdir()) == [ARCHIVE]


@pytest.mark.parametrize("marker", [None, "http://other-mirror.invalid/caffe_ilsvrc12.tar.gz"], ids=["no-marker", "other-url"])
def test_stale_part_from_another_url_is_discarded(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, marker: str | None
) -> None:
    (tmp_path / f"{ARCHIVE}.part").write_bytes(b"bytes of some other file" * 100)
    if marker:
        (tmp_path / f"{ARCHIVE}.part.url").write_text(marker)

    result = download(
        urls=[served_archive], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    assert [r.range for r in gets(http_server, ARCHIVE)] == [None]
    assert result.resumed_from == 0
    assert Path(result.path).read_bytes() == aux_archive_bytes


def test_wrong_md5_raises_and_leaves_no_file(http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    actual = md5_of(aux_archive_bytes)

    with pytest.raises(ChecksumMismatch, match=f"md5 {actual} is not any of the expected {WRONG_MD5}") as info:
        download(urls=[served_archive], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[WRONG_MD5]), retry=FAST)

    assert served_archive in str(info.value)
    assert not (tmp_path / ARCHIVE).exists()
    assert not (tmp_path / f"{ARCHIVE}.part").exists()
    assert len(gets(http_server, ARCHIVE)) == 1  # a checksum mismatch is not retried on the same mirror


def test_any_listed_md5_passes(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    accepted = AcceptedChecksums.of(md5=[WRONG_MD5, md5_of(aux_archive_bytes).upper()])

    result = download(urls=[served_archive], dest_dir=tmp_path, accepted=accepted, retry=FAST)

    assert result.md5 == md5_of(aux_archive_bytes)


@pytest.mark.parametrize("sha_ok", [True, False], ids=["right-sha256", "wrong-sha256"])
def test_sha256_is_checked(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, sha_ok: bool) -> None:
    sha = sha256_of(aux_archive_bytes) if sha_ok else "f" * 64
    accepted = AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)], sha256=[sha])

    if sha_ok:
        assert download(urls=[served_archive], dest_dir=tmp_path, accepted=accepted, retry=FAST).sha256 == sha
    else:
        with pytest.raises(ChecksumMismatch, match=f"sha256 {sha256_of(aux_archive_bytes)} is not any of the expected {sha}"):
            download(urls=[served_archive], dest_dir=tmp_path, accepted=accepted, retry=FAST)
        assert not (tmp_path / ARCHIVE).exists()


def test_verified_final_file_is_reused_without_http(http_server, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    (tmp_path / ARCHIVE).write_bytes(aux_archive_bytes)
    url = http_server.url(ARCHIVE)  # not even served: any request would fail

    result = download(urls=[url], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]))

    assert result.reused
    assert (result.path, result.md5) == (str(tmp_path / ARCHIVE), md5_of(aux_archive_bytes))
    assert http_server.requests == []


def test_unverified_final_file_is_downloaded_again(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    (tmp_path / ARCHIVE).write_bytes(b"an older, different archive")

    result = download(
        urls=[served_archive], dest_dir=tmp_path, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    assert not result.reused
    assert Path(result.path).read_bytes() == aux_archive_bytes
    assert len(gets(http_server, ARCHIVE)) == 1


def test_progress_lines_carry_a_rate_and_a_final_line(
    served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imagenet_ops.core.download")

    download(
        urls=[served_archive],
        dest_dir=tmp_path,
        accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]),
        retry=FAST,
        progress_every=0.0,
    )

    progress = [m for m in caplog.messages if m.startswith(f"download {ARCHIVE}: ")]
    assert len(progress) >= 2
    rate = re.compile(r", \d+(\.\d+)? ([KMG]B|B)/s, ETA ")
    assert all(rate.search(m) for m in progress)
    assert re.search(r"\(100\.0%\).*\(\d+\.\ds\)$", progress[-1])
    assert any(m.startswith(f"downloaded {tmp_path / ARCHIVE} from {served_archive}") for m in caplog.messages)


def test_resume_of_a_file_that_changed_upstream_restarts_instead_of_splicing(
    http_server, served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    # Regression: a resume without If-Range appended new bytes to a partial copy of the old file.
    import hashlib

    old = b"an older release of the archive" * 1000
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / f"{ARCHIVE}.part").write_bytes(old[:5000])
    old_etag = '"' + hashlib.md5(old).hexdigest() + '"'
    (dest / f"{ARCHIVE}.part.url").write_text(json.dumps({"url": served_archive, "etag": old_etag}))

    result = download(
        urls=[served_archive], dest_dir=dest, accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]), retry=FAST
    )

    (request,) = gets(http_server, ARCHIVE)
    assert request.range == "bytes=5000-" and request.if_range == old_etag
    assert result.resumed_from == 0
    assert Path(result.path).read_bytes() == aux_archive_bytes


class _Trickle:
    """An HTTP server on 127.0.0.1 that sends ``size`` bytes, 256 at a time every 0.1 s (~2.5 KiB/s)."""

    def __init__(self, size: int) -> None:
        import http.server
        import threading
        import time

        body = bytes(size)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(0, len(body), 256):
                        self.wfile.write(body[i : i + 256])
                        self.wfile.flush()
                        time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{ARCHIVE}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_trickling_mirror_logs_progress_on_time_then_fails_over(
    served_archive: str, aux_archive_bytes: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 10 item 7): a download trickling at 1 KiB every 2 s logged nothing for minutes
    # (each read waited for a whole 64 KiB chunk) and never gave up.
    caplog.set_level(logging.INFO, logger="imagenet_ops.core.download")
    trickle = _Trickle(1 << 20)
    try:
        result = download(
            urls=[trickle.url, served_archive],
            dest_dir=tmp_path,
            accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]),
            retry=RetryPolicy(attempts=3, backoff=0.01, min_rate=64 * 1024, min_rate_window=1.5),
            progress_every=0.3,
        )
    finally:
        trickle.close()
    assert result.url == served_archive
    trickling = [m for m in caplog.messages if m.startswith(f"download {ARCHIVE}: ") and "/1.0 MB" in m]
    assert len(trickling) >= 3, caplog.messages  # progress on a timer while bytes trickle in
    slow = [m for m in caplog.messages if "too slow" in m]
    assert slow and trickle.url in slow[0] and "(the minimum is 65.5 KB/s)" in slow[0], caplog.messages


def test_a_file_url_is_copied_and_verified(aux_archive_bytes: bytes, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): file:// passed the option's pattern, then gave a raw traceback.
    source = tmp_path / "store" / ARCHIVE
    source.parent.mkdir()
    source.write_bytes(aux_archive_bytes)
    result = download(
        urls=[source.as_uri()], dest_dir=tmp_path / "dl", accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)])
    )
    assert Path(result.path).read_bytes() == aux_archive_bytes and result.url == source.as_uri()
    with pytest.raises(ChecksumMismatch):
        download(urls=[source.as_uri()], dest_dir=tmp_path / "dl2", accepted=AcceptedChecksums.of(md5=[WRONG_MD5]))


def test_bad_urls_and_redirect_loops_are_named_errors_and_the_next_mirror_is_tried(
    served_archive: str, aux_archive_bytes: bytes, tmp_path: Path
) -> None:
    # Regression (issue 10 item 6): a bad port and a redirect loop ended in raw tracebacks, and the
    # remaining mirrors were never tried.
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    loop = f"http://127.0.0.1:{server.server_address[1]}/{ARCHIVE}"
    bad_port = f"http://127.0.0.1:99999/{ARCHIVE}"
    try:
        result = download(
            urls=[bad_port, loop, served_archive],
            dest_dir=tmp_path,
            accepted=AcceptedChecksums.of(md5=[md5_of(aux_archive_bytes)]),
            retry=FAST,
        )
        assert result.url == served_archive
        with pytest.raises(DownloadError) as failed:
            download(urls=[bad_port, loop], dest_dir=tmp_path / "x", accepted=AcceptedChecksums.of(md5=[WRONG_MD5]), retry=FAST)
    finally:
        server.shutdown()
        server.server_close()
    assert f"{bad_port}: InvalidURL" in str(failed.value)
    assert f"{loop}: TooManyRedirects" in str(failed.value)
