"""Thin Airflow operators over the ``imagenet_ops`` library (one library call per ``execute``)."""

from __future__ import annotations

from imagenet_operators.aux import AuxPublishOperator, AuxValidateOperator
from imagenet_operators.files import ArchiveDownloadOperator, ArchiveExtractOperator, ChecksumVerifyOperator
from imagenet_operators.leases import ReleaseOutputLeaseOperator
from imagenet_operators.model import ModelDownloadOperator, ModelLoadCheckOperator, ModelPrepareOperator, ModelPublishOperator
from imagenet_operators.preprocess import (
    PreprocessChunkOperator,
    PreprocessFinalizeOperator,
    PreprocessInputsOperator,
    PreprocessSelectOperator,
)
from imagenet_operators.run_note import RunNoteOperator
from imagenet_operators.training import (
    TrainingChecksumOperator,
    TrainingFinalizeOperator,
    TrainingPlanOperator,
    TrainingShardsOperator,
)

__all__ = [
    "ArchiveDownloadOperator",
    "ArchiveExtractOperator",
    "AuxPublishOperator",
    "AuxValidateOperator",
    "ChecksumVerifyOperator",
    "ModelDownloadOperator",
    "ModelLoadCheckOperator",
    "ModelPrepareOperator",
    "ModelPublishOperator",
    "PreprocessChunkOperator",
    "PreprocessFinalizeOperator",
    "PreprocessInputsOperator",
    "PreprocessSelectOperator",
    "ReleaseOutputLeaseOperator",
    "RunNoteOperator",
    "TrainingChecksumOperator",
    "TrainingFinalizeOperator",
    "TrainingPlanOperator",
    "TrainingShardsOperator",
]
