"""The shard plan follows the reference converter's contract, reproducibly."""

from __future__ import annotations

import random
import re

import pytest

from imagenet_ops.core.errors import ValidationError
from imagenet_ops.imagenet.images import ImageRef
from imagenet_ops.imagenet.labels import ValLabels, read_wnid_labels, val_labels_from_aux
from imagenet_ops.training.order import (
    PlanItem,
    Shard,
    chunk,
    im2rec_order,
    label_map,
    plan_reference,
    reference_label_map,
)

WNIDS = ["n01440764", "n01443537", "n02105855", "n15075141"]


def _train_refs(per_class: int = 3) -> list[ImageRef]:
    return [ImageRef(f"{w}/{w}_{k}.JPEG", f"/t/{w}.tar", 512 * k, 10) for w in WNIDS for k in range(1, per_class + 1)]


def _val_refs(n: int) -> list[ImageRef]:
    return [ImageRef(f"ILSVRC2012_val_{i:08d}.JPEG", "/v.tar", 512 * i, 10) for i in range(1, n + 1)]


@pytest.mark.parametrize(("n", "shards", "first", "last"), [(1_281_167, 1024, 1252, 371), (50_000, 128, 391, 343)])
def test_contiguous_chunks_match_the_real_shard_sizes(n, shards, first, last):
    sizes = [len(s.items) for s in chunk(list(range(n)), "train", shards)]
    assert sizes[:-1] == [first] * (shards - 1) and sizes[-1] == last and sum(sizes) == n


def test_small_inputs_leave_trailing_shards_empty_but_present():
    shards = chunk(list(range(5)), "validation", 4)
    assert [len(s.items) for s in shards] == [2, 2, 1, 0]
    assert [s.name for s in shards] == [f"validation-0000{k}-of-00004" for k in range(4)]


def test_the_train_permutation_is_the_reference_one():
    # tfrecords_spec.md 1.6: first 8 indices of random.seed(0); random.shuffle(list(range(1281167))).
    order = list(range(1_281_167))
    random.Random(0).shuffle(order)
    assert order[:8] == [1082000, 444988, 795600, 317966, 440284, 71498, 65702, 1213218]


def test_labels_are_1_based_over_sorted_wnids():
    assert label_map(set(reversed(WNIDS))) == {"n01440764": 1, "n01443537": 2, "n02105855": 3, "n15075141": 4}


def test_plan_is_the_same_whatever_order_the_files_were_listed_in():
    refs = _train_refs()
    labels = [WNIDS[i % 4] for i in range(6)]
    a = plan_reference(train=refs, validation=_val_refs(6), val_labels=labels, train_shards=5, validation_shards=2)
    shuffled = refs[:]
    random.Random(7).shuffle(shuffled)
    b = plan_reference(
        train=shuffled, validation=list(reversed(_val_refs(6))), val_labels=labels, train_shards=5, validation_shards=2
    )
    assert [s.as_dict() for s in a] == [s.as_dict() for s in b]
    assert [s.name for s in a] == [f"train-0000{k}-of-00005" for k in range(5)] + [
        "validation-00000-of-00002",
        "validation-00001-of-00002",
    ]
    train_items = [i for s in a if s.split == "train" for i in s.items]
    assert sorted(i.ref.relpath for i in train_items) == sorted(r.relpath for r in refs)
    assert all(i.label == label_map(set(WNIDS))[i.synset] and i.ref.wnid == i.synset for i in train_items)
    val = [i for s in a if s.split == "validation" for i in s.items]
    assert [i.ref.name for i in val] == [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, 7)]
    assert [i.synset for i in val] == labels
    assert Shard.from_dict(a[0].as_dict()) == a[0] and PlanItem.from_list(val[0].as_list()) == val[0]


def test_a_split_can_be_left_out():
    only_val = plan_reference(train=[], validation=_val_refs(3), val_labels=WNIDS[:3], train_shards=4, validation_shards=1)
    assert [s.split for s in only_val] == ["validation"]
    no_val = plan_reference(
        train=_train_refs(1), validation=_val_refs(3), val_labels=WNIDS[:3], train_shards=2, validation_shards=0
    )
    assert {s.split for s in no_val} == {"train"}


