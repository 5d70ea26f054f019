"""The plan step: list the inputs, fix the global order, store the plan in the sink, and group the units.

The plan (:class:`TrainingPlan`, every unit in output order) is kept in the sink at
``.imagenet_ops/plan.json.gz``, so each mapped writer reads the same order and XCom carries only
the unit groups (:class:`PlanResult`). An unchanged input and config is a cache hit, once every
unit has been checked against its done-record.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ConfigError, ValidationError
from imagenet_ops.core.manifest import cache_key_for, read_manifest
from imagenet_ops.core.output_location import begin_output
from imagenet_ops.core.sinks import STATE_DIR, Sink
from imagenet_ops.core.staging import task_scratch
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.images import list_train_images, list_val_images
from imagenet_ops.training.inputs import resolve_val_labels
from imagenet_ops.training.order import Shard, plan_nvidia, plan_reference
from imagenet_ops.training.report import REPORT_FILES
from imagenet_ops.training.units import Unit, completed_unit
from imagenet_ops.training.variations import ARTIFACT, TrainingConfig, published_md5s, require_images

log = logging.getLogger(__name__)

PLAN_KEY = f"{STATE_DIR}/plan.json.gz"


@dataclass
class TrainingPlan:
    """The global order: every unit in output order, plus what the cache key needs."""

    config: TrainingConfig
    units: list[Unit]
    counts: dict[str, int]
    classes: int
    labels_source: str
    upstream: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        payload = {
            "config": self.config.as_params(),
            "counts": self.counts,
            "classes": self.classes,
            "labels_source": self.labels_source,
            "upstream": self.upstream,
            "units": [u.shard.as_dict() for u in self.units],
            "md5_verified": [i for i, u in enumerate(self.units) if u.md5_verified],
        }
        return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), compresslevel=3, mtime=0)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TrainingPlan:
        d = json.loads(gzip.decompress(raw))
        config = TrainingConfig.from_params(d["config"])
        verified = set(d.get("md5_verified", ()))
        units = [Unit(Shard.from_dict(s), config.implementation, config.layout, i in verified) for i, s in enumerate(d["units"])]
        return cls(config, units, d["counts"], d["classes"], d["labels_source"], d["upstream"])


@dataclass(frozen=True)
class PlanResult:
    """What the plan step hands to the writers: unit groups (indices), or a cache hit."""

    cache_hit: bool
    cache_key: str
    groups: list[list[int]]
    counts: dict[str, int]
    units: int
    plan_uri: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _input_digest(units: Sequence[Unit]) -> str:
    """sha256 over what the output depends on: per record the split, order, relpath, size and label.

    Container paths and offsets are left out, so the same data moved elsewhere is the same input.
    """
    h = hashlib.sha256()
    for u in units:
        h.update(f"{u.shard.split}/{u.shard.index}/{u.shard.count}\n".encode())
        for item in u.shard.items:
            h.update(f"{item.ref.relpath}\t{item.ref.size}\t{item.label}\t{item.synset}\n".encode())
    return h.hexdigest()


def plan_training(
    *,
    config: TrainingConfig,
    sink: Sink,
    train: str | Path | None = None,
    validation: str | Path | None = None,
    validation_labels: str | Path | None = None,
    aux_path: str | Path | None = None,
    work_dir: Path,
    tasks: int = 8,
    store: Any = None,
    checked: Mapping[str, Any] | None = None,
) -> PlanResult:
    """List the inputs, fix the global order, store the plan in the sink, and group the units.

    Args:
        config: resolved configuration.
        sink: where the artifact goes; the plan and done-records are kept there too (``.imagenet_ops/``).
        train: ``ILSVRC2012_img_train.tar``, a folder of ``<wnid>.tar`` or of ``<wnid>/`` folders.
        validation: ``ILSVRC2012_img_val.tar`` or a flat folder of ``ILSVRC2012_val_*.JPEG``.
        validation_labels: the synset labels file; ``aux_path`` or a download otherwise.
        aux_path: folder of the aux artifact (``val.txt``, ``synsets.txt``).
        work_dir: where this step's own scratch folder goes (the labels copy or download), removed before it returns.
        tasks: how many groups to split the units into (one mapped task each).
        store: an ``ObjectStore`` for s3:// and gs:// inputs.
        checked: md5 results of the big tars, recorded in the manifest's upstream facts.

    Returns:
        The unit groups, or ``cache_hit`` when the sink already holds this exact artifact.

    Raises:
        ValidationError: missing inputs, labels that do not cover the images, an empty class tar.
    """
    started = time.monotonic()
    require_images(train, validation)
    want_train, want_val = bool(train and config.train_shards), bool(validation and config.validation_shards)
    if not (want_train or want_val):
        raise ConfigError("nothing to write: the given splits all have 0 shards")
    train_refs = list_train_images(train, store=store) if want_train else []
    val_refs = list_val_images(validation, store=store) if want_val else []
    val_labels: list[str] = []
    labels_source = ""
    if want_val:
        with task_scratch(work_dir) as scratch:  # copied or downloaded labels, read into memory; removed here
            val_labels, labels_source = resolve_val_labels(
                labels=validation_labels, aux_path=aux_path, config=config, work_dir=scratch, store=store
            )
    if config.implementation == "nvidia":
        shards = plan_nvidia(train=train_refs, validation=val_refs, val_labels=val_labels)
    else:
        shards = plan_reference(
            train=train_refs,
            validation=val_refs,
            val_labels=val_labels,
            train_shards=config.train_shards if want_train else 0,
            validation_shards=config.validation_shards if want_val else 0,
        )
    # Only bytes whose tar matched the *published* md5 are known to decode; a user-given md5 proves
    # the bytes are the user's, not that they are good. Units of those tars skip the full decode.
    published = published_md5s()
    trusted = {
        str(path) if is_remote(str(path)) else str(Path(path))
        for path, md5 in (checked or {}).items()
        if str(md5).lower() in published
    }
    units = [
        Unit(s, config.implementation, config.layout, bool(s.items) and all(i.ref.container in trusted for i in s.items))
        for s in shards
    ]
    if checked:
        fast = [u for u in units if u.md5_verified]
        log.info(
            "plan: %d of %d units come only from tars whose md5 matched the published ImageNet md5 (%s): "
            "header check only; the other units' images are fully decoded",
            len(fast),
            sum(1 for u in units if u.shard.items),
            ", ".join(sorted(trusted)) or "none",
        )
    counts = {"train": len(train_refs), "validation": len(val_refs)}
    classes = len({item.synset for u in units for item in u.shard.items})
    upstream = {"input_digest": _input_digest(units), "counts": counts, **({"md5": dict(checked)} if checked else {})}
    plan = TrainingPlan(config, units, counts, classes, labels_source, upstream)
    key = cache_key_for(artifact=ARTIFACT, params=config.output_params(), upstream={"input_digest": upstream["input_digest"]})
    existing = read_manifest(sink)
    if existing and existing["cache_key"] == key:
        damaged = [u.name for u in units if completed_unit(u, sink, store) is None]
        if not damaged:
            log.info("plan: %s already holds this artifact (cache key %s); nothing to write", sink.uri, key[:12])
            return PlanResult(True, key, [], counts, len(units), sink.location(PLAN_KEY))
        # Regression: a truncated shard under an intact manifest stayed truncated on re-runs.
        log.warning(
            "plan: %s has this artifact's manifest, but %d unit(s) are missing or damaged (%s); rewriting them",
            sink.uri,
            len(damaged),
            ", ".join(damaged[:5]) + (" …" if len(damaged) > 5 else ""),
        )
    # the old manifest first, then the files of an earlier artifact or a killed run that this plan will not rewrite
    begin_output(sink, files=[u.key(f) for u in units for f in u.files] + list(REPORT_FILES))
    raw = plan.to_bytes()
    sink.put_bytes(raw, PLAN_KEY)
    _remember(raw, plan)
    groups = group_units(units, tasks)
    log.info(
        "plan: %d train + %d validation images, %d classes, %d %s in %d groups (%.1fs); labels from %s",
        counts["train"],
        counts["validation"],
        classes,
        len(units),
        "RecordIO splits" if config.implementation == "nvidia" else "shards",
        len(groups),
        time.monotonic() - started,
        labels_source or "-",
    )
    return PlanResult(False, key, groups, counts, len(units), sink.location(PLAN_KEY))


def group_units(units: Sequence[Unit], tasks: int) -> list[list[int]]:
    """Split unit indices into at most ``tasks`` contiguous groups of about equal image counts."""
    tasks = max(1, min(tasks, len(units)))
    total = sum(len(u.shard.items) for u in units) or 1
    groups: list[list[int]] = [[] for _ in range(tasks)]
    seen = 0
    for i, u in enumerate(units):
        g = min(tasks - 1, seen * tasks // total)
        groups[g].append(i)
        seen += len(u.shard.items)
    return [g for g in groups if g]


_last_plan: tuple[bytes, TrainingPlan] | None = None


def _remember(raw: bytes, plan: TrainingPlan) -> None:
    global _last_plan
    _last_plan = (raw, plan)


def load_plan(sink: Sink) -> TrainingPlan:
    """Read the plan the plan step stored in ``sink``.

    The plan this process last stored or read is kept with its bytes: when the sink holds the
    same bytes, it is returned without parsing them again (the CLI's writer and finalize steps
    read the plan its plan step has just written; ~1 ms per 100 images otherwise).

    Raises:
        ValidationError: no plan (the plan step has not run against this sink).
    """
    raw = sink.get_bytes(PLAN_KEY)
    if raw is None:
        raise ValidationError(f"{sink.location(PLAN_KEY)}: no training plan; run the plan step first")
    if _last_plan is not None and _last_plan[0] == raw:
        return _last_plan[1]
    plan = TrainingPlan.from_bytes(raw)
    _remember(raw, plan)
    return plan
