"""Airflow local settings of this project: one work-around, for the embedded SQLite default only.

Airflow 3.3.2's audit-log dependency (``airflow.api_fastapi.logging.decorators.action_logging``)
is an ``async`` function that commits its ``log`` row with a blocking SQLAlchemy call, on the
api-server's event loop. On SQLite, where one writer at a time holds the database, that
deadlocks the api-server: a request whose write is done waits for the event loop to run its
commit, while the event loop waits, in the audit commit, for that request's lock. It lasts until
SQLite's busy timeout. Each time, the audit write fails, and so does every other write that
was waiting: a form trigger, a pause toggle, a task's start or heartbeat. The UI showed this as
"Database error" (HTTP 500), and a task that could not start failed.

The fix keeps the audit row and its content unchanged. It runs the same commit in a worker
thread, so the event loop is never blocked and the lock holder always gets to commit.
It applies only when the metadata database is SQLite; on Postgres (the production deployment)
this module changes nothing.

Airflow imports this module by name (``airflow_local_settings``) from the plugins folder, which
is on ``sys.path``, in every Airflow process, before the API routes are built. The plugins manager
may import it a second time under another name; installing twice is a no-op.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType
from typing import Any

__all__: list[str] = []  # names listed here would override airflow.settings; this module overrides none

_TARGET = "airflow.api_fastapi.logging.decorators"
_PATCHED = "_imagenet_ops_commit_in_thread"


def _commit_in_thread(module: ModuleType) -> None:
    """Replace ``module.action_logging`` with one whose audit commit runs in a worker thread."""
    original = module.action_logging
    if getattr(original, _PATCHED, False):
        return
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    session_dep, user_dep = module.SessionDep, module.GetUserDep

    def action_logging(event: str | None = None) -> Any:
        log_action = original(event)

        async def log_action_committed_in_thread(request: Request, session: session_dep, user: user_dep) -> None:  # type: ignore[valid-type]
            commits: list[bool] = []
            session.commit = lambda: commits.append(True)  # the original's commit, deferred
            try:
                await log_action(request=request, session=session, user=user)
            finally:
                del session.commit
            if commits:
                await run_in_threadpool(session.commit)

        log_action_committed_in_thread.__annotations__ = {"request": Request, "session": session_dep, "user": user_dep}
        return log_action_committed_in_thread

    setattr(action_logging, _PATCHED, True)
    module.action_logging = action_logging


def _then_patch(exec_module: Any) -> Any:
    def exec_then_patch(module: ModuleType) -> None:
        exec_module(module)
        _commit_in_thread(module)

    return exec_then_patch


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``_TARGET`` with the other finders, and patches it right after it is executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_patch(spec.loader.exec_module)  # type: ignore[method-assign]
                return spec
        return None


def _install() -> None:
    from airflow.configuration import conf

    if not conf.get("database", "sql_alchemy_conn", fallback="").startswith("sqlite"):
        return
    if _TARGET in sys.modules:
        _commit_in_thread(sys.modules[_TARGET])
    elif not any(type(f).__name__ == _PatchAfterImport.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())


_install()
