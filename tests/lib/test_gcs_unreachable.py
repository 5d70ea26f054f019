"""An unreachable GCS endpoint (issue 10 item 6): a bounded, logged failure naming the endpoint.

It used to fail only after 85-119 s with nothing logged while waiting: google-cloud-storage's own
silent retries (a 120 s deadline) and 60 s timeouts. The endpoints here are real sockets on
127.0.0.1: a closed port (connections refused) and a blackhole that accepts connections and
never answers. The tests assert on errors and log records, not on timing.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from imagenet_ops.core import gcs_requests
from imagenet_ops.core.clients import RetrySettings, default_gcs_client
from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.core.store import ObjectStore


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts every connection, reads the request, and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections.append(conn)  # kept open, never written to

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.connections:
            conn.close()
        self._sock.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def retry_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "retrying in" in r.getMessage()]


def test_object_store_read_from_a_refusing_endpoint_logs_each_retry_and_names_it(
    closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 10 item 6): an unreachable GCS endpoint failed after 85-119 s, logging nothing.
    store = ObjectStore(
        gcs_client=default_gcs_client(endpoint=closed_port_url, project="p"), retry=RetrySettings(attempts=3, backoff=0.01)
    )

    with caplog.at_level("WARNING"), pytest.raises(StorageError) as info:
        store.read("gs://some-bucket/labels.txt")

    # an input is named as itself; only writes say "sink" (the read side once borrowed the sinks' wording)
    assert re.match(
        rf"gs://some-bucket/labels\.txt: read via GCS endpoint {re.escape(closed_port_url)} failed after 3 attempts "
        r"\(is the endpoint reachable and are the credentials right\?\): ConnectionError: .*Connection refused",
        str(info.value),
    ), str(info.value)
    retries = retry_records(caplog)
    assert [m.rpartition("(")[2] for m in retries] == ["attempt 2 of 3)", "attempt 3 of 3)"]
    assert all(f"read via GCS endpoint {closed_port_url} failed (" in m for m in retries), retries


def test_gcs_sink_on_a_refusing_endpoint_logs_each_retry_and_names_it(
    closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 10 item 6): same for the sinks (the CLI's --output gs://...).
    sink = open_sink(
        "gs://some-bucket/aux",
        gcs_client=default_gcs_client(endpoint=closed_port_url, project="p"),
        retry=RetrySettings(attempts=2, backoff=0.01),
    )

    with caplog.at_level("WARNING"), pytest.raises(StorageError, match=rf"via GCS endpoint {re.escape(closed_port_url)}"):
        sink.put_bytes(b"{}", "manifest.json")

    assert len(retry_records(caplog)) == 1
    assert (
        f"sink gs://some-bucket/aux: put aux/manifest.json via GCS endpoint {closed_port_url} failed ("
        in (retry_records(caplog)[0])
    )


@pytest.mark.parametrize("call", ["store-read", "store-list", "store-download", "sink-get", "sink-upload"])
def test_a_silent_endpoint_times_out_once_per_attempt(
    blackhole: Blackhole, caplog: pytest.LogCaptureFixture, call: str, tmp_path
) -> None:
    # Regression (issue 10 item 6): an endpoint that accepts but never answers held each call for 60 s,
    # retried silently by the library. Now: our read timeout, one connection per attempt, each retry logged.
    retry = RetrySettings(attempts=2, backoff=0.01, gcs_timeout=(2.0, 0.5))
    client = default_gcs_client(endpoint=blackhole.url, project="p")
    store, sink = ObjectStore(gcs_client=client, retry=retry), open_sink("gs://some-bucket/out", gcs_client=client, retry=retry)
    local = tmp_path / "local.bin"
    local.write_bytes(b"x" * 1000)
    calls = {
        "store-read": lambda: store.read("gs://some-bucket/k"),
        "store-list": lambda: store.list("gs://some-bucket/prefix"),
        "store-download": lambda: store.download("gs://some-bucket/k", tmp_path / "k"),
        "sink-get": lambda: sink.get_bytes("manifest.json"),
        "sink-upload": lambda: sink.put_file(local, "local.bin"),
    }

    with caplog.at_level("WARNING"), pytest.raises(StorageError) as info:
        calls[call]()

    message = str(info.value)
    assert f"via GCS endpoint {blackhole.url} failed after 2 attempts" in message, message
    assert "Read timed out. (read timeout=0.5)" in message, message
    assert len(blackhole.connections) == 2  # one per attempt: no hidden retries inside the library
    assert len(retry_records(caplog)) == 1
    assert not (tmp_path / "k").exists()


def test_the_stated_bounds_match_the_defaults() -> None:
    # The bounds in imagenet_ops.core.gcs_requests' docstring (and the README) follow from the defaults.
    retry = RetrySettings()
    pauses = sum(retry.backoff * 2**n for n in range(retry.attempts - 1))
    connect, read = retry.gcs_timeout
    doc = gcs_requests.__doc__

    assert (connect, read) == (gcs_requests.CONNECT_TIMEOUT, gcs_requests.READ_TIMEOUT)
    assert f"about {pauses:g} s" in doc
    assert f"at most {retry.attempts} x {connect:g} + {pauses:g} = {retry.attempts * connect + pauses:g} s" in doc
    assert f"at most {retry.attempts} x {read:g} + {pauses:g} = {retry.attempts * read + pauses:g} s" in doc
