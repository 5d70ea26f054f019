"""URL credentials never recorded: logs, manifests, download results and cache keys show ``***``."""

from __future__ import annotations

import json

import pytest

from imagenet_ops.core.redact import redact_text, redact_url, redact_values, secrets_in, url_secrets


@pytest.mark.parametrize(
    ("url", "redacted", "secrets"),
    [
        ("https://user:pa55@host/x.tar.gz", "https://user:***@host/x.tar.gz", ["pa55"]),
        (
            "https://b.s3.amazonaws.com/x?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&X-Amz-Date=2026",
            "https://b.s3.amazonaws.com/x?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=2026",
            ["AK/1", "abc"],
        ),
        ("https://h/x?token=t0k&dl=1", "https://h/x?token=***&dl=1", ["t0k"]),
        (
            "https://storage.googleapis.com/b/o?X-Goog-Signature=ff",
            "https://storage.googleapis.com/b/o?X-Goog-Signature=***",
            ["ff"],
        ),
        ("http://mirror.internal/caffe_ilsvrc12.tar.gz?dl=1", "http://mirror.internal/caffe_ilsvrc12.tar.gz?dl=1", []),
        ("https://user@h/x", "https://user@h/x", []),
    ],
)
def test_redact_url(url: str, redacted: str, secrets: list[str]) -> None:
    assert redact_url(url) == redacted
    assert url_secrets(url) == secrets


def test_redact_text_and_values_find_urls_anywhere() -> None:
    text = "mirror failed: https://u:p@h/a?sig=1 HTTP 403, then http://ok/x"
    assert redact_text(text) == "mirror failed: https://u:***@h/a?sig=*** HTTP 403, then http://ok/x"
    value = {"urls": ["https://u:p@h/a", "http://ok/x"], "n": 3, "nested": {"u": "https://h/x?token=t"}}
    assert redact_values(value) == {
        "urls": ["https://u:***@h/a", "http://ok/x"],
        "n": 3,
        "nested": {"u": "https://h/x?token=***"},
    }
    assert sorted(secrets_in(value)) == ["p", "t"]


@pytest.mark.slow
def test_the_cli_records_no_url_credentials_and_a_rotated_token_is_a_cache_hit(http_server, aux_archive_bytes, tmp_path) -> None:
    # Regression (issue 10 item 3): user:pass@host and token=... values appeared in the logs, twice
    # in manifest.json, and in the cache key, so a rotating presigned URL republished every run.
    import hashlib
    import os
    import subprocess
    import sys

    (http_server.root / "caffe_ilsvrc12.tar.gz").write_bytes(aux_archive_bytes)
    md5 = hashlib.md5(aux_archive_bytes, usedforsecurity=False).hexdigest()
    host = http_server.base_url.split("://", 1)[1].rstrip("/")
    out = tmp_path / "aux"

    def run(token: str) -> subprocess.CompletedProcess[str]:
        url = f"http://reader:pa55w0rd@{host}/caffe_ilsvrc12.tar.gz?token={token}&X-Amz-Signature=sig{token}"
        return subprocess.run(
            [sys.executable, "-m", "imagenet_ops", "aux", "--url", url, "--md5", md5, "--output", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ,
        )

    first, second = run("t0ken1"), run("t0ken2")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    recorded = first.stdout + first.stderr + second.stdout + second.stderr + (out / "manifest.json").read_text()
    for secret in ("pa55w0rd", "t0ken1", "t0ken2", "sigt0ken1"):
        assert secret not in recorded, secret
    assert "reader:***@" in first.stderr
    assert "cache hit" in second.stderr, "a rotated token must not republish"
    provenance = json.loads((out / "manifest.json").read_text())["provenance"]
    assert provenance["url"] == f"http://reader:***@{host}/caffe_ilsvrc12.tar.gz?token=***&X-Amz-Signature=***"
