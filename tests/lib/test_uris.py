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
