"""Operators specific to the ImageNet aux artifact: validate and publish."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from imagenet_operators.assets import emit_artifact_event
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


class AuxPublishOperator(MasksURLSecrets, BaseOperator):
    """Publish the aux files to a sink with a manifest; return the CM env dict.

    Re-publishes only when the archive's bytes (or the config) changed: otherwise it is a
    cache hit, nothing is uploaded and no Asset event is emitted, so consumers are not re-run.
    On a publish, every ``AssetAlias`` in ``outlets`` gets an event for the sink's URI with the
    manifest's key facts as extra.

    :param extracted_dir: folder with the validated files. (templated)
    :param config: the resolved ``AuxConfig`` as a dict. (templated)
    :param archive: the download/verify facts (md5, sha256, size, url, etag). (templated)
    :param sink_uri: local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. (templated)
    :param conn_id: Airflow connection for the sink (aws or google_cloud_platform). (templated)
    """

    template_fields: Sequence[str] = ("extracted_dir", "config", "archive", "sink_uri", "conn_id")
    template_fields_renderers = {"config": "json", "archive": "json"}
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        extracted_dir: str,
        config: Mapping[str, Any],
        archive: Mapping[str, Any],
        sink_uri: str,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.extracted_dir = extracted_dir
        self.config = config
        self.archive = archive
        self.sink_uri = sink_uri
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_operators.sinks import sink_from_connection
        from imagenet_ops.aux.pipeline import AuxConfig, publish_aux

        with publishing(sink_from_connection(self.sink_uri, self.conn_id), context) as sink:
            done = publish_aux(
                extracted_dir=Path(self.extracted_dir), sink=sink, config=AuxConfig.from_params(self.config), archive=self.archive
            )
        emit_artifact_event(self, context, done.publish)
        return done.env
