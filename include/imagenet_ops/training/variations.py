"""The training-data artifact's declaration: its variation table, config, version, and typed job.

Everything the trigger form, the CLI and the CM tag parser offer comes from here: the
variations and options (:data:`TRAINING_TABLE`), resolved into a frozen :class:`TrainingConfig`;
the inputs, declared once on :class:`TrainingJob` with the titles and descriptions the form
shows; and :func:`resolve_job`, which holds every rule about a run's params before any read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Artifact, Job, input_field
from imagenet_ops.core.lineage import AUX_ARTIFACT
from imagenet_ops.core.variations import SKIP_SSL_VERIFICATION, Choice, Group, Option, VariationTable, md5_option, url_option
from imagenet_ops.imagenet.constants import TRAIN_TAR_MD5, VAL_TAR_MD5

ARTIFACT = "imagenet_training_data"
VERSION = "1.1.0"
# Changes that alter published bytes or manifests, newest first (TFDS style).
RELEASE_NOTES = {
    "1.1.0": (
        "reference: every TFRecord shard gets its DALI index, idx/<shard>.idx in the shard's folder, byte-identical to "
        "DALI's tfrecord2idx (an empty shard gets an empty index), listed in the manifest with size and sha256. "
        "Shard bytes are unchanged. The version is part of the cache key, so a 1.0.0 artifact is rewritten."
    ),
    "1.0.0": (
        "First release. reference: the TFRecord shards of the TF/TPU imagenet_to_gcs converter (labels 1..N over the "
        "train classes, PNG/CMYK train files re-encoded byte-identical to it; the list is sorted before the Random(0) "
        "shuffle, so shards do not depend on filesystem order; a validation wnid that is not a train class is refused). "
        "nvidia: train/val .lst/.rec/.idx as im2rec --list --recursive then --pass-through (labels 0..N-1 per split, "
        "seed-100 shuffle). Images are fully decoded and a corrupt one refused, unless their tar matched the published "
        "ImageNet md5."
    ),
}
VAL_LABELS_URL = (
    "https://raw.githubusercontent.com/tensorflow/models/master/research/slim/datasets/imagenet_2012_validation_synset_labels.txt"
)
VAL_LABELS_NAME = "imagenet_2012_validation_synset_labels.txt"

TRAINING_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(
        Group(
            name="implementation",
            title="Output format",
            description="reference: TFRecord shards of the TF/TPU imagenet_to_gcs converter (MLPerf TF reference); "
            "nvidia: MXNet RecordIO train/val .lst/.rec/.idx as NVIDIA's im2rec --pass-through makes them.",
            default="reference",
            choices=(
                Choice("reference", "TFRecords (imagenet_to_gcs)", {"format": "tfrecord"}),
                Choice("nvidia", "MXNet RecordIO (NVIDIA im2rec)", {"format": "recordio"}),
            ),
        ),
        Group(
            name="layout",
            title="Folder layout",
            description="flat: every shard in one folder (what the MLPerf readers want); split: train/ and validation/ "
            "folders (the converter's local scratch layout). RecordIO is always flat.",
            default="flat",
            tag_prefix="layout.",
            choices=(
                Choice("flat", "One flat folder"),
                Choice("split", "train/ and validation/"),
            ),
        ),
    ),
    options=(
        Option(
            "train_shards",
            "integer",
            "Train shards",
            "Number of train TFRecord shards (the reference writes 1024). 0 skips the train split.",
            default=1024,
            optional=False,
            minimum=0,
            maximum=100_000,
            section="Shards",
            tag_prefix="train_shards.",
        ),
        Option(
            "validation_shards",
            "integer",
            "Validation shards",
            "Number of validation TFRecord shards (the reference writes 128). 0 skips the validation split.",
            default=128,
            optional=False,
            minimum=0,
            maximum=100_000,
            section="Shards",
            tag_prefix="validation_shards.",
        ),
        Option(
            "check_md5",
            "boolean",
            "Check the md5 of the big tars",
            "Read ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar once more to check their md5 (off by default: "
            "146 GB of reading). Only archives given as single tar files are checked.",
            default=False,
            optional=False,
            section="Inputs",
            tag="check_md5",
        ),
        md5_option(
            "train_md5",
            title="Train tar md5",
            description=f"Expected md5 of the train tar when checking (default {TRAIN_TAR_MD5}).",
            section="Inputs",
        ),
        md5_option(
            "validation_md5",
            title="Validation tar md5",
            description=f"Expected md5 of the validation tar when checking (default {VAL_TAR_MD5}).",
            section="Inputs",
        ),
        url_option(
            "labels_url",
            title="Validation labels URL",
            description=(
                "Where to download imagenet_2012_validation_synset_labels.txt when no labels file or aux artifact is "
                "given (a mirror of the tensorflow/models file)."
            ),
            section="Inputs",
        ),
        SKIP_SSL_VERIFICATION,
    ),
)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything the output depends on, resolved from variations and options."""

    implementation: str = "reference"
    layout: str = "flat"
    train_shards: int = 1024
    validation_shards: int = 128
    check_md5: bool = False
    train_md5: str = TRAIN_TAR_MD5
    validation_md5: str = VAL_TAR_MD5
    labels_url: str = VAL_LABELS_URL
    verify_ssl: bool = True

    def as_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainingConfig:
        return cls(**params)

    def output_params(self) -> dict[str, Any]:
        """The fields that shape the bytes written (the cache key, with the artifact's version); checks and URLs are left out."""
        return {"implementation": self.implementation, "layout": self.layout, **self._shards(), "version": VERSION}

    def _shards(self) -> dict[str, int]:
        if self.implementation == "nvidia":
            return {"train": int(self.train_shards > 0), "validation": int(self.validation_shards > 0)}
        return {"train": self.train_shards, "validation": self.validation_shards}


