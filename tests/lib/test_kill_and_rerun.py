"""``kill -9`` of a whole CLI run at random points, then a re-run: byte-identical output, no debris.

Regression (issue 10 item 8): killing the process group left ``.tmp`` files (172 MB for nvidia)
that re-runs never cleaned, and a killed parent left its pool workers running and writing.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from imagenet_ops.core.output_location import TEMPORARY_NAME
from imagenet_ops.testing.samples import make_class_tars, sample_wnids

pytestmark = pytest.mark.slow

TRIALS_PER_IMPLEMENTATION = 5  # 10 kills in all


@pytest.fixture(scope="module")
def train_tars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 8 class tars of 40 images each: enough work for kills to land mid-write."""
    folder = tmp_path_factory.mktemp("kill-inputs") / "train"
    make_class_tars(folder, wnids=sample_wnids(8), per_class=40, width=320, height=240)
    return folder


def _args(implementation: str, train: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "imagenet_ops", "training-data", "--implementation", implementation] + [
        "--train",
        str(train),
        "--train-shards",
        "4",
        "--workers",
        "2",
        "--output",
        str(out),
    ]


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file of the artifact (the run's bookkeeping under .imagenet_ops/ aside)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".imagenet_ops" not in p.relative_to(root).parts
    }


def _work_dir(out: Path) -> Path:
    digest = hashlib.sha256(f"|{out.resolve()}".encode()).hexdigest()[:16]  # no endpoint for a folder
    return Path(tempfile.gettempdir()) / f"imagenet_ops-{os.getuid()}" / f"work-{digest}"


def _group_gone(pgid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _first_output_file(out: Path, run: subprocess.Popen, within: float = 120.0) -> None:
    """Return as soon as the run has written its first artifact file (temporary or final)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and run.poll() is None:
        if out.exists() and any(p.is_file() for p in out.iterdir()):
            return
        time.sleep(0.005)


@pytest.mark.parametrize("implementation", ["reference", "nvidia"])
def test_a_killed_run_rerun_gives_the_uninterrupted_bytes(train_tars: Path, tmp_path: Path, implementation: str) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    clean = subprocess.run(_args(implementation, train_tars, out), capture_output=True, text=True, timeout=300)
    duration = time.monotonic() - started
    assert clean.returncode == 0, clean.stderr
    expected = _snapshot(out)
    assert "manifest.json" in expected and len(expected) > 2

    rng = random.Random(f"kill-{implementation}")  # the same kill points on every run of the suite
    mid_write = 0
    for trial in range(TRIALS_PER_IMPLEMENTATION):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        run = subprocess.Popen(
            _args(implementation, train_tars, out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if trial % 2:
            time.sleep(rng.uniform(0.3, duration))  # anywhere: start-up, listing, writing, publishing
        else:
            _first_output_file(out, run)  # while files are being written, however slow the machine is
        os.killpg(run.pid, signal.SIGKILL)  # the main process and its pool workers at once
        run.wait()
        assert _group_gone(run.pid), f"trial {trial}: a process of the killed run is still alive"
        left = _snapshot(out) if out.exists() else {}
        mid_write += bool(left) and "manifest.json" not in left

        rerun = subprocess.run(_args(implementation, train_tars, out), capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, f"trial {trial}: {rerun.stderr}"
        assert _snapshot(out) == expected, f"trial {trial}: the re-run's bytes differ from an uninterrupted run"
        temporaries = [p for p in out.rglob("*") if TEMPORARY_NAME.match(p.name)]
        assert temporaries == [], f"trial {trial}: stale temporaries {temporaries}"
        assert not (out / ".imagenet_ops" / "lease.json").exists(), f"trial {trial}: lease not released"
        assert not _work_dir(out).exists(), f"trial {trial}: work dir left behind"
    assert mid_write >= 1, "no kill landed while files were being written; the trials tested nothing"
