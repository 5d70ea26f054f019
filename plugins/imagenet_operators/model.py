"""Operators for ResNet-50 model variants; each is mapped over variants with ``.partial().expand(variant=...)``.

A *variant* is the dict the resolve task makes per variant (``config``, ``work_dir``,
``sink_uri``, ``conn_id``); each step returns it with its own result added, so the next mapped
step gets everything it needs from one argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.masking import MasksURLSecrets

if TYPE_CHECKING:
    from airflow.sdk import Context


class _VariantOperator(MasksURLSecrets, BaseOperator):
    template_fields: Sequence[str] = ("variant",)
    template_fields_renderers = {"variant": "json"}

    def __init__(self, *, variant: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variant = variant

    def _config(self) -> Any:
        from imagenet_ops.model.pipeline import ModelConfig

        return ModelConfig.from_params(self.variant["config"])


class ModelDownloadOperator(_VariantOperator):
    """Download a variant's file(s) from its mirrors (resume, retries, md5 of the download; gunzip .gz).

    :param variant: the variant dict from the resolve task. (templated)
    """

    ui_color = "#d6eaf8"

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import fetch_model

        fetched = fetch_model(config=self._config(), dest_dir=Path(self.variant["work_dir"]) / "download")
        self.log.info(
            "Downloaded %s: %s",
            self.variant["config"]["variant_id"],
            ", ".join(f"{f['filename']} ({f['size']} bytes, md5 {f['md5']}, from {f['url']})" for f in fetched),
        )
        return {**self.variant, "fetched": fetched}


class ModelPrepareOperator(_VariantOperator):
    """Lay out the files to publish; fix the TensorFlow input shape when the variant asks for it.

    :param variant: the variant dict from the download task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import prepare_model

        prepared = prepare_model(
            config=self._config(), fetched=self.variant["fetched"], dest_dir=Path(self.variant["work_dir"]) / "prepared"
        )
        self.log.info("Prepared %s: %s", self.variant["config"]["variant_id"], ", ".join(prepared["files"]))
        return {**self.variant, "prepared": prepared}


class ModelLoadCheckOperator(_VariantOperator):
    """Load the model with its framework and check input/output names and shapes; fails with expected vs found.

    :param variant: the variant dict from the prepare task. (templated)
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import check_prepared_model

        check = check_prepared_model(config=self._config(), prepared=self.variant["prepared"])
        self.log.info("Load check passed for %s: %s", self.variant["config"]["variant_id"], check.get("summary"))
        return {**self.variant, "check": check}


class ModelPublishOperator(_VariantOperator):
    """Publish a checked variant with a manifest and return its ``CM_ML_MODEL_*`` env dict.

    Re-publishes only when the downloaded bytes or the config changed (otherwise a cache hit,
    no Asset event). Each ``AssetAlias`` outlet gets an event for the variant's sink URI.

    :param variant: the variant dict from the load-check task. (templated)
    """

    ui_color = "#d5f5e3"

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_operators.sinks import sink_from_connection
        from imagenet_ops.model.pipeline import publish_model

        with publishing(sink_from_connection(self.variant["sink_uri"], self.variant["conn_id"]), context) as sink:
            done = publish_model(
                config=self._config(), prepared=self.variant["prepared"], fetched=self.variant["fetched"], sink=sink
            )
        emit_artifact_event(self, context, done.publish)
        return done.env
