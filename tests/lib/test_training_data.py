"""The training-data pipeline (plan -> units -> finalize) end to end, read back with TensorFlow
and with an independent RecordIO reader; retries, cache hits, object storage, bad inputs."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import tarfile
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ChecksumMismatch, ConfigError, ImageError, ValidationError
from imagenet_ops.core.sinks import LocalSink, S3Sink
from imagenet_ops.core.store import ObjectStore
from imagenet_ops.testing.samples import (
    imagenet_like_jpeg,
    make_class_tars,
    make_train_tar,
    make_val_tar,
    val_synset_labels,
    write_tar,
)
from imagenet_ops.training.pipeline import build_training_data, finalize_training, write_units
from imagenet_ops.training.plan import load_plan, plan_training
from imagenet_ops.training.tfrecord import tfrecord_index_lines
from imagenet_ops.training.variations import TRAINING_TABLE, resolve_training_config

WNIDS = ["n01440764", "n01739381", "n02105855", "n02447366"]
PNG_NAME, CMYK_NAME, GRAY_NAME = "n02105855_2933.JPEG", "n01739381_1309.JPEG", "n02447366_7.JPEG"
PER_CLASS, VAL_COUNT = 5, 11


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("imagenet")
    special = {
        PNG_NAME: _png_bytes(),
        CMYK_NAME: imagenet_like_jpeg(5, width=50, height=40, mode="CMYK"),
        GRAY_NAME: imagenet_like_jpeg(6, width=45, height=35, mode="L"),
    }
    train = make_train_tar(
        root / "ILSVRC2012_img_train.tar", wnids=WNIDS, per_class=PER_CLASS, files=special, width=64, height=48
    )
    val = make_val_tar(root / "ILSVRC2012_img_val.tar", count=VAL_COUNT, width=32, height=24)
    labels = root / "imagenet_2012_validation_synset_labels.txt"
    labels.write_text(val_synset_labels(VAL_COUNT, WNIDS))
    with tarfile.open(train) as outer:
        images = {}
        for m in outer.getmembers():
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:
                for im in inner.getmembers():
                    images[im.name] = inner.extractfile(im).read()
    with tarfile.open(val) as t:
        images.update({m.name: t.extractfile(m).read() for m in t.getmembers()})
    return {"root": root, "train": train, "val": val, "labels": labels, "images": images, "special": special}


def _parse_shard(path: Path) -> list[dict]:
    import tensorflow as tf

    s, i = tf.io.FixedLenFeature([], tf.string), tf.io.FixedLenFeature([], tf.int64)
    fmap = {
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
    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        ex = tf.io.parse_single_example(raw, fmap)
        out.append(
            {k: (v.numpy().decode() if v.dtype == tf.string and k != "image/encoded" else v.numpy()) for k, v in ex.items()}
        )
    return out


def _build(data, out, work, **given) -> object:
    variations = given.pop("variations", None)
    config = resolve_training_config({"train_shards": 3, "validation_shards": 2, **given}, variations=variations)
    return build_training_data(
        config=config,
        sink=LocalSink(out),
        train=data["train"],
        validation=data["val"],
        validation_labels=data["labels"],
        work_dir=work,
        workers=1,
    )


def test_reference_round_trip_read_with_tensorflow(data, tmp_path):
    done = _build(data, tmp_path / "out", tmp_path / "work")
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["idx", "manifest.json", "report"] + [f"train-{i:05d}-of-00003" for i in range(3)] + [
        f"validation-{i:05d}-of-00002" for i in range(2)
    ]
    labels = data["labels"].read_text().split()
    label_of = {w: i + 1 for i, w in enumerate(sorted(set(WNIDS) | set(labels)))}
    seen: dict[str, dict] = {}
    per_shard = {}
    for name in names[3:]:  # after idx/, manifest.json and report/
        records = _parse_shard(out / name)
        per_shard[name] = len(records)
        for r in records:
            seen[r["image/filename"]] = {**r, "shard": name}
    n_train = len(WNIDS) * PER_CLASS + 3  # plus the PNG, CMYK and grayscale files
    assert per_shard == {
        "train-00000-of-00003": 8,  # ceil(23/3) contiguous chunks
        "train-00001-of-00003": 8,
        "train-00002-of-00003": 7,
        "validation-00000-of-00002": 6,
        "validation-00001-of-00002": 5,
    }
    assert len(seen) == n_train + VAL_COUNT
    for name, r in seen.items():
        if name.startswith("ILSVRC2012_val_"):
            wnid = labels[int(name[15:23]) - 1]
            assert r["shard"].startswith("validation-")
        else:
            wnid = name.split("_")[0]
        assert r["image/class/synset"] == wnid
        assert r["image/class/label"] == label_of[wnid]
        assert (r["image/format"], r["image/colorspace"], r["image/channels"]) == ("JPEG", "RGB", 3)
        if name in (PNG_NAME, CMYK_NAME):
            from PIL import Image

            im = Image.open(io.BytesIO(r["image/encoded"]))
            assert (im.format, im.mode) == ("JPEG", "RGB"), name
        else:
            assert r["image/encoded"] == data["images"][name], f"{name}: bytes changed"
        import numpy as np
        import tensorflow as tf

        decoded = tf.io.decode_image(r["image/encoded"]).numpy()
        assert decoded.shape[:2] == (r["image/height"], r["image/width"]), name
        assert np.asarray(decoded).ndim == 3
    # validation shards hold the images in sorted order, contiguously
    val_order = [r["image/filename"] for n in names if n.startswith("validation") for r in _parse_shard(out / n)]
    assert val_order == sorted(val_order)
    env = done.env
    assert env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == str(out)
    assert (env["CM_MLPERF_TRAINING_RESNET_TRAIN_IMAGES"], env["CM_MLPERF_TRAINING_RESNET_VALIDATION_IMAGES"]) == ("23", "11")
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    assert {p: f["records"] for p, f in listed.items() if "records" in f and not p.startswith("idx/")} == per_shard
    for name, records in per_shard.items():  # each shard's DALI index: published, listed with size and sha256
        index = out / "idx" / f"{name}.idx"
        assert index.read_text() == "".join(tfrecord_index_lines(out / name)) and records == len(index.read_text().splitlines())
        assert (listed[f"idx/{name}.idx"]["size"], listed[f"idx/{name}.idx"]["sha256"]) == (
            index.stat().st_size,
            hashlib.sha256(index.read_bytes()).hexdigest(),
        )
    report = (out / "report" / "report.md").read_text()  # the shards' report: decoded back, every check passed
    assert "all checks passed" in report and "2 PNG/CMYK image(s) re-encoded" in report
    assert "idx/train-00000-of-00003.idx: 8 DALI index lines for 8 records; the first 8 match" in report


def test_split_layout_and_cache_hit(data, tmp_path):
    out = tmp_path / "out"
    first = _build(data, out, tmp_path / "w1", layout="split")
    assert sorted(p.name for p in (out / "train").iterdir() if not p.name.startswith(".")) == [
        "idx",
        *(f"train-{i:05d}-of-00003" for i in range(3)),
    ]
    assert sorted(p.name for p in (out / "train" / "idx").iterdir()) == [f"train-{i:05d}-of-00003.idx" for i in range(3)]
    assert len([p for p in (out / "validation").iterdir() if p.is_file() and not p.name.startswith(".")]) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*-of-*")}
    again = _build(data, out, tmp_path / "w2", layout="split")
    assert again.publish.cache_hit and not first.publish.cache_hit
    assert again.publish.cache_key == first.publish.cache_key
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*-of-*")} == mtimes
    assert again.env == first.env


def test_labels_from_aux_give_the_same_shards(data, tmp_path):
    """val.txt + synsets.txt of the aux artifact name the same wnid per image as the labels file."""
    labels = data["labels"].read_text().split()
    synsets = sorted(set(WNIDS))
    aux = tmp_path / "aux"
    aux.mkdir()
    (aux / "synsets.txt").write_text("".join(w + "\n" for w in synsets))
    (aux / "val.txt").write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {synsets.index(w)}\n" for i, w in enumerate(labels, 1)))
    config = resolve_training_config({"train_shards": 0, "validation_shards": 2})
    from_file = build_training_data(
        config=config,
        sink=LocalSink(tmp_path / "a"),
        train=None,
        validation=data["val"],
        validation_labels=data["labels"],
        work_dir=tmp_path,
    )
    from_aux = build_training_data(
        config=config, sink=LocalSink(tmp_path / "b"), train=None, validation=data["val"], aux_path=aux, work_dir=tmp_path
    )
    files = lambda d: {f["path"]: f["checksum"] for f in d.publish.manifest["files"]}  # noqa: E731
    assert files(from_file) == files(from_aux)  # the shards and their report alike
    assert len([p for p in files(from_aux) if not p.startswith(("report/", "idx/"))]) == 2
    assert from_aux.env["CM_MLPERF_TRAINING_RESNET_TRAIN_IMAGES"] == "0"


def test_labels_downloaded_over_http(data, tmp_path, http_server):
    (http_server.root / "labels.txt").write_bytes(data["labels"].read_bytes())
    config = resolve_training_config({"train_shards": 0, "validation_shards": 1, "labels_url": http_server.url("labels.txt")})
    done = build_training_data(
        config=config, sink=LocalSink(tmp_path / "o"), train=None, validation=data["val"], work_dir=tmp_path
    )
    assert done.publish.manifest["provenance"]["labels_source"] == http_server.url("labels.txt")
    assert len(_parse_shard(tmp_path / "o" / "validation-00000-of-00001")) == VAL_COUNT


@pytest.mark.parametrize("given", ["s3 labels file", "s3 aux folder", "local aux folder", "labels url"])
def test_the_manifest_names_the_labels_the_user_gave_never_a_scratch_path(data, tmp_path, s3_bucket, http_server, given):
    # Regression (issue 12 item 2): provenance.labels_source recorded the plan task's scratch copy
    # (<work_dir>/labels/... or <work_dir>/aux), a path on one worker that no one can read back.
    client, bucket = s3_bucket
    labels = data["labels"].read_text().split()
    synsets = sorted(set(WNIDS))
    aux_files = {
        "synsets.txt": "".join(w + "\n" for w in synsets),
        "val.txt": "".join(f"ILSVRC2012_val_{i:08d}.JPEG {synsets.index(w)}\n" for i, w in enumerate(labels, 1)),
    }
    aux = tmp_path / "aux"
    aux.mkdir()
    for name, text in aux_files.items():
        client.put_object(Bucket=bucket, Key=f"aux/{name}", Body=text.encode())
        (aux / name).write_text(text)
    client.upload_file(str(data["labels"]), bucket, "labels/imagenet_2012_validation_synset_labels.txt")
    (http_server.root / "labels.txt").write_bytes(data["labels"].read_bytes())
    inputs, expected = {
        "s3 labels file": (
            {"validation_labels": f"s3://{bucket}/labels/imagenet_2012_validation_synset_labels.txt"},
            f"s3://{bucket}/labels/imagenet_2012_validation_synset_labels.txt",
        ),
        "s3 aux folder": ({"aux_path": f"s3://{bucket}/aux/"}, f"s3://{bucket}/aux (val.txt + synsets.txt)"),
        "local aux folder": ({"aux_path": aux}, f"{aux} (val.txt + synsets.txt)"),
        "labels url": ({}, http_server.url("labels.txt")),
    }[given]
    config = resolve_training_config({"train_shards": 0, "validation_shards": 1, "labels_url": http_server.url("labels.txt")})
    work = tmp_path / "work" / "run"
    done = build_training_data(
        config=config,
        sink=LocalSink(tmp_path / "o"),
        train=None,
        validation=data["val"],
        work_dir=work,
        store=ObjectStore(s3_client=client),
        **inputs,
    )
    assert done.publish.manifest["provenance"]["labels_source"] == expected
    assert str(work) not in json.dumps(done.publish.manifest), "no scratch path anywhere in the manifest"
    assert not work.exists(), "the plan's scratch (copied or downloaded labels) is removed"
    assert len(_parse_shard(tmp_path / "o" / "validation-00000-of-00001")) == VAL_COUNT


# ---------------------------------------------------------------------------------------------
# nvidia: RecordIO read back with a reader written here


def _read_rec(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, payload) per record; handles dmlc's split records (cflag 1/2/3)."""
    out, pos, pending, start = [], 0, None, 0
    while pos < len(data):
        magic, lrec = struct.unpack_from("<II", data, pos)
        assert magic == 0xCED7230A
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        body = data[pos + 8 : pos + 8 + length]
        if cflag in (0, 1):
            start = pos
        pos += 8 + (length + 3) // 4 * 4
        if cflag == 0:
            out.append((start, body))
        elif cflag == 1:
            pending = body + b"\x0a\x23\xd7\xce"
        elif cflag == 2:
            pending += body + b"\x0a\x23\xd7\xce"
        else:
            out.append((start, pending + body))
            pending = None
    return out


