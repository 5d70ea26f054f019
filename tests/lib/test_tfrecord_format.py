"""TFRecord framing and hand-encoded ``tf.train.Example``: byte-equal to TensorFlow, read back by TensorFlow."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import google_crc32c
import pytest

from imagenet_ops.testing.samples import example_fields as imagenet_fields
from imagenet_ops.training.tfrecord import (
    FRAME_OVERHEAD,
    CorruptRecordError,
    TFRecordWriter,
    encode_example,
    frame_record,
    imagenet_example,
    iter_tfrecords,
    masked_crc32c,
    tfrecord_index_lines,
)

ROOT = Path(__file__).resolve().parents[2]

# TF2 reference reader's view of the 9 keys written by the reference converter (spec 1.4).
STRING_KEYS = ("image/encoded", "image/format", "image/colorspace", "image/class/synset", "image/filename")
INT_KEYS = ("image/channels", "image/height", "image/width", "image/class/label")


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def tf_serialized(tf, features: dict) -> bytes:
    """What TensorFlow's own protobuf classes make of ``features`` (same conventions as encode_example)."""
    feature = {}
    for key, value in features.items():
        values = [value] if isinstance(value, bytes | int) else list(value)
        if all(isinstance(v, int) for v in values):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def as_features(fields: dict) -> dict:
    return {
        "image/encoded": fields["encoded"],
        "image/format": b"JPEG",
        "image/colorspace": b"RGB",
        "image/channels": 3,
        "image/height": fields["height"],
        "image/width": fields["width"],
        "image/class/label": fields["label"],
        "image/class/synset": fields["synset"].encode(),
        "image/filename": fields["filename"].encode(),
    }


# --- CRC and framing ---------------------------------------------------------------------------


def test_crc32c_check_value_is_castagnoli():
    assert google_crc32c.implementation == "c"
    assert google_crc32c.value(b"123456789") == 0xE3069283


def test_mask_matches_formula():
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


@pytest.mark.parametrize(
    ("payload", "expected_hex"),
    [
        (b"abc", "0300000000000000b099490e6162636e57f121"),
        (b"", "000000000000000029039807d8ea82a2"),
    ],
)
def test_frame_record_spec_vectors(payload, expected_hex):
    assert frame_record(payload) == bytes.fromhex(expected_hex)


def test_writer_bytes_equal_tf_record_writer(tf, tmp_path):
    payloads = [b"", b"a", b"abc", os.urandom(127), os.urandom(128), os.urandom(70_000)]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    with TFRecordWriter(ours) as writer:
        for p in payloads:
            writer.write(p)
    with tf.io.TFRecordWriter(str(theirs)) as tf_writer:
        for p in payloads:
            tf_writer.write(p)
    assert ours.read_bytes() == theirs.read_bytes() == b"".join(map(frame_record, payloads))
    assert (writer.records, writer.bytes) == (len(payloads), ours.stat().st_size)


def test_writer_on_open_file_counts_and_leaves_it_open():
    buf = io.BytesIO()
    with TFRecordWriter(buf) as writer:
        writer.write(b"xyz")
        writer.write(b"")
    assert not buf.closed
    assert (writer.records, writer.bytes) == (2, 3 + 2 * FRAME_OVERHEAD) == (2, len(buf.getvalue()))
    assert list(iter_tfrecords(io.BytesIO(buf.getvalue()))) == [b"xyz", b""]


# --- Example encoding ----------------------------------------------------------------------------

FEATURE_DICTS = {
    "scalars": {"b": b"bytes", "i": 7},
    "large_ints": {"a": 2**63 - 1, "b": 2**32, "c": 2**31 - 1, "d": 128, "e": 127, "f": 0, "g": 16384, "h": 2**56},
    "negative_ints": {"min": -(2**63), "m1": -1, "mixed": [5, -300, 0, -(2**40), 2**62]},
    "empty_bytes": {"empty": b"", "list": [b"", b"x", b""]},
    "lists": {"ints": list(range(-5, 300, 7)), "strs": [b"a" * n for n in (0, 1, 127, 128, 300, 20000)]},
    "long_values": {"big": os.urandom(200_000), "key/" + "k" * 200: 1},
    "many_keys_shuffled": {
        f"key{i:03d}/{'x' * (i % 9)}": (i if i % 2 else bytes([i])) for i in random.Random(3).sample(range(120), 120)
    },
    "unicode_keys": {"z": 1, "é": b"e", "中文": 2, "A": b"a", "_": 3, "Ā": b"x", "": b"empty key"},
    "imagenet": as_features(imagenet_fields(0, 1000)),
    # upb (TF's Python protobuf) emits a key after the keys it is a prefix of: "ab", "a", "".
    "prefix_keys": {"": b"", "a": 1, "ab": 2, "abc": b"3", "b": 4, "image/class": 5, "image/class/label": 6},
}


