"""Sinks and publish_dir(): local folder, S3 (moto server) and GCS (emulator), manifest written last."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagenet_ops.core.clients import RetrySettings, default_gcs_client
from imagenet_ops.core.errors import ConfigError, StorageError
from imagenet_ops.core.manifest import MANIFEST_NAME, asset_uri, cache_key_for, publish_dir, read_manifest
from imagenet_ops.core.output_location import INTENT_KEY
from imagenet_ops.core.sinks import GCSSink, LocalSink, S3Sink, Sink, open_sink
from imagenet_ops.core.uris import split_uri

FAST = RetrySettings(attempts=2, backoff=0.01)
FILES = {
    "synsets.txt": b"n01440764\nn01443537\n",
    "val.txt": b"ILSVRC2012_val_00000001.JPEG 1\n" * 50,
    "sub/mean.bin": bytes(range(256)),
}
PARAMS = {"source": "berkeleyvision", "version": "2012", "urls": ["http://a/x.tar.gz"]}
UPSTREAM = {"md5": "a" * 32, "sha256": "b" * 64, "size": 123}


@dataclass
class Target:
    """One sink location, reachable through the library and natively (to check what really landed)."""

    uri: str
    open: Callable[[], Sink]
    keys: Callable[[], set[str]]
    read: Callable[[str], bytes]


class RecordingSink:
    """Wraps a sink and records the start and end of every call, in order."""

    def __init__(self, inner: Sink) -> None:
        self.inner, self.uri, self.events = inner, inner.uri, []
        self._lock = threading.Lock()

    def _record(self, op: str, key: str, fn: Callable[[], object]) -> object:
        with self._lock:
            self.events.append(("start", op, key))
        out = fn()
        with self._lock:
            self.events.append(("end", op, key))
        return out

    def put_file(self, local: Path, key: str) -> None:
        self._record("put_file", key, lambda: self.inner.put_file(local, key))

    def put_bytes(self, data: bytes, key: str) -> None:
        self._record("put_bytes", key, lambda: self.inner.put_bytes(data, key))

    def get_bytes(self, key: str) -> bytes | None:
        return self._record("get_bytes", key, lambda: self.inner.get_bytes(key))

    def delete(self, key: str) -> None:
        self._record("delete", key, lambda: self.inner.delete(key))

    def location(self, key: str = "") -> str:
        return self.inner.location(key)

    def writes(self) -> list[tuple[str, str, str]]:
        return [e for e in self.events if e[1] != "get_bytes"]


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def local_dir(tmp_path: Path) -> Path:
    return write_files(tmp_path / "artifact", FILES)


@pytest.fixture(params=["local", "s3", "gcs"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        root = tmp_path / "sink" / "aux" / "v1"
        return Target(
            uri=str(root),
            open=lambda: open_sink(str(root)),
            keys=lambda: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set(),
            read=lambda key: (root / key).read_bytes(),
        )
    if request.param == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")
        return Target(
            uri=f"s3://{bucket}/aux/v1",
            open=lambda: open_sink(f"s3://{bucket}/aux/v1", s3_client=client, retry=FAST),
            keys=lambda: {
                o["Key"].removeprefix("aux/v1/")
                for o in client.list_objects_v2(Bucket=bucket, Prefix="aux/v1/").get("Contents", [])
            },
            read=lambda key: client.get_object(Bucket=bucket, Key=f"aux/v1/{key}")["Body"].read(),
        )
    client, bucket = request.getfixturevalue("gcs_bucket")
    return Target(
        uri=f"gs://{bucket}/aux/v1",
        open=lambda: open_sink(f"gs://{bucket}/aux/v1", gcs_client=client, retry=FAST),
        keys=lambda: {b.name.removeprefix("aux/v1/") for b in client.list_blobs(bucket, prefix="aux/v1/")},
        read=lambda key: client.bucket(bucket).blob(f"aux/v1/{key}").download_as_bytes(),
    )


MANIFEST_THEN_INTENT_GONE = (
    ("start", "put_bytes", MANIFEST_NAME),
    ("end", "put_bytes", MANIFEST_NAME),
    ("start", "delete", INTENT_KEY),
    ("end", "delete", INTENT_KEY),
)


def publish(sink: Sink, folder: Path, upstream: dict = UPSTREAM, **kwargs):
    return publish_dir(local_dir=folder, sink=sink, artifact="imagenet_aux", params=PARAMS, upstream=upstream, **kwargs)


def test_publish_round_trip(target: Target, local_dir: Path) -> None:
    sink = RecordingSink(target.open())

    result = publish(sink, local_dir, provenance={"url": "http://mirror/x.tar.gz", "etag": '"e"'})

    assert not result.cache_hit
    assert (result.uri, result.manifest_uri) == (target.uri, f"{target.uri}/{MANIFEST_NAME}")
    assert (result.files, result.bytes) == (len(FILES), sum(len(b) for b in FILES.values()))
    assert target.keys() == {*FILES, MANIFEST_NAME}
    assert {key: target.read(key) for key in FILES} == FILES
    manifest = json.loads(target.read(MANIFEST_NAME))
    assert manifest == result.manifest
    assert manifest["files"] == [
        {"path": name, "size": len(FILES[name]), "sha256": hashlib.sha256(FILES[name]).hexdigest()} for name in sorted(FILES)
    ]
    assert (manifest["artifact"], manifest["params"], manifest["upstream"]) == ("imagenet_aux", PARAMS, UPSTREAM)
    assert manifest["provenance"] == {"url": "http://mirror/x.tar.gz", "etag": '"e"'}
    assert manifest["cache_key"] == result.cache_key == cache_key_for(artifact="imagenet_aux", params=PARAMS, upstream=UPSTREAM)
    # The manifest is written last: every data upload has finished before it starts. Only the
    # intent record (what a killed run would have to clean) goes after it.
    writes = sink.writes()
    assert writes[-4:] == [*MANIFEST_THEN_INTENT_GONE]
    assert sorted(key for _, op, key in writes[:-4] if op == "put_file") == sorted([*FILES, *FILES])


def test_second_publish_is_a_cache_hit_and_uploads_nothing(target: Target, local_dir: Path) -> None:
    first = publish(target.open(), local_dir, provenance={"url": "http://mirror-a/x.tar.gz"})
    before = {key: target.read(key) for key in target.keys()}
    sink = RecordingSink(target.open())

    # Another mirror serving the same bytes is the same artifact: provenance is not in the cache key.
    second = publish(sink, local_dir, provenance={"url": "http://mirror-b/x.tar.gz"})

    assert second.cache_hit
    assert (second.cache_key, second.files, second.bytes, second.uri) == (first.cache_key, first.files, first.bytes, first.uri)
    assert second.manifest == first.manifest
    assert sink.writes() == []
    assert {key: target.read(key) for key in target.keys()} == before


def test_changed_upstream_republishes_after_deleting_the_old_manifest(target: Target, local_dir: Path, tmp_path: Path) -> None:
    publish(target.open(), local_dir)
    changed = write_files(tmp_path / "changed", {**FILES, "val.txt": b"ILSVRC2012_val_00000001.JPEG 7\n"})
    new_upstream = {**UPSTREAM, "md5": "c" * 32}
    sink = RecordingSink(target.open())

    result = publish(sink, changed, upstream=new_upstream)

    assert not result.cache_hit
    assert result.previous_upstream == UPSTREAM
    writes = sink.writes()
    assert writes[:2] == [("start", "delete", MANIFEST_NAME), ("end", "delete", MANIFEST_NAME)]
    assert writes[-4:] == [*MANIFEST_THEN_INTENT_GONE]
    assert target.read("val.txt") == b"ILSVRC2012_val_00000001.JPEG 7\n"
    manifest = read_manifest(target.open())
    assert manifest is not None and manifest["upstream"] == new_upstream
    assert {f["path"]: f["sha256"] for f in manifest["files"]}["val.txt"] == hashlib.sha256(
        b"ILSVRC2012_val_00000001.JPEG 7\n"
    ).hexdigest()


@pytest.mark.parametrize("junk", [b"{not json", b'{"files": []}', b"[1, 2]"], ids=["unreadable", "no-cache-key", "not-a-dict"])
def test_incomplete_manifest_is_ignored_and_replaced(tmp_path: Path, local_dir: Path, junk: bytes) -> None:
    sink = open_sink(str(tmp_path / "sink"))
    sink.put_bytes(junk, MANIFEST_NAME)
    assert read_manifest(sink) is None

    result = publish(sink, local_dir)

    assert not result.cache_hit
    assert read_manifest(sink) == result.manifest


def test_unreachable_s3_endpoint_is_a_storage_error(local_dir: Path, closed_port: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        region_name="us-east-1",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}),
    )
    sink = open_sink("s3://bucket/prefix", s3_client=client, retry=FAST)

    with pytest.raises(StorageError, match=r"^sink s3://bucket/prefix: .* failed after 2 attempts"):
        publish(sink, local_dir)


def test_unwritable_local_sink_is_a_storage_error(tmp_path: Path, local_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(StorageError, match=f"sink {re.escape(str(blocker))}/sub: cannot read"):
        publish(open_sink(str(blocker / "sub")), local_dir)


def test_a_failed_upload_stops_the_publish_and_starts_no_more_uploads(tmp_path: Path, local_dir: Path) -> None:
    # Regression: after one upload failed the pool still ran every queued upload (a full disk was
    # written to until the last file), and the run failed only once all had been tried.
    root = tmp_path / "sink"
    (root / "synsets.txt").mkdir(parents=True)  # the second file in order cannot replace a folder
    sink = RecordingSink(open_sink(str(root)))

    with pytest.raises(StorageError, match=rf"sink {re.escape(str(root))}: cannot write {re.escape(str(root))}/synsets\.txt"):
        publish(sink, local_dir, workers=1)

    assert [key for _, op, key in sink.writes() if op == "put_file"] == ["sub/mean.bin", "sub/mean.bin", "synsets.txt"]
    assert not (root / "val.txt").exists() and not (root / MANIFEST_NAME).exists()


S3_OPS = {
    "put_file": lambda sink, f: sink.put_file(f, "k"),
    "put_bytes": lambda sink, f: sink.put_bytes(b"x", "k"),
    "get_bytes": lambda sink, f: sink.get_bytes("k"),
    "delete": lambda sink, f: sink.delete("k"),
}


# Bug: S3Sink._call converts botocore ClientError only; boto3's upload_file wraps it in
# boto3.exceptions.S3UploadFailedError, which escapes put_file instead of a StorageError.
@pytest.mark.parametrize(
    "op",
    [
        "put_file",
        "put_bytes",
        "get_bytes",
        "delete",
    ],
)
def test_s3_missing_bucket_is_a_storage_error(s3_endpoint: str, tmp_path: Path, op: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    sink = open_sink("s3://no-such-bucket/p", s3_client=client, retry=FAST)
    local = tmp_path / "f.txt"
    local.write_text("x")

    with pytest.raises(StorageError, match=r"sink s3://no-such-bucket/p: .*NoSuchBucket"):
        S3_OPS[op](sink, local)


def test_get_of_a_missing_key_is_none(target: Target) -> None:
    sink = target.open()

    assert sink.get_bytes("nothing/here.txt") is None
    sink.delete("nothing/here.txt")  # deleting what is not there is fine
    assert target.keys() == set()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b/", ("s3", "bucket", "a/b")),
        ("s3://bucket", ("s3", "bucket", "")),
        ("gs://bkt/aux", ("gs", "bkt", "aux")),
        ("file:///srv/artifacts/aux", ("file", "", "/srv/artifacts/aux")),
        ("/srv/artifacts/aux", ("file", "", "/srv/artifacts/aux")),
        ("relative/aux", ("file", "", "relative/aux")),
        ("C:\\artifacts\\aux", ("file", "", "C:\\artifacts\\aux")),
    ],
)
def test_split_uri(uri: str, expected: tuple[str, str, str]) -> None:
    assert split_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3:///prefix", r"missing bucket name \(expected s3://bucket/prefix\)"),
        ("gs://", r"missing bucket name \(expected gs://bucket/prefix\)"),
        ("http://host/x", "unsupported scheme 'http'"),
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        # Regression: keys escaped their prefix (s3://b/../../etc wrote keys named ../../etc/*).
        ("s3://bucket/../../etc", "'.' and '..' segments would write keys outside the prefix"),
        ("gs://bucket/a/./b", "'.' and '..' segments"),
        # Regression: urlsplit silently dropped '?x=1#f'.
        ("s3://bucket/a?x=1#f", "'\\?' and '#' are not allowed"),
        ("gs://bucket/a#f", "'\\?' and '#' are not allowed"),
        ("s3://Bad_Bucket!/a", "invalid bucket name 'Bad_Bucket!'"),
        ("s3://ab/a", "invalid bucket name 'ab'"),
    ],
)
def test_split_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as refused:
        split_uri(uri)
    # Bad input, not a storage outage: the DAGs' retry policy fails it at once instead of 3 retries.
    assert isinstance(refused.value, ConfigError)


def test_open_sink_picks_the_kind(tmp_path: Path) -> None:
    gcs = default_gcs_client(endpoint="http://127.0.0.1:9", project="p")  # no request is made

    assert isinstance(open_sink(str(tmp_path)), LocalSink)
    assert isinstance(open_sink(tmp_path.as_uri()), LocalSink)
    assert isinstance(open_sink("s3://bkt/p", s3_client=object()), S3Sink)
    assert isinstance(open_sink("gs://bkt/p", gcs_client=gcs), GCSSink)


def test_asset_uri(tmp_path: Path) -> None:
    gcs = default_gcs_client(endpoint="http://127.0.0.1:9", project="p")

    assert asset_uri(open_sink(str(tmp_path / "aux"))) == (tmp_path / "aux").as_uri()
    assert asset_uri(open_sink((tmp_path / "aux").as_uri())) == (tmp_path / "aux").as_uri()
    assert asset_uri(open_sink("s3://bucket/aux/v1/", s3_client=object())) == "s3://bucket/aux/v1"
    assert asset_uri(open_sink("s3://bucket", s3_client=object())) == "s3://bucket"
    assert asset_uri(open_sink("gs://bucket/aux", gcs_client=gcs)) == "gs://bucket/aux"


def test_cache_key_is_stable_and_covers_params_and_upstream() -> None:
    key = cache_key_for(artifact="a", params={"x": 1, "y": [1, 2]}, upstream={"md5": "m"})

    assert key == cache_key_for(artifact="a", params={"y": [1, 2], "x": 1}, upstream={"md5": "m"})
    assert (
        len(
            {
                key,
                cache_key_for(artifact="b", params={"x": 1, "y": [1, 2]}, upstream={"md5": "m"}),
                cache_key_for(artifact="a", params={"x": 2, "y": [1, 2]}, upstream={"md5": "m"}),
                cache_key_for(artifact="a", params={"x": 1, "y": [1, 2]}, upstream={"md5": "n"}),
                cache_key_for(artifact="a", params={"x": 1, "y": [1, 2]}),
            }
        )
        == 5
    )
