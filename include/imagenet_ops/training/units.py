"""Work units: what one mapped task writes, and the one done-record that says a unit is complete.

A unit is a TFRecord shard and its DALI index (reference) or a RecordIO split (nvidia: ``.rec`` +
``.idx`` + ``.lst``).
Its files are written under temporary names and renamed when complete, then (by the caller,
:func:`imagenet_ops.training.pipeline.write_units`) put into the sink with a done-record under
``.imagenet_ops/done/``: the unit's plan digest and every file's path, size and checksum.
:func:`completed_unit` trusts a unit only while its files still match that record, so a retried
or re-run task skips complete units and rewrites damaged ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import file_crc32c, file_digests
from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.progress import Progress
from imagenet_ops.core.sinks import STATE_DIR, LocalSink, Sink
from imagenet_ops.imagenet.images import ImageReader
from imagenet_ops.training.order import Shard
from imagenet_ops.training.recordio import RecordIOWriter, lst_line, pack_irheader
from imagenet_ops.training.shards import ShardResult, dali_index_name, image_name, write_tfrecord_shard

log = logging.getLogger(__name__)

NVIDIA_SPLITS = {"train": "train", "validation": "val"}


@dataclass(frozen=True)
class Unit:
    """One output of the plan: a TFRecord shard and its DALI index, or a RecordIO split (``.lst``/``.rec``/``.idx``).

    ``md5_verified``: every image comes from a tar whose md5 matched the published ImageNet md5,
    so the writer packs it after a header check only; otherwise each image is fully decoded first.
    """

    shard: Shard
    implementation: str
    layout: str
    md5_verified: bool = False

    @property
    def name(self) -> str:
        return NVIDIA_SPLITS[self.shard.split] if self.implementation == "nvidia" else self.shard.name

    @property
    def folder(self) -> str:
        return self.shard.split if self.layout == "split" else ""

    def key(self, filename: str) -> str:
        """The sink key of one of :attr:`files` (a path relative to the unit's folder)."""
        return f"{self.folder}/{filename}" if self.folder else filename

    def relative(self, key: str) -> str:
        """The inverse of :meth:`key`: a sink key as a path relative to the unit's folder."""
        return key[len(self.folder) + 1 :] if self.folder else key

    @property
    def files(self) -> tuple[str, ...]:
        """The unit's files relative to its folder: the shard then its DALI index, or ``.rec``/``.idx``/``.lst``."""
        if self.implementation == "nvidia":
            return tuple(f"{self.name}.{ext}" for ext in ("rec", "idx", "lst"))
        return (self.name, dali_index_name(self.name))

    @property
    def done_key(self) -> str:
        return f"{STATE_DIR}/done/{self.name}.json"


@dataclass(frozen=True)
class UnitResult:
    """A finished unit: its files (path, size, checksum), records, converted images, and whether it was skipped."""

    name: str
    split: str
    records: int
    files: tuple[dict[str, Any], ...]
    converted: int = 0
    skipped: bool = False
    plan_digest: str = ""

    @property
    def bytes(self) -> int:
        return sum(f["size"] for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitResult:
        return cls(**{**d, "files": tuple(d["files"])})


_DIGESTS: dict[int, tuple[Shard, str]] = {}
_DIGESTS_KEPT = 4096


def plan_digest(shard: Shard) -> str:
    """sha256 of the shard's planned content (which images, labels, order): what a done-record must match.

    Kept per shard object (a shard is frozen), so the write, skip and finalize checks of one
    process serialize each shard once.
    """
    kept = _DIGESTS.get(id(shard))
    if kept is not None and kept[0] is shard:
        return kept[1]
    digest = hashlib.sha256(json.dumps(shard.as_dict(), separators=(",", ":")).encode()).hexdigest()
    if len(_DIGESTS) >= _DIGESTS_KEPT:
        _DIGESTS.clear()
    _DIGESTS[id(shard)] = (shard, digest)
    return digest


def group_label(names: Sequence[str]) -> str:
    """``train-00000-of-01024 … train-00127-of-01024 (128)``: what a mapped task is called in the UI."""
    if not names:
        return "no units"
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)})"


def _write_recordio(unit: Unit, out_dir: Path, reader: ImageReader) -> UnitResult:
    """Write ``<split>.rec/.idx/.lst`` the way im2rec ``--pass-through`` does (raw bytes, list order).

    Each image is fully decoded first unless ``unit.md5_verified`` (:func:`imagenet_ops.imagenet.image_verify.verify_image`).

    Raises:
        ImageError: an image TensorFlow could not decode (names the tar and the member); no file is left.
    """
    from imagenet_ops.imagenet.image_verify import verify_image

    items = unit.shard.items
    idx_of = {r: i for i, r in enumerate(sorted(i.ref.relpath for i in items))}
    tag = uuid.uuid4().hex[:8]
    tmp = {f: out_dir / f".{f}.tmp-{tag}" for f in unit.files}
    rec, idx, lst = (tmp[f] for f in unit.files)
    progress = Progress(f"{unit.name}.rec", total=len(items), unit="images", logger=log)
    try:
        with RecordIOWriter(rec, idx) as writer, open(lst, "w", encoding="utf-8", newline="\n") as lst_fh:
            for item, (_, data) in zip(items, reader.read_many(i.ref for i in items), strict=True):
                if not unit.md5_verified:
                    verify_image(data, name=image_name(item.ref))
                key = idx_of[item.ref.relpath]
                writer.write(key, pack_irheader(float(item.label), key) + data)
                lst_fh.write(lst_line(key, float(item.label), item.ref.relpath))
                progress.update(1)
        files = []
        for f in unit.files:
            files.append({"path": unit.key(f), "size": tmp[f].stat().st_size, "checksum": "crc32c:" + file_crc32c(tmp[f])})
            os.replace(tmp[f], out_dir / f)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    log.info("%s; %s", progress.line(), "header check only (md5 matched)" if unit.md5_verified else "fully decoded")
    return UnitResult(unit.name, unit.shard.split, len(items), tuple(files), 0, False, plan_digest(unit.shard))


