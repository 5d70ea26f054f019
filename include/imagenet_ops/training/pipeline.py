"""ResNet-50 training data (CM recipe prepare-training-data-resnet): TFRecords or RecordIO.

Two implementations, one variation ``implementation``:

* ``reference``: the TF/TPU ``imagenet_to_gcs`` converter's TFRecord shards (1024 train / 128
  validation by default, ``train-%05d-of-01024``), in one flat folder (what the MLPerf readers
  want) or ``train/`` + ``validation/`` (the converter's scratch layout).
* ``nvidia``: ``train.{lst,rec,idx}`` and ``val.{lst,rec,idx}`` as NVIDIA's
  ``prepare_imagenet.sh`` makes them with ``im2rec.py --list --recursive`` then
  ``--pass-through`` (raw bytes, labels 0..999, seed-100 shuffle), without MXNet or docker.

The work is split in three steps so an orchestrator can fan it out:

1. :func:`plan_training` lists the images straight from the tars (never extracted), fixes the
   global order, writes the plan to the sink (``.imagenet_ops/plan.json.gz``) and returns the work units
   (shards, or one unit per RecordIO split). An unchanged input and config is a cache hit.
2. :func:`write_units` writes some units: each goes to a temporary name and is renamed (local)
   or uploaded as one object (S3/GCS) when complete, followed by a done-record (``.imagenet_ops/done/``) with its plan
   digest, size and checksum; a retried or re-run task skips units whose output still matches.
3. :func:`finalize_training` checks that every unit is complete with the planned record count
   and writes ``manifest.json`` from the done-records (no file is read again).

Validation labels come from the 50,000-line ``imagenet_2012_validation_synset_labels.txt`` (a
file, or downloaded), or from the aux artifact (``val.txt`` label k names line k of
``synsets.txt``): both give the same wnid for every image.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import AcceptedChecksums, Digests, file_crc32c, file_digests, stream_digests
from imagenet_ops.core.diskspace import disk_full_guard
from imagenet_ops.core.download import download
from imagenet_ops.core.errors import ChecksumMismatch, ConfigError, ValidationError
from imagenet_ops.core.lease import guard_writes
from imagenet_ops.core.output_location import begin_output
from imagenet_ops.core.process_pool import worker_pool
from imagenet_ops.core.progress import Progress, human_bytes, human_seconds
from imagenet_ops.core.storage import (
    LocalSink,
    PublishResult,
    Sink,
    cache_key_for,
    cached_result,
    read_manifest,
    write_manifest,
)
from imagenet_ops.core.uris import is_remote
from imagenet_ops.core.variations import SKIP_SSL_VERIFICATION, Choice, Group, Option, VariationTable
from imagenet_ops.imagenet.constants import TRAIN_TAR_MD5, VAL_TAR_MD5
from imagenet_ops.imagenet.images import ImageReader, ImageRef, list_train_images, list_val_images
from imagenet_ops.imagenet.labels import read_wnid_labels, val_labels_from_aux
from imagenet_ops.training.plan import (
    IM2REC_SEED,
    PlanItem,
    Shard,
    label_map,
    plan_reference,
    val_items,
)
from imagenet_ops.training.recordio import RecordIOWriter, lst_line, pack_irheader
from imagenet_ops.training.shards import ShardResult, plan_digest, write_tfrecord_shard

log = logging.getLogger(__name__)

ARTIFACT = "imagenet_training_data"
STATE_PREFIX = ".imagenet_ops"  # plan and done-records, out of the way of readers that glob the folder
PLAN_KEY = f"{STATE_PREFIX}/plan.json.gz"
VAL_LABELS_URL = (
    "https://raw.githubusercontent.com/tensorflow/models/master/research/slim/datasets/imagenet_2012_validation_synset_labels.txt"
)
VAL_LABELS_NAME = "imagenet_2012_validation_synset_labels.txt"
NVIDIA_SPLITS = {"train": "train", "validation": "val"}
_MD5 = r"^[0-9a-fA-F]{32}$"

TRAINING_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(
        Group(
            name="implementation",
            title="Output format",
            description="reference: TFRecord shards of the TF/TPU imagenet_to_gcs converter (MLPerf TF reference); "
            "nvidia: MXNet RecordIO train/val .lst/.rec/.idx as NVIDIA's im2rec --pass-through makes them.",
            default="reference",
            choices=(
                Choice("reference", "TFRecords (imagenet_to_gcs)", {"format": "tfrecord"}),
                Choice("nvidia", "MXNet RecordIO (NVIDIA im2rec)", {"format": "recordio"}),
            ),
        ),
        Group(
            name="layout",
            title="Folder layout",
            description="flat: every shard in one folder (what the MLPerf readers want); split: train/ and validation/ "
            "folders (the converter's local scratch layout). RecordIO is always flat.",
            default="flat",
            tag_prefix="layout.",
            choices=(
                Choice("flat", "One flat folder"),
                Choice("split", "train/ and validation/"),
            ),
        ),
    ),
    options=(
        Option(
            "train_shards",
            "integer",
            "Train shards",
            "Number of train TFRecord shards (the reference writes 1024). 0 skips the train split.",
            default=1024,
            optional=False,
            minimum=0,
            maximum=100_000,
            section="Shards",
            tag_prefix="train_shards.",
        ),
        Option(
            "validation_shards",
            "integer",
            "Validation shards",
            "Number of validation TFRecord shards (the reference writes 128). 0 skips the validation split.",
            default=128,
            optional=False,
            minimum=0,
            maximum=100_000,
            section="Shards",
            tag_prefix="validation_shards.",
        ),
        Option(
            "check_md5",
            "boolean",
            "Check the md5 of the big tars",
            "Read ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar once more to check their md5 (off by default: "
            "146 GB of reading). Only archives given as single tar files are checked.",
            default=False,
            optional=False,
            section="Inputs",
            tag="check_md5",
        ),
        Option(
            "train_md5",
            "string",
            "Train tar md5",
            f"Expected md5 of the train tar when checking (default {TRAIN_TAR_MD5}).",
            section="Inputs",
            pattern=_MD5,
        ),
        Option(
            "validation_md5",
            "string",
            "Validation tar md5",
            f"Expected md5 of the validation tar when checking (default {VAL_TAR_MD5}).",
            section="Inputs",
            pattern=_MD5,
        ),
        Option(
            "labels_url",
            "string",
            "Validation labels URL",
            "Where to download imagenet_2012_validation_synset_labels.txt when no labels file or aux artifact is given "
            "(a mirror of the tensorflow/models file).",
            section="Inputs",
            pattern=r"^(https?|file)://",
        ),
        SKIP_SSL_VERIFICATION,
    ),
)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything the output depends on, resolved from variations and options."""

    implementation: str = "reference"
    layout: str = "flat"
    train_shards: int = 1024
    validation_shards: int = 128
    check_md5: bool = False
    train_md5: str = TRAIN_TAR_MD5
    validation_md5: str = VAL_TAR_MD5
    labels_url: str = VAL_LABELS_URL
    verify_ssl: bool = True

    def as_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainingConfig:
        return cls(**params)

    def output_params(self) -> dict[str, Any]:
        """The fields that shape the bytes written (the cache key); checks and URLs are left out."""
        return {"implementation": self.implementation, "layout": self.layout, **self._shards()}

    def _shards(self) -> dict[str, int]:
        if self.implementation == "nvidia":
            return {"train": int(self.train_shards > 0), "validation": int(self.validation_shards > 0)}
        return {"train": self.train_shards, "validation": self.validation_shards}


