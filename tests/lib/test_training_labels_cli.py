"""``python -m imagenet_ops training-data``: a validation wnid that is not a train class is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from imagenet_ops.testing.samples import make_class_tars, make_val_tar

WNIDS = ["n01440764", "n01443537", "n01484850"]
STRAY = "n01443000"  # sorts between the first two train classes


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagenet_ops", "training-data", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("labels-cli")
    make_class_tars(root / "train", wnids=WNIDS, per_class=2, width=24, height=16)
    make_val_tar(root / "ILSVRC2012_img_val.tar", count=4, width=24, height=16)
    labels = [WNIDS[0], WNIDS[2], STRAY, WNIDS[1]]
    (root / "imagenet_2012_validation_synset_labels.txt").write_text("".join(w + "\n" for w in labels))
    synsets = sorted({*WNIDS, STRAY})
    (root / "aux").mkdir()
    (root / "aux" / "synsets.txt").write_text("".join(w + "\n" for w in synsets))
    (root / "aux" / "val.txt").write_text(
        "".join(f"ILSVRC2012_val_{i:08d}.JPEG {synsets.index(w)}\n" for i, w in enumerate(labels, 1))
    )
    return {"root": root, "train": root / "train", "val": root / "ILSVRC2012_img_val.tar"}


@pytest.mark.parametrize("implementation", ["_reference", "_nvidia"])
@pytest.mark.parametrize("source", ["labels", "aux"])
def test_a_validation_wnid_that_is_not_a_train_class_fails_naming_file_and_line(inputs, tmp_path, implementation, source):
    # Regression (issue 10 item 4): a validation wnid that is not a train class shifted every later train label.
    root = inputs["root"]
    if source == "labels":
        given, named = (
            ["--validation-labels", str(root / "imagenet_2012_validation_synset_labels.txt")],
            "imagenet_2012_validation_synset_labels.txt",
        )
    else:
        given, named = ["--aux", str(root / "aux")], "aux/val.txt"
    out = tmp_path / "out"
    proc = _cli(
        "--variations", implementation, "--train", str(inputs["train"]), "--validation", str(inputs["val"]), *given,
        "--train-shards", "1", "--validation-shards", "1", "--workers", "1", "--output", str(out),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout == ""
    expected = (
        f"{root / named}: line 3 gives ILSVRC2012_val_00000003.JPEG the wnid {STRAY}, which is not one of the 3 train classes"
    )
    assert expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "manifest.json").exists()


def test_without_that_image_the_same_inputs_convert(inputs, tmp_path):
    # The stray wnid labels image 3 only; validation images 1, 2 and 4 convert with the train classes' labels.
    val = tmp_path / "val"
    val.mkdir()
    with tarfile.open(inputs["val"]) as tar:
        for member in tar.getmembers():
            if member.name != "ILSVRC2012_val_00000003.JPEG":
                (val / member.name).write_bytes(tar.extractfile(member).read())
    labels = inputs["root"] / "imagenet_2012_validation_synset_labels.txt"
    proc = _cli(
        "--variations", "_nvidia", "--train", str(inputs["train"]), "--validation", str(val), "--validation-labels", str(labels),
        "--workers", "1", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("\t") for line in (tmp_path / "out" / "train.lst").read_text().splitlines()]
    assert {rel.split("/")[0]: float(label) for _, label, rel in rows} == {w: float(i) for i, w in enumerate(WNIDS)}
    rows = [line.split("\t") for line in (tmp_path / "out" / "val.lst").read_text().splitlines()]
    assert {rel.split("/")[0]: float(label) for _, label, rel in rows} == {w: float(i) for i, w in enumerate(WNIDS)}
