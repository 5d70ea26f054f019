"""ObjectStore: inputs read by URI from S3 (moto server), GCS (emulator) and local paths."""

from __future__ import annotations

import io
import random
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagenet_ops.core.clients import RetrySettings
from imagenet_ops.core.errors import ArchiveError, StorageError
from imagenet_ops.core.store import ObjectInfo, ObjectStore, ShortReadError
from imagenet_ops.core.uris import is_remote

FAST = RetrySettings(attempts=2, backoff=0.01)
DATA = random.Random(0).randbytes(10_000)
TREE = {
    "train/b.tar": b"bbb",
    "train/a/x.JPEG": b"x" * 10,
    "train/a/y/z.bin": b"z" * 7,
    "train2/other.txt": b"not under train/",
    "top.txt": b"top",
}


@dataclass
class Place:
    """Where a test's inputs live: ``put`` writes natively, ``store`` is the ObjectStore that reads them."""

    kind: str
    root: str
    put: Callable[[str, bytes], None]
    store: ObjectStore

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"


def make_place(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if kind == "s3":
        client, bucket = request.getfixturevalue("s3_bucket")
        return Place(
            kind,
            f"s3://{bucket}",
            lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
            ObjectStore(s3_client=client, retry=FAST),
        )
    if kind == "gcs":
        client, bucket = request.getfixturevalue("gcs_bucket")
        return Place(
            kind,
            f"gs://{bucket}",
            lambda key, data: client.bucket(bucket).blob(key).upload_from_string(data),
            ObjectStore(gcs_client=client, retry=FAST),
        )
    root = tmp_path / "inputs"
    root.mkdir()

    def put(key: str, data: bytes) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    return Place(kind, str(root), put, ObjectStore())


@pytest.fixture(params=["s3", "gcs", "local"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, request, tmp_path)


@pytest.fixture(params=["s3", "gcs"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, request, tmp_path)


def make_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key", True),
        ("gs://bucket/key", True),
        ("GS://bucket", True),
        ("/data/ILSVRC2012_img_val.tar", False),
        ("file:///data/x.tar", False),
        ("relative/s3://x", False),
        ("http://host/x.tar", False),
    ],
)
def test_is_remote(uri: str, expected: bool) -> None:
    assert is_remote(uri) is expected


def test_list_recursive_sorted(place: Place) -> None:
    for key, data in TREE.items():
        place.put(key, data)

    expected = [
        ObjectInfo(place.uri("train/a/x.JPEG"), "a/x.JPEG", 10),
        ObjectInfo(place.uri("train/a/y/z.bin"), "a/y/z.bin", 7),
        ObjectInfo(place.uri("train/b.tar"), "b.tar", 3),
    ]
    assert place.store.list(place.uri("train")) == expected
    assert place.store.list(place.uri("train/")) == expected  # a prefix is a folder: train2/ is not under it
    assert [(o.name, o.size) for o in place.store.list(place.root)] == sorted((k, len(v)) for k, v in TREE.items())
    # A prefix naming one object lists just that object.
    assert place.store.list(place.uri("train/b.tar")) == [ObjectInfo(place.uri("train/b.tar"), "b.tar", 3)]


def test_list_of_nothing(place: Place) -> None:
    place.put("train/a.tar", b"a")
    prefix = place.uri("val")

    with pytest.raises(StorageError, match=rf"^{re.escape(prefix)}: list (found no objects|failed: no such file)"):
        place.store.list(prefix)


@pytest.mark.parametrize(("kind", "reason"), [("s3", "no such bucket"), ("gcs", "no such bucket or object")], ids=["s3", "gcs"])
def test_list_missing_bucket(kind: str, reason: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = make_place(kind, request, tmp_path).store
    prefix = f"{'s3' if kind == 's3' else 'gs'}://no-such-bucket-here/imagenet"

    with pytest.raises(StorageError, match=rf"^{re.escape(prefix)}: list failed: {reason}"):
        store.list(prefix)


def test_read_size_and_exists(place: Place) -> None:
    place.put("inputs/val.tar", DATA)
    place.put("inputs/empty", b"")
    uri = place.uri("inputs/val.tar")

    assert place.store.read(uri) == DATA
    assert place.store.size(uri) == len(DATA)
    assert place.store.exists(uri)
    assert not place.store.exists(place.uri("inputs/nope.tar"))
    assert not place.store.exists(place.uri("inputs"))  # a folder is not an object
    assert (place.store.read(place.uri("inputs/empty")), place.store.size(place.uri("inputs/empty"))) == (b"", 0)


def test_read_range(place: Place) -> None:
    place.put("val.tar", DATA)
    uri = place.uri("val.tar")

    assert place.store.read_range(uri, 0, 1) == DATA[:1]
    assert place.store.read_range(uri, 1234, 4321) == DATA[1234:5555]
    assert place.store.read_range(uri, len(DATA) - 10, 10) == DATA[-10:]  # the tail, to the last byte
    assert place.store.read_range(uri, 0, len(DATA)) == DATA
    assert place.store.read_range(uri, 500, 0) == b""


@pytest.mark.parametrize(("offset", "size", "got"), [(len(DATA) - 5, 10, 5), (len(DATA), 1, 0), (len(DATA) + 100, 8, 0)])
def test_short_read(place: Place, offset: int, size: int, got: int) -> None:
    place.put("val.tar", DATA)
    uri = place.uri("val.tar")

    with pytest.raises(
        ShortReadError, match=rf"^{re.escape(uri)}: read {size} bytes at offset {offset} got only {got} bytes"
    ) as exc:
        place.store.read_range(uri, offset, size)
    assert isinstance(exc.value, ArchiveError) and isinstance(exc.value, StorageError)


def test_negative_range(place: Place) -> None:
    place.put("val.tar", DATA)

    with pytest.raises(ValueError, match="offset=-1 size=4"):
        place.store.read_range(place.uri("val.tar"), -1, 4)


MISSING_OPS = {
    "read": lambda store, uri, tmp: store.read(uri),
    "read_range": lambda store, uri, tmp: store.read_range(uri, 0, 4),
    "size": lambda store, uri, tmp: store.size(uri),
    "open": lambda store, uri, tmp: store.open(uri),
    "download": lambda store, uri, tmp: store.download(uri, tmp / "dl" / "x.tar"),
}


@pytest.mark.parametrize("op", list(MISSING_OPS))
def test_missing_object(place: Place, op: str, tmp_path: Path) -> None:
    place.put("present.tar", b"here")
    uri = place.uri("absent/ILSVRC2012_img_val.tar")

    with pytest.raises(StorageError, match=rf"^{re.escape(uri)}: .*no such (object|file|bucket or object)"):
        MISSING_OPS[op](place.store, uri, tmp_path)
    assert list((tmp_path / "dl").glob("*")) == []  # a failed download leaves nothing behind


def test_open_with_tarfile(place: Place) -> None:
    members = {
        "n01440764/n01440764_10026.JPEG": random.Random(1).randbytes(3000),
        "n01440764/n01440764_10027.JPEG": random.Random(2).randbytes(700),
        "n01443537/empty.JPEG": b"",
        "n01443537/n01443537_1.JPEG": random.Random(3).randbytes(9000),
    }
    blob = make_tar(members)
    place.put("ILSVRC2012_img_val.tar", blob)
    uri = place.uri("ILSVRC2012_img_val.tar")

    with place.store.open(uri, buffer_size=4096) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        infos = tar.getmembers()
        assert [m.name for m in infos] == list(members)
        for m in infos:
            assert tar.extractfile(m).read() == members[m.name]
        for m in reversed(infos):  # random access by offset through the same file
            f.seek(m.offset_data)
            assert f.read(m.size) == members[m.name]
        assert f.seek(0, io.SEEK_END) == len(blob)

    for m in infos:  # the way workers read members later: one ranged GET each
        assert place.store.read_range(uri, m.offset_data, m.size) == members[m.name]


def test_open_whole_and_tail(place: Place) -> None:
    place.put("val.tar", DATA)

    with place.store.open(place.uri("val.tar"), buffer_size=1024) as f:
        assert f.seekable() and f.readable()
        assert f.read() == DATA
        assert f.read(10) == b""
        f.seek(-10, io.SEEK_END)
        assert f.read(100) == DATA[-10:]
        f.seek(100)
        assert (f.read(5), f.tell()) == (DATA[100:105], 105)


def count_s3_gets(place: Place) -> list[str]:
    """Record every GetObject the store's boto3 client really sends (empty for GCS)."""
    calls: list[str] = []
    if place.kind == "s3":
        place.store.s3_client.meta.events.register("before-call.s3.GetObject", lambda **kw: calls.append("get"))
    return calls


def test_seeks_in_buffer_are_free(remote: Place) -> None:
    data = random.Random(4).randbytes(64 << 10)
    remote.put("val.tar", data)
    gets = count_s3_gets(remote)

    with remote.store.open(remote.uri("val.tar"), buffer_size=16 << 10) as f:
        raw = f.raw
        assert f.read(100) == data[:100]
        f.seek(5000)
        assert f.read(512) == data[5000:5512]
        f.seek(50)
        assert f.read(10) == data[50:60]
        f.seek(1000, io.SEEK_CUR)
        assert f.read(10) == data[1060:1070]
        assert raw.requests == 1
        f.seek(40_000)  # outside the buffer: one new GET, of one buffer
        assert f.read(10) == data[40_000:40_010]
        assert f.read(1000) == data[40_010:41_010]
        assert raw.requests == 2
        assert f.read() == data[41_010:]  # the rest in one GET
        assert raw.requests == 3
    if remote.kind == "s3":
        assert len(gets) == raw.requests


# Reading tar headers must not cost one request per seek: tarfile seeks before every header.
def test_tar_headers_one_request(remote: Place) -> None:
    members = {f"n{i:08d}.JPEG": bytes([i]) * (100 + i) for i in range(40)}
    blob = make_tar(members)
    assert len(blob) < 1 << 20
    remote.put("val.tar", blob)
    gets = count_s3_gets(remote)

    with remote.store.open(remote.uri("val.tar"), buffer_size=1 << 20) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        assert tar.getnames() == list(members)
        assert tar.extractfile("n00000039.JPEG").read() == members["n00000039.JPEG"]
        assert f.raw.requests == 1
    if remote.kind == "s3":
        assert gets == ["get"]


# S3 only: gcp-storage-emulator ignores the ``generation`` a GCS read is pinned to (real GCS answers 404).
def test_replaced_while_open(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    remote = make_place("s3", request, tmp_path)
    remote.put("val.tar", DATA)
    uri = remote.uri("val.tar")

    with remote.store.open(uri, buffer_size=1024) as f:
        assert f.read(10) == DATA[:10]
        remote.put("val.tar", DATA[::-1])
        with pytest.raises(
            StorageError, match=rf"^{re.escape(uri)}: read 1024 bytes at offset 5000 failed: the object was replaced"
        ):
            f.seek(5000)
            f.read(10)


def test_download_is_atomic(place: Place, tmp_path: Path) -> None:
    place.put("ILSVRC2012_img_val.tar", DATA)
    dest = tmp_path / "work" / "sub" / "ILSVRC2012_img_val.tar"

    assert place.store.download(place.uri("ILSVRC2012_img_val.tar"), dest) == dest
    assert dest.read_bytes() == DATA
    place.put("ILSVRC2012_img_val.tar", b"newer")
    place.store.download(place.uri("ILSVRC2012_img_val.tar"), dest)  # replaces an existing file
    assert dest.read_bytes() == b"newer"
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp file left behind


class FlakyS3:
    """A real boto3 client whose first GetObject body breaks after ``fail_after`` bytes."""

    def __init__(self, client: object, fail_after: int) -> None:
        self._client, self.fail_after, self.ranges = client, fail_after, []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def get_object(self, **kwargs: object) -> dict:
        from botocore.exceptions import ResponseStreamingError

        self.ranges.append(kwargs.get("Range"))
        response = self._client.get_object(**kwargs)
        if len(self.ranges) == 1:
            body, limit = response["Body"], self.fail_after

            def iter_chunks(chunk_size: int):
                sent = 0
                for chunk in body.iter_chunks(1000):
                    if sent + len(chunk) > limit:
                        raise ResponseStreamingError(error="connection reset by peer")
                    sent += len(chunk)
                    yield chunk

            response["Body"] = type("BrokenBody", (), {"iter_chunks": staticmethod(iter_chunks)})()
        return response


def test_download_resumes_after_a_broken_stream(s3_bucket: tuple, tmp_path: Path) -> None:
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="val.tar", Body=DATA)
    flaky = FlakyS3(client, fail_after=4000)
    dest = tmp_path / "val.tar"

    ObjectStore(s3_client=flaky, retry=FAST).download(f"s3://{bucket}/val.tar", dest)

    assert dest.read_bytes() == DATA
    assert flaky.ranges == [None, "bytes=4000-"]
    assert [p.name for p in tmp_path.iterdir()] == ["val.tar"]


def test_local_file_uris_make_no_clients(tmp_path: Path) -> None:
    path = tmp_path / "val.tar"
    path.write_bytes(DATA)
    store = ObjectStore()

    assert store.read(path.as_uri()) == DATA
    assert store.list(path.as_uri()) == [ObjectInfo(str(path), "val.tar", len(DATA))]
    assert store.download(str(path), path) == path and path.read_bytes() == DATA  # onto itself: untouched
    with store.open(str(path)) as f:
        f.seek(100)
        assert f.read(3) == DATA[100:103]
    assert (store.s3_client, store.gcs_client) == (None, None)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3:///key", r"missing bucket name \(expected s3://bucket/key\)"),
        ("gs://bucket", r"no object key \(expected gs://bucket/key\)"),
        ("s3://bucket/", r"no object key"),
        ("http://host/x.tar", "unsupported scheme 'http'"),
    ],
)
def test_bad_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        ObjectStore(s3_client=object(), gcs_client=object()).read(uri)


def test_unreachable_s3_endpoint(closed_port: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        region_name="us-east-1",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}),
    )

    with pytest.raises(StorageError, match=r"s3://bucket/val.tar: read 4 bytes at offset 0 failed after 2 attempts"):
        ObjectStore(s3_client=client, retry=FAST).read_range("s3://bucket/val.tar", 0, 4)