@pytest.mark.parametrize("features", list(FEATURE_DICTS.values()), ids=list(FEATURE_DICTS))
def test_encode_example_equals_tf_deterministic(tf, features):
    assert encode_example(features) == tf_serialized(tf, features)


def test_prefix_keys_follow_upb_order():
    order = [b"abc", b"ab", b"a", b"b", b""]
    encoded = encode_example({k.decode(): 1 for k in sorted(order)})
    entries = [bytes([0x0A, len(k) + 9, 0x0A, len(k)]) + k + bytes.fromhex("12 05 1a 03 0a 01 01") for k in order]
    assert encoded == bytes([0x0A, sum(map(len, entries))]) + b"".join(entries)


def test_encode_example_ignores_insertion_order():
    features = FEATURE_DICTS["many_keys_shuffled"]
    assert encode_example(dict(sorted(features.items()))) == encode_example(features)


@pytest.mark.parametrize(
    ("features", "error", "match"),
    [
        ({"k": "text"}, TypeError, "'k': unsupported value type str"),
        ({"k": 1.5}, TypeError, "unsupported value type float"),
        ({"k": [1, b"x"]}, TypeError, "only bytes or only ints"),
        ({"k": []}, ValueError, "empty list"),
        ({"k": 2**63}, ValueError, "out of range"),
        ({"k": [-(2**63) - 1]}, ValueError, "out of range"),
        ({1: b"x"}, TypeError, "not a str"),
    ],
)
def test_encode_example_rejects_what_it_cannot_encode(features, error, match):
    with pytest.raises(error, match=match):
        encode_example(features)


@pytest.mark.parametrize(
    "fields",
    [
        imagenet_fields(1, 100_000),
        imagenet_fields(2, 0),
        {**imagenet_fields(3, 50), "height": 70000, "width": 2**40, "label": 0},  # 3- and 6-byte varints
        {**imagenet_fields(4, 10), "label": -1, "synset": "n" * 300, "filename": "ü" * 100 + ".JPEG"},  # negative, long
    ],
    ids=["100KB", "empty", "big-ints", "negative-long-strings"],
)
def test_imagenet_example_equals_tf_and_generic_encoder(tf, fields):
    expected = tf_serialized(tf, as_features(fields))
    assert imagenet_example(**fields) == expected
    assert imagenet_example(**fields) == expected  # second call served from the memoised entries
    assert encode_example(as_features(fields)) == expected


# --- reading back --------------------------------------------------------------------------------


def test_tf_reads_and_parses_written_records(tf, tmp_path):
    records = [imagenet_fields(seed, size) for seed, size in enumerate((0, 1, 127, 128, 5000, 100_000))]
    path = tmp_path / "train-00000-of-00001"
    with TFRecordWriter(path) as writer:
        for fields in records:
            writer.write(imagenet_example(**fields))

    feature_map = {k: tf.io.FixedLenFeature([], tf.string) for k in STRING_KEYS}
    feature_map |= {k: tf.io.FixedLenFeature([], tf.int64) for k in INT_KEYS}
    parsed = [tf.io.parse_single_example(r, feature_map) for r in tf.data.TFRecordDataset(str(path))]

    assert len(parsed) == len(records)
    for got, fields in zip(parsed, records, strict=True):
        assert {k: v.numpy() for k, v in got.items()} == as_features(fields)


def test_empty_file_is_zero_records(tf, tmp_path):
    path = tmp_path / "validation-00127-of-00128"
    with TFRecordWriter(path) as writer:
        pass
    assert path.read_bytes() == b"" and writer.records == 0
    assert list(iter_tfrecords(path)) == []
    assert tfrecord_index_lines(path) == []
    assert list(tf.data.TFRecordDataset(str(path))) == []


def test_iter_tfrecords_round_trip(tmp_path):
    payloads = [os.urandom(n) for n in (0, 3, 200, 65536)]
    path = tmp_path / "shard"
    with TFRecordWriter(path) as writer:
        for p in payloads:
            writer.write(p)
    assert list(iter_tfrecords(path)) == payloads
    with open(path, "rb") as fh:
        assert list(iter_tfrecords(fh)) == payloads
        assert not fh.closed


