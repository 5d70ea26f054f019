"""Process pools that work inside any host process: the CLI, pytest, and Airflow's task runner.

Three things break a plain process pool under a real scheduler:

* A ``spawn`` child re-imports the parent's ``__main__``. In an Airflow task that is the
  ``airflow`` entry point, and the task runner has set the metadata DB URL to a sentinel
  (``airflow-db-not-allowed:///``), so the child dies importing Airflow (``BrokenProcessPool``).
  :func:`worker_pool` starts its children with ``__main__`` hidden: they import only the
  library modules their work needs.
* A Celery (prefork) worker runs tasks in *daemonic* billiard processes: ``multiprocessing``
  refuses to start children there ("daemonic processes are not allowed to have children"), and
  billiard's authkey refuses to be pickled for a spawned child. The flag is lifted and the key
  handed over as a plain stdlib key while workers start; what the flag guards against, children
  outliving their parent, is handled by the next point instead.
* A child outlives a parent killed with SIGKILL and keeps writing. Every child asks the
  kernel (``PR_SET_PDEATHSIG``) to be killed when its parent dies.

:func:`worker_pool` applies all of this to a ``ProcessPoolExecutor``, and :func:`task_pool` to a
``multiprocessing.Pool`` (which it also closes, or terminates on an error, and joins).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1
_AuthenticationString = multiprocessing.process.AuthenticationString


def die_with_parent() -> None:
    """Pool-worker set-up: default SIGTERM/SIGINT, and SIGKILL from the kernel when the parent exits (Linux).

    A forked worker inherits its parent's signal handlers. Airflow's task runner handles SIGTERM
    by returning when the pid is not the task's, so ``Pool.terminate()`` could never stop a
    forked worker and the task hung in ``join()`` for ever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    killed_with_parent()


def killed_with_parent(parent: int | None = None) -> None:
    """Ask the kernel (Linux) to SIGKILL this process the moment its parent dies; exit now if it already has.

    Args:
        parent: the parent's pid as seen earlier; by default ``os.getppid()`` now. A process whose
            parent changed before the request took effect was re-parented: its parent is gone.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid() if parent is None else parent
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() in (1, 0) or os.getppid() != parent:
        os._exit(1)


@contextlib.contextmanager
def starting_workers() -> Iterator[None]:
    """While pool workers start: ``__main__`` hidden from spawned children, the daemon flag lifted."""
    main = sys.modules.get("__main__")
    spec, file = getattr(main, "__spec__", None), getattr(main, "__file__", None)
    config = multiprocessing.current_process()._config  # noqa: SLF001 - the only switch there is
    daemon = config.pop("daemon", None)
    authkey = config.get("authkey")
    if authkey is not None and type(authkey) is not _AuthenticationString:
        # Celery's billiard replaces the current process; its authkey type refuses stdlib pickling.
        config["authkey"] = _AuthenticationString(bytes(authkey))
    try:
        if main is not None:
            main.__spec__ = None
            if file is not None:
                del main.__file__
        yield
    finally:
        if daemon is not None:
            config["daemon"] = daemon
        if authkey is not None:
            config["authkey"] = authkey
        if main is not None:
            main.__spec__ = spec
            if file is not None:
                main.__file__ = file


class _Pool(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose workers start with ``__main__`` hidden and die with this process."""

    def __init__(self, max_workers: int, mp_context: Any) -> None:
        super().__init__(max_workers=max_workers, mp_context=mp_context, initializer=die_with_parent)

    def _spawn_process(self) -> None:  # every worker, first or replacement, starts here
        with starting_workers():
            super()._spawn_process()


def worker_pool(workers: int, *, start_method: str = "spawn") -> ProcessPoolExecutor:
    """A pool of ``workers`` processes that die with this process and never re-import ``__main__``.

    Args:
        workers: number of processes (at least 1).
        start_method: ``spawn`` (clean children; the default) or ``fork`` (cheap start, children
            inherit loaded modules; the caller must make forking safe, e.g. no running thread pools).

    Returns:
        A ``ProcessPoolExecutor``; use it as a context manager.
    """
    return _Pool(max(1, workers), multiprocessing.get_context(start_method))


def _start_worker(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def task_pool(
    workers: int,
    *,
    mp_context: Any,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Any]:
    """A ``multiprocessing.Pool`` with the same guarantees as :func:`worker_pool`.

    On leaving the block the pool is closed and joined (its workers finish and exit); on an error
    it is terminated first. ``Pool.__exit__`` always terminates, which is what hung under the task
    runner before the workers reset SIGTERM.
    """
    with starting_workers():
        pool = mp_context.Pool(max(1, workers), initializer=_start_worker, initargs=(initializer, initargs))
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