def resolve_training_config(
    given: Mapping[str, Any] | None = None, *, variations: str | Iterable[str] | None = None
) -> TrainingConfig:
    """Resolve form fields / CLI options and CM tags (``_nvidia``, ``_layout.split`` …) into a config.

    Raises:
        ConfigError: unknown tag/option, a conflict, or a layout the implementation cannot write.
    """
    sel = TRAINING_TABLE.selections(given, variations)
    if sel["implementation"] == "nvidia" and sel["layout"] == "split":
        raise ConfigError("layout split applies to the reference TFRecords; nvidia writes train.* and val.* in one folder")
    if sel["train_shards"] == 0 and sel["validation_shards"] == 0:
        raise ConfigError("train_shards and validation_shards are both 0: nothing to write")
    return TrainingConfig(
        implementation=sel["implementation"],
        layout=sel["layout"],
        train_shards=sel["train_shards"],
        validation_shards=sel["validation_shards"],
        check_md5=sel["check_md5"],
        train_md5=(sel["train_md5"] or TRAIN_TAR_MD5).lower(),
        validation_md5=(sel["validation_md5"] or VAL_TAR_MD5).lower(),
        labels_url=sel["labels_url"] or VAL_LABELS_URL,
        verify_ssl=not sel["skip_ssl_verification"],
    )


