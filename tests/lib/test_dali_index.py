"""DALI index files (issue 14): byte-identical to DALI's own ``tfrecord2idx``, and read by a reader written from DALI's spec.

``tests/lib/upstream/tfrecord2idx.py.txt`` is NVIDIA/DALI's ``tools/tfrecord2idx`` unchanged (see
the README there). It runs in a child process on shards our writer made: many small records
(many buffer flushes), records of several MB and of 0 bytes, records larger than the buffer,
one write per record, a real reference shard, and an empty shard.

The spec (DALI's ``fn.readers.tfrecord`` docs and its ``IndexedFileLoader``): one text line per
record, ``<offset> <size>`` separated by whitespace, where ``size`` is the whole framed record
(8-byte length, 4-byte masked CRC of the length, payload, 4-byte masked CRC of the payload).
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import google_crc32c
import pytest

from imagenet_ops.imagenet.images import list_train_images
from imagenet_ops.testing.samples import make_train_tar
from imagenet_ops.training.order import plan_reference
from imagenet_ops.training.shards import dali_index_name, write_tfrecord_shard
from imagenet_ops.training.tfrecord import TFRecordWriter, frame_record, tfrecord_index_lines

TFRECORD2IDX = Path(__file__).parent / "upstream" / "tfrecord2idx.py.txt"
MIB = 1 << 20

# Runs the vendored script as its own __main__ once per (shard, index) pair, in one process
# (its TensorFlow import, when TensorFlow is there, is paid once); prints what it printed per pair.
_RUN_UPSTREAM = """
import contextlib, io, json, runpy, sys
script, pairs = sys.argv[1], json.loads(sys.argv[2])
said = []
for shard, index in pairs:
    sys.argv = [script, shard, index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(script, run_name="__main__")
    said.append(out.getvalue())
print(json.dumps(said))
"""


def _payloads(seed: int, sizes: list[int]) -> list[list[bytes]]:
    """Records as the writer gets them: a few parts each (head, image, tail), deterministic bytes."""
    out = []
    for k, size in enumerate(sizes):
        block = random.Random(seed * 10_000 + k).randbytes(min(size, 4093))
        body = (block * (size // 4093 + 1))[:size]
        out.append([b"\x0a\x05head" + bytes([k % 256]), body, b"tail" * (k % 3)])
    return out


SHARDS = {
    # name: (record parts, writer buffer bytes)
    "small-00000-of-00005": (_payloads(1, [100 + (k * 37) % 5000 for k in range(1500)]), 1 * MIB),  # many buffer flushes
    "large-00001-of-00005": (_payloads(2, [5 * MIB, 0, 1, 9 * MIB + 3, 70_000, 4 * MIB - 16]), 4 * MIB),
    "split-00002-of-00005": (_payloads(3, [3000, 250_000, 17, 1 * MIB]), 64 * 1024),  # records larger than the buffer
    "unbuffered-00003-of-00005": (_payloads(4, [10, 20, 30]), 1),  # one writev per record
    "empty-00004-of-00005": ([], 4 * MIB),
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``{name: (shard, our index)}``: the synthetic shards above, and a real reference shard of a tiny tar."""
    root = tmp_path_factory.mktemp("dali")
    made = {}
    for name, (records, buffer_bytes) in SHARDS.items():
        shard, index = root / name, root / f"{name}.idx"
        hint = sum(sum(map(len, r)) for r in records) // 2  # too small: the file grows past it
        with TFRecordWriter(shard, index=index, buffer_bytes=buffer_bytes, size_hint=hint) as writer:
            for parts in records:
                writer.write_parts(parts)
        assert writer.index_sha256 == hashlib.sha256(index.read_bytes()).hexdigest()
        assert writer.index_bytes == index.stat().st_size
        made[name] = (shard, index)
    tar = make_train_tar(root / "train.tar", wnids=["n01440764", "n01443537"], per_class=6, width=80, height=60)
    (shard,) = plan_reference(train=list_train_images(tar), validation=[], val_labels=[], train_shards=1, validation_shards=0)
    result = write_tfrecord_shard(shard=shard, out_dir=root / "reference")
    made[shard.name] = (root / "reference" / shard.name, root / "reference" / dali_index_name(shard.name))
    assert result.index_bytes == made[shard.name][1].stat().st_size
    return made


@pytest.fixture(scope="module")
def upstream(shards, tmp_path_factory) -> dict[str, tuple[bytes, str]]:
    """``{name: (index bytes, what it printed)}`` from DALI's tfrecord2idx on each shard."""
    import json

    out = tmp_path_factory.mktemp("upstream")
    pairs = [(str(shard), str(out / f"{name}.idx")) for name, (shard, _) in shards.items()]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_UPSTREAM, str(TFRECORD2IDX), json.dumps(pairs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (Path(index).read_bytes(), text) for name, (_, index), text in zip(shards, pairs, said, strict=True)}


def dali_spec_read(shard: Path, index: Path) -> list[int]:
    """A reader written from DALI's index spec: every line's record, checked; returns the payload lengths.

    Like DALI's loader it reads whitespace-separated ``offset size`` pairs; for each it seeks to
    ``offset``, reads the 8-byte little-endian length and its 4-byte masked CRC-32C, and requires
    ``size == 16 + length``; the records must tile the file exactly, with no gap and nothing after.
    """
    numbers = [int(x) for x in index.read_text(encoding="ascii").split()]
    assert len(numbers) % 2 == 0, f"{index}: an odd number of fields"
    pairs = list(zip(numbers[::2], numbers[1::2], strict=True))
    lengths, expected_offset = [], 0
    with open(shard, "rb") as fh:
        for offset, size in pairs:
            assert offset == expected_offset, f"{index}: record at {offset}, expected {expected_offset}"
            fh.seek(offset)
            head = fh.read(12)
            (length,), (stored,) = struct.unpack("<Q", head[:8]), struct.unpack("<I", head[8:])
            crc = google_crc32c.value(head[:8])
            assert stored == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF, f"{shard}: bad length CRC at {offset}"
            assert size == 16 + length, f"{index}: size {size} at {offset}, the record holds {16 + length}"
            payload, (payload_crc,) = fh.read(length), struct.unpack("<I", fh.read(4))
            crc = google_crc32c.value(payload)
            assert payload_crc == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF, f"{shard}: bad payload CRC at {offset}"
            lengths.append(length)
            expected_offset = offset + size
    size = shard.stat().st_size
    assert expected_offset == size, f"{index}: the records end at {expected_offset}, the file at {size}"
    return lengths


def test_our_index_is_byte_identical_to_dali_tfrecord2idx(shards, upstream):
    for name, (_, index) in shards.items():
        theirs, said = upstream[name]
        assert index.read_bytes() == theirs, name
        assert said == "", f"{name}: tfrecord2idx printed {said!r}"


def test_an_empty_shard_gets_an_empty_index_as_tfrecord2idx_writes_it(shards, upstream):
    # The brief expected tfrecord2idx to fail on a 0-byte shard. The vendored script does not: its
    # first read returns b"", it breaks out of the loop, and it leaves an empty index with exit 0.
    shard, index = shards["empty-00004-of-00005"]
    assert shard.stat().st_size == 0
    assert index.read_bytes() == b"" == upstream["empty-00004-of-00005"][0]
    assert dali_spec_read(shard, index) == []


def test_every_index_reads_back_by_the_dali_spec_and_agrees_with_tfrecord_index_lines(shards):
    for name, (shard, index) in shards.items():
        lengths = dali_spec_read(shard, index)
        if name in SHARDS:
            assert lengths == [sum(map(len, parts)) for parts in SHARDS[name][0]], name
        assert "".join(tfrecord_index_lines(shard)) == index.read_text(), name


def test_buffering_and_preallocation_do_not_change_a_byte(shards, tmp_path):
    """Every buffer size and size hint gives the file that plain record-by-record writes give."""
    for name, (records, _) in SHARDS.items():
        plain = b"".join(frame_record(b"".join(parts)) for parts in records)
        assert shards[name][0].read_bytes() == plain, name
        for buffer_bytes, hint in ((1, 0), (MIB, len(plain) + 10 * MIB), (64 * MIB, len(plain))):
            path = tmp_path / f"{name}-{buffer_bytes}"
            with TFRecordWriter(path, buffer_bytes=buffer_bytes, size_hint=hint) as writer:
                for parts in records:
                    writer.write_parts(parts)
            assert path.read_bytes() == plain, f"{name}: buffer {buffer_bytes}, size hint {hint}"
            assert writer.bytes == len(plain)


def test_the_reference_shard_index_lists_one_line_per_image(shards):
    shard, index = shards["train-00000-of-00001"]
    assert len(dali_spec_read(shard, index)) == 12
    assert index.parent.name == "idx" and index.name == "train-00000-of-00001.idx"
