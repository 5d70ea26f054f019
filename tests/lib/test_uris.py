"""The one URI parser: what is remote, what is a URL, and how inputs and outputs are read."""

from __future__ import annotations

import pytest

from imagenet_ops.core.errors import SinkURIError, StorageError
from imagenet_ops.core.uris import Location, is_remote, is_url, parse_location, scheme_of, split_uri


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("s3://b/k", "s3"),
        ("GS://b/k", "gs"),
        ("/data/x", "file"),
        ("file:///x", "file"),
        ("http://h/x", "file"),
        ("C:/x", "file"),
    ],
)
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme
    assert is_remote(uri) == (scheme != "file")


def test_is_url() -> None:
    assert is_url("https://h/x") and is_url("HTTP://h/x") and is_url("file:///x")
    assert not is_url("s3://b/k") and not is_url("/local/path") and not is_url("relative/path")


def test_inputs_keep_hash_and_question_mark_in_keys() -> None:
    # object keys may hold '#' and '?'; urlsplit would cut them off
    assert parse_location("s3://b/a#1?x.tar") == Location("s3", "b", "a#1?x.tar")
    assert parse_location("file:///d/a%20b") == Location("file", "", "/d/a b")
    with pytest.raises(StorageError, match="missing bucket"):
        parse_location("gs:///k")
    with pytest.raises(StorageError, match="unsupported scheme 'ftp'"):
        parse_location("ftp://h/x")


def test_outputs_are_refused_when_they_would_escape_or_lose_their_prefix() -> None:
    assert split_uri("s3://bucket/a/b/") == ("s3", "bucket", "a/b")
    assert split_uri("/out") == ("file", "", "/out")
    for bad in ("s3://bucket/../etc", "gs://bucket/a?b", "s3://Bad_Bucket/x", "s3:///x", "ftp://h/x"):
        with pytest.raises(SinkURIError):
            split_uri(bad)


def test_browse_urls_open_what_a_person_can_open(tmp_path):
    from imagenet_ops.core.uris import browse_url

    assert browse_url(str(tmp_path / "aux")) == (tmp_path / "aux").resolve().as_uri()
    assert browse_url("s3://bk/imagenet/aux") == "https://s3.console.aws.amazon.com/s3/buckets/bk?prefix=imagenet/aux/"
    assert (
        browse_url("s3://bk/aux/manifest.json", endpoint="https://s3.eu-west-1.amazonaws.com", folder=False)
        == "https://s3.console.aws.amazon.com/s3/object/bk?prefix=aux/manifest.json"
    )
    assert browse_url("gs://bk/a b") == "https://console.cloud.google.com/storage/browser/bk/a%20b/"
    assert (
        browse_url("gs://bk/a/manifest.json", folder=False)
        == "https://console.cloud.google.com/storage/browser/_details/bk/a/manifest.json"
    )
    # an S3-protocol server of its own (the compose deployment's MinIO): the AWS console cannot show it
    assert browse_url("s3://imagenet-artifacts/aux", endpoint="http://minio:9000/") == "http://minio:9000/imagenet-artifacts/aux/"
