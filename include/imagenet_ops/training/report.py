"""Training data's data-quality report: records decoded back from the written shards, and the plan's counts.

Published as ``report/`` beside the shards (:mod:`imagenet_ops.core.report`). It holds a contact
sheet of images decoded back from the first records of a few shards (so what a trainer reads is
what is shown), the class histogram per split, the images per shard, the source files' size
distribution and the sampled records' pixel sizes, the PNG/CMYK files re-encoded on the way, and
the bytes (a run's throughput is in its note and Asset event: the report holds no timings).
Only the head of each sampled shard is read (:data:`HEAD_BYTES`), with
no TensorFlow: records are parsed by :func:`example_features`.
"""

from __future__ import annotations

import io
import logging
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from imagenet_ops.core import charts
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.report import Report, report_files, spread
from imagenet_ops.core.sinks import LocalSink, Sink
from imagenet_ops.imagenet.image_header import needs_conversion
from imagenet_ops.training.units import Unit
from imagenet_ops.training.variations import TrainingConfig

log = logging.getLogger(__name__)

SAMPLED_UNITS = 3
RECORDS_PER_UNIT = 4
HEAD_BYTES = 1 << 20
"""Bytes read from the start of each sampled shard: enough for a few ImageNet records (~110 KB each)."""
TILE = 128
PICTURES = ("contact_sheet.png", "classes_train.png", "classes_validation.png", "images_per_shard.png", "file_sizes.png")
REPORT_FILES = report_files(PICTURES)
_RECORDIO_MAGIC = 0xCED7230A


def _head(sink: Sink, key: str, store: Any) -> bytes:
    """The first :data:`HEAD_BYTES` of ``key`` in the sink (one ranged read on S3/GCS)."""
    if isinstance(sink, LocalSink):
        with open(sink.location(key), "rb") as fh:
            return fh.read(HEAD_BYTES)
    if store is None:
        raise ValueError(f"{sink.location(key)}: reading a remote shard back needs an object store")
    size = store.size(sink.location(key))
    return store.read_range(sink.location(key), 0, min(size, HEAD_BYTES))


def tfrecord_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """``(offset, size)`` of the complete records at the start of ``data``: what their DALI index lines say."""
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            return
        yield at, end - at
        at = end


def _check_dali_index(unit: Unit, head: bytes, sink: Sink, store: Any, report: Report) -> None:
    """The shard's DALI index: one line per planned record, and its first lines match the records read back."""
    key = unit.key(unit.files[1])
    try:
        index = _head(sink, key, store).decode("ascii")
    except (OSError, ValueError) as exc:
        report.check(False, f"{key}: cannot be read back: {exc}")
        return
    spans = [f"{offset} {size}" for offset, size in tfrecord_spans(head)]
    if len(index) >= HEAD_BYTES:  # only its head was read (a shard of ~50,000 records or more)
        lines = index.splitlines()[:-1]
        ok, count = lines[: len(spans)] == spans, f"{len(lines)}+ DALI index lines read"
    else:
        lines = index.splitlines()
        ok = len(lines) == len(unit.shard.items) and lines[: len(spans)] == spans
        count = f"{len(lines)} DALI index lines for {len(unit.shard.items)} records"
    report.check(ok, f"{key}: {count}; the first {min(len(spans), len(lines))} match the shard's records")


def tfrecord_payloads(data: bytes) -> Iterator[bytes]:
    """The complete records at the start of ``data`` (a shard's head): length, crc, payload, crc each."""
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            return
        yield data[at + 12 : at + 12 + length]
        at = end


def recordio_payloads(data: bytes) -> Iterator[tuple[float, bytes]]:
    """``(label, image bytes)`` of the complete records at the start of a ``.rec`` (MXNet RecordIO, im2rec)."""
    at = 0
    while at + 8 <= len(data):
        magic, lrec = struct.unpack_from("<II", data, at)
        if magic != _RECORDIO_MAGIC:
            return
        length = lrec & ((1 << 29) - 1)
        end = at + 8 + length
        if end > len(data):
            return
        _flag, label, _id, _id2 = struct.unpack_from("<IfQQ", data, at + 8)
        yield label, data[at + 8 + 24 : end]
        at = end + (-length % 4)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a protobuf message (varints and length-delimited fields only)."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, wire, value


def example_features(payload: bytes) -> dict[str, list[Any]]:
    """A ``tf.train.Example``'s bytes and int64 features, by name (what the report reads of a record)."""
    out: dict[str, list[Any]] = {}
    for number, _, features in _fields(payload):  # Example.features = 1
        if number != 1:
            continue
        for fnum, _, entry in _fields(features):  # Features.feature = 1 (map entries)
            if fnum != 1:
                continue
            name, values = "", []
            for enum_, _, part in _fields(entry):
                if enum_ == 1:
                    name = part.decode()
                elif enum_ == 2:  # Feature: bytes_list = 1, int64_list = 3
                    for kind, _, lst in _fields(part):
                        if kind == 1:
                            values = [v for n, _, v in _fields(lst) if n == 1]
                        elif kind == 3:
                            values = _int64s(lst)
            out[name] = values
    return out


def _int64s(lst: bytes) -> list[int]:
    values = []
    for n, wire, v in _fields(lst):
        if n != 1:
            continue
        if wire == 2:  # packed
            at = 0
            while at < len(v):
                x, at = _varint(v, at)
                values.append(x)
        else:
            values.append(v)
    return values