def resolve_training_config(
    given: Mapping[str, Any] | None = None, *, variations: str | Iterable[str] | None = None
) -> TrainingConfig:
    """Resolve form fields / CLI options and CM tags (``_nvidia``, ``_layout.split`` …) into a config.

    Raises:
        ConfigError: unknown tag/option, a conflict, or a layout the implementation cannot write.
    """
    sel = TRAINING_TABLE.selections(given, variations)
    if sel["implementation"] == "nvidia" and sel["layout"] == "split":
        raise ConfigError("layout split applies to the reference TFRecords; nvidia writes train.* and val.* in one folder")
    if sel["train_shards"] == 0 and sel["validation_shards"] == 0:
        raise ConfigError("train_shards and validation_shards are both 0: nothing to write")
    return TrainingConfig(
        implementation=sel["implementation"],
        layout=sel["layout"],
        train_shards=sel["train_shards"],
        validation_shards=sel["validation_shards"],
        check_md5=sel["check_md5"],
        train_md5=(sel["train_md5"] or TRAIN_TAR_MD5).lower(),
        validation_md5=(sel["validation_md5"] or VAL_TAR_MD5).lower(),
        labels_url=sel["labels_url"] or VAL_LABELS_URL,
        verify_ssl=not sel["skip_ssl_verification"],
    )


def published_md5s() -> set[str]:
    """The md5s of the published ImageNet tars: bytes from a tar that matched one are known to decode.

    Read at call time, so the tests and the bench can point them at their own small tars.
    """
    return {TRAIN_TAR_MD5, VAL_TAR_MD5}


def require_images(train: str | Path | None, validation: str | Path | None) -> None:
    """A run needs the train images, the validation images, or both.

    Raises:
        ConfigError: neither is given.
    """
    if not train and not validation:
        raise ConfigError("give train and/or validation images (both are missing)")


@dataclass(frozen=True, kw_only=True)
class TrainingJob(Job):
    """One run: the config, the inputs (local, s3:// or gs://), the sink, and how many writer tasks to map.

    Attributes:
        tasks: the number of groups the plan splits the units into (one mapped writer task each).
    """

    config_type: ClassVar[type] = TrainingConfig

    config: TrainingConfig
    train: str | None = input_field(
        "Train images",
        "ILSVRC2012_img_train.tar, a folder of <wnid>.tar, or a folder of <wnid>/ folders; local, s3:// or gs://.",
    )
    validation: str | None = input_field("Validation images", "ILSVRC2012_img_val.tar or a flat folder of ILSVRC2012_val_*.JPEG.")
    validation_labels: str | None = input_field(
        "Validation labels file", "imagenet_2012_validation_synset_labels.txt (50,000 wnids, line i = image i)."
    )
    aux_path: str | None = input_field(
        "Aux artifact folder",
        "Folder (or s3:// / gs:// prefix) of the imagenet_aux artifact; its val.txt + synsets.txt give the validation "
        "labels when no labels file is given.",
    )
    tasks: int = 8

    def upstream_artifacts(self) -> dict[str, str]:
        """The aux artifact when it labels the validation split: validation images to write and no labels file.

        The order :func:`~imagenet_ops.training.inputs.resolve_val_labels` reads them in: a labels
        file, else the aux artifact, else the labels URL.
        """
        wants_val = bool(self.validation and self.config.validation_shards)
        return {AUX_ARTIFACT: self.aux_path} if wants_val and self.aux_path and not self.validation_labels else {}


def resolve_job(
    params: Mapping[str, Any], *, sink_uri: str, conn_id: str | None, work_dir: str, scheduled: bool = False
) -> TrainingJob:
    """The run's job from the trigger form's params; a bad variation or missing input fails here, before any read.

    Args:
        params: the form: the table's fields, the inputs, ``source_conn_id`` and ``parallel_tasks``.
        scheduled: a scheduled run (no rule of this artifact depends on it).

    Raises:
        ConfigError: an unknown or conflicting variation, or neither train nor validation images.
    """
    config = resolve_training_config(TRAINING_TABLE.selections_from_form(params))
    require_images(params.get("train"), params.get("validation"))
    return TrainingJob(
        config=config,
        **{f.name: params.get(f.name) for f in TrainingJob.inputs()},
        source_conn_id=params.get("source_conn_id"),
        sink_uri=sink_uri,
        conn_id=conn_id,
        work_dir=work_dir,
        tasks=int(params["parallel_tasks"]),
    )


DECLARATION = Artifact(
    name=ARTIFACT,
    table=TRAINING_TABLE,
    job=TrainingJob,
    resolve_job=resolve_job,
    version=VERSION,
    release_notes=RELEASE_NOTES,
)
"""The artifact's one declaration: its form, CLI subcommand and CM tag parser are made from it."""
