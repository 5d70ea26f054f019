"""Process pools inside hostile host processes, and native start-up noise kept off stderr.

Regression (issue 9): on a real scheduler the training DAG's default ``workers=0`` started a
``spawn`` pool whose children re-imported the task runner's ``__main__`` (the ``airflow`` entry
point) with the runner's sentinel DB URL and died: ``BrokenProcessPool`` after 3 retries.
``dag.test()`` cannot show it, because there ``__main__`` is pytest. These tests run a real
``__main__`` that refuses to be imported twice.
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

HOSTILE_MAIN = textwrap.dedent(
    """
    import os, sys
    if __name__ != "__main__":
        raise SystemExit("__main__ was re-imported in a pool child")
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing
    from imagenet_ops.core.process_pool import worker_pool
    if os.environ.get("PLAIN_POOL"):
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    else:
        pool = worker_pool(2)
    with pool:
        print(sum(pool.map(abs, [-1, -2, -3])))
    """
)


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["script", "module"])
def test_pool_children_never_reimport_main(tmp_path, how):
    (tmp_path / "hostile_main.py").write_text(HOSTILE_MAIN)
    args = [sys.executable, "hostile_main.py"] if how == "script" else [sys.executable, "-m", "hostile_main"]
    done = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_a_plain_spawn_pool_breaks_under_the_same_main(tmp_path):
    # The control: the hostile __main__ really does break a plain pool, so the test above has teeth.
    (tmp_path / "hostile_main.py").write_text(HOSTILE_MAIN)
    done = _run([sys.executable, "hostile_main.py"], tmp_path, PLAIN_POOL="1")
    assert done.returncode != 0
    assert "BrokenProcessPool" in done.stderr or "re-imported" in done.stderr


def test_pool_children_die_with_a_killed_parent(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time
        from imagenet_ops.core.process_pool import worker_pool
        pool = worker_pool(2)
        futures = [pool.submit(time.sleep, 120) for _ in range(2)]
        time.sleep(0.5)
        while len(pool._processes) < 2:
            time.sleep(0.1)
        print(" ".join(str(p) for p in pool._processes), flush=True)
        time.sleep(120)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    proc = subprocess.Popen([sys.executable, "parent.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        children = [int(p) for p in proc.stdout.readline().split()]
        assert len(children) == 2 and all(_alive(p) for p in children)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in children), "pool workers outlived their SIGKILLed parent"
    finally:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_tensorflow_start_up_lines_stay_off_stderr(tmp_path):
    # Regression: a successful TFLite load check showed six ERROR lines in the task log. The task
    # supervisor logs every stderr line at ERROR; TensorFlow's native start-up lines went there.
    quiet = _run(
        [sys.executable, "-c", "from imagenet_ops.core.native_logs import import_tensorflow; import_tensorflow()"], tmp_path
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    code = (
        "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout); "
        "from imagenet_ops.core.native_logs import import_tensorflow; import_tensorflow()"
    )
    relayed = _run([sys.executable, "-c", code], tmp_path)
    assert relayed.stderr.strip() == "", relayed.stderr
    assert "relayed at DEBUG" in relayed.stdout
    # The raw import, for comparison, does write native lines to stderr.
    raw = _run([sys.executable, "-c", "import tensorflow; tensorflow.config.list_physical_devices('CPU')"], tmp_path)
    assert raw.stderr.strip(), "tensorflow printed nothing: the comparison above proves nothing on this machine"


DAEMON_PARENT = textwrap.dedent(
    """
    import multiprocessing as mp, sys

    def job(q, kind):
        from imagenet_ops.core.process_pool import task_pool, worker_pool
        try:
            if kind == "executor":
                with worker_pool(2) as pool:
                    q.put(sum(pool.map(abs, [-1, -2, -3])))
            else:
                with task_pool(2, mp_context=mp.get_context("fork")) as pool:
                    q.put(sum(pool.map(abs, [-1, -2, -3])))
        except BaseException as exc:
            q.put(repr(exc))

    if __name__ == "__main__":
        if sys.argv[2] == "billiard":  # what a Celery prefork worker runs its tasks in
            import billiard as ctx
        else:
            ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=job, args=(q, sys.argv[1]), daemon=True)
        p.start()
        print(q.get(timeout=60))
        p.join(timeout=30)
    """
)


@pytest.mark.parametrize("parent", ["multiprocessing", "billiard"])
@pytest.mark.parametrize("kind", ["executor", "multiprocessing.Pool"])
def test_pools_start_inside_a_daemonic_process(tmp_path, kind, parent):
    # Regression: on Celery the training DAG's writers failed with "daemonic processes are not
    # allowed to have children" (the prefork worker's task processes are daemonic), then with
    # "Pickling an AuthenticationString object is disallowed" (billiard's authkey).
    (tmp_path / "daemon_parent.py").write_text(DAEMON_PARENT)
    done = _run([sys.executable, "daemon_parent.py", kind, parent], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6", done.stdout


IGNORING_PARENT = textwrap.dedent(
    """
    import multiprocessing as mp, os, signal, sys
    from imagenet_ops.core.process_pool import die_with_parent
    # As Airflow's task runner does: a SIGTERM handler that returns unless the pid is the task's.
    task_pid = os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: None if os.getpid() != task_pid else sys.exit(1))
    init = die_with_parent if sys.argv[1] == "fixed" else None
    pool = mp.get_context("fork").Pool(2, initializer=init)
    print(sum(pool.map(abs, [-1, -2, -3])), flush=True)
    import time
    busy = [pool.apply_async(time.sleep, (60,)) for _ in range(2)]
    time.sleep(1)
    pool.terminate()  # what `with Pool(...)` does on exit, and the error path
    pool.join()
    print("joined", flush=True)
    """
)


@pytest.mark.parametrize("variant", ["fixed", "plain"])
def test_forked_workers_stop_on_terminate_under_a_task_runners_sigterm_handler(tmp_path, variant):
    # Regression: imagenet_preprocessed hung for ever on a real scheduler at workers=0. Forked
    # workers inherited the task runner's SIGTERM handler, ignored Pool.terminate(), and the
    # chunk task waited in join().
    (tmp_path / "ignoring_parent.py").write_text(IGNORING_PARENT)
    proc = subprocess.Popen([sys.executable, "ignoring_parent.py", variant], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=20)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        hung = True
    if variant == "fixed":
        assert not hung and out.split() == ["6", "joined"], out
    else:  # the control: without the reset the same parent really hangs
        assert hung and out.split() == ["6"], out
