"""Images listed and read straight from the ImageNet tar layouts, in an order no filesystem can change."""

from __future__ import annotations

import io
import tarfile

import pytest

from imagenet_ops.core.errors import ArchiveError, ValidationError
from imagenet_ops.imagenet.images import ImageReader, ImageRef, list_train_images, list_val_images
from imagenet_ops.testing.samples import make_class_tars, make_train_tar, make_val_tar, write_tar

WNIDS = ["n01440764", "n01443537", "n02105855"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same 3-class train set as an outer tar, a folder of class tars, and train/<wnid>/ folders."""
    root = tmp_path_factory.mktemp("layouts")
    kwargs = {"wnids": WNIDS, "per_class": 3, "width": 64, "height": 48}
    outer = make_train_tar(root / "ILSVRC2012_img_train.tar", **kwargs)
    class_tars = root / "class_tars"
    make_class_tars(class_tars, **kwargs)
    folders = root / "folders" / "train"
    for tar_path in sorted(class_tars.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            # Create files in reverse order: the listing must not depend on directory order.
            for m in reversed(tar.getmembers()):
                target = folders / tar_path.stem / m.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
    return {"outer": outer, "class_tars": class_tars, "folders": root / "folders"}


def _read_all(refs: list[ImageRef]) -> dict[str, bytes]:
    with ImageReader() as reader:
        return {ref.relpath: data for ref, data in reader.read_many(refs)}


def test_three_train_layouts_give_the_same_sorted_images_and_bytes(layouts):
    results = {name: list_train_images(path) for name, path in layouts.items()}
    relpaths = [r.relpath for r in results["outer"]]
    assert relpaths == sorted(relpaths) and len(relpaths) == 9
    assert relpaths[0] == "n01440764/n01440764_1.JPEG"
    assert all([r.relpath for r in refs] == relpaths for refs in results.values())
    contents = [_read_all(refs) for refs in results.values()]
    assert contents[0] == contents[1] == contents[2]
    assert all(data[:2] == b"\xff\xd8" for data in contents[0].values())


def test_outer_tar_refs_point_into_the_outer_tar_by_offset(layouts):
    refs = list_train_images(layouts["outer"])
    assert {r.container for r in refs} == {str(layouts["outer"])}
    assert len({r.offset for r in refs}) == len(refs) and all(r.offset % 512 == 0 for r in refs)
    assert ImageRef.from_list(refs[4].as_list()) == refs[4]
    assert refs[4].wnid == "n01443537" and refs[4].name == "n01443537_2.JPEG"


def test_validation_from_tar_and_folder(tmp_path):
    tar = make_val_tar(tmp_path / "ILSVRC2012_img_val.tar", count=5, width=32, height=32)
    folder = tmp_path / "val"
    folder.mkdir()
    with tarfile.open(tar) as t:
        for m in t.getmembers():
            (folder / m.name).write_bytes(t.extractfile(m).read())
    (folder / "notes.txt").write_text("not an image")
    from_tar, from_folder = list_val_images(tar), list_val_images(folder)
    assert [r.relpath for r in from_tar] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)]
    assert [r.relpath for r in from_folder] == [r.relpath for r in from_tar]
    assert _read_all(from_tar) == _read_all(from_folder)


def test_an_empty_class_tar_is_named(tmp_path):
    make_class_tars(tmp_path, wnids=WNIDS[:1], per_class=1, width=16, height=16)
    write_tar(tmp_path / "n09999999.tar", {"README": b"no images"}, gz=False)
    with pytest.raises(ValidationError, match="n09999999.tar holds no images"):
        list_train_images(tmp_path)


def test_a_compressed_tar_is_refused_with_the_reason(tmp_path):
    make_class_tars(tmp_path / "c", wnids=WNIDS[:1], per_class=1, width=16, height=16)
    gz = write_tar(
        tmp_path / "ILSVRC2012_img_train.tar", {"n01440764.tar": (tmp_path / "c" / "n01440764.tar").read_bytes()}, gz=True
    )
    with pytest.raises(ArchiveError, match="not an uncompressed tar"):
        list_train_images(gz)


def test_an_outer_tar_member_that_is_not_a_class_tar_is_named(tmp_path):
    outer = write_tar(tmp_path / "ILSVRC2012_img_train.tar", {"n01440764_1.JPEG": b"\xff\xd8\xff"}, gz=False)
    with pytest.raises(ValidationError, match="member n01440764_1.JPEG is not a <wnid>.tar"):
        list_train_images(outer)


@pytest.mark.parametrize("lister", [list_train_images, list_val_images])
def test_a_missing_source_says_what_was_expected(tmp_path, lister):
    with pytest.raises(ValidationError, match="not found \\(expected"):
        lister(tmp_path / "nowhere")


def test_a_truncated_container_is_an_archive_error(tmp_path):
    path = tmp_path / "x.JPEG"
    path.write_bytes(b"\xff\xd8" + b"\0" * 10)
    with ImageReader() as reader, pytest.raises(ArchiveError, match="x.JPEG is truncated"):
        reader.read(ImageRef("x.JPEG", str(path), 0, 100))


def test_read_into_fills_the_buffer_and_a_truncated_container_is_an_archive_error(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"head" + bytes(range(200)))
    buffer = memoryview(bytearray(300))
    with ImageReader() as reader:
        reader.read_into(ImageRef("n01/a.JPEG", str(path), 4, 200), buffer[50:250])
        assert bytes(buffer[50:250]) == bytes(range(200)) == reader.read(ImageRef("n01/a.JPEG", str(path), 4, 200))
        with pytest.raises(ArchiveError, match=r"x\.tar: n01/b\.JPEG is truncated \(4 of 10 bytes at offset 200\)"):
            reader.read_into(ImageRef("n01/b.JPEG", str(path), 200, 10), buffer[:10])


def test_reader_keeps_a_bounded_number_of_files_open(tmp_path):
    refs = []
    for i in range(5):
        p = tmp_path / f"{i}.JPEG"
        p.write_bytes(bytes([i]) * 4)
        refs.append(ImageRef(p.name, str(p), 0, 4))
    reader = ImageReader(max_open=2)
    assert [data for _, data in reader.read_many(refs)] == [bytes([i]) * 4 for i in range(5)]
    assert len(reader._open) == 2
    reader.close()


@pytest.mark.parametrize(
    ("fmt", "long_name", "walked_here"),
    [
        (tarfile.GNU_FORMAT, False, True),  # ImageNet's tars: GNU headers, short names
        (tarfile.GNU_FORMAT, True, False),  # GNU long-name header: left to tarfile
        (tarfile.USTAR_FORMAT, True, True),  # POSIX prefix field
        (tarfile.PAX_FORMAT, True, False),  # pax headers: left to tarfile
    ],
)
def test_header_walk_agrees_with_tarfile(tmp_path, fmt, long_name, walked_here):
    """The fast header walk finds what tarfile finds, or hands over to tarfile."""
    from imagenet_ops.imagenet.images import _tar_image_refs, _walk_headers

    path = tmp_path / "t.tar"
    middle = "d" * 90 + "/" + "e" * 60 + "/n01440764_2.JPEG" if long_name else "n01440764/n01440764_2.JPEG"
    names = ["n01440764_1.JPEG", middle, "n01440764_3.JPEG", "notes.txt"]
    with tarfile.open(path, "w", format=fmt) as tar:
        for i, n in enumerate(names):
            data = bytes([i]) * (1000 + 700 * i)
            info = tarfile.TarInfo(n)
            info.size = len(data)
            if fmt == tarfile.GNU_FORMAT:
                info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    with open(path, "rb") as fh:
        walked = _walk_headers(fh, 0, path.stat().st_size)
        refs = _tar_image_refs(fh, 0, path.stat().st_size, str(path), "", "t.tar")
    assert walked == (expected if walked_here else None)
    assert [(r.name, r.offset, r.size) for r in refs] == [
        (n.rsplit("/", 1)[-1], o, s) for n, o, s in expected if n.endswith(".JPEG")
    ]


@pytest.mark.parametrize("name", ["n01440764.tar.tar", "cats.tar", "n0144076.tar"])
def test_a_class_tar_not_named_like_a_wnid_is_refused(tmp_path, name):
    # Regression (issue 10 item 4): n01440764.tar.tar was taken as a class and got label 15 instead of 7.
    make_class_tars(tmp_path / "c", wnids=WNIDS[:1], per_class=1, width=16, height=16)
    data = (tmp_path / "c" / "n01440764.tar").read_bytes()
    (tmp_path / "c" / name).write_bytes(data)
    with pytest.raises(ValidationError, match=r"is not a class name like n01440764"):
        list_train_images(tmp_path / "c")
    outer = write_tar(tmp_path / "ILSVRC2012_img_train.tar", {name: data}, gz=False)
    with pytest.raises(ValidationError, match=r"is not a class name like n01440764"):
        list_train_images(outer)


def test_a_class_folder_not_named_like_a_wnid_is_refused(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "train" / "n01440764" / "a.JPEG").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "train" / "misc").mkdir()
    (tmp_path / "train" / "misc" / "b.JPEG").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(ValidationError, match=r"misc: class folder: 'misc' is not a class name"):
        list_train_images(tmp_path)


def test_an_image_listed_twice_is_refused(tmp_path):
    # Regression (issue 10 item 4): duplicate names in the tars were kept silently.
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 16
    tar = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(tar, "w") as t:
        for _ in range(2):
            info = tarfile.TarInfo("ILSVRC2012_val_00000001.JPEG")
            info.size = len(jpeg)
            t.addfile(info, io.BytesIO(jpeg))
    with pytest.raises(ValidationError, match="validation image ILSVRC2012_val_00000001.JPEG appears more than once"):
        list_val_images(tar)
