"""The CPUs a task may use: affinity and cgroup quota, not the host's count."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_ops.core.cpus import available_cpus, cgroup_cpu_quota, processes_per_task

ROOT = Path(__file__).resolve().parents[2]


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    own = Path("/proc/self/cgroup").read_text().splitlines()
    rel = next((line.split(":", 2)[2] for line in own if line.startswith("0::")), "/").lstrip("/")
    for folder in {root, root / rel}:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(cpu_max)
    return root


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000\n", 2), ("100000 100000\n", 1), ("20000 100000", 1)])
def test_a_cgroup_v2_quota_is_rounded_up_to_whole_cpus(tmp_path, cpu_max, expected):
    assert cgroup_cpu_quota(_cgroup_v2(tmp_path, cpu_max)) == expected


def test_no_quota_means_no_cap(tmp_path):
    assert cgroup_cpu_quota(_cgroup_v2(tmp_path, "max 100000\n")) is None
    assert cgroup_cpu_quota(tmp_path / "absent") is None


def test_a_cgroup_v1_quota_is_read_from_the_cpu_controller(tmp_path):
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("300000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 3
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert cgroup_cpu_quota(tmp_path) is None


def test_the_quota_caps_the_affinity(tmp_path):
    assert available_cpus(cgroup_root=_cgroup_v2(tmp_path, "100000 100000")) == 1
    assert available_cpus(cgroup_root=tmp_path / "absent") == len(os.sched_getaffinity(0))


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) missing")
def test_a_process_pinned_to_one_cpu_gets_one_process_per_task():
    """A real pinned process (``taskset -c 0``), as a worker started that way would be."""
    code = "from imagenet_ops.core.cpus import processes_per_task as p; print(p(0), p(3))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "3"]  # 0: its one CPU; an explicit count is kept


def test_the_default_splits_the_cpus_over_the_tasks_at_once():
    cpus = available_cpus()
    assert processes_per_task(0) == cpus
    assert processes_per_task(0, tasks_at_once=cpus) == 1
    assert processes_per_task(0, tasks_at_once=cpus * 8) == 1  # never 0
    assert processes_per_task(5, tasks_at_once=100) == 5
