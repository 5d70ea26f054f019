"""Reference-format shards written without TensorFlow, read back with TensorFlow."""

from __future__ import annotations

import io
import json

import pytest

from imagenet_ops.core.sinks import STATE_DIR, open_sink
from imagenet_ops.imagenet.images import list_train_images, list_val_images
from imagenet_ops.testing.samples import imagenet_like_jpeg, make_train_tar, make_val_tar, val_synset_labels
from imagenet_ops.training.order import plan_reference
from imagenet_ops.training.pipeline import write_units
from imagenet_ops.training.plan import TrainingPlan
from imagenet_ops.training.shards import write_tfrecord_shard
from imagenet_ops.training.units import Unit, completed_unit
from imagenet_ops.training.variations import TrainingConfig

WNIDS = ["n01739381", "n02105855", "n02447366"]
PNG_NAME, CMYK_NAME, GRAY_NAME = "n02105855_2933.JPEG", "n01739381_1309.JPEG", "n02447366_7.JPEG"


def _feature_map():
    import tensorflow as tf

    s, i = tf.io.FixedLenFeature([], tf.string), tf.io.FixedLenFeature([], tf.int64)
    return {
        "image/encoded": s,
        "image/format": s,
        "image/colorspace": s,
        "image/channels": i,
        "image/height": i,
        "image/width": i,
        "image/class/label": i,
        "image/class/synset": s,
        "image/filename": s,
    }


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    special = {
        PNG_NAME: _png_bytes(),
        CMYK_NAME: imagenet_like_jpeg(5, width=50, height=40, mode="CMYK"),
        GRAY_NAME: imagenet_like_jpeg(6, width=45, height=35, mode="L"),
    }
    train = make_train_tar(root / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=4, files=special, width=64, height=48)
    val = make_val_tar(root / "ILSVRC2012_img_val.tar", count=7, width=32, height=24)
    labels = val_synset_labels(7, WNIDS).split()
    shards = plan_reference(
        train=list_train_images(train), validation=list_val_images(val), val_labels=labels, train_shards=4, validation_shards=3
    )
    out = root / "out"
    results = [write_tfrecord_shard(shard=s, out_dir=out) for s in shards]
    return {"shards": shards, "results": results, "out": out, "labels": labels, "special": special, "train": train}


def _records(path):
    import tensorflow as tf

    fmap = _feature_map()
    return [{k: v.numpy() for k, v in tf.io.parse_single_example(r, fmap).items()} for r in tf.data.TFRecordDataset(str(path))]


def test_every_shard_reads_back_with_tensorflow(dataset):
    import tensorflow as tf

    from imagenet_ops.imagenet.images import ImageReader

    names = sorted(p.name for p in dataset["out"].iterdir() if not p.name.startswith("."))
    shard_names = [f"train-0000{k}-of-00004" for k in range(4)] + [f"validation-0000{k}-of-00003" for k in range(3)]
    assert names == ["idx", *shard_names], "nothing but the shards matches train-* or validation-*"
    assert sorted(p.name for p in (dataset["out"] / "idx").iterdir()) == [f"{n}.idx" for n in shard_names]
    by_name = {}
    for shard, result in zip(dataset["shards"], dataset["results"], strict=True):
        records = _records(dataset["out"] / shard.name)
        assert len(records) == len(shard.items) == result.records
        for item, rec in zip(shard.items, records, strict=True):
            assert rec["image/filename"].decode() == item.ref.name
            assert rec["image/class/label"] == item.label and rec["image/class/synset"].decode() == item.synset
            assert (rec["image/format"], rec["image/colorspace"], rec["image/channels"]) == (b"JPEG", b"RGB", 3)
            decoded = tf.io.decode_image(rec["image/encoded"], channels=3, expand_animations=False)
            assert (rec["image/height"], rec["image/width"]) == tuple(decoded.shape[:2])
            by_name[item.ref.name] = (item, rec)
    assert len(by_name) == 3 * 4 + 3 + 7  # 4 per class, the 3 special files, 7 validation
    with ImageReader() as reader:
        for name, (item, rec) in by_name.items():
            if name not in (PNG_NAME, CMYK_NAME):
                assert rec["image/encoded"] == reader.read(item.ref), f"{name} bytes must pass through unchanged"


def test_labels_are_1_based_over_sorted_wnids_and_validation_follows_the_labels_file(dataset):
    labels = {w: i + 1 for i, w in enumerate(sorted(set(WNIDS) | set(dataset["labels"])))}
    val = [rec for s in dataset["shards"] if s.split == "validation" for rec in _records(dataset["out"] / s.name)]
    assert [r["image/filename"].decode() for r in val] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 8)]
    assert [r["image/class/synset"].decode() for r in val] == dataset["labels"]
    assert all(r["image/class/label"] == labels[r["image/class/synset"].decode()] for r in val)


