"""An output location holds one artifact: what an earlier run left there is removed, not mixed in.

The rule (README "One artifact per output location"): when a run writes a different artifact
(another cache key) where one already is, or where a killed run left files, then

1. :func:`begin_output`, before any data is written: the old manifest goes first (readers stop
   trusting the location), then every file of the earlier artifact that the new one will not
   overwrite, i.e. the old manifest's files plus those a killed run had announced in
   ``.imagenet_ops/intent.json``, and on a local folder the stale temporaries of those files
   (``.<name>.tmp-<tag>`` next to each, this project's only temporary-name pattern). Listed
   paths that would leave the location (absolute, ``..``) are ignored, and so is a
   ``manifest.json`` another tool wrote. The files the new
   run may write are then announced in the intent record, so a kill at any point leaves a record
   of what to clean.
2. :func:`settle_output`, just before the new manifest: announced files that did not end up in
   the artifact (a ``bad_images.txt`` of an earlier run …) are removed, and on a local folder
   the temporaries of the artifact's files that a writer killed mid-run left (a lost host runs
   no clean-up), on S3 their unfinished multipart uploads; :func:`finish_output`,
   just after it, drops the intent record (the manifest now lists the files).

Only files this project wrote or announced are ever removed: other files under the location
(a user's notes, another tool's output) are left alone. Both steps run under the output's lease
(:mod:`imagenet_ops.core.lease`), so no other run writes meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from imagenet_ops.core.lease import ensure_still_held
from imagenet_ops.core.manifest import MANIFEST_NAME
from imagenet_ops.core.sinks import STATE_DIR, LocalSink

log = logging.getLogger(__name__)

INTENT_KEY = ".imagenet_ops/intent.json"
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9a-f]+$")
"""``.<name>.tmp-<hex or pid>``: how every writer of this project names a file before its rename."""
_MANIFEST_FIELDS = ("schema", "artifact", "library_version", "cache_key", "files")
_WRITER = "imagenet_ops"


def _inside(key: str) -> bool:
    """Whether ``key`` names a file under the location (no absolute path, ``.`` or ``..``)."""
    parts = PurePosixPath(key).parts
    return bool(parts) and not key.startswith("/") and "\\" not in key and not {".", ".."} & set(parts)


def _read_names(sink: Any, key: str, required: tuple[str, ...]) -> set[str]:
    """The file keys listed by this project's record ``key``; another tool's file of that name lists none."""
    raw = sink.get_bytes(key)
    if raw is None:
        return set()
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or any(f not in doc for f in required):
            log.warning("%s: not written by imagenet_ops; none of the files it lists is touched", sink.location(key))
            return set()
        names = {str(entry if isinstance(entry, str) else entry["path"]) for entry in doc["files"]}
    except (ValueError, KeyError, TypeError):
        log.warning("%s: ignoring unreadable %s", sink.location(key), key)
        return set()
    outside = sorted(n for n in names if not _inside(n))
    if outside:  # Regression: listed absolute and ../ paths deleted files outside the output
        log.warning("%s: ignoring %d listed path(s) outside the output, e.g. %s", sink.location(key), len(outside), outside[0])
    return names - set(outside)


def _write_intent(sink: Any, names: Iterable[str]) -> None:
    doc = {"written_by": _WRITER, "files": sorted(set(names))}
    sink.put_bytes(json.dumps(doc, indent=0).encode() + b"\n", INTENT_KEY)


def remove_stale_temporaries(root: Path, keys: Iterable[str]) -> list[Path]:
    """Delete a killed writer's temporaries of ``keys`` (``.<name>.tmp-<tag>`` next to each) and
    every temporary under ``.imagenet_ops/``; nothing else, and no other folder, is looked at."""
    wanted: dict[Path, set[str]] = {}
    for key in keys:
        path = root / key
        wanted.setdefault(path.parent, set()).add(path.name)
    removed = []
    for folder, names in wanted.items():
        removed += _remove_temporaries(folder, lambda name, names=names: name in names)
    for folder, _dirs, _files in os.walk(root / STATE_DIR):
        removed += _remove_temporaries(Path(folder), lambda name: True)
    return removed


def _local_temporaries(sink: Any, keys: Iterable[str]) -> list[str]:
    """On a local-folder sink, :func:`remove_stale_temporaries` of ``keys``; elsewhere nothing (objects are written whole)."""
    if not (isinstance(sink, LocalSink) and sink.root.is_dir()):
        return []
    return [str(p) for p in remove_stale_temporaries(sink.root, keys)]


def _remove_temporaries(folder: Path, of: Callable[[str], bool]) -> list[Path]:
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        match = TEMPORARY_NAME.match(entry.name)
        if match and of(match["name"]) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def begin_output(sink: Any, *, files: Iterable[str]) -> list[str]:
    """Clear the location of another artifact's files before writing ``files`` (keys under the sink).

    Returns:
        The keys and temporary paths removed (logged too).
    """
    ensure_still_held(sink)
    new = set(files)
    old = _read_names(sink, MANIFEST_NAME, _MANIFEST_FIELDS) | _read_names(sink, INTENT_KEY, ("written_by", "files"))
    sink.delete(MANIFEST_NAME)  # readers must not trust the old manifest while files change
    stale = sorted(old - new - {MANIFEST_NAME, INTENT_KEY})
    _write_intent(sink, new | set(stale))  # a kill during the removals below still leaves the record
    for key in stale:
        sink.delete(key)
    removed = list(stale)
    removed += _local_temporaries(sink, new | old)
    _write_intent(sink, new)
    if removed:
        shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
        log.info("%s: removed %d file(s) an earlier artifact or a killed run left: %s", sink.uri, len(removed), shown)
    return removed


def settle_output(sink: Any, *, files: Iterable[str]) -> list[str]:
    """Remove announced files that are not among ``files``, the artifact's final list (before its manifest)."""
    ensure_still_held(sink)  # the manifest comes next: only the lease holder may write it
    final = set(files)
    announced = _read_names(sink, INTENT_KEY, ("written_by", "files"))
    extra = sorted(announced - final - {MANIFEST_NAME, INTENT_KEY})
    for key in extra:
        sink.delete(key)
    if extra:
        log.info("%s: removed %d announced file(s) not in the final artifact: %s", sink.uri, len(extra), ", ".join(extra[:5]))
    if isinstance(sink, LocalSink):
        # A writer killed with SIGKILL (a lost host) runs no clean-up: its temporaries would stay for good.
        swept = _local_temporaries(sink, final | announced)
        if swept:
            log.info("%s: removed %d temporary file(s) a killed writer left: %s", sink.uri, len(swept), ", ".join(swept[:5]))
        extra += swept
    elif hasattr(sink, "abort_incomplete_uploads"):  # S3: a killed writer's multipart upload keeps its parts
        aborted = sink.abort_incomplete_uploads(final | announced)
        if aborted:
            shown = ", ".join(aborted[:5])
            log.info("%s: aborted %d unfinished upload(s) a killed writer left: %s", sink.uri, len(aborted), shown)
    return extra


def finish_output(sink: Any) -> None:
    """After the manifest is written: it lists the artifact's files, so the intent record goes."""
    sink.delete(INTENT_KEY)
    if isinstance(sink, LocalSink):
        with contextlib.suppress(OSError):  # not empty: a lease's lock files or a job's state stay
            (sink.root / INTENT_KEY).parent.rmdir()
