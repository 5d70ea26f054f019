"""Operators for ResNet-50 model variants; each is mapped over the variants' jobs.

A *job* is one :class:`~imagenet_ops.model.variations.ModelJob` (``config``, ``work_dir``,
``sink_uri``, ``conn_id``) from the resolve task. Every step gets its variant's job and the
typed results of the steps it needs (``fetched``, ``prepared``), passed explicitly by the DAG,
and returns only its own result. Each step may run on another worker: it works in a scratch
folder of its own (removed when it ends) and the files cross the steps in the run's staging
area (:mod:`imagenet_ops.model.steps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from imagenet_operators.assets import emit_artifact_event
from imagenet_operators.job import JobOperator
from imagenet_operators.links import ARTIFACT_LINKS
from imagenet_ops.core.staging import task_scratch

if TYPE_CHECKING:
    from airflow.sdk import Context


class _ModelStepOperator(JobOperator):
    job_type = "imagenet_ops.model.variations:ModelJob"


class ModelDownloadOperator(_ModelStepOperator):
    """Download a variant's file(s) from its mirrors (retries, md5 of the download; gunzip .gz) and stage them.

    A partial download is resumed within one try; a retry (on this or another worker) starts over.

    :param job: the variant's job from the resolve task. (templated)
    """

    ui_color = "#d6eaf8"

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.steps import download_variant

        job = self.typed_job()
        with task_scratch(job.work_dir, "download") as scratch:
            fetched = download_variant(config=job.config, staging=self._staging(context), scratch=scratch)
        self.log.info(
            "Downloaded %s: %s",
            job.variant_id,
            ", ".join(f"{f.filename} ({f.size} bytes, md5 {f.md5}, from {f.url})" for f in fetched.files),
        )
        return fetched.as_dict()


class ModelPrepareOperator(_ModelStepOperator):
    """Lay out the files to publish from the staged downloads; fix the TensorFlow input shape when asked; stage them.

    :param job: the variant's job from the resolve task. (templated)
    :param fetched: the variant's download result (``ModelFetched``). (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "fetched")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "fetched": "json"}

    def __init__(self, *, job: Mapping[str, Any], fetched: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.fetched = fetched

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import ModelFetched
        from imagenet_ops.model.steps import prepare_variant

        job = self.typed_job()
        fetched = ModelFetched.from_dict(self.fetched)
        with task_scratch(job.work_dir, "prepare") as scratch:
            prepared = prepare_variant(config=job.config, fetched=fetched, staging=self._staging(context), scratch=scratch)
        self.log.info("Prepared %s: %s", job.variant_id, ", ".join(prepared.files))
        return prepared.as_dict()


class ModelLoadCheckOperator(_ModelStepOperator):
    """Load the staged model with its framework and check input/output names and shapes; fails with expected vs found.

    :param job: the variant's job from the resolve task. (templated)
    :param prepared: the variant's prepare result (``ModelPrepared``). (templated)
    """

    template_fields: Sequence[str] = (*JobOperator.template_fields, "prepared")
    template_fields_renderers = {**JobOperator.template_fields_renderers, "prepared": "json"}

    def __init__(self, *, job: Mapping[str, Any], prepared: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(job=job, **kwargs)
        self.prepared = prepared

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.model.pipeline import ModelPrepared
        from imagenet_ops.model.steps import check_variant

        job = self.typed_job()
        prepared = ModelPrepared.from_dict(self.prepared)
        with task_scratch(job.work_dir, "load_check") as scratch:
            check = check_variant(config=job.config, prepared=prepared, staging=self._staging(context), scratch=scratch)
        self.log.info("Load check passed for %s: %s", job.variant_id, check.summary)
        return check.as_dict()


class ModelPublishOperator(_ModelStepOperator):
    """Publish a checked variant (its staged prepared folder) with a manifest and return its ``CM_ML_MODEL_*`` env dict.

    Re-publishes only when the downloaded bytes or the config changed (otherwise a cache hit,
    no Asset event). Each ``AssetAlias`` outlet gets an event for the variant's sink URI.

    :param job: the variant's job from the resolve task. (templated)
    :param fetched: the variant's download result (``ModelFetched``). (templated)
    :param prepared: the variant's prepare result (``ModelPrepared``), load-checked. (templated)
    :param checked: the variant's load-check result (``ModelCheckResult``), shown in its report. (templated)
    """

    operator_extra_links = ARTIFACT_LINKS  # the artifact folder, its manifest.json and its report
    template_fields: Sequence[str] = (*JobOperator.template_fields, "fetched", "prepared", "checked")
    template_fields_renderers = {
        **JobOperator.template_fields_renderers,
        "fetched": "json",
        "prepared": "json",
        "checked": "json",
    }
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        job: Mapping[str, Any],
        fetched: Mapping[str, Any],
        prepared: Mapping[str, Any],
        checked: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(job=job, **kwargs)
        self.fetched = fetched
        self.prepared = prepared
        self.checked = checked

    def execute(self, context: Context) -> dict[str, str]:
        from imagenet_operators.leases import publishing
        from imagenet_ops.model.interface import ModelCheckResult
        from imagenet_ops.model.pipeline import ModelFetched, ModelPrepared
        from imagenet_ops.model.steps import publish_variant

        job = self.typed_job()
        fetched, prepared = ModelFetched.from_dict(self.fetched), ModelPrepared.from_dict(self.prepared)
        check = ModelCheckResult(**self.checked) if self.checked else None
        with task_scratch(job.work_dir, "publish") as scratch, publishing(self._sink(), context) as sink:
            done = publish_variant(
                config=job.config,
                fetched=fetched,
                prepared=prepared,
                staging=self._staging(context),
                scratch=scratch,
                sink=sink,
                check=check,
            )
        emit_artifact_event(self, context, done.publish, variant=job.variant_id)  # its Asset is named by variant
        return done.env