def write_unit_files(unit: Unit, out_dir: Path, store: Any = None) -> UnitResult:
    """Write one unit's files into ``out_dir`` (temp names, renamed when complete).

    The images are verified here, inside the unit, so the verification runs in the pool workers.
    """
    if unit.md5_verified and unit.shard.items:
        log.info("%s: fast path: its tars' md5 matched the published ImageNet md5; header check only, no full decode", unit.name)
    # a full disk names the unit's folder and the space left (DiskFullError), from any of its writes
    with disk_full_guard(out_dir), ImageReader(store=store) as reader:
        out_dir.mkdir(parents=True, exist_ok=True)
        if unit.implementation == "nvidia":
            return _write_recordio(unit, out_dir, reader)
        r: ShardResult = write_tfrecord_shard(shard=unit.shard, out_dir=out_dir, reader=reader, verify=not unit.md5_verified)
    shard_key, index_key = (unit.key(f) for f in unit.files)
    return UnitResult(
        unit.name,
        unit.shard.split,
        r.records,
        (
            {"path": shard_key, "size": r.bytes, "checksum": r.checksum},
            {"path": index_key, "size": r.index_bytes, "checksum": f"sha256:{r.index_sha256}", "sha256": r.index_sha256},
        ),
        r.converted,
        False,
        plan_digest(unit.shard),
    )


def completed_unit(unit: Unit, sink: Sink, store: Any = None, *, verify: bool = True) -> UnitResult | None:
    """The recorded result if ``sink`` already holds this exact unit, else ``None``.

    The done-record must carry the unit's plan digest and list the unit's files, and every file
    must still have its recorded size; on a local sink the checksum is checked too, unless
    ``verify`` is false (the caller wrote or verified the unit itself in this process). On S3/GCS
    objects appear whole, so size is checked against the object's metadata without downloading it.
    """
    raw = sink.get_bytes(unit.done_key)
    if raw is None:
        return None
    try:
        record = UnitResult.from_dict(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        return None
    if record.plan_digest != plan_digest(unit.shard):
        return None
    if [f["path"] for f in record.files] != [unit.key(f) for f in unit.files]:
        return None  # written by a release that made other files (before the DALI index)
    for f in record.files:
        loc = sink.location(f["path"])
        if isinstance(sink, LocalSink):
            p = Path(loc)
            if not p.is_file() or p.stat().st_size != f["size"]:
                return None
            if verify and _checksum(p, f.get("checksum", "")) != f.get("checksum"):
                return None
        elif store is None or not store.exists(loc) or store.size(loc) != f["size"]:
            return None
    return UnitResult(**{**asdict(record), "files": record.files, "skipped": True})


def _checksum(path: Path, kind_and_value: str) -> str | None:
    """Recompute a recorded ``kind:value`` checksum (``tfrecord-crc32c``, ``crc32c`` or ``sha256``); ``None`` if unreadable."""
    from imagenet_ops.training.tfrecord import CHECKSUM_KIND, CorruptRecordError, tfrecord_checksum

    kind = kind_and_value.split(":", 1)[0]
    try:
        if kind == CHECKSUM_KIND:
            return tfrecord_checksum(path)
        if kind == "crc32c":
            return "crc32c:" + file_crc32c(path)
        if kind == "sha256":
            return "sha256:" + file_digests(path).sha256
    except CorruptRecordError:
        return None
    return None


def write_unit_job(
    unit_dict: dict[str, Any], implementation: str, layout: str, out_dir: str, md5_verified: bool = False
) -> dict[str, Any]:
    """Process-pool entry point (local files only; uploads stay in the parent).

    ``md5_verified`` is :attr:`Unit.md5_verified` (the shard dict does not carry it); without it
    the worker decodes every image fully, which is always safe.
    """
    unit = Unit(Shard.from_dict(unit_dict), implementation, layout, md5_verified)
    return write_unit_files(unit, Path(out_dir)).as_dict()


def record_unit(sink: Sink, unit: Unit, result: UnitResult) -> None:
    """Write ``unit``'s done-record (its files are in the sink already): what :func:`completed_unit` checks."""
    sink.put_bytes(json.dumps(result.as_dict(), sort_keys=True).encode(), unit.done_key)