def _im2rec_rows(root_entries: list[str]) -> list[tuple[int, str, int]]:
    """im2rec --list --recursive, literally: sorted walk, class index by first sight, random.seed(100) shuffle."""
    cat: dict[str, int] = {}
    rows = []
    for i, rel in enumerate(sorted(root_entries)):
        d = rel.split("/")[0]
        cat.setdefault(d, len(cat))
        rows.append((i, rel, cat[d]))
    state = random.getstate()
    random.seed(100)
    random.shuffle(rows)
    random.setstate(state)
    return rows


def test_nvidia_recordio_matches_im2rec(data, tmp_path):
    out = tmp_path / "out"
    done = _build(data, out, tmp_path / "w", variations="_nvidia")
    assert done.env["CM_MLPERF_TRAINING_NVIDIA_RESNET_PREPROCESSED_PATH"] == str(out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "manifest.json",
        "report",
        "train.idx",
        "train.lst",
        "train.rec",
        "val.idx",
        "val.lst",
        "val.rec",
    ]
    labels = data["labels"].read_text().split()
    trees = {
        "train": [f"{n.split('_')[0]}/{n}" for n in data["images"] if not n.startswith("ILSVRC")],
        "val": [f"{labels[int(n[15:23]) - 1]}/{n}" for n in data["images"] if n.startswith("ILSVRC")],
    }
    for split, rels in trees.items():
        rows = _im2rec_rows(rels)
        if split == "val":  # labels over all classes (train and val), as on the full set
            classes = sorted(set(WNIDS) | set(labels))
            rows = [(i, rel, classes.index(rel.split("/")[0])) for i, rel, _ in rows]
        assert (out / f"{split}.lst").read_text() == "".join(f"{i}\t{float(lab):f}\t{rel}\n" for i, rel, lab in rows)
        records = _read_rec((out / f"{split}.rec").read_bytes())
        assert len(records) == len(rows)
        idx_lines = (out / f"{split}.idx").read_text().splitlines()
        assert idx_lines == [f"{i}\t{off}" for (i, _, _), (off, _) in zip(rows, records, strict=True)]
        for (i, rel, lab), (_, payload) in zip(rows, records, strict=True):
            flag, label, rid, rid2 = struct.unpack_from("<IfQQ", payload)
            assert (flag, label, rid, rid2) == (0, float(lab), i, 0)
            assert payload[24:] == data["images"][rel.split("/")[1]], f"{rel}: bytes changed (pass-through)"


