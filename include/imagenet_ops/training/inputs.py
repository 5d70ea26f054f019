"""The training data's inputs before planning: the md5 check of the big tars, and the validation labels."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import AcceptedChecksums, Digests, file_digests, stream_digests
from imagenet_ops.core.download import download
from imagenet_ops.core.errors import ChecksumMismatch, ValidationError
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.labels import local_aux_folder, read_wnid_labels, val_labels_from_aux
from imagenet_ops.training.variations import VAL_LABELS_NAME, TrainingConfig

log = logging.getLogger(__name__)


def check_archive_md5(*, path: str | Path, expected: str, store: Any = None) -> Digests:
    """Read a big tar once and compare its md5 (CM's optional ``md5sum -c``).

    Raises:
        ChecksumMismatch: the md5 differs (names the file, both sums).
    """
    from imagenet_ops.core.store import ObjectStore

    started = time.monotonic()
    if is_remote(str(path)):
        with (store or ObjectStore()).open(str(path)) as fh:
            digests = stream_digests(fh, chunk_size=8 << 20)
    else:
        digests = file_digests(Path(path))
    if digests.md5 != expected.lower():
        raise ChecksumMismatch(f"{path}: md5 {digests.md5} does not match the expected {expected}")
    elapsed = time.monotonic() - started
    log.info(
        "%s: md5 %s OK (%s at %s/s)", path, digests.md5, human_bytes(digests.size), human_bytes(digests.size / max(elapsed, 1e-9))
    )
    return digests


def archives_to_check(*, train: str | None, validation: str | None, config: TrainingConfig) -> list[tuple[str, str]]:
    """``(path, expected md5)`` of the inputs given as single tar files."""
    out = []
    for path, md5 in ((train, config.train_md5), (validation, config.validation_md5)):
        if path and str(path).endswith(".tar") and (is_remote(str(path)) or not Path(path).is_dir()):
            out.append((str(path), md5))
    return out


def check_input_archives(
    *, config: TrainingConfig, train: str | Path | None, validation: str | Path | None, store: Any = None
) -> dict[str, str]:
    """Check the md5 of every input tar the config asks to check (``check_md5``); ``{}`` when it is off.

    Only inputs given as single tar files are checked (folders have no published md5).

    Returns:
        ``{path: md5}`` of the checked tars, recorded in the manifest by the plan step.

    Raises:
        ChecksumMismatch: a tar whose md5 differs (names the file, both sums).
    """
    if not config.check_md5:
        log.debug("md5 check of the input tars is off (check_md5=false)")
        return {}
    todo = archives_to_check(train=train and str(train), validation=validation and str(validation), config=config)
    if not todo:
        log.info("no single-tar inputs to check (folders have no published md5)")
    return {path: check_archive_md5(path=path, expected=md5, store=store).md5 for path, md5 in todo}


def resolve_val_labels(
    *,
    labels: str | Path | None,
    aux_path: str | Path | None,
    config: TrainingConfig,
    work_dir: Path,
    store: Any = None,
) -> tuple[list[str], str]:
    """The 50,000 validation wnids (line i names image i) and where they came from.

    Order: an explicit labels file, else the aux artifact's ``val.txt`` + ``synsets.txt``, else a
    download of ``config.labels_url`` (unchecked: the file has no published md5; each line is
    validated instead). The file and the aux folder may be s3:// or gs:// URIs (read with ``store``).
    The returned list is a :class:`~imagenet_ops.imagenet.labels.ValLabels`: its ``source`` is the
    file (or URI) whose line i labels image i, which later errors name.

    Args:
        work_dir: scratch for the copies and the download; the caller removes it (the labels are
            read into memory here).

    Returns:
        The wnids and the source the manifest records (``provenance.labels_source``): the labels
        file or URI as given, the aux artifact as given, or the labels URL; never a scratch path.

    Raises:
        ValidationError: a missing or malformed labels file (named).
    """
    remote_labels = remote_val_txt = None
    if store is not None and labels and is_remote(str(labels)):
        remote_labels = str(labels)
        labels = store.download(remote_labels, Path(work_dir) / "labels" / VAL_LABELS_NAME)
    given_aux = None  # the aux artifact as the user gave it (a remote one is read from a copy in work_dir)
    if aux_path:
        given_aux = str(aux_path).rstrip("/") if is_remote(str(aux_path)) else str(Path(aux_path))
    if store is not None and aux_path and is_remote(str(aux_path)):
        remote_val_txt = f"{str(aux_path).rstrip('/')}/val.txt"
        aux_path = local_aux_folder(aux_path, ("val.txt", "synsets.txt"), dest_dir=Path(work_dir) / "aux", store=store)
    if labels:
        path = Path(labels)
        if not path.is_file():
            raise ValidationError(f"{path}: validation labels file not found (expected {VAL_LABELS_NAME}, one wnid per line)")
        return read_wnid_labels(path, source=remote_labels), remote_labels or str(path)
    if aux_path:
        aux = Path(aux_path)
        val_txt, synsets = aux / "val.txt", aux / "synsets.txt"
        for f in (val_txt, synsets):
            if not f.is_file():
                raise ValidationError(f"{f}: not found in the aux artifact {aux} (expected val.txt and synsets.txt)")
        from_aux = val_labels_from_aux(val_txt, synsets)
        from_aux.source = remote_val_txt or from_aux.source
        return from_aux, f"{given_aux} (val.txt + synsets.txt)"
    fetched = download(
        urls=(config.labels_url,),
        dest_dir=Path(work_dir) / "labels",
        accepted=AcceptedChecksums(),
        filename=VAL_LABELS_NAME,
        verify_ssl=config.verify_ssl,
    )
    return read_wnid_labels(Path(fetched.path), source=config.labels_url), config.labels_url
