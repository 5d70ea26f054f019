"""extract_archive(): atomic, safe extraction of tar / tar.gz / gz."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ArchiveError, UnsafeArchiveError
from imagenet_ops.core.extract import archive_kind, extract_archive
from imagenet_ops.testing.samples import write_tar

MEMBERS = {"synsets.txt": b"n01440764\nn01443537\n", "sub/dir/val.txt": b"ILSVRC2012_val_00000001.JPEG 1\n", "empty": b""}


def tar_with(path: Path, *infos: tarfile.TarInfo) -> Path:
    """A .tar.gz holding one harmless file, then ``infos`` (data-less members)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("good.txt")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"ok\n"))
        for info in infos:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.tar", "tar"), ("a.tar.gz", "tar"), ("A.TGZ", "tar"), ("a.tar.xz", "tar"), ("a.txt.gz", "gz")],
)
def test_archive_kind(name: str, kind: str) -> None:
    assert archive_kind(Path(name)) == kind


def test_archive_kind_refuses_unknown() -> None:
    with pytest.raises(ArchiveError, match=r"a\.zip: unsupported archive type"):
        archive_kind(Path("a.zip"))


@pytest.mark.parametrize("name", ["x.tar", "x.tar.gz", "x.tgz"])
def test_tar_round_trip_is_atomic(tmp_path: Path, name: str) -> None:
    archive = write_tar(tmp_path / "in" / name, MEMBERS)
    dest = tmp_path / "out" / "extracted"

    result = extract_archive(archive=archive, dest=dest)

    assert result.path == str(dest)
    assert (result.files, result.bytes) == (len(MEMBERS), sum(len(b) for b in MEMBERS.values()))
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == MEMBERS
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["extracted"]  # no temp dir left beside it


def test_existing_dest_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "extracted"
    (dest / "stale").mkdir(parents=True)
    (dest / "stale" / "old.txt").write_text("from an earlier run")
    (dest / "synsets.txt").write_text("old content")

    extract_archive(archive=write_tar(tmp_path / "a.tar.gz", MEMBERS), dest=dest)

    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(MEMBERS)
    assert (dest / "synsets.txt").read_bytes() == MEMBERS["synsets.txt"]
    assert leftovers(tmp_path) == []


def test_plain_gz_becomes_a_file(tmp_path: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(10_000))
    archive = tmp_path / "val_map.txt.gz"
    archive.write_bytes(gzip.compress(data))
    dest = tmp_path / "out" / "val_map.txt"

    result = extract_archive(archive=archive, dest=dest)

    assert dest.read_bytes() == data
    assert (result.path, result.files, result.bytes) == (str(dest), 1, len(data))
    assert [p.name for p in dest.parent.iterdir()] == ["val_map.txt"]


@pytest.mark.parametrize(
    ("unsafe", "member_name"),
    [
        pytest.param(member("../x"), "../x", id="dotdot"),
        pytest.param(member("sub/../../x"), "sub/../../x", id="nested-dotdot"),
        pytest.param(member("/etc/x"), "/etc/x", id="absolute"),
        pytest.param(member("evil", tarfile.SYMTYPE, "../../outside"), "evil", id="symlink-escapes"),
        pytest.param(member("evil", tarfile.SYMTYPE, "/etc/passwd"), "evil", id="absolute-symlink"),
        pytest.param(member("evil", tarfile.LNKTYPE, "../outside"), "evil", id="hardlink-escapes"),
        pytest.param(member("dev", tarfile.CHRTYPE), "dev", id="char-device"),
        pytest.param(member("blk", tarfile.BLKTYPE), "blk", id="block-device"),
        pytest.param(member("pipe", tarfile.FIFOTYPE), "pipe", id="fifo"),
    ],
)
def test_unsafe_member_is_refused(tmp_path: Path, unsafe: tarfile.TarInfo, member_name: str) -> None:
    archive = tar_with(tmp_path / "in" / "bad.tar.gz", unsafe)
    dest = tmp_path / "out" / "sub" / "extracted"

    with pytest.raises(UnsafeArchiveError, match=r"bad\.tar\.gz: member '" + member_name.replace(".", r"\.")) as info:
        extract_archive(archive=archive, dest=dest)

    assert str(archive) in str(info.value)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the temporary folder is gone too
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "x").exists()


def test_unsafe_member_leaves_an_existing_dest_alone(tmp_path: Path) -> None:
    dest = tmp_path / "extracted"
    dest.mkdir()
    (dest / "keep.txt").write_text("previous good extraction")

    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive=tar_with(tmp_path / "bad.tgz", member("../x")), dest=dest)

    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert leftovers(tmp_path) == []


