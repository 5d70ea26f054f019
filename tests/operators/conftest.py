"""Operator unit tests check the arguments of the one library call; the run's output lease is not theirs.

The lease is tested for real where it acts: tests/lib/test_lease*.py and tests/dags/test_output_lease_dags.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest


class _NoLease:
    def acquire(self) -> _NoLease:
        return self

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[_NoLease]:
        yield self


@pytest.fixture(autouse=True)
def without_run_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Job steps run here without taking the run's lease (their sinks are stand-ins)."""
    from imagenet_operators import leases

    def no_lease(sink: Any, context: Any) -> _NoLease:
        return _NoLease()

    monkeypatch.setattr(leases, "run_lease", no_lease)


@pytest.fixture(params=["local", "s3"])
def sink_root(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str | None]:
    """Where a run publishes (URI of a root to put the artifact under, connection id): a local
    folder, or an S3 bucket through an Airflow connection (moto on 127.0.0.1)."""
    if request.param == "local":
        return str(tmp_path / "sink"), None
    _client, bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": endpoint}}
    monkeypatch.setenv("AIRFLOW_CONN_HOSTS_S3", json.dumps(conn))
    return f"s3://{bucket}", "hosts_s3"
