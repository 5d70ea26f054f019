"""CM-style output env dicts, with the key names CM exports for each artifact."""

from __future__ import annotations


def aux_env(*, path: str, version: str) -> dict[str, str]:
    """get-dataset-imagenet-aux exports ``CM_DATASET_AUX_*``: the folder holding the 8 files and the version."""
    return {"CM_DATASET_AUX_PATH": path, "CM_DATASET_AUX_VER": version}
