"""The typed job of an accuracy check: the options, the model and the set to pair, and the chunk count.

The form and the CLI use the same names: ``model`` and ``preprocessed`` (the published folders,
declared once here with their form titles), ``batch_size``, ``expected_top1`` and ``chunks``.
Imported when the DAG file is parsed: no numpy, no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from imagenet_ops.accuracy.variations import ACCURACY_TABLE, ARTIFACT, RELEASE_NOTES, VERSION
from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Artifact, Job, input_field

MODEL_ARTIFACT = "resnet50_model"
PREPROCESSED_ARTIFACT = "imagenet_preprocessed"


@dataclass(frozen=True)
class AccuracyConfig:
    """What a check's verdict depends on besides its two inputs.

    Attributes:
        batch_size: images per inference call (``None``: the model's fixed batch, else the default).
        expected_top1: the top-1 (%) a set other than the full one must reach (``None``: no verdict).
    """

    batch_size: int | None = None
    expected_top1: float | None = None
    tags: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{ARTIFACT}: unknown config key(s) {', '.join(unknown)}")
        return cls(**data)

    def cache_params(self) -> dict[str, Any]:
        """The options the published result depends on (the tags only spell them)."""
        return {"batch_size": self.batch_size, "expected_top1": self.expected_top1, "accuracy_version": VERSION}


@dataclass(frozen=True, kw_only=True)
class AccuracyJob(Job):
    """One model variant and one preprocessed set to check together."""

    config_type: ClassVar[type] = AccuracyConfig

    config: AccuracyConfig
    model: str | None = input_field(
        "Model variant",
        "Folder (or s3:// / gs:// prefix) of one variant published by resnet50_model, e.g. "
        ".../resnet50_model/onnx-fp32-argmax-opset11. Empty: the default variant's folder in the sink root, "
        "or on an Asset-triggered run the variant just published.",
    )
    preprocessed: str | None = input_field(
        "Preprocessed set",
        "Folder (or s3:// / gs:// prefix) of a validation set published by imagenet_preprocessed (it has "
        "val_map.txt). Empty: imagenet_preprocessed in the sink root, or on an Asset-triggered run the set just published.",
    )
    chunks: int = 1

    def upstream_artifacts(self) -> dict[str, str]:
        """The two published artifacts this check reads (the run's lineage inlets)."""
        return {MODEL_ARTIFACT: self.model or "", PREPROCESSED_ARTIFACT: self.preprocessed or ""}


def pair_folder(model: str, preprocessed: str) -> str:
    """The default output folder name of a pair: ``<variant folder>__<set folder>``."""

    def last(location: str) -> str:
        return location.rstrip("/").rsplit("/", 1)[-1] or "root"

    return f"{last(model)}__{last(preprocessed)}"


def resolve_job(
    params: Mapping[str, Any], *, sink_uri: str, conn_id: str | None, work_dir: str, scheduled: bool = False
) -> AccuracyJob:
    """The job of a trigger form's (or the CLI's) ``params``; missing inputs fail here, before any work.

    Raises:
        ConfigError: no model or no set given, or an unknown tag or option.
    """
    sel = ACCURACY_TABLE.selections_from_form(params)
    missing = [name for name in ("model", "preprocessed") if not params.get(name)]
    if missing:
        raise ConfigError(f"{ARTIFACT}: give {' and '.join(missing)} (a published folder or s3:// / gs:// prefix)")
    config = AccuracyConfig(
        batch_size=sel["batch_size"],
        expected_top1=sel["expected_top1"],
        tags=",".join(f"_{k}.{v}" for k, v in sel.items() if v is not None),
    )
    return AccuracyJob(
        config=config,
        model=params["model"],
        preprocessed=params["preprocessed"],
        source_conn_id=params.get("source_conn_id"),
        sink_uri=sink_uri,
        conn_id=conn_id,
        work_dir=work_dir,
        chunks=int(params.get("chunks") or 1),
    )


DECLARATION = Artifact(
    name=ARTIFACT,
    table=ACCURACY_TABLE,
    job=AccuracyJob,
    resolve_job=resolve_job,
    version=VERSION,
    release_notes=RELEASE_NOTES,
)
"""The artifact's one declaration: its form, CLI subcommand and CM tag parser are made from it."""