# --------------------------------------------------------------------------------------------
# Work units: what one mapped task writes


@dataclass(frozen=True)
class Unit:
    """One output of the plan: a TFRecord shard, or a RecordIO split (``.lst``/``.rec``/``.idx``).

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
        return f"{self.folder}/{filename}" if self.folder else filename

    @property
    def files(self) -> tuple[str, ...]:
        if self.implementation == "nvidia":
            return tuple(f"{self.name}.{ext}" for ext in ("rec", "idx", "lst"))
        return (self.name,)

    @property
    def done_key(self) -> str:
        return f"{STATE_PREFIX}/done/{self.name}.json"


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


# --------------------------------------------------------------------------------------------
# Inputs


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
    The returned list is a :class:`~imagenet_ops.training.plan.ValLabels`: its ``source`` is the
    file (or URI) whose line i labels image i, which later errors name.

    Raises:
        ValidationError: a missing or malformed labels file (named).
    """
    remote_labels = remote_val_txt = None
    if store is not None and labels and is_remote(str(labels)):
        remote_labels = str(labels)
        labels = store.download(remote_labels, Path(work_dir) / "labels" / VAL_LABELS_NAME)
    if store is not None and aux_path and is_remote(str(aux_path)):
        local_aux = Path(work_dir) / "aux"
        for name in ("val.txt", "synsets.txt"):
            store.download(f"{str(aux_path).rstrip('/')}/{name}", local_aux / name)
        remote_val_txt = f"{str(aux_path).rstrip('/')}/val.txt"
        aux_path = local_aux
    if labels:
        path = Path(labels)
        if not path.is_file():
            raise ValidationError(f"{path}: validation labels file not found (expected {VAL_LABELS_NAME}, one wnid per line)")
        return read_wnid_labels(path, source=remote_labels), str(path)
    if aux_path:
        aux = Path(aux_path)
        val_txt, synsets = aux / "val.txt", aux / "synsets.txt"
        for f in (val_txt, synsets):
            if not f.is_file():
                raise ValidationError(f"{f}: not found in the aux artifact {aux} (expected val.txt and synsets.txt)")
        from_aux = val_labels_from_aux(val_txt, synsets)
        from_aux.source = remote_val_txt or from_aux.source
        return from_aux, f"{aux} (val.txt + synsets.txt)"
    fetched = download(
        urls=(config.labels_url,),
        dest_dir=Path(work_dir) / "labels",
        accepted=AcceptedChecksums(),
        filename=VAL_LABELS_NAME,
        verify_ssl=config.verify_ssl,
    )
    return read_wnid_labels(Path(fetched.path)), config.labels_url


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