def _corrupt(kind: str, tmp_path: Path) -> Path:
    good = write_tar(tmp_path / "good.tar.gz", MEMBERS).read_bytes()
    cases = {
        "garbage.tar.gz": b"this is not an archive" * 20,
        "truncated.tar.gz": good[: len(good) // 2],
        "empty.tar": b"",
        "garbage.gz": b"not gzip at all",
        "truncated.gz": gzip.compress(bytes(range(256)) * 4000)[:500],
        "bad-crc.gz": _stored_gz(b"abc" * 1000, flip=b"abc"),
    }
    path = tmp_path / kind
    path.write_bytes(cases[kind])
    return path


def _stored_gz(data: bytes, *, flip: bytes) -> bytes:
    """Gzip without compression, then change one content byte: the deflate stream stays valid, the CRC does not."""
    raw = bytearray(gzip.compress(data, compresslevel=0, mtime=0))
    raw[raw.find(flip)] ^= 0x20
    return bytes(raw)


@pytest.mark.parametrize("kind", ["garbage.tar.gz", "truncated.tar.gz", "empty.tar", "garbage.gz", "truncated.gz", "bad-crc.gz"])
def test_corrupt_archive_is_an_archive_error(tmp_path: Path, kind: str) -> None:
    archive = _corrupt(kind, tmp_path)
    dest = tmp_path / "out" / "extracted"

    with pytest.raises(ArchiveError, match=f"{re.escape(str(archive))}: not a readable"):
        extract_archive(archive=archive, dest=dest)

    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


# Bug: tarfile treats an invalid header after the first member as the end of the archive, and
# _untar never reads the compressed stream to its end, so these corrupt archives "extract" fine.
@pytest.mark.parametrize("case", ["bad-second-header.tar", "bad-crc.tar.gz"])
def test_corruption_after_the_first_member_is_an_archive_error(tmp_path: Path, case: str) -> None:
    tar = bytearray(write_tar(tmp_path / "good.tar", MEMBERS).read_bytes())
    if case == "bad-second-header.tar":
        second = 512 + 512  # header 1, data of synsets.txt (< 512 bytes), then header 2
        tar[second + 148 : second + 156] = b"0000000\0"  # wrong header checksum
        data = bytes(tar)
    else:
        data = _stored_gz(bytes(tar), flip=b"n01440764")
    archive = tmp_path / case
    archive.write_bytes(data)

    with pytest.raises(ArchiveError):
        extract_archive(archive=archive, dest=tmp_path / "extracted")


def _bomb(path: Path, expanded: int) -> Path:
    """A small archive of zeros that expands to ``expanded`` bytes (tar.gz or plain .gz by name)."""
    if path.name.endswith(".tar.gz"):
        info = tarfile.TarInfo("zeros.bin")
        info.size = expanded
        with tarfile.open(path, "w:gz") as tar:
            tar.addfile(info, io.BytesIO(bytes(expanded)))
    else:
        path.write_bytes(gzip.compress(bytes(expanded), compresslevel=9))
    return path


@pytest.mark.parametrize("name", ["bomb.tar.gz", "bomb.gz"])
def test_a_decompression_bomb_is_refused_by_ratio_and_leaves_nothing(tmp_path: Path, name: str) -> None:
    # Regression (issue 10 item 5): a 1.7 MB .tar.gz that expands to 1.5 GB was extracted and published.
    archive = _bomb(tmp_path / name, 80 << 20)  # ~80 KB of gzip
    with pytest.raises(UnsafeArchiveError, match=rf"{re.escape(str(archive))}: expands to more than 100x its size"):
        extract_archive(archive=archive, dest=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "a partial extraction was left behind"


@pytest.mark.parametrize("name", ["big.tar.gz", "big.gz"])
def test_the_absolute_cap_is_enforced(tmp_path: Path, name: str) -> None:
    archive = _bomb(tmp_path / name, 3 << 20)
    with pytest.raises(UnsafeArchiveError, match=r"expands to more than 2.1 MB; refusing"):
        extract_archive(archive=archive, dest=tmp_path / "out", max_bytes=2 << 20)
    assert not (tmp_path / "out").exists()


def test_well_compressed_small_archives_are_not_bombs(tmp_path: Path) -> None:
    # Below the 64 MiB floor the ratio is not checked: text like val.txt compresses far more than 100x.
    archive = _bomb(tmp_path / "text.tar.gz", 8 << 20)
    assert extract_archive(archive=archive, dest=tmp_path / "out").bytes == 8 << 20
