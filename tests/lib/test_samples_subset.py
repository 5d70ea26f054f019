"""Sample subsets for the training-data converters: every validation class is a train class."""

from __future__ import annotations

import tarfile

import pytest

from imagenet_ops.testing.samples import aux_file_contents, make_val_tar, sample_wnids, training_subset


def test_training_subset_keeps_validation_classes_within_the_train_classes():
    # Regression (issue 10 item 4): the DAG sample took 6 classes but the first 24 validation images (24 classes).
    val_txt = aux_file_contents()["val.txt"].decode()
    wnids = sample_wnids()
    classes, images = training_subset(val_txt, wnids, classes=6, images=24)
    labels = [wnids[int(line.split()[1])] for line in val_txt.splitlines()]
    assert len(classes) == 6 and classes == sorted(classes)
    assert len(images) == 24 and images == sorted(images) and images[0] == 1
    assert {labels[i - 1] for i in images} == set(classes)
    assert [i for i in range(1, images[-1] + 1) if labels[i - 1] in classes] == images  # the first ones, none skipped


def test_training_subset_says_when_val_txt_is_too_small():
    with pytest.raises(ValueError, match="val.txt has 2 classes and 3 images of them; 3 and 3 wanted"):
        training_subset("a.JPEG 0\nb.JPEG 1\nc.JPEG 0\n", ["n01", "n02"], classes=3, images=3)


def test_make_val_tar_by_indices_has_the_same_images(tmp_path):
    def members(path):
        with tarfile.open(path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}

    full = members(make_val_tar(tmp_path / "full.tar", count=5, width=16, height=12))
    some = members(make_val_tar(tmp_path / "some.tar", indices=[4, 2], width=16, height=12))
    assert some == {n: full[n] for n in ("ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000004.JPEG")}
    assert list(some) == sorted(some)
    with pytest.raises(ValueError, match="give count or indices"):
        make_val_tar(tmp_path / "x.tar", count=2, indices=[1])
