"""The test session itself cannot reach the internet (the guard lives in conftest.py)."""

from __future__ import annotations

import pytest
import requests


def test_non_loopback_lookups_and_connections_are_refused():
    with pytest.raises(requests.ConnectionError, match="test network guard"):
        requests.get("https://zenodo.org/record/4735647/files/resnet50_v1.onnx", timeout=2)


def test_loopback_still_works(http_server):
    (http_server.root / "x.txt").write_text("ok")
    assert requests.get(http_server.url("x.txt"), timeout=5).text == "ok"
