"""How many CPUs this process may use, and how many processes a task gets by default.

``os.cpu_count()`` counts the host's CPUs. A container limited to 2 of them, or a worker pinned to
a few with ``taskset``, still sees them all, and a task that starts one process per host CPU
oversubscribes what it has. :func:`available_cpus` takes the smallest of three numbers: the CPUs
this process may run on (affinity), the cgroup's CPU quota (v2 ``cpu.max``, or v1
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``, rounded up), and at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(*, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: affinity, capped by the cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(cpus, quota) if quota else cpus)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> int | None:
    """The cgroup's CPU quota in whole CPUs (rounded up), or None when there is none or it cannot be read."""
    for path in _own_cgroup_dirs(root):
        try:
            quota, _, period = (path / "cpu.max").read_text().partition(" ")
            if quota.strip() != "max":
                return max(1, math.ceil(int(quota) / int(period)))
            continue
        except (OSError, ValueError):
            pass
        try:
            quota_us = int((path / "cpu.cfs_quota_us").read_text())
            period_us = int((path / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    return None


def _own_cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup folder (v2, or v1's cpu controller), then the root: where a quota may be set."""
    v1 = [root / d for d in ("cpu,cpuacct", "cpu") if (root / d).is_dir()]  # where v1 mounts the cpu controller
    dirs = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if controllers == "" or "cpu" in controllers.split(","):
                base = root if controllers == "" or not v1 else v1[0]
                dirs.append(base / rel.lstrip("/"))
    except (OSError, ValueError):
        pass
    dirs += [*v1, root]  # v1 mounts, and a container's own root
    return [d for d in dirs if d.is_dir()]


def processes_per_task(requested: int, *, tasks_at_once: int = 1) -> int:
    """``requested`` when above 0; else the available CPUs split over the tasks that run at once on this host."""
    if requested > 0:
        return requested
    return max(1, available_cpus() // max(1, tasks_at_once))