def _nvidia_units(
    *, train: Sequence[ImageRef], validation: Sequence[ImageRef], val_labels: Sequence[str], config: TrainingConfig
) -> list[Shard]:
    """One unit per split in im2rec order: label = folder index 0..N-1 over sorted wnids, seed-100 shuffle.

    Validation images get ``<wnid>/<name>`` paths, as after ``valprep.sh``. im2rec numbers the
    folders that hold an image under the root it lists, so each split is numbered on its own:
    the train classes for train, the validation images' wnids for val (the same 0..999 on the
    full set). With train images, every validation wnid must be a train class (refused, naming
    the labels file and line).
    """
    import random

    def rank(wnids: set[str]) -> dict[str, int]:
        return {w: i - 1 for w, i in label_map(wnids).items()}  # 0-based, like im2rec

    def im2rec(items: list[PlanItem]) -> list[PlanItem]:
        items.sort(key=lambda i: i.ref.relpath)  # the sorted walk
        random.Random(IM2REC_SEED).shuffle(items)
        return items

    written_train = train if config.train_shards else []
    out = []
    if written_train:
        ranks = rank({r.wnid for r in written_train})
        out.append(Shard("train", 0, 1, tuple(im2rec([PlanItem(r, ranks[r.wnid], r.wnid) for r in written_train]))))
    if validation and config.validation_shards:
        classes = {r.wnid for r in written_train} or set(val_labels)
        labelled = val_items(validation, val_labels, rank(classes))  # refuses a wnid that is not a train class
        # Regression (issue 10 item 11): val labels followed the union of train and label-file wnids, not val's own folders.
        ranks = rank({i.synset for i in labelled})
        moved = [
            PlanItem(ImageRef(f"{i.synset}/{i.ref.name}", i.ref.container, i.ref.offset, i.ref.size), ranks[i.synset], i.synset)
            for i in labelled
        ]
        out.append(Shard("validation", 0, 1, tuple(im2rec(moved))))
    return out


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
        work_dir: scratch folder (the labels download).
        tasks: how many groups to split the units into (one mapped task each).
        store: an ``ObjectStore`` for s3:// and gs:// inputs.
        checked: md5 results of the big tars, recorded in the manifest's upstream facts.

    Returns:
        The unit groups, or ``cache_hit`` when the sink already holds this exact artifact.

    Raises:
        ValidationError: missing inputs, labels that do not cover the images, an empty class tar.
    """
    started = time.monotonic()
    if not train and not validation:
        raise ConfigError("give train and/or validation images (both are missing)")
    want_train, want_val = bool(train and config.train_shards), bool(validation and config.validation_shards)
    if not (want_train or want_val):
        raise ConfigError("nothing to write: the given splits all have 0 shards")
    train_refs = list_train_images(train, store=store) if want_train else []
    val_refs = list_val_images(validation, store=store) if want_val else []
    val_labels: list[str] = []
    labels_source = ""
    if want_val:
        val_labels, labels_source = resolve_val_labels(
            labels=validation_labels, aux_path=aux_path, config=config, work_dir=work_dir, store=store
        )
    if config.implementation == "nvidia":
        shards = _nvidia_units(train=train_refs, validation=val_refs, val_labels=val_labels, config=config)
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
    published = {TRAIN_TAR_MD5, VAL_TAR_MD5}
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
    begin_output(sink, files=[u.key(f) for u in units for f in u.files])
    sink.put_bytes(plan.to_bytes(), PLAN_KEY)
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


def load_plan(sink: Sink) -> TrainingPlan:
    """Read the plan the plan step stored in ``sink``.

    Raises:
        ValidationError: no plan (the plan step has not run against this sink).
    """
    raw = sink.get_bytes(PLAN_KEY)
    if raw is None:
        raise ValidationError(f"{sink.location(PLAN_KEY)}: no training plan; run the plan step first")
    return TrainingPlan.from_bytes(raw)


# --------------------------------------------------------------------------------------------
# Writers


def _write_recordio(unit: Unit, out_dir: Path, reader: ImageReader) -> UnitResult:
    """Write ``<split>.rec/.idx/.lst`` the way im2rec ``--pass-through`` does (raw bytes, list order).

    Each image is fully decoded first unless ``unit.md5_verified`` (:func:`imagenet_ops.imagenet.image_verify.verify_image`).

    Raises:
        ImageError: an image TensorFlow could not decode (names the tar and the member); no file is left.
    """
    from imagenet_ops.imagenet.image_verify import verify_image
    from imagenet_ops.training.shards import image_name

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


def _write_local(unit: Unit, out_dir: Path, store: Any = None) -> UnitResult:
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
        r: ShardResult = write_tfrecord_shard(
            shard=unit.shard, out_dir=out_dir, reader=reader, done_record=False, verify=not unit.md5_verified
        )
    return UnitResult(
        unit.name,
        unit.shard.split,
        r.records,
        ({"path": unit.key(unit.name), "size": r.bytes, "checksum": r.checksum},),
        r.converted,
        False,
        plan_digest(unit.shard),
    )


def completed_unit(unit: Unit, sink: Sink, store: Any = None) -> UnitResult | None:
    """The recorded result if ``sink`` already holds this exact unit, else ``None``.

    The done-record must carry the unit's plan digest, and every file must still have its
    recorded size; on a local sink the checksum is checked too (on S3/GCS objects appear whole,
    so size is checked against the object's metadata without downloading it).
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
    for f in record.files:
        loc = sink.location(f["path"])
        if isinstance(sink, LocalSink):
            p = Path(loc)
            if not p.is_file() or p.stat().st_size != f["size"] or _checksum(p, f.get("checksum", "")) != f.get("checksum"):
                return None
        elif store is None or not store.exists(loc) or store.size(loc) != f["size"]:
            return None
    return UnitResult(**{**asdict(record), "files": record.files, "skipped": True})


def _checksum(path: Path, kind_and_value: str) -> str | None:
    """Recompute a recorded ``kind:value`` checksum (``tfrecord-crc32c`` or ``crc32c``); ``None`` if unreadable."""
    from imagenet_ops.training.tfrecord import CHECKSUM_KIND, CorruptRecordError, tfrecord_checksum

    kind = kind_and_value.split(":", 1)[0]
    try:
        if kind == CHECKSUM_KIND:
            return tfrecord_checksum(path)
        if kind == "crc32c":
            return "crc32c:" + file_crc32c(path)
    except CorruptRecordError:
        return None
    return None


def _write_unit_job(
    unit_dict: dict[str, Any], implementation: str, layout: str, out_dir: str, md5_verified: bool = False
) -> dict[str, Any]:
    """Process-pool entry point (local files only; uploads stay in the parent).

    ``md5_verified`` is :attr:`Unit.md5_verified` (the shard dict does not carry it); without it
    the worker decodes every image fully, which is always safe.
    """
    unit = Unit(Shard.from_dict(unit_dict), implementation, layout, md5_verified)
    return _write_local(unit, Path(out_dir)).as_dict()


def write_units(
    *,
    sink: Sink,
    indices: Sequence[int],
    work_dir: Path,
    workers: int = 1,
    store: Any = None,
    plan: TrainingPlan | None = None,
) -> list[UnitResult]:
    """Write the plan's units ``indices`` into ``sink``, skipping complete ones.

    On a local sink the files are written in place under temporary names and renamed; on S3/GCS
    they are written to ``work_dir``, uploaded (``workers`` uploads in parallel) and removed.
    Each finished unit gets a done-record under ``.imagenet_ops/done/``.

    Args:
        workers: processes writing units at once (1: in this process).
        store: an ``ObjectStore`` for s3:// and gs:// inputs, and to check remote outputs.
        plan: the plan (read from the sink when ``None``).
    """
    plan = plan or load_plan(sink)
    units = [plan.units[i] for i in indices]
    results: dict[int, UnitResult] = {}
    todo = []
    for i, unit in zip(indices, units, strict=True):
        done = completed_unit(unit, sink, store)
        if done:
            log.info("%s already complete (%d records); skipped", unit.name, done.records)
            results[i] = done
        else:
            todo.append((i, unit))
    images = sum(len(u.shard.items) for _, u in todo)
    progress = Progress(f"write {len(todo)} of {len(units)} units", total=images, unit="images", logger=log)
    local = isinstance(sink, LocalSink)
    uploads = ThreadPoolExecutor(max_workers=4) if not local else None
    pending = []
    started = time.monotonic()

    def out_dir_for(unit: Unit) -> Path:
        if local:
            return Path(sink.location(unit.folder))
        return Path(work_dir) / "staging" / uuid.uuid4().hex[:8]

    def finish(i: int, unit: Unit, result: UnitResult, staged: Path) -> None:
        guard_writes(sink)  # a run that lost its output's lease stops before its next upload
        if not local:
            for f in result.files:
                name = f["path"].rsplit("/", 1)[-1]
                sink.put_file(staged / name, f["path"])
                (staged / name).unlink(missing_ok=True)
        sink.put_bytes(json.dumps(result.as_dict(), sort_keys=True).encode(), unit.done_key)
        results[i] = result

    try:
        if workers <= 1 or len(todo) <= 1 or _reads_remote(todo):  # remote reads need this process's clients
            for i, unit in todo:
                staged = out_dir_for(unit)
                result = _write_local(unit, staged, store)
                progress.update(result.records)
                if uploads:
                    pending.append(uploads.submit(finish, i, unit, result, staged))
                else:
                    finish(i, unit, result, staged)
        else:
            with worker_pool(workers) as pool:
                futures = {}
                for i, unit in todo:
                    staged = out_dir_for(unit)
                    fut = pool.submit(
                        _write_unit_job, unit.shard.as_dict(), unit.implementation, unit.layout, str(staged), unit.md5_verified
                    )
                    futures[fut] = (i, unit, staged)
                for fut in as_completed(futures):
                    i, unit, staged = futures[fut]
                    result = UnitResult.from_dict(fut.result())
                    progress.update(result.records)
                    if uploads:
                        pending.append(uploads.submit(finish, i, unit, result, staged))
                    else:
                        finish(i, unit, result, staged)
        for p in pending:
            p.result()
    finally:
        if uploads:
            uploads.shutdown(wait=True)
    written = [results[i] for i, _ in todo]
    in_bytes = sum(it.ref.size for _, u in todo for it in u.shard.items)
    elapsed = time.monotonic() - started
    log.info(
        "wrote %d units (%d images, %s in, %s/s, %.1f images/s) and skipped %d complete ones in %s",
        len(written),
        images,
        human_bytes(in_bytes),
        human_bytes(in_bytes / max(elapsed, 1e-9)),
        images / max(elapsed, 1e-9),
        len(units) - len(todo),
        human_seconds(elapsed),
    )
    return [results[i] for i in indices]


def _reads_remote(todo: Sequence[tuple[int, Unit]]) -> bool:
    return any(is_remote(item.ref.container) for _, u in todo for item in u.shard.items[:1])


# --------------------------------------------------------------------------------------------
# Finalize


@dataclass(frozen=True)
class TrainingPublished:
    """The published artifact and its CM env dict."""

    publish: PublishResult
    env: dict[str, str]
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"publish": self.publish.as_dict(), "env": self.env, "counts": self.counts}


