"""``python -m imagenet_ops training-data`` / ``preprocessed`` with a JPEG corrupted mid-scan (issue 10 item 4).

The CLI runs as a real process, as a user runs it. The file's header is intact (the old header
check passed it); TensorFlow's ``decode_jpeg`` fails on it and OpenCV returns part of an image.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from jpeg_damage import stray_marker

from imagenet_ops.testing.preprocess_samples import plain_images, val_map_text, val_name, write_images_tar
from imagenet_ops.testing.samples import imagenet_like_jpeg, make_train_tar, make_val_tar, sample_wnids, val_synset_labels

WNIDS = sample_wnids(2)
BAD = f"{WNIDS[1]}_2.JPEG"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagenet_ops", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def train_tar(tmp_path: Path) -> Path:
    """An ILSVRC2012_img_train.tar of 2 classes x 3 images, one of them corrupted mid-scan."""
    bad = stray_marker(imagenet_like_jpeg(11, width=96, height=72))
    return make_train_tar(tmp_path / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=3, width=96, height=72, files={BAD: bad})


@pytest.mark.parametrize(("variations", "workers"), [("_reference", "1"), ("_reference", "2"), ("_nvidia", "1")])
def test_training_data_refuses_the_corrupt_jpeg_naming_tar_and_member(
    train_tar: Path, tmp_path: Path, variations: str, workers: str
) -> None:
    # Regression (issue 10 item 4): the corrupt file was packed with rc 0; decode_jpeg failed at training time.
    out = tmp_path / "out"
    done = run_cli(
        "training-data", "--variations", variations, "--train", str(train_tar), "--train-shards", "2",
        "--validation-shards", "0", "--workers", workers, "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"{train_tar}: {WNIDS[1]}/{BAD}: corrupt JPEG: a full decode fails" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_training_data_with_a_matching_user_md5_still_decodes_fully(train_tar: Path, tmp_path: Path) -> None:
    # The fast path is for the published ImageNet md5 only: a matching --train-md5 proves the bytes are the user's.
    md5 = hashlib.md5(train_tar.read_bytes(), usedforsecurity=False).hexdigest()
    done = run_cli(
        "training-data", "--train", str(train_tar), "--train-shards", "1", "--validation-shards", "0",
        "--check-md5", "--train-md5", md5, "--workers", "1", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"md5 {md5} OK" in done.stderr
    assert "plan: 0 of 1 units come only from tars whose md5 matched the published ImageNet md5" in done.stderr
    assert f"{WNIDS[1]}/{BAD}: corrupt JPEG" in done.stderr


def test_training_data_of_intact_images_is_fully_decoded_and_published(tmp_path: Path) -> None:
    train = make_train_tar(tmp_path / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=2, width=96, height=72)
    val = make_val_tar(tmp_path / "ILSVRC2012_img_val.tar", count=3, width=64, height=48)
    labels = tmp_path / "labels.txt"
    labels.write_text(val_synset_labels(3, WNIDS))
    out = tmp_path / "out"
    done = run_cli(
        "training-data", "--train", str(train), "--validation", str(val), "--validation-labels", str(labels),
        "--train-shards", "2", "--validation-shards", "1", "--workers", "1", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("fully decoded") == 3 and "fast path" not in done.stderr
    assert (out / "manifest.json").exists()


@pytest.fixture
def val_source(tmp_path: Path) -> tuple[Path, Path]:
    """A validation tar of 4 images, the 2nd corrupted mid-scan, and its val_map.txt."""
    images = plain_images(4, width=96, height=72)
    images[val_name(2)] = stray_marker(images[val_name(2)])
    labels = tmp_path / "val_map.txt"
    labels.write_text(val_map_text(sorted(images)))
    return write_images_tar(tmp_path / "ILSVRC2012_img_val.tar", images), labels


def test_preprocessed_refuses_the_corrupt_jpeg_naming_tar_and_member(val_source: tuple[Path, Path], tmp_path: Path) -> None:
    # Regression (issue 10 item 4): OpenCV decoded part of it, a garbage .npy was published and the run said "0 bad".
    tar, labels = val_source
    out = tmp_path / "out"
    done = run_cli(
        "preprocessed", "--images", str(tar), "--labels", str(labels), "--size", "4", "--workers", "2", "--output", str(out)
    )
    assert done.returncode == 1, done.stderr
    assert f"{tar}: {val_name(2)}: corrupt JPEG: a full decode fails" in done.stderr
    assert "set skip_bad_images" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "manifest.json").exists()


def test_preprocessed_skip_bad_images_lists_the_corrupt_jpeg(val_source: tuple[Path, Path], tmp_path: Path) -> None:
    tar, labels = val_source
    out = tmp_path / "out"
    done = run_cli(
        "preprocessed", "--images", str(tar), "--labels", str(labels), "--size", "4", "--skip-bad-images",
        "--workers", "1", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bad = (out / "bad_images.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].startswith(f"{val_name(2)}\t{tar}: {val_name(2)}: corrupt JPEG")
    assert not (out / f"{val_name(2)}.npy").exists()
    assert sorted(p.name for p in out.glob("*.npy")) == [f"{val_name(i)}.npy" for i in (1, 3, 4)]
    assert '"CM_DATASET_SIZE": "3"' in done.stdout
