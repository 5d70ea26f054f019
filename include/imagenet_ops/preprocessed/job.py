"""The typed job of a preprocessed set: its config, its inputs, its chunk count, and the rules that make one.

The DAG's form and the job's XCom form use the same names: ``images``, ``val_map``, ``aux_path``,
``calibration_list`` (declared once here with their form titles), ``chunks`` and the sink fields
of :class:`~imagenet_ops.core.jobs.Job`. This module is imported when a DAG file is parsed: it
imports neither numpy nor OpenCV.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Artifact, Job, input_field
from imagenet_ops.core.lineage import AUX_ARTIFACT
from imagenet_ops.preprocessed.config import PreprocessConfig, resolve_preprocess_config
from imagenet_ops.preprocessed.variations import ARTIFACT, PREPROCESS_TABLE, RELEASE_NOTES, VERSION

IMAGES_PER_CHUNK = 25_000
"""The default chunk size: a mapped task's fixed cost on a real scheduler (1.4 s, bench/dag_task_overhead.py) stays
under 5% of its work at 600 images/s per task (README "DAG overhead"); the full set is 2 chunks."""


def default_chunks(images: int) -> int:
    """Chunks when the form leaves the count empty: one per :data:`IMAGES_PER_CHUNK` images, at least one."""
    return max(1, -(-int(images) // IMAGES_PER_CHUNK))


@dataclass(frozen=True, kw_only=True)
class PreprocessJob(Job):
    """One preprocessed set to build: the resolved config, where its inputs are, how many chunks to map.

    Attributes:
        chunks: how many chunks the selected images are split into (mapped tasks in the DAG).
        labels_from_aux: set by the inputs step when ``val_map`` is the aux artifact's ``val.txt``.
    """

    config_type: ClassVar[type] = PreprocessConfig

    config: PreprocessConfig
    images: str | None = input_field(
        "Validation images",
        "Folder of ILSVRC2012_val_*.JPEG, ILSVRC2012_img_val.tar, or an s3:// / gs:// prefix or tar. "
        "Empty: download the tar the size needs (500-image subset or full; see the custom-source fields).",
    )
    val_map: str | None = input_field(
        "Validation labels (val.txt)", "The aux artifact's val.txt: 'name label' lines, in image order."
    )
    aux_path: str | None = input_field(
        "Aux artifact folder", "Folder (or s3:// / gs:// prefix) of imagenet_aux; its val.txt is used."
    )
    calibration_list: str | None = input_field(
        "Calibration list", "An MLPerf calibration list file; empty: download the chosen option."
    )
    chunks: int = 1
    labels_from_aux: bool = False

    def upstream_artifacts(self) -> dict[str, str]:
        """The aux artifact when its ``val.txt`` labels this set: a validation set given ``aux_path`` and no ``val_map``.

        After the inputs step ``val_map`` names the aux's ``val.txt`` (or its staged copy), and
        ``labels_from_aux`` says where it came from.
        """
        from_aux = self.labels_from_aux or (self.config.dataset_type == "validation" and self.aux_path and not self.val_map)
        return {AUX_ARTIFACT: self.aux_path} if from_aux and self.aux_path else {}


def resolve_job(
    params: Mapping[str, Any], *, sink_uri: str, conn_id: str | None, work_dir: str, scheduled: bool = False
) -> PreprocessJob:
    """The job of a trigger form's ``params``; an invalid combination fails here, before any work.

    Args:
        params: the form's values (the table's fields, the inputs, ``source_conn_id``, ``chunks``; an empty
            ``chunks`` is :func:`default_chunks` of the size).
        sink_uri: the resolved output location.
        conn_id: the sink's connection.
        work_dir: this run's scratch folder.
        scheduled: a scheduled refresh (it builds the same set as a manual run).

    Raises:
        ConfigError: conflicting variations, or a validation set without labels (``val_map`` or ``aux_path``).
    """
    config = resolve_preprocess_config(PREPROCESS_TABLE.selections_from_form(params))
    if config.dataset_type == "validation" and not (params.get("val_map") or params.get("aux_path")):
        raise ConfigError("validation sets need labels: give val_map (the aux val.txt) or aux_path (the aux artifact)")
    return PreprocessJob(
        config=config,
        images=params.get("images"),
        val_map=params.get("val_map"),
        aux_path=params.get("aux_path"),
        calibration_list=params.get("calibration_list"),
        source_conn_id=params.get("source_conn_id"),
        sink_uri=sink_uri,
        conn_id=conn_id,
        work_dir=work_dir,
        chunks=params.get("chunks") or default_chunks(config.size),
    )


DECLARATION = Artifact(
    name=ARTIFACT,
    table=PREPROCESS_TABLE,
    job=PreprocessJob,
    resolve_job=resolve_job,
    version=VERSION,
    release_notes=RELEASE_NOTES,
)
"""The artifact's one declaration: its form, CLI subcommand and CM tag parser are made from it."""
