"""An output location holds one artifact: what an earlier run left there is removed, not mixed in.

The rule (README "One artifact per output location"): when a run writes a different artifact
(another cache key) where one already is, or where a killed run left files, then

1. :func:`begin_output`, before any data is written: the old manifest goes first (readers stop
   trusting the location), then every file of the earlier artifact that the new one will not
   overwrite, i.e. the old manifest's files plus those a killed run had announced in
   ``.imagenet_ops/intent.json``, and on a local folder every stale temporary
   (``.<name>.tmp-<tag>``, this project's only temporary-name pattern). The files the new
   run may write are then announced in the intent record, so a kill at any point leaves a record
   of what to clean.
2. :func:`settle_output`, just before the new manifest: announced files that did not end up in
   the artifact (a ``bad_images.txt`` of an earlier run …) are removed; :func:`finish_output`,
   just after it, drops the intent record (the manifest now lists the files).

Only files this project wrote or announced are ever removed: other files under the location
(a user's notes, another tool's output) are left alone. Both steps run under the output's lease
(:mod:`imagenet_ops.lease`), so no other run writes meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imagenet_ops.lease import ensure_still_held
from imagenet_ops.storage import MANIFEST_NAME, LocalSink

log = logging.getLogger(__name__)

INTENT_KEY = ".imagenet_ops/intent.json"
TEMPORARY_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]+$")
"""``.<name>.tmp-<hex or pid>``: how every writer of this project names a file before its rename."""


def _read_names(sink: Any, key: str, field: str) -> set[str]:
    raw = sink.get_bytes(key)
    if raw is None:
        return set()
    try:
        doc = json.loads(raw)
        return {str(entry if isinstance(entry, str) else entry["path"]) for entry in doc[field]}
    except (ValueError, KeyError, TypeError):
        log.warning("%s: ignoring unreadable %s", sink.location(key), key)
        return set()


def _write_intent(sink: Any, names: Iterable[str]) -> None:
    sink.put_bytes(json.dumps({"files": sorted(set(names))}, indent=0).encode() + b"\n", INTENT_KEY)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete every ``.<name>.tmp-<tag>`` file under ``root`` (a killed writer's leftovers)."""
    removed = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if TEMPORARY_NAME.match(name):
                path = Path(folder, name)
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
    return removed


def begin_output(sink: Any, *, files: Iterable[str]) -> list[str]:
    """Clear the location of another artifact's files before writing ``files`` (keys under the sink).

    Returns:
        The keys and temporary paths removed (logged too).
    """
    ensure_still_held()
    new = set(files)
    old = _read_names(sink, MANIFEST_NAME, "files") | _read_names(sink, INTENT_KEY, "files")
    sink.delete(MANIFEST_NAME)  # readers must not trust the old manifest while files change
    stale = sorted(old - new - {MANIFEST_NAME, INTENT_KEY})
    _write_intent(sink, new | set(stale))  # a kill during the removals below still leaves the record
    for key in stale:
        sink.delete(key)
    removed = list(stale)
    if isinstance(sink, LocalSink) and sink.root.is_dir():
        removed += [str(p) for p in remove_stale_temporaries(sink.root)]
    _write_intent(sink, new)
    if removed:
        shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
        log.info("%s: removed %d file(s) an earlier artifact or a killed run left: %s", sink.uri, len(removed), shown)
    return removed


def settle_output(sink: Any, *, files: Iterable[str]) -> list[str]:
    """Remove announced files that are not among ``files``, the artifact's final list (before its manifest)."""
    ensure_still_held()  # the manifest comes next: only the lease holder may write it
    final = set(files)
    announced = _read_names(sink, INTENT_KEY, "files")
    extra = sorted(announced - final - {MANIFEST_NAME, INTENT_KEY})
    for key in extra:
        sink.delete(key)
    if extra:
        log.info("%s: removed %d announced file(s) not in the final artifact: %s", sink.uri, len(extra), ", ".join(extra[:5]))
    return extra


def finish_output(sink: Any) -> None:
    """After the manifest is written: it lists the artifact's files, so the intent record goes."""
    sink.delete(INTENT_KEY)
    if isinstance(sink, LocalSink):
        with contextlib.suppress(OSError):  # not empty: a lease's lock files or a job's state stay
            (sink.root / INTENT_KEY).parent.rmdir()