@pytest.fixture
def three_records(tmp_path) -> tuple[Path, list[int]]:
    """A file of records with payloads 10, 20 and 30 bytes, and their start offsets."""
    path = tmp_path / "three"
    with TFRecordWriter(path) as writer:
        for n in (10, 20, 30):
            writer.write(bytes(range(n)))
    return path, [0, 26, 62]


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_payload_byte_names_file_and_offset(three_records):
    path, starts = three_records
    flip(path, starts[1] + 12 + 5)
    with pytest.raises(CorruptRecordError, match=rf"{path}: corrupt TFRecord at byte offset 26: payload CRC") as info:
        list(iter_tfrecords(path))
    assert isinstance(info.value, ValueError)
    assert len(list(iter_tfrecords(path, verify_crc=False))) == 3  # payload CRC check off: bytes come through


@pytest.mark.parametrize("where", [0, 8, 61], ids=["length", "length-crc", "payload-crc"])
def test_flipped_framing_byte_is_detected(three_records, where):
    path, starts = three_records
    flip(path, starts[1] + where if where < 26 else where)  # 61 = last byte of record 1's payload CRC
    with pytest.raises(CorruptRecordError, match="at byte offset 26: (length|payload) CRC"):
        list(iter_tfrecords(path))


@pytest.mark.parametrize(("keep", "offset"), [(62 + 5, 62), (62 + 12 + 29, 62), (62 + 45, 62), (26 + 3, 26)])
def test_truncation_names_offset(three_records, keep, offset):
    path, _ = three_records
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CorruptRecordError, match=rf"truncated TFRecord at byte offset {offset}"):
        list(iter_tfrecords(path))
    with pytest.raises(CorruptRecordError, match=rf"truncated TFRecord at byte offset {offset}"):
        tfrecord_index_lines(path)


def test_records_before_the_damage_are_yielded(three_records):
    path, _ = three_records
    path.write_bytes(path.read_bytes()[:-1])
    seen = []
    with pytest.raises(CorruptRecordError):
        for payload in iter_tfrecords(path):
            seen.append(payload)
    assert seen == [bytes(range(10)), bytes(range(20))]


def test_index_lines_are_dali_offsets_and_sizes(three_records):
    path, starts = three_records
    assert tfrecord_index_lines(path) == ["0 26\n", "26 36\n", "62 46\n"]
    assert [int(line.split()[0]) for line in tfrecord_index_lines(path)] == starts


def test_index_lines_point_at_records(tmp_path):
    payloads = [imagenet_example(**imagenet_fields(seed, 37 * seed)) for seed in range(20)]
    path = tmp_path / "shard"
    with TFRecordWriter(path) as writer:
        for p in payloads:
            writer.write(p)
    data = path.read_bytes()
    lines = tfrecord_index_lines(path)
    assert "".join(lines).count("\n") == len(payloads)
    for line, payload in zip(lines, payloads, strict=True):
        offset, size = map(int, line.split())
        assert data[offset : offset + size] == frame_record(payload)
    assert sum(int(line.split()[1]) for line in lines) == len(data)


def test_library_modules_import_neither_tensorflow_nor_airflow():
    code = (
        "import sys, imagenet_ops.training.tfrecord, imagenet_ops.training.recordio\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'airflow', 'mxnet'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_write_parts_equals_write_of_the_joined_payload_and_tracks_the_file_crc(tmp_path):
    from imagenet_ops.training.tfrecord import imagenet_example, imagenet_example_parts, tfrecord_checksum

    fields = {"encoded": b"\xff\xd8" + bytes(range(256)) * 40, "height": 7, "width": 9, "label": 3, "synset": "n01440764"}
    joined, parts = tmp_path / "joined", tmp_path / "parts"
    with TFRecordWriter(joined) as a, TFRecordWriter(parts) as b:
        for i in range(3):
            a.write(imagenet_example(**fields, filename=f"f{i}.JPEG"))
            b.write_parts(imagenet_example_parts(**fields, filename=f"f{i}.JPEG"))
    assert joined.read_bytes() == parts.read_bytes()
    assert a.checksum == b.checksum == tfrecord_checksum(parts)
    assert b.checksum.startswith("tfrecord-crc32c:")
    assert b.bytes == parts.stat().st_size


def test_tfrecord_checksum_changes_with_any_payload_byte_and_names_a_corrupt_file(tmp_path):
    from imagenet_ops.training.tfrecord import CorruptRecordError, tfrecord_checksum

    path = tmp_path / "s"
    with TFRecordWriter(path) as w:
        for i in range(4):
            w.write(bytes([i]) * 1000)
    good = tfrecord_checksum(path)
    data = bytearray(path.read_bytes())
    other = tmp_path / "other"
    with TFRecordWriter(other) as w:
        for i in range(4):
            w.write(bytes([i]) * 999 + b"x")  # one byte differs in every record
    assert tfrecord_checksum(other) != good
    data[12 + 500] ^= 1  # flip a payload bit: the record's CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match=r"s: corrupt TFRecord at byte offset 0: payload CRC"):
        tfrecord_checksum(path)
