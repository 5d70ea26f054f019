"""MXNet RecordIO written like dmlc-core, read back by an independent reader; im2rec ``.lst`` rows."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from imagenet_ops.training.recordio import IRHEADER_SIZE, RecordIOWriter, im2rec_list, lst_line, pack_irheader

MAGIC = 0xCED7230A
MAGIC_BYTES = b"\x0a\x23\xd7\xce"  # 0xced7230a little-endian, spelled out so the reader owes nothing to recordio.py


def read_recordio(data: bytes, start: int = 0, *, limit: int | None = None) -> list[bytes]:
    """Independent reader after dmlc ``RecordIOReader::ReadRecord``: joins cflag 1/2/3 parts, re-inserting the magic."""
    out, pos, pending = [], start, None
    while pos < len(data) and (limit is None or len(out) < limit):
        magic, lrec = struct.unpack_from("<II", data, pos)
        assert magic == MAGIC, f"no magic at {pos}"
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        body = data[pos + 8 : pos + 8 + length]
        assert len(body) == length, f"truncated part at {pos}"
        padded = (length + 3) // 4 * 4
        assert data[pos + 8 + length : pos + 8 + padded] == b"\0" * (padded - length), f"non-zero padding at {pos}"
        pos += 8 + padded
        if cflag == 0:
            assert pending is None, f"whole record inside a split one at {pos}"
            out.append(body)
        elif cflag == 1:
            assert pending is None, f"second start part at {pos}"
            pending = body + MAGIC_BYTES
        elif cflag == 2:
            assert pending is not None, f"middle part without start at {pos}"
            pending += body + MAGIC_BYTES
        else:
            assert cflag == 3 and pending is not None, f"cflag {cflag} at {pos}"
            out.append(pending + body)
            pending = None
    assert pending is None, "file ends inside a split record"
    return out


def write_all(tmp_path: Path, payloads: list[bytes], keys: list[int] | None = None) -> tuple[bytes, list[str], RecordIOWriter]:
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    keys = keys if keys is not None else list(range(len(payloads)))
    with RecordIOWriter(rec, idx) as writer:
        for key, payload in zip(keys, payloads, strict=True):
            writer.write(key, payload)
    return rec.read_bytes(), idx.read_text().splitlines(keepends=True), writer


def test_dmlc_recordio_test_vector(tmp_path):
    # dmlc-core test/recordio_test.cc writes {kMagic, 0, 2, 3, kMagic, kMagic} as uint32.
    payload = struct.pack("<6I", MAGIC, 0, 2, 3, MAGIC, MAGIC)
    data, idx, writer = write_all(tmp_path, [payload])

    def part(cflag: int, body: bytes) -> bytes:
        return struct.pack("<II", MAGIC, cflag << 29 | len(body)) + body

    assert data == part(1, b"") + part(2, struct.pack("<3I", 0, 2, 3)) + part(2, b"") + part(3, b"")
    assert read_recordio(data) == [payload]
    assert idx == ["0\t0\n"]
    assert (writer.records, writer.bytes, writer.splits) == (1, len(data), 3)


def test_plain_record_layout(tmp_path):
    data, idx, _ = write_all(tmp_path, [b"hello", b"", b"abcd"], keys=[7, 8, 9])
    assert data == (
        struct.pack("<II", MAGIC, 5) + b"hello\0\0\0" + struct.pack("<II", MAGIC, 0) + struct.pack("<II", MAGIC, 4) + b"abcd"
    )
    assert idx == ["7\t0\n", "8\t16\n", "9\t24\n"]


def with_magic(length: int, positions: list[int], seed: int = 0) -> bytes:
    """Random bytes with no magic anywhere, then the magic written at ``positions``."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(length).replace(b"\xce", b"\xcf"))
    for at in positions:
        data[at : at + 4] = MAGIC_BYTES
    return bytes(data)


