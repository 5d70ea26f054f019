"""ImageNet aux files: download, verify, extract, validate and publish the 8 files.

The artifact's declaration (table, config, job, version) is in :mod:`imagenet_ops.aux.variations`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.aux.variations import ARTIFACT, AUX_FILES, AuxConfig
from imagenet_ops.core.digests import verify_file
from imagenet_ops.core.download import DownloadResult, download
from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.extract import extract_archive
from imagenet_ops.core.manifest import PublishResult, publish_dir
from imagenet_ops.core.sinks import Sink
from imagenet_ops.imagenet.constants import NUM_CLASSES, NUM_VAL_IMAGES, WNID
from imagenet_ops.imagenet.labels import read_lines as _lines
from imagenet_ops.imagenet.labels import read_val_map

log = logging.getLogger(__name__)


def aux_env(*, path: str, version: str) -> dict[str, str]:
    """get-dataset-imagenet-aux exports ``CM_DATASET_AUX_*``: the folder holding the 8 files and the version."""
    return {"CM_DATASET_AUX_PATH": path, "CM_DATASET_AUX_VER": version}


def fetch_aux(*, config: AuxConfig, dest_dir: Path) -> DownloadResult:
    """Download the aux archive into ``dest_dir`` (mirrors, resume, checksum gate)."""
    return download(
        urls=config.urls, dest_dir=dest_dir, accepted=config.accepted, filename=config.filename, verify_ssl=config.verify_ssl
    )


def verify_aux_archive(*, config: AuxConfig, archive: Path) -> dict[str, Any]:
    """Re-check an archive handed over between tasks; returns its md5, sha256 and size."""
    return verify_file(Path(archive), config.accepted).as_dict()


@dataclass(frozen=True)
class AuxValidation:
    """Counts found by :func:`validate_aux_dir`."""

    path: str
    classes: int
    val_images: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_VAL_NAME = re.compile(r"^ILSVRC2012_val_([0-9]{8})\.JPEG$")


def validate_aux_dir(path: Path, *, classes: int = NUM_CLASSES, val_images: int = NUM_VAL_IMAGES) -> AuxValidation:
    """Check an extracted aux folder.

    Checks: the 8 files exist; ``synsets.txt`` holds ``classes`` sorted unique wnids;
    ``val.txt`` holds ``val_images`` lines ``ILSVRC2012_val_%08d.JPEG <label>`` in ascending
    order with labels ``0..classes-1``; ``synset_words.txt`` covers every wnid.

    Raises:
        ValidationError: naming the file, the check that failed, and the offending line.
    """
    path = Path(path)
    missing = [name for name in AUX_FILES if not (path / name).is_file()]
    if missing:
        raise ValidationError(f"{path}: missing aux file(s) {', '.join(missing)} (expected all of {', '.join(AUX_FILES)})")

    synsets = _lines(path / "synsets.txt")
    if len(synsets) != classes:
        raise ValidationError(f"{path / 'synsets.txt'}: expected {classes} wnids, found {len(synsets)} lines")
    for i, wnid in enumerate(synsets, 1):
        if not WNID.match(wnid):
            raise ValidationError(f"{path / 'synsets.txt'}: line {i} {wnid!r} is not a wnid like n01440764")
    if synsets != sorted(set(synsets)):
        raise ValidationError(f"{path / 'synsets.txt'}: wnids are not sorted and unique (the line index is the class id)")

    # Every line is checked before the count, so a malformed line is named by its number.
    val = read_val_map(path / "val.txt", classes=classes)
    for i, (name, _) in enumerate(val, 1):
        m = _VAL_NAME.match(name)
        if not m:
            raise ValidationError(f"{path / 'val.txt'}: line {i} image {name!r} is not named 'ILSVRC2012_val_%08d.JPEG'")
        if int(m.group(1)) != i:
            raise ValidationError(
                f"{path / 'val.txt'}: line {i} names image {m.group(1)}; expected ascending order from 00000001"
            )
    if len(val) != val_images:
        detail = f"line {val_images + 1} onwards is extra" if len(val) > val_images else f"it ends at line {len(val)}"
        raise ValidationError(f"{path / 'val.txt'}: expected {val_images} lines, found {len(val)} ({detail})")

    worded = {line.split(" ", 1)[0] for line in _lines(path / "synset_words.txt")}
    uncovered = [w for w in synsets if w not in worded]
    if uncovered:
        raise ValidationError(
            f"{path / 'synset_words.txt'}: {len(uncovered)} wnid(s) of synsets.txt have no words, e.g. {', '.join(uncovered[:5])}"
        )
    log.info("validated %s: %d classes, %d validation labels", path, classes, len(val))
    return AuxValidation(path=str(path), classes=len(synsets), val_images=len(val))


@dataclass(frozen=True)
class AuxPublished:
    """Result of :func:`publish_aux`: the publish facts and the CM env dict."""

    publish: PublishResult
    env: dict[str, str]


def _drop_unexpected(folder: Path) -> None:
    """Remove what the archive held besides :data:`AUX_FILES`, with a warning: only the 8 files are the artifact."""
    extras = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in AUX_FILES)
    if extras:
        log.warning(
            "%s: dropping %d unexpected member(s) of the archive, not published: %s",
            folder,
            len(extras),
            ", ".join(p.relative_to(folder).as_posix() for p in extras),
        )
    for p in extras:
        p.unlink()


def publish_aux(*, extracted_dir: Path, sink: Sink, config: AuxConfig, archive: Mapping[str, Any]) -> AuxPublished:
    """Publish validated aux files; the cache key covers the config and the archive's bytes.

    Args:
        extracted_dir: folder with the 8 validated files; anything else in it is dropped with a warning.
        sink: destination.
        config: the resolved config.
        archive: the download facts (``md5``, ``sha256``, ``size``; ``url``/``etag`` recorded only).
    """
    from imagenet_ops.aux.report import aux_report
    from imagenet_ops.core.report import build_report

    upstream = {k: archive[k] for k in ("md5", "sha256", "size")}
    _drop_unexpected(Path(extracted_dir))
    report = build_report(ARTIFACT, lambda: aux_report(Path(extracted_dir), config=config))
    result = publish_dir(
        local_dir=Path(extracted_dir),
        sink=sink,
        artifact=ARTIFACT,
        params=config.as_params(),
        upstream=upstream,
        provenance={k: archive.get(k) for k in ("url", "etag", "last_modified")},
        report=report,  # report/: published with the 8 files, listed in the manifest
    )
    return AuxPublished(publish=result, env=aux_env(path=result.uri, version=config.version))


def build_aux(*, config: AuxConfig, sink: Sink, work_dir: Path) -> AuxPublished:
    """Download, verify, extract, validate and publish in one call (what the CLI runs)."""
    work_dir = Path(work_dir)
    fetched = fetch_aux(config=config, dest_dir=work_dir / "download")
    extracted = extract_archive(archive=Path(fetched.path), dest=work_dir / "extracted")
    validate_aux_dir(Path(extracted.path))
    return publish_aux(extracted_dir=Path(extracted.path), sink=sink, config=config, archive=fetched.as_dict())