def test_png_and_cmyk_train_files_are_converted_to_3_channel_jpeg(dataset):
    import tensorflow as tf

    train = {
        r["image/filename"].decode(): r
        for s in dataset["shards"]
        if s.split == "train"
        for r in _records(dataset["out"] / s.name)
    }
    for name in (PNG_NAME, CMYK_NAME):
        encoded = train[name]["image/encoded"]
        assert encoded[:2] == b"\xff\xd8" and encoded != dataset["special"][name]
        assert tf.io.decode_jpeg(encoded, channels=0).shape[-1] == 3
    assert train[GRAY_NAME]["image/encoded"] == dataset["special"][GRAY_NAME], "grayscale stays as it is (reference)"
    assert sum(r.converted for r in dataset["results"]) == 2


def test_a_rerun_skips_complete_shards_and_rewrites_a_damaged_one(dataset, tmp_path):
    # One done-record per unit, kept in the sink: a re-run trusts a shard only while it still matches it.
    shard = dataset["shards"][0]
    out = tmp_path / "out"
    sink = open_sink(str(out))
    plan = TrainingPlan(TrainingConfig(), [Unit(shard, "reference", "flat")], {}, 0, "")
    labels: list[str] = []

    def write():
        (result,) = write_units(sink=sink, plan=plan, indices=[0], work_dir=tmp_path / "work", on_group_label=labels.append)
        return result

    first = write()
    assert not first.skipped and first.files[0]["checksum"] == dataset["results"][0].checksum
    assert completed_unit(plan.units[0], sink) is not None
    again = write()
    assert again.skipped and again.files == first.files
    # A killed writer: a stray temp file, and a shard file that no longer matches its record.
    (out / f".{shard.name}.tmp-dead").write_bytes(b"partial")
    (out / shard.name).write_bytes((out / shard.name).read_bytes()[:100])
    assert completed_unit(plan.units[0], sink) is None
    redone = write()
    assert not redone.skipped and redone.files == first.files
    record = json.loads((out / STATE_DIR / "done" / f"{shard.name}.json").read_text())
    assert record["files"][0]["checksum"] == redone.files[0]["checksum"]
    assert labels == [shard.name] * 3, "each run names its group before it writes"


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    from imagenet_ops.core.errors import ImageError
    from imagenet_ops.testing.samples import make_class_tars

    make_class_tars(tmp_path / "src", wnids=WNIDS[:1], per_class=1, width=16, height=16, files={"n01739381_9.JPEG": b"GIF89a..."})
    shards = plan_reference(
        train=list_train_images(tmp_path / "src"), validation=[], val_labels=[], train_shards=1, validation_shards=0
    )
    for verify in (True, False):  # decoded first, or its header read from the writer's buffer
        with pytest.raises(ImageError, match="n01739381/n01739381_9.JPEG"):
            write_tfrecord_shard(shard=shards[0], out_dir=tmp_path / "out", verify=verify)
        assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == [], "no partial shard or index may be left"


def test_header_check_only_writes_the_same_bytes_with_images_read_into_the_buffer(dataset, tmp_path):
    # verify=False reads each local image straight into the writer's buffer (write_filled); the
    # converted PNG/CMYK files and the verified run go through write_parts: same files either way.
    from imagenet_ops.training.shards import dali_index_name

    for shard, verified in zip(dataset["shards"], dataset["results"], strict=True):
        fast = write_tfrecord_shard(shard=shard, out_dir=tmp_path, verify=False)
        assert fast == verified
        for name in (shard.name, dali_index_name(shard.name)):
            assert (tmp_path / name).read_bytes() == (dataset["out"] / name).read_bytes(), name


def test_a_truncated_tar_is_an_archive_error_naming_it_and_leaves_nothing(dataset, tmp_path):
    from dataclasses import replace

    from imagenet_ops.core.errors import ArchiveError

    shard = dataset["shards"][0]
    cut = tmp_path / "cut.tar"
    items = tuple(replace(i, ref=replace(i.ref, container=str(cut))) for i in shard.items)
    last = max((i.ref for i in items), key=lambda r: r.offset)
    cut.write_bytes(dataset["train"].read_bytes()[: last.offset + last.size // 2])
    for verify in (False, True):  # read into the writer's buffer, or as bytes
        with pytest.raises(ArchiveError, match=rf"cut\.tar: {last.relpath} is truncated \({last.size // 2} of {last.size} bytes"):
            write_tfrecord_shard(shard=replace(shard, items=items), out_dir=tmp_path / "out", verify=verify)
        assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == [], "no partial shard or index may be left"
