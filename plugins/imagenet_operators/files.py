"""The archive steps of a job (download, verify, extract), each task's own scratch, and the run's clean-up.

Workers share no disk: each step works in a scratch folder of its own (:func:`task_scratch`),
removed when the step ends, and what the next step needs goes through the run's staging area in
the job's sink (:class:`~imagenet_ops.core.staging.Staging`). The archive steps serve the aux job
(``AuxJob``: ``urls``, ``md5``/``sha256``, ``filename``, ``verify_ssl`` in its config).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagenet_operators.job import JobOperator
from imagenet_ops.core.staging import task_scratch

if TYPE_CHECKING:
    from airflow.sdk import Context

_ARCHIVE_JOB = "imagenet_ops.aux.variations:AuxJob"


def clean_run(jobs: Iterable[Mapping[str, Any]] | None, *, run: str, prune_levels: int = 1) -> int:
    """Remove the run's staging area from each job's sink and the run's work dirs on this worker.

    Runs whatever happened upstream (the DAG's teardown). Every task removes its own scratch; the
    work dir is removed here too for a task that was killed before it could. A local sink's folder
    that holds nothing once the staging area is gone was made by the staging, not by a publish: it
    goes too, with ``prune_levels - 1`` empty folders above it (a model variant's folder and the
    artifact's root); the same number of empty folders above a work dir go with it.

    Args:
        jobs: the run's jobs (``to_xcom`` dicts); ``None`` when the resolve task failed.
        run: the DAG run's ``dag_id/run_id``, the staging area's name.
        prune_levels: how many empty folders from a local sink's folder (or a work dir) upward may go.

    Returns:
        How many staged files were removed.
    """
    from imagenet_operators.sinks import sink_from_connection, store_from_connection
    from imagenet_ops.core.staging import Staging
    from imagenet_ops.core.uris import is_remote

    removed = 0
    for job in jobs or ():
        shutil.rmtree(job["work_dir"], ignore_errors=True)  # what a killed task could not remove
        _remove_empty(Path(job["work_dir"]).parent, levels=prune_levels - 1)
        sink = sink_from_connection(job["sink_uri"], job["conn_id"])
        store = store_from_connection([job["sink_uri"]], job["conn_id"])  # the sink's credentials, not the inputs'
        removed += Staging(sink=sink, run=run, store=store).remove()
        if not is_remote(job["sink_uri"]):
            _remove_empty(Path(sink.location()), levels=prune_levels)
    return removed


def _remove_empty(folder: Path, *, levels: int) -> None:
    """Remove ``folder`` and up to ``levels - 1`` folders above it, while they are empty."""
    for _ in range(levels):
        try:
            folder.rmdir()
        except OSError:  # not empty, or not there
            return
        folder = folder.parent


class _ArchiveStepOperator(JobOperator):
    job_type = _ARCHIVE_JOB


class ArchiveDownloadOperator(_ArchiveStepOperator):
    """Download the job's archive from the first mirror that delivers the accepted bytes, and stage it.

    Within one try it resumes a partial download (``.part``) after a dropped connection, retries
    connection errors and 5xx with backoff, and keeps the file only once it verified. The download
    lives in this task's scratch, removed when the task ends: a retry (on this or another worker)
    starts over. The archive goes to the run's staging area for the next steps.

    :param job: the run's job from the resolve task (mirrors, checksums, file name, sink). (templated)
    """

    ui_color = "#d6eaf8"

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.aux.steps import download_archive

        job = self.typed_job()
        with task_scratch(job.work_dir, "download") as scratch:
            result = download_archive(config=job.config, staging=self._staging(context), scratch=scratch)
        self.log.info("Downloaded %s", result.summary())
        return result.as_dict()


class ChecksumVerifyOperator(_ArchiveStepOperator):
    """Verify the staged archive against the job's accepted checksums.

    :param job: the run's job from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.aux.steps import verify_archive

        job = self.typed_job()
        with task_scratch(job.work_dir, "verify") as scratch:
            out = verify_archive(config=job.config, staging=self._staging(context), scratch=scratch)
        self.log.info("Verified %s: %d bytes, md5 %s, sha256 %s", out["path"], out["size"], out["md5"], out["sha256"])
        return out


class ArchiveExtractOperator(_ArchiveStepOperator):
    """Safely extract the staged archive (a check: the next steps re-derive the folder from the archive).

    :param job: the run's job from the resolve task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.aux.steps import extract_archive_check

        job = self.typed_job()
        with task_scratch(job.work_dir, "extract") as scratch:
            result = extract_archive_check(config=job.config, staging=self._staging(context), scratch=scratch)
        self.log.info("Extracted %s: %d files, %d bytes", result.path, result.files, result.bytes)
        return result.as_dict()
