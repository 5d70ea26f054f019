"""Records checksummed where they lie: ``TFRecordWriter.write_filled`` and the CRC-32C that takes any buffer."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import crc32c
import google_crc32c
import pytest

from imagenet_ops.core.errors import ArchiveError
from imagenet_ops.training.tfrecord import BUFFER_BYTES, HEAD_ROOM, TFRecordWriter, masked_crc32c, tfrecord_index_lines

ROOT = Path(__file__).resolve().parents[2]


def _records(seed: int = 0) -> list[tuple[bytes, bytes, bytes]]:
    """(head, middle, tail) triples of awkward sizes: empty parts, a head over HEAD_ROOM, a long tail, large middles."""
    rng = random.Random(seed)
    sizes = [(150, 90_000, 60), (0, 0, 0), (HEAD_ROOM, 10, 5), (HEAD_ROOM - 12, 10, 5), (5, 1, 3000), (20, 300_000, 20)]
    sizes += [(rng.randrange(200), rng.randrange(150_000), rng.randrange(300)) for _ in range(40)]
    return [tuple(rng.randbytes(n) for n in triple) for triple in sizes]  # type: ignore[misc]


def _filling(head: bytes, middle: bytes, tail: bytes):
    def fill(view: memoryview) -> tuple[bytes, bytes]:
        assert len(view) == len(middle)
        view[:] = middle
        return head, tail

    return fill


@pytest.mark.parametrize("buffer_bytes", [1, HEAD_ROOM + 1100, 4096, 256 << 10, BUFFER_BYTES])
def test_write_filled_writes_the_bytes_write_parts_writes(tmp_path, buffer_bytes):
    records = _records()
    plain, filled = tmp_path / "plain", tmp_path / "filled"
    took = []
    with (
        TFRecordWriter(plain, index=tmp_path / "plain.idx", buffer_bytes=1) as a,
        TFRecordWriter(filled, index=tmp_path / "filled.idx", buffer_bytes=buffer_bytes, size_hint=1 << 20) as b,
    ):
        for head, middle, tail in records:
            a.write_parts((head, middle, tail))
            took.append(b.write_filled(len(middle), _filling(head, middle, tail)))
            if not took[-1]:
                b.write_parts((head, middle, tail))
    assert filled.read_bytes() == plain.read_bytes()
    assert (tmp_path / "filled.idx").read_text() == (tmp_path / "plain.idx").read_text() == "".join(tfrecord_index_lines(plain))
    assert (b.checksum, b.index_sha256, b.records, b.bytes) == (a.checksum, a.index_sha256, a.records, a.bytes)
    if buffer_bytes == 1:
        assert not any(took), "without a buffer there is nowhere to fill"
    else:
        assert any(took), "small middles go through the buffer"
    if buffer_bytes == BUFFER_BYTES:
        assert all(took), "every test record fits the default buffer"


def test_a_fill_that_raises_writes_nothing(tmp_path):
    good = [(b"h", b"m" * 1000, b"t"), (b"H", b"M" * 2000, b"T")]

    def truncated(view: memoryview) -> tuple[bytes, bytes]:
        view[:10] = b"x" * 10
        raise ArchiveError("a.tar: n01/n01_1.JPEG is truncated")

    with TFRecordWriter(tmp_path / "a") as a, TFRecordWriter(tmp_path / "b") as b:
        a.write_parts(good[0])
        a.write_parts(good[1])
        assert b.write_filled(1000, _filling(*good[0]))
        with pytest.raises(ArchiveError, match="n01_1.JPEG is truncated"):
            b.write_filled(500, truncated)
        assert b.write_filled(2000, _filling(*good[1]))
    assert (tmp_path / "b").read_bytes() == (tmp_path / "a").read_bytes()
    assert b.records == 2


def test_write_filled_on_a_file_passed_in_declines_without_calling_fill():
    def fill(view: memoryview) -> tuple[bytes, bytes]:
        raise AssertionError("must not be called")

    with TFRecordWriter(io.BytesIO()) as w:
        assert w.write_filled(10, fill) is False
    assert w.records == 0


def test_crc32c_of_any_buffer_equals_google_crc32c_of_the_bytes():
    rng = random.Random(1)
    for n in (0, 1, 7, 8, 9, 63, 4096, 100_003, 1 << 20):
        data = rng.randbytes(n)
        want = google_crc32c.value(data)
        view = memoryview(bytearray(b"pad" + data + b"pad"))[3 : 3 + n]
        assert crc32c.crc32c(data) == crc32c.crc32c(view) == crc32c.crc32c(bytearray(data)) == want
        assert masked_crc32c(view) == masked_crc32c(data)
        cut = n // 3
        assert crc32c.crc32c(data[cut:], crc32c.crc32c(data[:cut])) == google_crc32c.extend(
            google_crc32c.value(data[:cut]), data[cut:]
        )


def test_every_record_crc_in_a_filled_file_checks_with_google_crc32c(tmp_path):
    path = tmp_path / "s"
    with TFRecordWriter(path) as w:
        for head, middle, tail in _records(2):
            if not w.write_filled(len(middle), _filling(head, middle, tail)):
                w.write_parts((head, middle, tail))
    data, at = path.read_bytes(), 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        for start, end in ((at, at + 8), (at + 12, at + 12 + length)):
            crc = google_crc32c.value(data[start:end])
            masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
            assert struct.unpack_from("<I", data, end)[0] == masked
        at += length + 16
    assert at == len(data)


def test_a_missing_crc32c_package_is_a_clear_error():
    code = "import sys; sys.modules['crc32c'] = None\nimport imagenet_ops.training.tfrecord\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    assert done.returncode != 0
    assert "needs the crc32c package (pinned in requirements.txt): pip install crc32c==2.9.post0" in done.stderr


@pytest.mark.parametrize("size", [0, 1, 120, 127, 128, 16_370, 16_383, 16_384, 16_390, 2_097_130, 2_097_152, 2_097_160])
def test_the_image_record_head_equals_tensorflow_at_every_varint_boundary(size):
    # The encoded image's entry head is built from its length alone (4 varints); check it where they grow.
    import tensorflow as tf

    from imagenet_ops.training.tfrecord import imagenet_example

    encoded = bytes([size % 251]) * size
    fields = {"height": 375, "width": 500, "label": 7, "synset": "n01440764", "filename": "n01440764_1.JPEG"}
    ours = imagenet_example(encoded=encoded, **fields)
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[375])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[500])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        "image/class/synset": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"n01440764"])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
        "image/colorspace": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"RGB"])),
        "image/channels": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"n01440764_1.JPEG"])),
    }
    want = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)
    assert ours == want