def test_nvidia_refuses_split_layout():
    with pytest.raises(ConfigError, match="layout split applies to the reference"):
        resolve_training_config({"layout": "split"}, variations="_nvidia")


def test_cm_tags_and_zero_shards():
    config = resolve_training_config(variations="_reference,_layout.split,_train_shards.8,_validation_shards.0,_check_md5")
    assert (config.layout, config.train_shards, config.validation_shards, config.check_md5) == ("split", 8, 0, True)
    with pytest.raises(ConfigError, match="both 0"):
        resolve_training_config({"train_shards": 0, "validation_shards": 0})
    assert {"implementation", "layout", "train_shards", "validation_shards"} <= set(TRAINING_TABLE.param_specs())


# ---------------------------------------------------------------------------------------------
# Plans, retries and faults


def test_plan_is_stable_across_runs_and_filesystem_order(tmp_path):
    """A folder of class folders created in two different orders gives the same plan."""
    plans = []
    for k, order in enumerate((WNIDS, list(reversed(WNIDS)))):
        root = tmp_path / f"t{k}" / "train"
        for w in order:
            names = [f"{w}_{i}.JPEG" for i in (3, 1, 2)] if k == 0 else [f"{w}_{i}.JPEG" for i in (2, 3, 1)]
            (root / w).mkdir(parents=True)
            for n in names:
                (root / w / n).write_bytes(imagenet_like_jpeg(hash(n) % 1000, width=16, height=12))
        sink = LocalSink(tmp_path / f"o{k}")
        plan_training(config=resolve_training_config({"train_shards": 2}), sink=sink, train=root.parent, work_dir=tmp_path)
        plans.append(load_plan(sink))
    relpaths = [[[i.ref.relpath for i in u.shard.items] for u in p.units] for p in plans]
    assert relpaths[0] == relpaths[1]
    assert plans[0].upstream["input_digest"] == plans[1].upstream["input_digest"]


