"""This project side by side with the real upstream converters, on generated data.

The upstream sources are vendored verbatim in ``tests/lib/upstream/`` (see its README): the
tensorflow/tpu ``imagenet_to_gcs.py`` the reference implementation follows, and MXNet's
``tools/im2rec.py`` that NVIDIA's ``prepare_imagenet.sh`` runs. Only their own top-level
functions are executed (their imports want absl flags, GCS or MXNet), unchanged.
"""

from __future__ import annotations

import argparse
import ast
import io
import math
import os
import random
import shutil
import struct
import sys
import typing
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.sinks import LocalSink
from imagenet_ops.imagenet.image_header import CMYK_TRAIN_IMAGES, PNG_TRAIN_IMAGES, to_rgb_jpeg
from imagenet_ops.testing.samples import imagenet_like_jpeg, val_synset_labels
from imagenet_ops.training.pipeline import build_training_data
from imagenet_ops.training.variations import resolve_training_config

UPSTREAM = Path(__file__).parent / "upstream"
TPU_DEFS = (
    "LABELS_FILE",
    "TRAINING_SHARDS",
    "VALIDATION_SHARDS",
    "TRAINING_DIRECTORY",
    "VALIDATION_DIRECTORY",
    "_check_or_create_dir",
    "_int64_feature",
    "_bytes_feature",
    "_convert_to_example",
    "_is_png",
    "_is_cmyk",
    "ImageCoder",
    "_process_image",
    "_process_image_files_batch",
    "_process_dataset",
    "convert_to_tf_records",
)
IM2REC_DEFS = ("list_image", "write_list", "make_list", "parse_args")
# Four classes of the reference's CMYK/PNG lists, so the special files sit in their real classes.
WNIDS = ["n01739381", "n02077923", "n02105855", "n02447366"]


