"""imagenet_ops: ImageNet / ResNet-50 artifacts for MLPerf, as a plain Python library.

No Airflow import anywhere in this package: the Airflow operators in ``plugins/`` and the
CLI (``python -m imagenet_ops``) are thin layers over the functions here.
"""

from __future__ import annotations

VERSION = "0.1.0"
"""The library's version: recorded in every manifest (``library_version``) and part of every cache key."""

# The library as a whole, newest first (TFDS style). What each artifact publishes has its own VERSION
# and RELEASE_NOTES on its declaration: imagenet_ops.{aux,model,preprocessed,training}.DECLARATION.
RELEASE_NOTES = {
    "0.1.0": (
        "2026-11-21 .. 2026-12-01. The four artifacts (aux, ResNet-50 model variants, preprocessed sets, training "
        "TFRecords / RecordIO), their CLI and their Airflow operators; output leases, atomic publishes, manifests. "
        "Not bumped through these changes, so that outputs published earlier stay cache hits; since 2026-12-01 the "
        "package is laid out as core / imagenet / one package per artifact / testing, with no change to any output."
    ),
}

__all__ = ["RELEASE_NOTES", "VERSION"]