def _plan_five_units(data, sink, work_dir: Path):
    """The sample's plan at 3 train + 2 validation shards, in ``sink``."""
    config = resolve_training_config({"train_shards": 3, "validation_shards": 2})
    return plan_training(
        config=config, sink=sink, train=data["train"], validation=data["val"], validation_labels=data["labels"], work_dir=work_dir
    )


def test_killed_writer_leaves_no_partial_shard_and_retry_completes(data, tmp_path, monkeypatch):
    from imagenet_ops.imagenet import images as imagenet_sources

    out = tmp_path / "out"
    sink = LocalSink(out)
    plan = _plan_five_units(data, sink, tmp_path)
    write_units(sink=sink, indices=[0], work_dir=tmp_path)  # the first task finished unit 0

    real_read, calls = imagenet_sources.ImageReader.read, {"n": 0}

    def dying_read(self, ref):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("worker killed")  # what a SIGTERM'd task sees mid-shard
        return real_read(self, ref)

    monkeypatch.setattr(imagenet_sources.ImageReader, "read", dying_read)
    with pytest.raises(KeyboardInterrupt):
        write_units(sink=sink, indices=[1, 2], work_dir=tmp_path)
    monkeypatch.undo()
    assert not (out / "train-00001-of-00003").exists(), "a killed writer must not leave the final name"
    assert not list(out.glob(".*tmp*")), "temporary files are removed"
    with pytest.raises(ValidationError, match=r"4 of 5 units are not complete: train-00001-of-00003: missing"):
        finalize_training(sink=sink, cache_key=plan.cache_key)

    good = (out / "train-00000-of-00003").stat().st_mtime_ns
    (out / "validation-00000-of-00002").write_bytes(b"")  # a damaged leftover under the final name
    results = write_units(sink=sink, indices=range(plan.units), work_dir=tmp_path)
    assert [r.skipped for r in results] == [True, False, False, False, False]
    assert (out / "train-00000-of-00003").stat().st_mtime_ns == good
    done = finalize_training(sink=sink, cache_key=plan.cache_key)
    assert sum(f.get("records", 0) for f in done.publish.manifest["files"] if not f["path"].startswith("idx/")) == 23 + VAL_COUNT
    assert len(_parse_shard(out / "validation-00000-of-00002")) == 6