def _upstream(filename: str, names: tuple[str, ...], namespace: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Execute the top-level definitions ``names`` of a vendored upstream file in ``namespace``."""
    path = UPSTREAM / filename
    tree = ast.parse(path.read_text(), filename=str(path))
    body = [n for n in tree.body if _defined(n) in names]
    assert sorted(map(_defined, body)) == sorted(names), f"{filename} no longer defines all of {names}"
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def _defined(node: ast.stmt) -> str | None:
    """The name a top-level ``def``/``class`` or a plain ``NAME = constant`` defines."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id if isinstance(node.value, ast.Constant) else None
    return None


@pytest.fixture(scope="module")
def tpu() -> dict[str, typing.Any]:
    """imagenet_to_gcs.py's functions, with its own ``tensorflow.compat.v1 as tf`` and absl logging."""
    from absl import logging

    from imagenet_ops.core.native_logs import import_tensorflow

    import_tensorflow()
    import tensorflow.compat.v1 as tf1

    names = {n: getattr(typing, n) for n in ("Iterable", "List", "Mapping", "Union", "Tuple")}
    return _upstream(
        "imagenet_to_gcs.py.txt", TPU_DEFS, {"tf": tf1, "logging": logging, "os": os, "math": math, "random": random, **names}
    )


@pytest.fixture(scope="module")
def im2rec() -> dict[str, typing.Any]:
    return _upstream("im2rec.py.txt", IM2REC_DEFS, {"os": os, "random": random, "argparse": argparse, "sys": sys})


def _cmyk(seed: int, *, adobe: bool, **save: typing.Any) -> bytes:
    """A CMYK JPEG as scanners write them (Pillow: Adobe APP14, inverted), or without the APP14 marker."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(imagenet_like_jpeg(seed, width=83, height=61))).convert("CMYK").save(out, "JPEG", **save)
    data = out.getvalue()
    if not adobe:
        start = data.index(b"\xff\xee")
        data = data[:start] + data[start + 2 + int.from_bytes(data[start + 2 : start + 4], "big") :]
    return data


def _png(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(imagenet_like_jpeg(seed, width=70, height=52))).convert("RGBA").save(out, "PNG")
    return out.getvalue()


SPECIAL = {
    "n01739381_1309.JPEG": lambda: _cmyk(1, adobe=True, quality=90),
    "n02077923_14822.JPEG": lambda: _cmyk(2, adobe=True, quality=75, subsampling="4:4:4"),
    "n02447366_23489.JPEG": lambda: _cmyk(3, adobe=False, quality=95),
    "n02105855_2933.JPEG": lambda: _png(4),
}


def _raw_imagenet(root: Path, *, labels: list[str], per_class: int = 2) -> Path:
    """The layout imagenet_to_gcs wants (``train/<wnid>/``, ``validation/``, ``synset_labels.txt``); ours reads it too."""
    for c, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(1, per_class + 1):
            (root / "train" / wnid / f"{wnid}_{k}.JPEG").write_bytes(imagenet_like_jpeg(100 * c + k, width=48, height=40))
    for name, make in SPECIAL.items():
        (root / "train" / name.split("_")[0] / name).write_bytes(make())
    (root / "validation").mkdir()
    for i in range(1, len(labels) + 1):
        (root / "validation" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(imagenet_like_jpeg(900 + i, width=40, height=32))
    (root / "synset_labels.txt").write_text("".join(w + "\n" for w in labels))
    return root


def _records(folder: Path) -> dict[tuple[str, str], dict[str, list]]:
    """Every Example under ``folder``, keyed by (split, filename), features as plain lists."""
    import tensorflow as tf

    out = {}
    shards = [
        p
        for p in folder.rglob("*-of-*")
        if p.is_file() and p.suffix != ".idx" and not p.relative_to(folder).parts[0].startswith(".")  # not the DALI indexes
    ]
    for path in sorted(shards):
        split = path.name.split("-")[0]
        for raw in tf.data.TFRecordDataset(str(path)):
            ex = tf.train.Example.FromString(raw.numpy())
            features = {k: list(v.bytes_list.value) or list(v.int64_list.value) for k, v in ex.features.feature.items()}
            out[(split, features["image/filename"][0].decode())] = features
    return out


def test_the_name_lists_are_the_references(tpu):
    assert all(tpu["_is_cmyk"](f"/raw/train/{n[:9]}/{n}") for n in CMYK_TRAIN_IMAGES)
    assert all(tpu["_is_png"](f"/raw/train/{n[:9]}/{n}") for n in PNG_TRAIN_IMAGES)
    assert not tpu["_is_cmyk"]("/raw/train/n01440764/n01440764_10026.JPEG")


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_re_encoded_files_are_byte_identical_to_the_reference(tpu, tmp_path, name):
    # Regression (issue 10 item 11): the 22 CMYK files were re-encoded after Pillow's accurate-IDCT
    # decode; the reference's ImageCoder decodes with TF's default (fast) IDCT, so the bytes differed.
    import tensorflow.compat.v1 as tf1

    data = SPECIAL[name]()
    path = tmp_path / name
    path.write_bytes(data)
    with tf1.Graph().as_default():
        coder = tpu["ImageCoder"]()
    try:
        expected, height, width = tpu["_process_image"](str(path), coder)
    finally:
        coder._sess.close()
    assert expected != data
    ours = to_rgb_jpeg(data, name=name)
    assert ours == expected, f"{name}: {len(ours)} bytes, the reference's {len(expected)}"


def _few_shards(tpu: dict[str, typing.Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its 1024 + 128 shard files cost seconds and change no record; 3 + 2 hold the same records."""
    monkeypatch.setitem(tpu, "TRAINING_SHARDS", 3)
    monkeypatch.setitem(tpu, "VALIDATION_SHARDS", 2)


def test_reference_conversion_is_imagenet_to_gcs_record_for_record(tpu, tmp_path, monkeypatch):
    """Every feature of every record, ours against ``convert_to_tf_records`` run on the same folders."""
    import tensorflow.compat.v1 as tf1

    _few_shards(tpu, monkeypatch)

    raw = _raw_imagenet(tmp_path / "raw", labels=val_synset_labels(6, WNIDS).split())
    state = random.getstate()
    try:
        with tf1.Graph().as_default():  # its ImageCoder builds a compat.v1 graph and Session
            tpu["convert_to_tf_records"](raw_data_dir=str(raw), local_scratch_dir=str(tmp_path / "ref"))
    finally:
        random.setstate(state)  # it seeds the global generator
    config = resolve_training_config({"train_shards": 3, "validation_shards": 2})
    build_training_data(
        config=config,
        sink=LocalSink(tmp_path / "ours"),
        train=raw / "train",
        validation=raw / "validation",
        validation_labels=raw / "synset_labels.txt",
        work_dir=tmp_path / "work",
        workers=1,
    )
    theirs, ours = _records(tmp_path / "ref"), _records(tmp_path / "ours")
    assert len(theirs) == len(WNIDS) * 2 + len(SPECIAL) + 6
    assert sorted(ours) == sorted(theirs)
    for key, features in theirs.items():
        assert ours[key] == features, key


def _nvidia_folders(raw: Path, labels: list[str], root: Path) -> Path:
    """``train_data/{train,val}`` as CM's recipe prepares them: class folders; valprep.sh makes every class folder in val."""
    shutil.copytree(raw / "train", root / "train")
    for wnid in WNIDS:
        (root / "val" / wnid).mkdir(parents=True)
    for i, wnid in enumerate(labels, 1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        shutil.copy(raw / "validation" / name, root / "val" / wnid / name)
    return root


def _rec_labels(folder: Path, split: str) -> dict[int, float]:
    """``{id: IRHeader label}`` of every record, found through the ``.idx`` offsets."""
    rec = (folder / f"{split}.rec").read_bytes()
    out = {}
    for line in (folder / f"{split}.idx").read_text().splitlines():
        key, offset = map(int, line.split("\t"))
        _flag, label, rid, _rid2 = struct.unpack_from("<IfQQ", rec, offset + 8)
        assert rid == key
        out[key] = label
    return out


def test_nvidia_lists_are_im2rec_s_on_a_subset_without_some_validation_class(im2rec, tmp_path, monkeypatch):
    # Regression (issue 10 item 11): on a subset where a class has no validation image, val labels
    # followed the union of train and label-file wnids; im2rec numbers the val folders it finds images in.
    labels = [WNIDS[0], WNIDS[2], WNIDS[3], WNIDS[2], WNIDS[0], WNIDS[3], WNIDS[3]]  # WNIDS[1]: no validation image
    raw = _raw_imagenet(tmp_path / "raw", labels=labels)
    build_training_data(
        config=resolve_training_config(variations="_nvidia"),
        sink=LocalSink(tmp_path / "ours"),
        train=raw / "train",
        validation=raw / "validation",
        validation_labels=raw / "synset_labels.txt",
        work_dir=tmp_path / "work",
        workers=1,
    )
    data = _nvidia_folders(raw, labels, tmp_path / "train_data")
    work = tmp_path / "im2rec"
    work.mkdir()
    monkeypatch.chdir(work)  # prepare_imagenet.sh: cd into the output folder, then im2rec.py --list --recursive
    state = random.getstate()
    try:
        for prefix, folder in (("train", "train"), ("val", "val")):
            monkeypatch.setattr(sys, "argv", ["im2rec.py", "--list", "--recursive", prefix, str(data / folder)])
            im2rec["make_list"](im2rec["parse_args"]())
    finally:
        random.setstate(state)  # make_list seeds the global generator
    ours = tmp_path / "ours"
    for split in ("train", "val"):
        assert (ours / f"{split}.lst").read_text() == (work / f"{split}.lst").read_text(), split
        rows = [line.split("\t") for line in (ours / f"{split}.lst").read_text().splitlines()]
        assert _rec_labels(ours, split) == {int(i): float(label) for i, label, _ in rows}
    # What matching im2rec means here: the val folders hold 3 classes, numbered 0..2 on their own.
    val_label = {
        rel.split("/")[0]: float(label) for _, label, rel in (r.split("\t") for r in (work / "val.lst").read_text().splitlines())
    }
    assert val_label == {WNIDS[0]: 0.0, WNIDS[2]: 1.0, WNIDS[3]: 2.0}


def test_a_validation_wnid_that_is_not_a_train_class_is_refused_where_the_reference_shifts_labels(tpu, tmp_path, monkeypatch):
    # Regression (issue 10 item 4): the reference numbers train and validation wnids together, so a
    # validation wnid that is not a train class shifts every later train label; we refuse it.
    import tensorflow.compat.v1 as tf1

    _few_shards(tpu, monkeypatch)

    stray = "n02000000"  # sorts between WNIDS[0] and WNIDS[1]
    raw = _raw_imagenet(tmp_path / "raw", labels=[WNIDS[0], stray, WNIDS[3]])
    state = random.getstate()
    try:
        with tf1.Graph().as_default():
            tpu["convert_to_tf_records"](raw_data_dir=str(raw), local_scratch_dir=str(tmp_path / "ref"))
    finally:
        random.setstate(state)
    theirs = _records(tmp_path / "ref")
    assert theirs[("train", "n02077923_1.JPEG")]["image/class/label"] == [3]  # WNIDS[1] is the 2nd train class
    with pytest.raises(
        ValidationError, match=rf"synset_labels\.txt: line 2 gives ILSVRC2012_val_00000002\.JPEG the wnid {stray}"
    ):
        build_training_data(
            config=resolve_training_config({"train_shards": 1, "validation_shards": 1}),
            sink=LocalSink(tmp_path / "ours"),
            train=raw / "train",
            validation=raw / "validation",
            validation_labels=raw / "synset_labels.txt",
            work_dir=tmp_path / "work",
            workers=1,
        )
    assert not (tmp_path / "ours" / "manifest.json").exists()
