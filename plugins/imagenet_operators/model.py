"""Operators for ResNet-50 model variants; each is mapped over the variants' jobs.

A *job* is one :class:`~imagenet_ops.model.variations.ModelJob` (``config``, ``work_dir``,
``sink_uri``, ``conn_id``) from the resolve task. Every step gets its variant's job and the
typed results of the steps it needs (``fetched``, ``prepared``), passed explicitly by the DAG,
and returns only its own result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.job import JobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _ModelStepOperator(JobOperator):
    job_type = "imagenet_ops.model.variations:ModelJob"


class ModelDownloadOperator(_ModelStepOperator):
    """Download a variant's file(s) from its mirrors (resume, retries, md5 of the download; gunzip .gz).

    :param job: the variant's job from the resolve task. (templated)
    """

    ui_color = "#d6eaf8"

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import fetch_model

        job = self.typed_job()
        fetched = fetch_model(config=job.config, dest_dir=job.download_dir)
        self.log.info(
            "Downloaded %s: %s",
            job.variant_id,
            ", ".join(f"{f.filename} ({f.size} bytes, md5 {f.md5}, from {f.url})" for f in fetched.files),
        )
        return fetched.as_dict()


class ModelPrepareOperator(_ModelStepOperator):
    """Lay out the files to publish; fix the TensorFlow input shape when the variant asks for it.

    :param job: the variant's job from the resolve task. (templated)
    :param fetched: the variant's download result (``ModelFetched``). (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "fetched")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "fetched": "json"}

    def __init__(self, *, job: Mapping[str, Any], fetched: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.fetched = fetched

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import ModelFetched, prepare_model

        job = self.typed_job()
        prepared = prepare_model(config=job.config, fetched=ModelFetched.from_dict(self.fetched), dest_dir=job.prepared_dir)
        self.log.info("Prepared %s: %s", job.variant_id, ", ".join(prepared.files))
        return prepared.as_dict()


class ModelLoadCheckOperator(_ModelStepOperator):
    """Load the model with its framework and check input/output names and shapes; fails with expected vs found.

    :param job: the variant's job from the resolve task. (templated)
    :param prepared: the variant's prepare result (``ModelPrepared``). (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "prepared")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "prepared": "json"}

    def __init__(self, *, job: Mapping[str, Any], prepared: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.prepared = prepared

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import ModelPrepared, check_prepared_model

        job = self.typed_job()
        check = check_prepared_model(config=job.config, prepared=ModelPrepared.from_dict(self.prepared))
        self.log.info("Load check passed for %s: %s", job.variant_id, check.summary)
        return check.as_dict()


class ModelPublishOperator(_ModelStepOperator):
    """Publish a checked variant with a manifest and return its ``CM_ML_MODEL_*`` env dict.

    Re-publishes only when the downloaded bytes or the config changed (otherwise a cache hit,
    no Asset event). Each ``AssetAlias`` outlet gets an event for the variant's sink URI.

    :param job: the variant's job from the resolve task. (templated)
    :param fetched: the variant's download result (``ModelFetched``). (templated)
    :param prepared: the variant's prepare result (``ModelPrepared``), load-checked. (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "fetched", "prepared")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "fetched": "json", "prepared": "json"}
    ui_color = "#d5f5e3"

    def __init__(self, *, job: Mapping[str, Any], fetched: Mapping[str, Any], prepared: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.fetched = fetched
        self.prepared = prepared

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_ops.model.pipeline import ModelFetched, ModelPrepared, publish_model

        job = self.typed_job()
        with publishing(self._sink(), context) as sink:
            done = publish_model(
                config=job.config,
                prepared=ModelPrepared.from_dict(self.prepared),
                fetched=ModelFetched.from_dict(self.fetched),
                sink=sink,
            )
        emit_artifact_event(self, context, done.publish)
        return done.env