def training_env(*, location: str, config: TrainingConfig, counts: Mapping[str, int]) -> dict[str, str]:
    """CM's exports: the data path, the TFRecords or NVIDIA path, plus counts per split."""
    env = {
        "CM_MLPERF_TRAINING_RESNET_DATA_PATH": location,
        "CM_MLPERF_TRAINING_RESNET_TRAIN_IMAGES": str(counts.get("train", 0)),
        "CM_MLPERF_TRAINING_RESNET_VALIDATION_IMAGES": str(counts.get("validation", 0)),
    }
    if config.implementation == "nvidia":
        env["CM_MLPERF_TRAINING_NVIDIA_RESNET_PREPROCESSED_PATH"] = location
    else:
        env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] = location
        env["CM_MLPERF_TRAINING_RESNET_TRAIN_SHARDS"] = str(config.train_shards if counts.get("train") else 0)
        env["CM_MLPERF_TRAINING_RESNET_VALIDATION_SHARDS"] = str(config.validation_shards if counts.get("validation") else 0)
    return env


def finalize_training(*, sink: Sink, cache_key: str | None = None, store: Any = None) -> TrainingPublished:
    """Check every unit is complete with its planned record count, then write the manifest.

    A cache hit (the sink's manifest has ``cache_key``) returns the existing artifact.

    Raises:
        ValidationError: a unit is missing, incomplete, or has the wrong record count (named).
    """
    existing = read_manifest(sink)
    if cache_key and existing and existing["cache_key"] == cache_key:
        counts = existing["provenance"]["counts"]
        config = TrainingConfig.from_params(existing["provenance"]["config"])
        env = training_env(location=sink.location(), config=config, counts=counts)
        return TrainingPublished(cached_result(sink=sink, manifest=existing), env, counts)
    plan = load_plan(sink)
    files: list[dict[str, Any]] = []
    problems = []
    for unit in plan.units:
        done = completed_unit(unit, sink, store)
        if done is None:
            problems.append(f"{unit.name}: missing or incomplete")
        elif done.records != len(unit.shard.items):
            problems.append(f"{unit.name}: {done.records} records, planned {len(unit.shard.items)}")
        else:
            files += [{**f, "records": done.records} for f in done.files]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValidationError(f"{sink.uri}: {len(problems)} of {len(plan.units)} units are not complete: {shown}")
    publish = write_manifest(
        sink=sink,
        artifact=ARTIFACT,
        params=plan.config.output_params(),
        upstream={"input_digest": plan.upstream["input_digest"]},
        provenance={
            "config": plan.config.as_params(),
            "labels_source": plan.labels_source,
            "classes": plan.classes,
            **{k: v for k, v in plan.upstream.items() if k != "input_digest"},
        },
        files=files,
        previous=existing,
    )
    # the manifest's upstream is the cache key's; counts live in provenance and are mirrored for cache hits
    env = training_env(location=sink.location(), config=plan.config, counts=plan.counts)
    return TrainingPublished(publish, env, plan.counts)


