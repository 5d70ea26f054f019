"""A task process dies with its supervisor: a lost worker leaves nobody writing (issue 12 item 3).

Real processes: a parent titled as Airflow's executors title a supervisor, and a task process in a
process group of its own (as the supervisor puts it), which asks to die with its parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("include", "plugins"))

_SUPERVISOR = """
import subprocess, sys, time
from setproctitle import setproctitle
if sys.argv[1] == "titled":
    setproctitle("airflow supervisor: dag/run/task")
task = subprocess.Popen([sys.executable, "-c", sys.argv[2]], start_new_session=True)  # the task runner's own group
print(task.pid, flush=True)
time.sleep(600)
"""
_TASK = """
import sys, time
from imagenet_operators.job import die_with_supervisor
print("asked" if die_with_supervisor() else "not asked", file=sys.stderr, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def _start(mode: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    sup = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SUPERVISOR), mode, textwrap.dedent(_TASK)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # the task process inherits it
        text=True,
    )
    task = int(sup.stdout.readline())
    answer = sup.stderr.readline().strip()  # once the task process has imported and asked (or not): no guessed sleep
    assert answer == ("asked" if mode == "titled" else "not asked"), answer
    return sup, task


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_task_process_dies_within_a_second_of_its_supervisor() -> None:
    sup, task = _start("titled")
    try:
        assert _alive(task)
        sup.send_signal(signal.SIGKILL)  # the worker host is gone
        sup.wait()
        deadline = time.monotonic() + 3
        while _alive(task) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(task), "the task process outlived its supervisor"
    finally:
        for pid in (task, sup.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_outside_a_supervisor_nothing_is_asked() -> None:
    # dag.test() and the CLI run tasks in their own process: their parent (a shell, pytest) is no supervisor
    sup, task = _start("plain")
    try:
        sup.send_signal(signal.SIGKILL)
        sup.wait()
        time.sleep(0.5)
        assert _alive(task), "only a supervisor's death ends a task process"
    finally:
        for pid in (task, sup.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
