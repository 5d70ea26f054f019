"""imagenet_ops: ImageNet / ResNet-50 artifacts for MLPerf, as a plain Python library.

No Airflow import anywhere in this package: the Airflow operators in ``plugins/`` and the
CLI (``python -m imagenet_ops``) are thin layers over the functions here.
"""

from __future__ import annotations

VERSION = "0.1.0"

# Changes that alter published bytes or manifests, newest first (TFDS style).
RELEASE_NOTES = {
    "0.1.0": "Foundation: aux files (get-dataset-imagenet-aux), download/extract/storage/env helpers.",
}

__all__ = ["RELEASE_NOTES", "VERSION"]
