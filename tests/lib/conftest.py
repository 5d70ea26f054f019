"""Tiny fixtures shared by the library tests (the servers come from ``tests/conftest.py``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ARCHIVE = "caffe_ilsvrc12.tar.gz"


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_archive(http_server, aux_archive_bytes: bytes) -> str:
    """The sample aux archive served at ``/caffe_ilsvrc12.tar.gz``; returns its URL."""
    (http_server.root / ARCHIVE).write_bytes(aux_archive_bytes)
    return http_server.url(ARCHIVE)


@pytest.fixture
def aux_dir(tmp_path: Path) -> Path:
    """A folder holding the 8 valid sample aux files."""
    from imagenet_ops.testing.samples import aux_file_contents

    folder = tmp_path / "aux"
    folder.mkdir()
    for name, data in aux_file_contents().items():
        (folder / name).write_bytes(data)
    return folder
