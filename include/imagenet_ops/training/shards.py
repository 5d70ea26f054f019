"""Write the planned shards: TFRecords for the reference converter, without TensorFlow.

Each shard is read straight from the source tars, written under a temporary name and renamed
when complete, so a killed or retried writer never leaves a partial shard. Every image is fully
decoded first (:func:`imagenet_ops.imagenet.image_verify.verify_image`), unless its tar's md5 matched the
published ImageNet md5 (then the header is enough: those bytes are known to decode). A sidecar
``.<shard>.done.json`` records the shard's plan digest, record count, size and checksum; a re-run
skips a shard whose file still matches it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.progress import Progress
from imagenet_ops.imagenet.image_header import image_info, needs_conversion, to_rgb_jpeg
from imagenet_ops.imagenet.image_verify import verify_image
from imagenet_ops.imagenet.images import ImageReader, ImageRef
from imagenet_ops.training.plan import Shard
from imagenet_ops.training.tfrecord import CorruptRecordError, TFRecordWriter, imagenet_example_parts, tfrecord_checksum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardResult:
    """A finished shard: name, records, bytes, checksum (:func:`tfrecord_checksum`), converted images, skipped or not."""

    name: str
    records: int
    bytes: int
    checksum: str
    converted: int = 0
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_name(ref: ImageRef) -> str:
    """How errors name an image: ``<tar>: <wnid>/<name>`` for a tar member, the path for a file of its own."""
    return ref.container if ref.container.endswith(ref.name) else f"{ref.container}: {ref.relpath}"


def plan_digest(shard: Shard) -> str:
    """sha256 of the shard's planned content (which images, labels, order)."""
    return hashlib.sha256(json.dumps(shard.as_dict(), separators=(",", ":")).encode()).hexdigest()


def _done_path(out_dir: Path, shard: Shard) -> Path:
    return out_dir / f".{shard.name}.done.json"


def completed_shard(shard: Shard, out_dir: Path) -> ShardResult | None:
    """The recorded result if ``out_dir`` already holds this exact shard (size and checksum verified)."""
    done, target = _done_path(out_dir, shard), out_dir / shard.name
    if not (done.exists() and target.exists()):
        return None
    record = json.loads(done.read_text())
    if record.get("plan_digest") != plan_digest(shard) or target.stat().st_size != record["bytes"]:
        return None
    try:
        if tfrecord_checksum(target) != record.get("checksum"):
            return None
    except CorruptRecordError:
        return None
    fields = {k: record[k] for k in ("name", "records", "bytes", "checksum", "converted")}
    return ShardResult(**fields, skipped=True)


def write_tfrecord_shard(
    *, shard: Shard, out_dir: Path, reader: ImageReader | None = None, done_record: bool = True, verify: bool = True
) -> ShardResult:
    """Write one reference-format TFRecord shard into ``out_dir`` (skipped if already complete).

    Image bytes pass through unchanged, except the train PNG/CMYK files named in the reference,
    re-encoded as RGB JPEG quality 100. Height and width come from the image header.
    ``done_record=False`` leaves skipping and the done-record to the caller (the sink-level
    writer in :mod:`imagenet_ops.training.pipeline` keeps them next to the shard in any sink).
    ``verify`` decodes every image fully first; ``False`` only for bytes known to be good (a tar
    whose md5 matched the published one).

    Raises:
        ImageError: a file that is neither JPEG nor PNG, or (``verify``) one TensorFlow could not
            decode; the message names the tar and the member. No shard file is left then.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = completed_shard(shard, out_dir) if done_record else None
    if done:
        log.info("shard %s already complete (%d records, %s); skipped", shard.name, done.records, done.checksum)
        return done
    own_reader = reader is None
    reader = reader or ImageReader()
    tmp = out_dir / f".{shard.name}.tmp-{uuid.uuid4().hex[:8]}"
    converted = 0
    progress = Progress(f"shard {shard.name}", total=len(shard.items), unit="images", logger=log)
    try:
        with TFRecordWriter(tmp) as writer:
            for item, (_, data) in zip(shard.items, reader.read_many(i.ref for i in shard.items), strict=True):
                name = image_name(item.ref)
                if verify:
                    verify_image(data, name=name)
                if needs_conversion(item.ref.name, split=shard.split):
                    data = to_rgb_jpeg(data, name=name)
                    converted += 1
                info = image_info(data, name=name)
                writer.write_parts(
                    imagenet_example_parts(
                        encoded=data,
                        height=info.height,
                        width=info.width,
                        label=item.label,
                        synset=item.synset,
                        filename=item.ref.name,
                    )
                )
                progress.update(1)
        size, crc = writer.bytes, writer.checksum
        os.replace(tmp, out_dir / shard.name)
    finally:
        tmp.unlink(missing_ok=True)
        if own_reader:
            reader.close()
    result = ShardResult(shard.name, len(shard.items), size, crc, converted)
    if done_record:
        _done_path(out_dir, shard).write_text(json.dumps({**result.as_dict(), "plan_digest": plan_digest(shard)}))
    checked = "fully decoded" if verify else "header check only (md5 matched)"
    log.info("%s; wrote %s (%d records, %d converted; %s)", progress.line(), shard.name, result.records, converted, checked)
    return result
