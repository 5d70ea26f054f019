"""Operator unit tests check the arguments of the one library call; the run's output lease is not theirs.

The lease is tested for real where it acts: tests/lib/test_lease*.py and tests/dags/test_output_lease_dags.py.
"""

from __future__ import annotations

import contextlib
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