def _decoded(image: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at about tile size (a JPEG decoded at a reduced DCT scale) and its full ``(width, height)``."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        size = im.size
        im.draft("RGB", (TILE, TILE))
        return np.asarray(im.convert("RGB")), size


def _samples(
    units: Sequence[Unit], sink: Sink, store: Any, report: Report
) -> tuple[list[list[tuple[str, np.ndarray]]], list[str], list[tuple[int, int]]]:
    """Contact-sheet rows (one per sampled unit), their titles, and the decoded records' pixel sizes."""
    rows, titles, sizes = [], [], []
    for unit in spread([u for u in units if u.shard.items], SAMPLED_UNITS):
        key = unit.key(unit.files[0])  # the shard, or the .rec
        try:
            head = _head(sink, key, store)
        except (OSError, ValueError) as exc:
            report.check(False, f"{key}: cannot be read back: {exc}")
            continue
        if unit.implementation == "nvidia":
            records = [(f"label {label:g}", image) for label, image in recordio_payloads(head)]
        else:
            _check_dali_index(unit, head, sink, store, report)
            records = []
            for payload in tfrecord_payloads(head):
                f = example_features(payload)
                records.append((f"label {f.get('image/class/label', ['?'])[0]}", f["image/encoded"][0]))
                if len(records) == RECORDS_PER_UNIT:
                    break
        if not records:
            report.check(False, f"{key}: no complete record in its first {human_bytes(HEAD_BYTES)}")
            continue
        cells = []
        for caption, image in records[:RECORDS_PER_UNIT]:
            pixels, size = _decoded(image)
            sizes.append(size)
            cells.append((caption, pixels))
        rows.append(cells)
        titles.append(f"{key}: its first {len(cells)} records")
    return rows, titles, sizes


def training_report(
    *,
    units: Sequence[Unit],
    sink: Sink,
    config: TrainingConfig,
    files: Sequence[dict[str, Any]],
    converted: int,
    store: Any = None,
) -> Report:
    """Build the report of complete training data (called before its manifest is written).

    Args:
        units: the plan's units (their planned records: labels, source files).
        sink: where the shards are.
        config: the config (implementation, layout, shard counts are shown).
        files: the written files' manifest entries (path, size, records).
        converted: PNG/CMYK images re-encoded, as the writers counted them.
        store: reads an object-storage sink.
    """
    implementation = config.implementation
    report = Report(title="ImageNet training data")
    total = sum(f["size"] for f in files)
    per_split = Counter(u.shard.split for u in units for _ in u.shard.items)
    facts: dict[str, Any] = {
        "config": ", ".join(f"{k} {v}" for k, v in config.output_params().items()),
        "format": "RecordIO (.rec/.idx/.lst)" if implementation == "nvidia" else "TFRecord shards",
        "images": ", ".join(f"{n} {s}" for s, n in sorted(per_split.items())) or "none",
        "files": f"{len(files)}, {human_bytes(total)}",
    }
    report.facts(facts)

    report.section("Records decoded back from the shards")
    rows, titles, sizes = _samples(units, sink, store, report)
    if rows:
        report.picture(
            "contact_sheet.png",
            charts.contact_sheet(
                rows, tile=TILE, title="first records of sampled shards, as a trainer decodes them", row_titles=titles
            ),
            f"The first records of {len(rows)} shard(s), decoded from the written bytes with their labels.",
        )
        report.text(
            f"{len(sizes)} decoded records measure {min(w for w, _ in sizes)}..{max(w for w, _ in sizes)} px wide, "
            f"{min(h for _, h in sizes)}..{max(h for _, h in sizes)} px high."
        )

    report.section("Classes per split")
    for split in ("train", "validation"):
        labels = Counter(i.label for u in units if u.shard.split == split for i in u.shard.items)
        if not labels:
            continue
        low = min(labels)
        values = [labels.get(low + k, 0) for k in range(max(labels) - low + 1)]
        report.text(f"{split}: {sum(values)} images in {len(labels)} classes (labels {low}..{max(labels)}).")
        report.picture(
            f"classes_{split}.png", charts.bar_chart(f"{split}: images per class", values), f"{split} images per label."
        )

    report.section("Shards")
    counts = [len(u.shard.items) for u in units]
    report.picture(
        "images_per_shard.png",
        charts.bar_chart("images per unit", counts, labels=[u.name for u in units]),
        f"Images per {'split file' if implementation == 'nvidia' else 'shard'} "
        f"({min(counts, default=0)}..{max(counts, default=0)}).",
    )
    report.picture(
        "file_sizes.png",
        charts.histogram("source image sizes (KB)", [i.ref.size / 1024 for u in units for i in u.shard.items]),
        "The distribution of the source images' file sizes, every record.",
    )
    names = sorted(i.ref.relpath for u in units for i in u.shard.items if needs_conversion(i.ref.name, split=u.shard.split))
    expected = 0 if implementation == "nvidia" else len(names)  # RecordIO packs bytes unchanged (im2rec --pass-through)
    report.check(converted == expected, f"{converted} PNG/CMYK image(s) re-encoded as RGB JPEG (the plan names {expected})")
    if names and implementation != "nvidia":
        report.table(("re-encoded image",), [(n,) for n in names], limit=50)
    return report
