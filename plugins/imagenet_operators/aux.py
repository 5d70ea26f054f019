"""Operators specific to the ImageNet aux artifact: validate and publish."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.job import JobOperator
from imagenet_operators.masking import MasksURLSecrets

if TYPE_CHECKING:
    from airflow.sdk import Context


class AuxValidateOperator(MasksURLSecrets, BaseOperator):
    """Check an extracted aux folder: the 8 files, 1000 sorted wnids, 50,000 validation labels.

    :param path: extracted folder. (templated)
    """

    template_fields: Sequence[str] = ("path",)

    def __init__(self, *, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.aux.pipeline import validate_aux_dir

        result = validate_aux_dir(Path(self.path))
        self.log.info("Validated %s: %d classes, %d validation labels", result.path, result.classes, result.val_images)
        return result.as_dict()


class AuxPublishOperator(JobOperator):
    """Publish the aux files to the job's sink with a manifest; return the CM env dict.

    Re-publishes only when the archive's bytes (or the config) changed: otherwise it is a
    cache hit, nothing is uploaded and no Asset event is emitted, so consumers are not re-run.
    On a publish, every ``AssetAlias`` in ``outlets`` gets an event for the sink's URI with the
    manifest's key facts as extra.

    :param job: the run's job from the resolve task (``AuxJob``: config, sink, connection). (templated)
    :param extracted_dir: folder with the validated files. (templated)
    :param archive: the download/verify facts (md5, sha256, size, url, etag). (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "extracted_dir", "archive")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "archive": "json"}
    job_type = "imagenet_ops.aux.variations:AuxJob"
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], extracted_dir: str, archive: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.extracted_dir = extracted_dir
        self.archive = archive

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_ops.aux.pipeline import publish_aux

        job = self.typed_job()
        with publishing(self._sink(), context) as sink:
            done = publish_aux(extracted_dir=Path(self.extracted_dir), sink=sink, config=job.config, archive=self.archive)
        emit_artifact_event(self, context, done.publish)
        return done.env
