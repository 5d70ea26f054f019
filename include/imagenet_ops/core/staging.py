"""A run's hand-over area in its sink: what one task leaves for the next, never on a worker's disk.

Workers share no disk (two hosts, two pods): a file a task wrote to its own scratch is gone for
the next task, which may run elsewhere. A task that produces a file the next one needs puts it
here, under ``<sink>/.imagenet_ops/staging/<run>/``; the next task gets it back into its own
temporary scratch (or reads a local sink's copy in place). The run's last step removes the area.

Keys are ``/``-separated names under the run's prefix, chosen by the steps (``download/x.tar.gz``,
``prepared/<variant>/model.onnx``). Writes go through the sink (atomic per file), reads through
an :class:`~imagenet_ops.core.store.ObjectStore` (listing, download), so local folders, S3 and GCS
behave the same.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import StorageError
from imagenet_ops.core.sinks import STATE_DIR, Sink
from imagenet_ops.core.uris import is_remote

log = logging.getLogger(__name__)

STAGING_DIR = f"{STATE_DIR}/staging"


@contextlib.contextmanager
def task_scratch(work_dir: str | Path, step: str = "task") -> Iterator[Path]:
    """A step's own scratch: a fresh ``<step>-*`` folder under ``work_dir``, removed when the block ends.

    Workers share no disk: nothing a step leaves here is for another step (that goes through the
    run's :class:`Staging`). ``work_dir`` and the folders above it are made if missing and removed
    again when this step made them and they are empty, so no worker keeps anything of the run; two
    steps of a run on one worker (mapped tasks) each get their own folder.
    """
    work_dir = Path(work_dir)
    made = [p for p in (work_dir, *work_dir.parents) if not p.exists()]
    for attempt in range(3):
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            scratch = Path(tempfile.mkdtemp(prefix=f"{step}-", dir=work_dir))
            break
        except FileNotFoundError:  # a sibling step removed an empty parent between the two calls
            if attempt == 2:
                raise
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):  # not empty: another step of the run is still working there
                folder.rmdir()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def run_key(run: str) -> str:
    """A run name as one safe key segment (``manual__2026-12-01T10:00:00+00:00`` -> ``manual__2026-12-01T10_00_00_00_00``)."""
    key = _UNSAFE.sub("_", run).strip("._") or "run"
    return key[:200]


@dataclass(frozen=True)
class Staging:
    """The hand-over area of one run in ``sink``.

    Attributes:
        sink: the run's output.
        run: the run's name (a DAG run's ``dag_id/run_id``); made safe with :func:`run_key`.
        store: reads the staged objects back (an ``ObjectStore`` with the sink's credentials).
    """

    sink: Sink
    run: str
    store: Any

    @property
    def prefix(self) -> str:
        """The area's key prefix under the sink."""
        return f"{STAGING_DIR}/{run_key(self.run)}"

    def key(self, name: str) -> str:
        name = name.strip("/")
        if not name or any(part in ("", ".", "..") for part in name.split("/")):
            raise StorageError(f"staging {self.prefix}: {name!r} is not a plain relative name")
        return f"{self.prefix}/{name}"

    def uri(self, name: str) -> str:
        """Where the staged ``name`` is: a local path or an ``s3://`` / ``gs://`` URI."""
        return self.sink.location(self.key(name))

    def put_file(self, local: Path, name: str) -> str:
        """Stage the file ``local`` as ``name``; returns its URI."""
        self.sink.put_file(Path(local), self.key(name))
        return self.uri(name)

    def put_dir(self, local_dir: Path, name: str) -> list[str]:
        """Stage every file under ``local_dir`` as ``name/<relative path>``; returns the relative paths, sorted."""
        root = Path(local_dir)
        rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        for rel in rels:
            self.sink.put_file(root / rel, self.key(f"{name}/{rel}"))
        return rels

    def get_file(self, name: str, dest: Path) -> Path:
        """The staged ``name`` as a local file: a local sink's copy in place, else downloaded to ``dest``.

        Raises:
            StorageError: nothing is staged under ``name`` (the producing task did not finish).
        """
        uri = self.uri(name)
        if not is_remote(uri):
            if not Path(uri).is_file():
                raise StorageError(f"staging: {uri} is missing (did the task that stages it finish?)")
            return Path(uri)
        if not self.store.exists(uri):
            raise StorageError(f"staging: {uri} is missing (did the task that stages it finish?)")
        return Path(self.store.download(uri, Path(dest)))

    def get_dir(self, name: str, dest: Path) -> Path:
        """Every file staged under ``name/`` as a local folder: a local sink's folder in place, else ``dest``."""
        uri = self.uri(name)
        if not is_remote(uri):
            if not Path(uri).is_dir():
                raise StorageError(f"staging: {uri} is missing (did the task that stages it finish?)")
            return Path(uri)
        dest = Path(dest)
        try:
            found = self.store.list(uri.rstrip("/") + "/")
        except StorageError as exc:
            raise StorageError(f"staging: nothing under {uri} (did the task that stages it finish?)") from exc
        for obj in found:
            self.store.download(obj.uri, dest / obj.name)
        return dest

    def remove(self) -> int:
        """Delete everything the run staged; returns how many files went. Safe to call again."""
        base = self.sink.location(self.prefix)
        if not is_remote(base):
            count = sum(1 for p in Path(base).rglob("*") if p.is_file()) if Path(base).is_dir() else 0
            shutil.rmtree(base, ignore_errors=True)
            _remove_empty_parents(Path(base).parent, stop=Path(self.sink.location()))
            return count
        try:
            found = self.store.list(base.rstrip("/") + "/")
        except StorageError:  # nothing staged (or already removed)
            return 0
        for obj in found:
            self.sink.delete(f"{self.prefix}/{obj.name}")
        if found:
            log.info("staging %s: removed %d file(s)", base, len(found))
        return len(found)


def _remove_empty_parents(folder: Path, *, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def clean_up_run(*, staging: Staging, work_dir: str | Path) -> int:
    """A run's last step, whatever happened: remove its staging area and this host's run folder.

    The run folder is removed too because a step killed before its ``finally`` (``task_scratch``)
    left its scratch there.

    Returns:
        How many staged files were removed.
    """
    removed = staging.remove()
    shutil.rmtree(work_dir, ignore_errors=True)
    return removed
