"""Operators specific to the ImageNet aux artifact: validate and publish (from the run's staged archive)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.job import JobOperator
from imagenet_operators.links import ARTIFACT_LINKS
from imagenet_ops.core.staging import task_scratch

if TYPE_CHECKING:
    from airflow.sdk import Context


class AuxValidateOperator(JobOperator):
    """Check the aux files of the staged archive: the 8 files, 1000 sorted wnids, 50,000 validation labels.

    The archive is extracted again into this task's scratch (removed when the task ends).

    :param job: the run's job from the resolve task (``AuxJob``). (templated)
    """

    job_type = "imagenet_ops.aux.variations:AuxJob"

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.aux.steps import validate_archive

        job = self.typed_job()
        with task_scratch(job.work_dir, "validate") as scratch:
            result = validate_archive(config=job.config, staging=self._staging(context), scratch=scratch)
        self.log.info("Validated %s: %d classes, %d validation labels", result.path, result.classes, result.val_images)
        return result.as_dict()


class AuxPublishOperator(JobOperator):
    """Publish the aux files to the job's sink with a manifest; return the CM env dict.

    The files come from the run's staged archive, extracted into this task's scratch. Re-publishes
    only when the archive's bytes (or the config) changed: otherwise it is a cache hit, nothing is
    uploaded and no Asset event is emitted, so consumers are not re-run. On a publish, every
    ``AssetAlias`` in ``outlets`` gets an event for the sink's URI with the manifest's key facts as extra.

    :param job: the run's job from the resolve task (``AuxJob``: config, sink, connection). (templated)
    :param archive: the download facts (md5, sha256, size, url, etag). (templated)
    """

    operator_extra_links = ARTIFACT_LINKS  # the artifact folder and its manifest.json
    template_fields: Sequence[str] = (*JobOperator.template_fields, "archive")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "archive": "json"}
    job_type = "imagenet_ops.aux.variations:AuxJob"
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], archive: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.archive = archive

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_ops.aux.steps import publish_archive

        job = self.typed_job()
        with task_scratch(job.work_dir, "publish") as scratch, publishing(self._sink(), context) as sink:
            done = publish_archive(
                config=job.config, staging=self._staging(context), scratch=scratch, sink=sink, archive=self.archive
            )
        emit_artifact_event(self, context, done.publish)
        return done.env