PAYLOADS = {
    **{f"len{n}": with_magic(n, []) for n in range(8)},
    **{f"len{n}_magic_aligned0": with_magic(n, [0]) for n in range(4, 12)},
    **{f"len{n}_magic_unaligned{a}": with_magic(n, [a]) for n in (7, 8, 9, 10) for a in (1, 2, 3)},
    "magic_only": MAGIC_BYTES,
    "magic_x3": MAGIC_BYTES * 3,
    "magic_at_end_aligned": with_magic(16, [12]),
    "magic_at_end_unaligned": with_magic(17, [13]),
    "magic_aligned_and_unaligned": with_magic(64, [4, 10, 20, 24, 33, 60]),
    "unaligned_then_aligned": with_magic(20, [1, 8]),
    "mixed_then_adjacent_aligned": with_magic(24, [2, 8, 12, 17]),
    "irheader_plus_jpeg": pack_irheader(417.0, 12345) + with_magic(1001, [24 + 96, 24 + 97, 24 + 500], seed=4),
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_round_trip_single(tmp_path, payload):
    data, idx, writer = write_all(tmp_path, [payload])
    assert read_recordio(data) == [payload]
    assert len(data) % 4 == 0 and writer.bytes == len(data)
    aligned = [i for i in range(0, len(payload) & ~3, 4) if payload[i : i + 4] == MAGIC_BYTES]
    assert writer.splits == len(aligned)
    # Every aligned word of the file that is the magic starts a part header: readers can resync on it.
    headers = [i for i in range(0, len(data), 4) if data[i : i + 4] == MAGIC_BYTES]
    assert len(headers) == len(aligned) + 1


def test_round_trip_many_with_idx_offsets(tmp_path):
    rng = random.Random(5)
    payloads = list(PAYLOADS.values())
    for n in range(200):
        positions = sorted(rng.sample(range(max(1, n * 3 - 4)), k=min(3, max(0, n * 3 - 4))))
        payloads.append(with_magic(n * 3, positions, seed=n))
    keys = list(range(1000, 1000 + len(payloads)))
    rng.shuffle(keys)  # im2rec writes idx in .lst order, which is shuffled
    data, idx, writer = write_all(tmp_path, payloads, keys)

    assert read_recordio(data) == payloads
    assert writer.records == len(payloads) == len(idx)
    offsets = []
    for line, key, payload in zip(idx, keys, payloads, strict=True):
        k, offset = line.rstrip("\n").split("\t")
        assert int(k) == key
        offsets.append(int(offset))
        magic, lrec = struct.unpack_from("<II", data, int(offset))
        assert magic == MAGIC and lrec >> 29 in (0, 1), f"offset {offset} is not a record start"
        assert read_recordio(data, int(offset), limit=1) == [payload]
    assert offsets[0] == 0 and offsets == sorted(set(offsets))


def test_too_large_record_is_refused(tmp_path):
    class Huge(bytes):
        def __len__(self) -> int:
            return 1 << 29

    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer, pytest.raises(ValueError, match="below 2\\*\\*29"):
        writer.write(0, Huge())


def test_pack_irheader():
    header = pack_irheader(417.0, 12345)
    assert len(header) == IRHEADER_SIZE == struct.calcsize("IfQQ")
    assert header == struct.pack("IfQQ", 0, 417.0, 12345, 0)  # mx.recordio.pack(IRHeader(0, label, id, 0), s)
    assert struct.unpack("<IfQQ", pack_irheader(2.5, 7, id2=9, flag=1)) == (1, 2.5, 7, 9)


def test_lst_line_like_im2rec():
    assert lst_line(3, 417, "n01440764/n01440764_10026.JPEG") == "3\t417.000000\tn01440764/n01440764_10026.JPEG\n"
    assert lst_line(0, 0.0, "a.jpg") == "0\t0.000000\ta.jpg\n"


def im2rec_make_list(root: str) -> str:
    """mxnet tools/im2rec.py ``--list --recursive`` (shuffle on, 1 chunk, train ratio 1), transcribed."""
    exts = [".jpeg", ".jpg", ".png"]

    def list_image(root, recursive, exts):
        i = 0
        cat = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            files.sort()
            for fname in files:
                fpath = os.path.join(path, fname)
                suffix = os.path.splitext(fname)[1].lower()
                if os.path.isfile(fpath) and (suffix in exts):
                    if path not in cat:
                        cat[path] = len(cat)
                    yield (i, os.path.relpath(fpath, root), cat[path])
                    i += 1

    image_list = list(list_image(root, True, exts))
    state = random.getstate()
    try:
        random.seed(100)
        random.shuffle(image_list)
    finally:
        random.setstate(state)
    out = ""
    for item in image_list:
        line = "%d\t" % item[0]  # noqa: UP031 - im2rec's own formatting
        for j in item[2:]:
            line += "%f\t" % j  # noqa: UP031 - im2rec's own formatting
        line += "%s\n" % item[1]  # noqa: UP031 - im2rec's own formatting
        out += line
    return out


def test_im2rec_list_reproduces_im2rec(tmp_path):
    rng = random.Random(1)
    wnids = sorted(f"n{rng.randrange(10**8):08d}" for _ in range(7))
    entries = []
    for label, wnid in enumerate(wnids):
        (tmp_path / wnid).mkdir()
        for n in sorted(rng.sample(range(10**5), rng.randrange(3, 30))):
            name = f"{wnid}_{n}.JPEG"
            (tmp_path / wnid / name).write_bytes(b"")
            entries.append((f"{wnid}/{name}", label))
    entries.sort()  # sorted dirs, then sorted files: the walk order when names sort like this
    (tmp_path / wnids[0] / "notes.txt").write_text("ignored by im2rec")

    rows = im2rec_list(entries)
    assert "".join(lst_line(idx, label, relpath) for idx, relpath, label in rows) == im2rec_make_list(str(tmp_path))
    assert sorted(rows) == [(i, p, label) for i, (p, label) in enumerate(entries)]


def test_im2rec_list_without_shuffle_and_leaves_global_rng_alone():
    state = random.getstate()
    assert im2rec_list([("a/x.jpg", 0), ("b/y.jpg", 1)], shuffle=False) == [(0, "a/x.jpg", 0), (1, "b/y.jpg", 1)]
    im2rec_list([(str(i), 0) for i in range(100)])
    assert random.getstate() == state


def test_im2rec_list_matches_global_seeded_shuffle():
    entries = [(f"c{i // 50}/{i}.jpg", i // 50) for i in range(1000)]
    expected = [(i, p, label) for i, (p, label) in enumerate(entries)]
    state = random.getstate()
    try:
        random.seed(100)
        random.shuffle(expected)
    finally:
        random.setstate(state)
    assert im2rec_list(entries) == expected
