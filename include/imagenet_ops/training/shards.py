"""Write the planned shards: TFRecords for the reference converter, without TensorFlow.

Each shard is read straight from the source tars, written under a temporary name and renamed
when complete, so a killed or retried writer never leaves a partial shard. Its DALI index
(:func:`dali_index_name`) is written alongside, from the offsets the writer already has, and
renamed with it. Every image is fully
decoded first (:func:`imagenet_ops.imagenet.image_verify.verify_image`), unless its tar's md5 matched the
published ImageNet md5 (then the header is enough: those bytes are known to decode). Whether a
shard is already complete is the unit's done-record's business (:mod:`imagenet_ops.training.units`),
kept in the sink next to every other unit, so this writer always writes.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.progress import Progress
from imagenet_ops.core.uris import is_remote
from imagenet_ops.imagenet.image_header import image_info, needs_conversion, to_rgb_jpeg
from imagenet_ops.imagenet.image_verify import verify_image
from imagenet_ops.imagenet.images import ImageReader, ImageRef
from imagenet_ops.training.example import imagenet_example_parts
from imagenet_ops.training.order import PlanItem, Shard
from imagenet_ops.training.tfrecord import TFRecordWriter

log = logging.getLogger(__name__)


DALI_INDEX_DIR = "idx"
"""The DALI index files' folder, inside the shards' folder.

Not beside the shards themselves: readers that glob ``train-*`` (tensorflow/tpu's ResNet input,
``tf.data.Dataset.list_files``) would take ``train-00000-of-01024.idx`` for a TFRecord shard.
"""
RECORD_OVERHEAD = 256
"""A bound on a reference record's bytes besides the image and its file name (keys, ints, framing)."""


def dali_index_name(shard_name: str) -> str:
    """``idx/train-00000-of-01024.idx``: where a shard's DALI ``tfrecord2idx`` index goes, relative to the shard's folder.

    The name is the shard's plus ``.idx``, as DALI's examples and NVIDIA's ``dali_index.sh`` make them.
    """
    return f"{DALI_INDEX_DIR}/{shard_name}.idx"


@dataclass(frozen=True)
class ShardResult:
    """A written shard: name, records, bytes, checksum (``tfrecord_checksum``), converted images,
    and its DALI index's size and sha256."""

    name: str
    records: int
    bytes: int
    checksum: str
    converted: int = 0
    index_bytes: int = 0
    index_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_name(ref: ImageRef) -> str:
    """How errors name an image: ``<tar>: <wnid>/<name>`` for a tar member, the path for a file of its own."""
    return ref.container if ref.container.endswith(ref.name) else f"{ref.container}: {ref.relpath}"


def _write_record(writer: TFRecordWriter, item: PlanItem, data: bytes, *, split: str, verify: bool) -> int:
    """Write one image's record from its bytes (fully decoded first with ``verify``); 1 if it was re-encoded, else 0."""
    name = image_name(item.ref)
    if verify:
        verify_image(data, name=name)
    converted = needs_conversion(item.ref.name, split=split)
    if converted:
        data = to_rgb_jpeg(data, name=name)
    info = image_info(data, name=name)
    writer.write_parts(
        imagenet_example_parts(
            encoded=data, height=info.height, width=info.width, label=item.label, synset=item.synset, filename=item.ref.name
        )
    )
    return int(converted)


def _write_in_place(writer: TFRecordWriter, reader: ImageReader, item: PlanItem, *, split: str) -> int:
    """Write one image's record (header check only), its bytes read straight into the writer's buffer when they fit.

    Same record as :func:`_write_record`, without the image's bytes object and its copy into the buffer.
    """
    ref = item.ref

    def fill(image: memoryview) -> tuple[bytes, bytes]:
        reader.read_into(ref, image)
        info = image_info(image, name=image_name(ref))
        head, _, tail = imagenet_example_parts(
            encoded=image, height=info.height, width=info.width, label=item.label, synset=item.synset, filename=ref.name
        )
        return head, tail

    if needs_conversion(ref.name, split=split) or not writer.write_filled(ref.size, fill):
        return _write_record(writer, item, reader.read(ref), split=split, verify=False)
    return 0


def write_tfrecord_shard(*, shard: Shard, out_dir: Path, reader: ImageReader | None = None, verify: bool = True) -> ShardResult:
    """Write one reference-format TFRecord shard into ``out_dir``, and its DALI index (:func:`dali_index_name`).

    Image bytes pass through unchanged, except the train PNG/CMYK files named in the reference,
    re-encoded as RGB JPEG quality 100. Height and width come from the image header.
    ``verify`` decodes every image fully first; ``False`` only for bytes known to be good (a tar
    whose md5 matched the published one). Without ``verify``, images in local files are read
    straight into the writer's buffer (:meth:`TFRecordWriter.write_filled`): same bytes, one copy fewer.

    Raises:
        ImageError: a file that is neither JPEG nor PNG, or (``verify``) one TensorFlow could not
            decode; the message names the tar and the member. No shard file is left then.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own_reader = reader is None
    reader = reader or ImageReader()
    tag = uuid.uuid4().hex[:8]
    tmp = out_dir / f".{shard.name}.tmp-{tag}"
    index = out_dir / dali_index_name(shard.name)
    index.parent.mkdir(exist_ok=True)
    tmp_index = index.with_name(f".{index.name}.tmp-{tag}")
    size_hint = sum(i.ref.size + len(i.ref.name) + RECORD_OVERHEAD for i in shard.items)
    converted = 0
    progress = Progress(f"shard {shard.name}", total=len(shard.items), unit="images", logger=log)
    try:
        with TFRecordWriter(tmp, index=tmp_index, size_hint=size_hint) as writer:
            if not verify and not any(is_remote(i.ref.container) for i in shard.items[:1]):
                for item in shard.items:  # local tars, header check only: each image is read into the writer's buffer
                    converted += _write_in_place(writer, reader, item, split=shard.split)
                    progress.update(1)
            else:
                for item, (_, data) in zip(shard.items, reader.read_many(i.ref for i in shard.items), strict=True):
                    converted += _write_record(writer, item, data, split=shard.split, verify=verify)
                    progress.update(1)
        os.replace(tmp_index, index)
        os.replace(tmp, out_dir / shard.name)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)
        if own_reader:
            reader.close()
    result = ShardResult(
        shard.name, len(shard.items), writer.bytes, writer.checksum, converted, writer.index_bytes, writer.index_sha256
    )
    checked = "fully decoded" if verify else "header check only (md5 matched)"
    log.info("%s; wrote %s (%d records, %d converted; %s)", progress.line(), shard.name, result.records, converted, checked)
    return result