def build_training_data(
    *,
    config: TrainingConfig,
    sink: Sink,
    train: str | Path | None,
    validation: str | Path | None,
    validation_labels: str | Path | None = None,
    aux_path: str | Path | None = None,
    work_dir: Path,
    workers: int = 1,
    store: Any = None,
) -> TrainingPublished:
    """Check (optional), plan, write every unit and finalize in one process (what the CLI runs).

    Without ``store``, remote inputs and a remote sink are read through an :class:`ObjectStore` on
    the environment's credentials (the completeness check of S3/GCS units needs it).
    """
    inputs = [str(x) for x in (train, validation, validation_labels, aux_path) if x]
    if store is None and any(is_remote(u) for u in (*inputs, sink.uri)):
        from imagenet_ops.core.store import ObjectStore

        store = ObjectStore()
    checked = {}
    if config.check_md5:
        for path, md5 in archives_to_check(train=train and str(train), validation=validation and str(validation), config=config):
            checked[path] = check_archive_md5(path=path, expected=md5, store=store).md5
    plan = plan_training(
        config=config,
        sink=sink,
        train=train,
        validation=validation,
        validation_labels=validation_labels,
        aux_path=aux_path,
        work_dir=work_dir,
        tasks=1,
        store=store,
        checked=checked,
    )
    if not plan.cache_hit:
        write_units(sink=sink, indices=range(plan.units), work_dir=work_dir, workers=workers, store=store)
    return finalize_training(sink=sink, cache_key=plan.cache_key, store=store)