def test_labels_shorter_than_images_name_both():
    with pytest.raises(ValidationError, match="labels hold 2 lines but image ILSVRC2012_val_00000003.JPEG needs line 3"):
        plan_reference(train=[], validation=_val_refs(3), val_labels=WNIDS[:2], train_shards=0, validation_shards=1)


def test_a_validation_file_with_another_name_is_refused():
    odd = [ImageRef("holiday.JPEG", "/v", 0, 1)]
    with pytest.raises(ValidationError, match="holiday.JPEG is not named ILSVRC2012_val"):
        plan_reference(train=[], validation=odd, val_labels=WNIDS, train_shards=0, validation_shards=1)


def test_val_labels_file_and_aux_artifact_give_the_same_mapping(tmp_path):
    (tmp_path / "synset_labels.txt").write_text("n02105855\nn01440764\nn15075141\n")
    (tmp_path / "synsets.txt").write_text("\n".join(WNIDS) + "\n")
    (tmp_path / "val.txt").write_text(
        "ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000002.JPEG 0\nILSVRC2012_val_00000003.JPEG 3\n"
    )
    assert read_wnid_labels(tmp_path / "synset_labels.txt") == val_labels_from_aux(tmp_path / "val.txt", tmp_path / "synsets.txt")
    (tmp_path / "bad.txt").write_text("n01440764\nnot-a-wnid\n")
    with pytest.raises(ValidationError, match="line 2 'not-a-wnid'"):
        read_wnid_labels(tmp_path / "bad.txt")


def test_im2rec_order_is_sorted_walk_labels_then_seed_100_shuffle():
    refs = _train_refs(2)
    order = im2rec_order(list(reversed(refs)))
    expected = [(i, r, WNIDS.index(r.wnid)) for i, r in enumerate(sorted(refs))]
    random.seed(100)
    random.shuffle(expected)
    assert order == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ILSVRC2012_val_00000002.JPEG -1", "label -1 is outside 0..3"),
        ("ILSVRC2012_val_00000002.JPEG 4", "label 4 is outside 0..3"),
        ("ILSVRC2012_val_00000002.JPEG", "has no label; expected '<image name> <label>'"),
        ("ILSVRC2012_val_00000002.JPEG 1 2", "has 3 fields; expected '<image name> <label>'"),
        ("ILSVRC2012_val_00000001.JPEG 1", "ILSVRC2012_val_00000001.JPEG repeats line 1"),
    ],
)
def test_bad_aux_val_lines_are_refused_naming_file_and_line(tmp_path, line, message):
    # Regression (issue 10 item 4): an aux val.txt label of -1 mapped to the last synset, and
    # malformed lines gave tracebacks.
    synsets, val = tmp_path / "synsets.txt", tmp_path / "val.txt"
    synsets.write_text("\n".join(WNIDS) + "\n")
    val.write_text(f"ILSVRC2012_val_00000001.JPEG 0\n{line}\n")
    with pytest.raises(ValidationError, match=rf"val.txt: line 2.*{message}"):
        val_labels_from_aux(val, synsets)


# -- labels come from the train classes (issue 10 item 4) ---------------------------------------


def _labels_file(tmp_path, wnids: list[str]) -> ValLabels:
    path = tmp_path / "imagenet_2012_validation_synset_labels.txt"
    path.write_text("".join(w + "\n" for w in wnids))
    return read_wnid_labels(path)


def test_train_labels_ignore_wnids_of_the_labels_file_that_label_no_given_image(tmp_path):
    # Regression (issue 10 item 4): labels were numbered over train + every labels-file wnid.
    labels = _labels_file(tmp_path, [WNIDS[1], WNIDS[3], "n01000000", "n09999999"])  # images 3, 4 are not given
    shards = plan_reference(train=_train_refs(1), validation=_val_refs(2), val_labels=labels, train_shards=1, validation_shards=1)
    items = [i for s in shards for i in s.items]
    assert {i.synset: i.label for i in items} == label_map(set(WNIDS))