def test_temporaries_of_a_writer_lost_mid_run_are_gone_once_the_run_publishes(data, tmp_path):
    """Regression (issue 12 item 3): a writer killed with SIGKILL (its host lost) runs no clean-up, and
    its ``.train-*.tmp-*`` files stayed in the published folder for good; the retry wrote the shards."""
    out = tmp_path / "out"
    sink = LocalSink(out)
    plan = _plan_five_units(data, sink, tmp_path)
    write_units(sink=sink, indices=range(plan.units), work_dir=tmp_path)  # the retries, on the other host
    lost = [out / ".train-00001-of-00003.tmp-0badc0de", out / ".validation-00000-of-00002.tmp-1234abcd"]
    for path in lost:
        path.write_bytes(b"half a shard")
    notes = out / ".notes.txt.tmp-00ff"  # not a file of this artifact: someone else's, left alone
    notes.write_text("mine")

    finalize_training(sink=sink, cache_key=plan.cache_key)
    assert not [p for p in lost if p.exists()]
    assert notes.read_text() == "mine"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".imagenet_ops", notes.name]


def test_unfinished_uploads_of_a_writer_lost_mid_run_are_aborted_once_the_run_publishes(data, tmp_path, s3_bucket):
    """On S3 a killed writer leaves no object, but its multipart upload keeps (and bills) its parts."""
    client, bucket = s3_bucket
    sink = S3Sink(client=client, bucket=bucket, prefix="training")
    plan = _plan_five_units(data, sink, tmp_path)
    write_units(sink=sink, indices=range(plan.units), work_dir=tmp_path, store=ObjectStore(s3_client=client))
    lost = client.create_multipart_upload(Bucket=bucket, Key="training/train-00001-of-00003")["UploadId"]
    client.upload_part(Bucket=bucket, Key="training/train-00001-of-00003", UploadId=lost, PartNumber=1, Body=b"x" * 1024)
    other = client.create_multipart_upload(Bucket=bucket, Key="training-notes/big.bin")["UploadId"]  # not this artifact's

    finalize_training(sink=sink, cache_key=plan.cache_key, store=ObjectStore(s3_client=client))
    left = {(u["Key"], u["UploadId"]) for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    assert left == {("training-notes/big.bin", other)}


def test_a_superseded_try_stops_before_its_next_unit(data, tmp_path, monkeypatch):
    """Two tries of one shard group at once (the old one cut off, not dead): only the newer one goes on."""
    import threading

    from imagenet_ops.core.lease import LeaseLostError
    from imagenet_ops.training import pipeline
    from imagenet_ops.training.claims import GroupClaim

    out = tmp_path / "out"
    sink = LocalSink(out)
    plan = _plan_five_units(data, sink, tmp_path)
    group = list(range(plan.units))
    paused, resume = threading.Event(), threading.Event()
    real_write, real_record = pipeline.write_unit_files, pipeline.record_unit
    recorded: list[tuple[str, str]] = []

    def write(unit, out_dir, store=None):
        result = real_write(unit, out_dir, store)
        if threading.current_thread().name == "try-1" and not paused.is_set():
            paused.set()  # try 1 is cut off after writing its first unit's files
            resume.wait(30)
        return result

    monkeypatch.setattr(pipeline, "write_unit_files", write)
    monkeypatch.setattr(
        pipeline,
        "record_unit",
        lambda s, u, r: (recorded.append((threading.current_thread().name, u.name)), real_record(s, u, r)),
    )
    failures: list[BaseException] = []

    def first_try():
        try:
            write_units(sink=sink, indices=group, work_dir=tmp_path, claim=GroupClaim("dag/run", 1))
        except BaseException as exc:  # noqa: BLE001 - what the try ended with
            failures.append(exc)

    old = threading.Thread(target=first_try, name="try-1")
    old.start()
    assert paused.wait(30)
    write_units(sink=sink, indices=group, work_dir=tmp_path, claim=GroupClaim("dag/run", 2))  # the retry, elsewhere
    resume.set()
    old.join(30)

    assert len(failures) == 1 and isinstance(failures[0], LeaseLostError), failures
    assert "(try 1 of dag/run) no longer owns it" in str(failures[0])  # try 2 took it, and dropped it when complete
    assert [name for who, name in recorded if who == "try-1"] == []  # not even the unit it had written
    assert sorted(name for who, name in recorded if who != "try-1") == sorted(u.name for u in plan_units(sink))
    assert not (out / ".imagenet_ops" / "claims" / f"{plan_units(sink)[0].name}.json").exists()  # dropped when complete
    late = write_units(sink=sink, indices=group, work_dir=tmp_path, claim=GroupClaim("dag/run", 1))
    assert all(r.skipped for r in late)  # an older try that starts only now finds nothing to write
    GroupClaim("dag/run", 5).take(sink, plan_units(sink)[0].name)  # a newer try holds the group ...
    with pytest.raises(LeaseLostError, match="claimed by try 5"):  # ... so an older one stops at once
        write_units(sink=sink, indices=group, work_dir=tmp_path, claim=GroupClaim("dag/run", 1))
    # A later run on this output (the output lease lets one run at a time in) takes the group over.
    write_units(sink=sink, indices=group, work_dir=tmp_path, claim=GroupClaim("dag/other-run", 1))
    finalize_training(sink=sink, cache_key=plan.cache_key)


def plan_units(sink):
    return load_plan(sink).units


def test_parallel_workers_write_the_same_bytes(data, tmp_path):
    config = resolve_training_config({"train_shards": 4, "validation_shards": 2})
    digests = []
    for workers in (1, 2):
        done = build_training_data(
            config=config,
            sink=LocalSink(tmp_path / f"o{workers}"),
            train=data["train"],
            validation=data["val"],
            validation_labels=data["labels"],
            work_dir=tmp_path,
            workers=workers,
        )
        digests.append({f["path"]: f["checksum"] for f in done.publish.manifest["files"]})
    assert digests[0] == digests[1]


# ---------------------------------------------------------------------------------------------
# Object storage: inputs read by range from S3/GCS, shards uploaded to S3


def test_s3_inputs_to_s3_sink_then_rerun_skips(data, tmp_path, s3_bucket):
    client, bucket = s3_bucket
    client.upload_file(str(data["train"]), bucket, "in/ILSVRC2012_img_train.tar")
    client.upload_file(str(data["val"]), bucket, "in/val/ILSVRC2012_img_val.tar")
    store = ObjectStore(s3_client=client)
    sink = S3Sink(client=client, bucket=bucket, prefix="out")
    config = resolve_training_config({"train_shards": 3, "validation_shards": 2})
    kwargs = dict(
        config=config,
        sink=sink,
        train=f"s3://{bucket}/in/ILSVRC2012_img_train.tar",
        validation=f"s3://{bucket}/in/val/ILSVRC2012_img_val.tar",
        validation_labels=data["labels"],
        work_dir=tmp_path / "work",
        store=store,
    )
    done = build_training_data(**kwargs)
    assert done.env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == f"s3://{bucket}/out"
    local = _build(data, tmp_path / "local", tmp_path / "w2")
    files = lambda d: {f["path"]: f["checksum"] for f in d.publish.manifest["files"]}  # noqa: E731
    assert files(done) == files(local), "object-storage inputs give the same shards as local ones"
    shard = tmp_path / "s.tfrecord"
    client.download_file(bucket, "out/train-00001-of-00003", str(shard))
    assert len(_parse_shard(shard)) == 8
    assert not list((tmp_path / "work").rglob("train-*")), "staged shards are removed after upload"
    assert not (tmp_path / "work").exists(), "and so is the writers' scratch folder"
    # a lost manifest: the re-run finds every shard complete by its done-record and uploads nothing
    client.delete_object(Bucket=bucket, Key="out/manifest.json")
    sink2 = S3Sink(client=client, bucket=bucket, prefix="out")
    plan = plan_training(**{k: v for k, v in kwargs.items() if k not in ("sink",)}, sink=sink2)
    results = write_units(sink=sink2, indices=range(plan.units), work_dir=tmp_path / "work", store=store)
    assert all(r.skipped for r in results)


def test_gcs_class_tar_folder_input(data, tmp_path, gcs_bucket):
    client, bucket = gcs_bucket
    tars = make_class_tars(tmp_path / "classes", wnids=WNIDS[:2], per_class=3, width=24, height=16)
    for t in tars:
        client.bucket(bucket).blob(f"train/{t.name}").upload_from_filename(str(t))
    store = ObjectStore(gcs_client=client)
    config = resolve_training_config({"train_shards": 2, "validation_shards": 0})
    remote = build_training_data(
        config=config,
        sink=LocalSink(tmp_path / "r"),
        train=f"gs://{bucket}/train",
        validation=None,
        work_dir=tmp_path,
        store=store,
    )
    local = build_training_data(
        config=config, sink=LocalSink(tmp_path / "l"), train=tmp_path / "classes", validation=None, work_dir=tmp_path
    )
    assert [f["checksum"] for f in remote.publish.manifest["files"]] == [f["checksum"] for f in local.publish.manifest["files"]]


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_missing_labels_file(data, tmp_path):
    config = resolve_training_config({"validation_shards": 1, "train_shards": 0})
    with pytest.raises(ValidationError, match=r"nope\.txt: validation labels file not found"):
        build_training_data(
            config=config,
            sink=LocalSink(tmp_path / "o"),
            train=None,
            validation=data["val"],
            validation_labels=tmp_path / "nope.txt",
            work_dir=tmp_path,
        )


def test_labels_shorter_than_images(data, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("\n".join(data["labels"].read_text().split()[:5]) + "\n")
    config = resolve_training_config({"validation_shards": 1, "train_shards": 0})
    with pytest.raises(ValidationError, match=r"labels hold 5 lines but image ILSVRC2012_val_00000006\.JPEG needs line 6"):
        build_training_data(
            config=config,
            sink=LocalSink(tmp_path / "o"),
            train=None,
            validation=data["val"],
            validation_labels=short,
            work_dir=tmp_path,
        )


def test_non_image_file_is_named(tmp_path):
    folder = tmp_path / "classes"
    make_class_tars(
        folder, wnids=WNIDS[:1], per_class=2, width=16, height=12, files={f"{WNIDS[0]}_9.JPEG": b"<html>not an image</html>"}
    )
    config = resolve_training_config({"train_shards": 1, "validation_shards": 0})
    with pytest.raises(ImageError, match=rf"{WNIDS[0]}/{WNIDS[0]}_9\.JPEG"):
        build_training_data(config=config, sink=LocalSink(tmp_path / "o"), train=folder, validation=None, work_dir=tmp_path)
    assert not (tmp_path / "o" / "train-00000-of-00001").exists()
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_empty_class_tar_is_named(tmp_path):
    folder = tmp_path / "classes"
    make_class_tars(folder, wnids=WNIDS[:1], per_class=2, width=16, height=12)
    write_tar(folder / f"{WNIDS[1]}.tar", {}, gz=False)
    config = resolve_training_config({"train_shards": 1, "validation_shards": 0})
    with pytest.raises(ValidationError, match=rf"{WNIDS[1]}\.tar holds no images"):
        build_training_data(config=config, sink=LocalSink(tmp_path / "o"), train=folder, validation=None, work_dir=tmp_path)


def test_md5_check_of_the_big_tars(data, tmp_path):
    from imagenet_ops.core.digests import file_digests

    good = {"train_md5": file_digests(data["train"]).md5, "validation_md5": file_digests(data["val"]).md5}
    config = resolve_training_config({"train_shards": 1, "validation_shards": 1, "check_md5": True, **good})
    done = build_training_data(
        config=config,
        sink=LocalSink(tmp_path / "o"),
        train=data["train"],
        validation=data["val"],
        validation_labels=data["labels"],
        work_dir=tmp_path,
    )
    assert done.publish.manifest["provenance"]["md5"] == {
        str(data["train"]): good["train_md5"],
        str(data["val"]): good["validation_md5"],
    }
    config = resolve_training_config({"train_shards": 1, "validation_shards": 1, "check_md5": True})  # the real ImageNet md5s
    with pytest.raises(ChecksumMismatch, match=r"ILSVRC2012_img_train\.tar: md5 \w+ does not match the expected 1d675b47"):
        build_training_data(
            config=config,
            sink=LocalSink(tmp_path / "p"),
            train=data["train"],
            validation=data["val"],
            validation_labels=data["labels"],
            work_dir=tmp_path,
        )


def test_md5_check_of_a_tar_in_a_bucket(data, s3_bucket):
    """The optional md5 task reads an s3:// tar through the object store (one sequential pass)."""
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.training.inputs import check_archive_md5

    client, bucket = s3_bucket
    client.upload_file(str(data["val"]), bucket, "raw/ILSVRC2012_img_val.tar")
    uri, expected = f"s3://{bucket}/raw/ILSVRC2012_img_val.tar", file_digests(data["val"])
    assert check_archive_md5(path=uri, expected=expected.md5, store=ObjectStore(s3_client=client)) == expected
    with pytest.raises(ChecksumMismatch, match=r"ILSVRC2012_img_val\.tar: md5 \w+ does not match the expected 29b22e29"):
        check_archive_md5(path=uri, expected="29b22e2961454d5413ddabcf34fc5622", store=ObjectStore(s3_client=client))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_cache_hit_verifies_the_shards_and_repairs_the_damaged_one(data, tmp_path, damage):
    # Regression (issue 10 item 9): a truncated shard under an intact manifest stayed truncated on re-run.
    out = tmp_path / "out"
    first = _build(data, out, tmp_path / "w1")
    good = {p.name: p.read_bytes() for p in out.glob("*-of-*")}
    shard = out / "train-00001-of-00003"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*-of-*") if p != shard}
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(shard.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        shard.write_bytes(bytes(raw))
    else:
        shard.unlink()

    again = _build(data, out, tmp_path / "w2")

    assert {p.name: p.read_bytes() for p in out.glob("*-of-*")} == good
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*-of-*") if p != shard}
    assert kept == mtimes, "only the damaged shard is rewritten"
    assert again.publish.cache_key == first.publish.cache_key and again.env == first.env
    assert json.loads((out / "manifest.json").read_text())["cache_key"] == first.publish.cache_key


# -- corrupt JPEGs and the md5 fast path (issue 10 item 4) ------------------------------------------


def _train_with_a_corrupt_jpeg(root: Path) -> tuple[Path, str]:
    """A 2-class ILSVRC2012_img_train.tar whose n01739381_9.JPEG is corrupted mid-scan (header intact)."""
    from jpeg_damage import stray_marker

    name = f"{WNIDS[1]}_9.JPEG"
    bad = stray_marker(imagenet_like_jpeg(9, width=64, height=48))
    train = make_train_tar(
        root / "ILSVRC2012_img_train.tar", wnids=WNIDS[:2], per_class=3, width=64, height=48, files={name: bad}
    )
    return train, f"{WNIDS[1]}/{name}"


@pytest.mark.parametrize(("variations", "workers"), [(None, 1), (None, 2), ("_nvidia", 1)])
def test_a_jpeg_corrupted_mid_scan_is_named_and_nothing_is_published(tmp_path, variations, workers):
    # Regression (issue 10 item 4): the header check passed it, it was packed, and decode_jpeg failed in training.
    import re

    train, member = _train_with_a_corrupt_jpeg(tmp_path)
    out = tmp_path / "o"
    config = resolve_training_config({"train_shards": 2, "validation_shards": 0}, variations=variations)
    with pytest.raises(ImageError, match=rf"{re.escape(str(train))}: {member}: corrupt JPEG: a full decode fails"):
        build_training_data(config=config, sink=LocalSink(out), train=train, validation=None, work_dir=tmp_path, workers=workers)
    assert not (out / "manifest.json").exists()
    holder = next(u for u in load_plan(LocalSink(out)).units if member in {i.ref.relpath for i in u.shard.items})
    assert not any((out / f).exists() for f in holder.files), "the unit holding the corrupt image is not written"
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]


def test_tars_with_the_published_md5_are_packed_after_a_header_check_only(data, tmp_path, monkeypatch, caplog):
    import logging

    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.training import variations as training_variations

    verified = _build(data, tmp_path / "full", tmp_path / "w0")
    # The published ImageNet md5s pointed at the fixture tars (the real ones are 146 GB).
    monkeypatch.setattr(training_variations, "TRAIN_TAR_MD5", file_digests(data["train"]).md5)
    monkeypatch.setattr(training_variations, "VAL_TAR_MD5", file_digests(data["val"]).md5)
    caplog.set_level(logging.INFO, logger="imagenet_ops")
    caplog.clear()  # only the second build's lines (an earlier test may have left INFO on)
    fast = _build(data, tmp_path / "fast", tmp_path / "w1", check_md5=True)

    assert "plan: 5 of 5 units come only from tars whose md5 matched the published ImageNet md5" in caplog.text
    lines = [r.getMessage() for r in caplog.records if "fast path" in r.getMessage()]
    shards = sorted(f["path"] for f in fast.publish.manifest["files"] if not f["path"].startswith(("report/", "idx/")))
    assert sorted(line.split(":")[0] for line in lines) == shards
    written = [r.getMessage() for r in caplog.records if r.name == "imagenet_ops.training.shards"]
    assert len(written) == 5 and all(line.endswith("header check only (md5 matched))") for line in written), written
    assert all(u.md5_verified for u in load_plan(LocalSink(tmp_path / "fast")).units), "kept in the stored plan"
    assert [(f["path"], f["checksum"]) for f in fast.publish.manifest["files"]] == [
        (f["path"], f["checksum"]) for f in verified.publish.manifest["files"]
    ], "the same bytes either way"


def test_a_user_given_md5_that_matches_still_gets_the_full_decode(tmp_path, caplog):
    import logging

    from imagenet_ops.core.digests import file_digests

    train, member = _train_with_a_corrupt_jpeg(tmp_path)
    config = resolve_training_config(
        {"train_shards": 2, "validation_shards": 0, "check_md5": True, "train_md5": file_digests(train).md5}
    )
    caplog.set_level(logging.INFO, logger="imagenet_ops")
    with pytest.raises(ImageError, match=rf"{member}: corrupt JPEG"):
        build_training_data(config=config, sink=LocalSink(tmp_path / "o"), train=train, validation=None, work_dir=tmp_path)
    assert "md5 " in caplog.text and "OK" in caplog.text
    assert "plan: 0 of 2 units come only from tars whose md5 matched the published ImageNet md5" in caplog.text