def test_a_validation_wnid_that_is_not_a_train_class_names_the_labels_file_and_line(tmp_path):
    # Regression (issue 10 item 4): a validation wnid that is not a train class shifted every later train label.
    labels = _labels_file(tmp_path, [WNIDS[0], "n01443000", WNIDS[2]])
    with pytest.raises(
        ValidationError,
        match=rf"^{re.escape(str(tmp_path))}/imagenet_2012_validation_synset_labels\.txt: "
        r"line 2 gives ILSVRC2012_val_00000002\.JPEG the wnid n01443000, "
        r"which is not one of the 4 train classes \(n01440764 \.\. n15075141\)",
    ):
        plan_reference(train=_train_refs(1), validation=_val_refs(3), val_labels=labels, train_shards=2, validation_shards=1)


def test_a_validation_wnid_that_is_not_a_train_class_names_the_aux_val_txt_line(tmp_path):
    (tmp_path / "synsets.txt").write_text("\n".join([*WNIDS, "n16000000"]) + "\n")
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 0\nILSVRC2012_val_00000002.JPEG 4\n")
    labels = val_labels_from_aux(tmp_path / "val.txt", tmp_path / "synsets.txt")
    with pytest.raises(
        ValidationError,
        match=rf"^{re.escape(str(tmp_path))}/val\.txt: line 2 gives ILSVRC2012_val_00000002\.JPEG the wnid n16000000",
    ):
        plan_reference(train=_train_refs(1), validation=_val_refs(2), val_labels=labels, train_shards=1, validation_shards=1)


def test_without_train_images_every_wnid_of_the_labels_file_is_numbered(tmp_path):
    # Documented: validation alone keeps the labels a full run gives (the 1000 classes of the full file).
    labels = _labels_file(tmp_path, [WNIDS[3], WNIDS[0], WNIDS[2], WNIDS[1]])
    for train in ([], _train_refs(1)):  # train given but not written (0 shards) is the same
        shards = plan_reference(train=train, validation=_val_refs(2), val_labels=labels, train_shards=0, validation_shards=1)
        assert [(i.synset, i.label) for s in shards for i in s.items] == [(WNIDS[3], 4), (WNIDS[0], 1)]
    assert reference_label_map(train=[], val_labels=labels) == label_map(set(WNIDS))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n01440764\n\nn01443537\n", r"line 2 '' is not a wnid"),
        ("n01440764\nn01443537 n02105855\n", r"line 2 'n01443537 n02105855' is not a wnid"),
        ("\n\n", "empty validation labels file"),
    ],
)
def test_labels_file_lines_are_one_wnid_each(tmp_path, text, message):
    # Regression: the file was split on any whitespace, so a blank or doubled line shifted every later label.
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(ValidationError, match=rf"^{re.escape(str(path))}: {message}"):
        read_wnid_labels(path)


def test_labels_file_tolerates_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(b"n01440764\r\nn01443537\r\n\r\n")
    labels = read_wnid_labels(path, source="s3://bucket/labels.txt")
    assert labels == ["n01440764", "n01443537"] and labels.source == "s3://bucket/labels.txt"


def test_a_binary_labels_file_is_bad_input_named_not_a_traceback(tmp_path):
    # Regression: a tar given as the labels file raised UnicodeDecodeError; the DAG retried it 3 times (4 minutes).
    path = tmp_path / "ILSVRC2012_img_train.tar"
    path.write_bytes(b"\x00" * 1024 + b"\xff\xfe" * 10)
    with pytest.raises(ValidationError, match=r"s3://b/labels\.txt: not UTF-8 text"):
        read_wnid_labels(path, source="s3://b/labels.txt")
    with pytest.raises(ValidationError, match=rf"{path}: not UTF-8 text"):
        read_wnid_labels(path)


def test_a_binary_synsets_file_of_the_aux_artifact_is_named(tmp_path):
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 0\n")
    (tmp_path / "synsets.txt").write_bytes(b"\xff\xd8\xff" * 10)
    with pytest.raises(ValidationError, match="synsets.txt: not UTF-8 text"):
        val_labels_from_aux(tmp_path / "val.txt", tmp_path / "synsets.txt")
