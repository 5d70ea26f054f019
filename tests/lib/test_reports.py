"""Data-quality reports: what each artifact's ``report/`` says, and that it catches what it is there to catch."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.core import charts
from imagenet_ops.core.report import REPORT_MD, REPORTS_SWITCH, Report
from imagenet_ops.core.sinks import LocalSink
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.ops import Preprocessor
from imagenet_ops.preprocessed.pipeline import build_preprocessed
from imagenet_ops.preprocessed.viewable import channels_first, mean_abs_difference, viewable
from imagenet_ops.testing.preprocess_samples import sample_image, sample_images, val_map_text, write_images_tar
from imagenet_ops.testing.samples import aux_file_contents

# Every layout / order / normalisation / quantisation the variation table can give a set.
CONFIG_TAGS = [
    f"_for.{model},_{pre},_{layout},_{precision}"
    for model in ("resnet50", "mobilenet", "none")
    for pre in ("reference", "generic")
    for layout in ("NCHW", "NHWC")
    for precision in ("float32", "int8", "uint8")
] + ["_pytorch", "_pytorch,_NHWC", "_tflite_tpu"]


def _configs():
    seen, out = set(), []
    for tags in CONFIG_TAGS:
        try:
            config = resolve_preprocess_config(variations=tags)
        except Exception:  # noqa: BLE001 - a combination the table refuses is not a set anyone can build
            continue
        key = json.dumps({k: v for k, v in config.cache_params().items() if k not in ("size",)}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(pytest.param(config, id=tags))
    return out


def _cv2_crop(image: bytes, config) -> np.ndarray:
    """The preprocessing's own aspect resize and centre crop of ``image`` (OpenCV), as RGB: what a correct tensor shows."""
    import cv2

    from imagenet_ops.preprocessed.ops import _resize_crop, decode_bgr

    crop = _resize_crop(decode_bgr(image, "x.JPEG"), config.resolution, config.crop_factor, cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop[:, :, ::-1])


@pytest.mark.parametrize("config", _configs())
def test_a_tensor_read_as_declared_looks_like_its_source_and_a_swapped_one_does_not(config):
    image = sample_image("landscape")
    tensor = Preprocessor(config).array(image, "x.JPEG")
    crop = _cv2_crop(image, config)
    picture, _ = viewable(tensor, config)
    # an int8 stage saturates at 127 (CM's int8 cast and quantisation, fixed to saturate): compare with the crop clipped so
    saturates = not config.is_reference and int(picture.max()) <= 127 < int(crop.max())
    assert mean_abs_difference(picture, np.minimum(crop, 127) if saturates else crop) < 6
    swapped = tensor[::-1] if channels_first(config) else tensor[..., ::-1]  # BGR where RGB is declared
    assert mean_abs_difference(viewable(np.ascontiguousarray(swapped), config)[0], crop) > 40


@pytest.fixture
def val_set(tmp_path: Path) -> dict[str, Path]:
    images = sample_images()
    tar = write_images_tar(tmp_path / "val.tar", images)
    val_map = tmp_path / "val_map.txt"
    val_map.write_text(val_map_text(sorted(images)))
    return {"tar": tar, "val_map": val_map, "count": len(images)}


def _build_set(val_set, out: Path, tags: str = "_for.resnet50,_reference,_NCHW"):
    config = resolve_preprocess_config({"size": val_set["count"]}, variations=tags)
    return config, build_preprocessed(
        config=config, source=str(val_set["tar"]), output=str(out), val_map=val_set["val_map"], workers=1
    )


def test_the_preprocessed_report_shows_samples_values_classes_and_passes_on_a_good_set(val_set, tmp_path):
    _, result = _build_set(val_set, tmp_path / "out")
    report = (tmp_path / "out" / REPORT_MD).read_text()
    assert "all checks passed" in report
    assert f"{val_set['count']} published images in" in report
    listed = {f["path"] for f in result.publish.manifest["files"]}
    for picture in ("contact_sheet.png", "channel_values.png", "classes.png"):
        data = (tmp_path / "out" / "report" / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and f"report/{picture}" in listed
        assert f"({picture})" in report  # shown in the markdown


def test_the_preprocessed_report_catches_a_tensor_whose_channels_do_not_match_its_declaration(val_set, tmp_path):
    # A set whose bytes are BGR where the manifest says RGB: what the contact sheet is for.
    from imagenet_ops.preprocessed.pipeline import select_images
    from imagenet_ops.preprocessed.report import preprocessed_report
    from imagenet_ops.preprocessed.sources import image_ref

    config, _ = _build_set(val_set, tmp_path / "out")
    sink = LocalSink(tmp_path / "out")
    refs = [image_ref(i) for i in select_images(config=config, source=str(val_set["tar"]), val_map=val_set["val_map"])]
    first = tmp_path / "out" / config.output_name(refs[0].name)
    np.save(first, np.ascontiguousarray(np.load(first)[::-1]))  # NCHW planes R,G,B written as B,G,R
    report = preprocessed_report(
        config=config,
        sink=sink,
        refs=refs,
        published=[r.name for r in refs],
        reasons={},
        val_map=val_set["val_map"],
        total_bytes=0,
    )
    assert any("matches its source's centre crop" in p for p in report.problems), report.problems
    assert "check(s) failed" in report.markdown()


def test_skipped_bad_images_are_listed_with_their_reasons(val_set, tmp_path):
    with tarfile.open(val_set["tar"], "a") as tar:
        broken = b"\xff\xd8not a jpeg"
        info = tarfile.TarInfo("ILSVRC2012_val_00000011.JPEG")
        info.size = len(broken)
        tar.addfile(info, io.BytesIO(broken))
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 12)]
    val_set["val_map"].write_text(val_map_text(names))
    val_set["count"] = 11
    config = resolve_preprocess_config({"size": 11, "skip_bad_images": True})
    build_preprocessed(
        config=config, source=str(val_set["tar"]), output=str(tmp_path / "o"), val_map=val_set["val_map"], workers=1
    )
    report = (tmp_path / "o" / REPORT_MD).read_text()
    assert "1 selected image(s) were skipped as bad" in report and "ILSVRC2012_val_00000011.JPEG" in report


def test_the_aux_report_counts_every_file_and_flags_a_class_short_of_images(tmp_path):
    from imagenet_ops.aux.report import aux_report
    from imagenet_ops.aux.variations import resolve_aux_config

    for name, data in aux_file_contents().items():
        (tmp_path / name).write_bytes(data)
    good = aux_report(tmp_path, config=resolve_aux_config())
    assert good.problems == [] and "| val.txt | 50000 |" in good.markdown()
    assert "| train.txt | 2000 |" in good.markdown()
    lines = (tmp_path / "val.txt").read_text().splitlines()
    moved = next(i for i, line in enumerate(lines) if line.endswith(" 7"))
    lines[moved] = lines[moved].rsplit(" ", 1)[0] + " 8"  # class 7 loses an image to class 8
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    bad = aux_report(tmp_path, config=resolve_aux_config())
    assert bad.problems == ["every class has 50 validation images (2 do not)"]
    assert "| n" in bad.markdown().split("every class has 50")[1]  # the classes are named


def test_the_model_report_puts_what_the_check_found_beside_what_the_variant_needs(tmp_path):
    from imagenet_ops.model.interface import ModelCheckResult
    from imagenet_ops.model.pipeline import expected_interface
    from imagenet_ops.model.report import model_report
    from imagenet_ops.model.variations import resolve_model_config

    config = resolve_model_config(variations="_onnx")
    (tmp_path / "resnet50_v1.onnx").write_bytes(b"model bytes")
    check = ModelCheckResult(
        "onnx", ["resnet50_v1.onnx"], "onnx", {"input_tensor:0": [None, 3, 224, 224]}, {"softmax_tensor:0": [None, 1001]}, "ok"
    )
    text = model_report(
        config=config,
        folder=tmp_path,
        files=["resnet50_v1.onnx"],
        env={"CM_ML_MODEL_FILE_WITH_PATH": "/x/resnet50_v1.onnx"},
        expected=expected_interface(config),
        check=check,
    ).markdown()
    assert "| input | input_tensor:0 | [?,3,224,224] | [?,3,224,224] |" in text
    assert "| output | softmax_tensor:0 | [?,1001] | [?,1001] |" in text
    assert "5acdb6d4d4a2ed3aa5d2ae8fb2a7d5c8" not in text and "| resnet50_v1.onnx | 11 B | 11 |" in text
    assert "| CM_ML_MODEL_FILE_WITH_PATH | /x/resnet50_v1.onnx |" in text


def test_the_record_parser_reads_what_tensorflow_reads(tmp_path):
    # Upstream check: our TF-free parser of a shard's head against tf.train.Example on the same bytes.
    import tensorflow as tf

    from imagenet_ops.training.report import example_features, tfrecord_payloads
    from imagenet_ops.training.tfrecord import TFRecordWriter, imagenet_example

    jpeg = sample_image("square")
    path = tmp_path / "shard"
    with TFRecordWriter(path) as writer:
        for label in (3, 1000):
            writer.write(
                imagenet_example(encoded=jpeg, height=300, width=300, label=label, synset="n01440764", filename="a.JPEG")
            )
    payloads = list(tfrecord_payloads(path.read_bytes()[:-10]))  # a head cut inside the last record: only whole ones
    assert len(payloads) == 1
    ours = example_features(path.read_bytes()[12 : 12 + len(payloads[0])])
    theirs = tf.train.Example.FromString(payloads[0]).features.feature
    for key in ("image/class/label", "image/height", "image/width"):
        assert ours[key] == list(theirs[key].int64_list.value)
    for key in ("image/encoded", "image/class/synset", "image/filename"):
        assert ours[key] == list(theirs[key].bytes_list.value)


def test_the_same_data_gives_the_same_report_bytes():
    values = list(range(50))
    assert charts.bar_chart("t", values) == charts.bar_chart("t", values)
    rows = [[("a", np.full((20, 30, 3), 200, np.uint8))]]
    assert charts.contact_sheet(rows) == charts.contact_sheet(rows)
    r = Report("x").check(False, "bad").picture("p.png", b"png", "a picture")
    assert r.files() == Report("x").check(False, "bad").picture("p.png", b"png", "a picture").files()
    assert r.summary() == {"report": REPORT_MD, "pictures": ["p.png"], "problems": ["bad"]}


def test_reports_can_be_switched_off(val_set, tmp_path, monkeypatch):
    monkeypatch.setenv(REPORTS_SWITCH, "off")
    _, result = _build_set(val_set, tmp_path / "out")
    assert not (tmp_path / "out" / "report").exists()
    assert not any(f["path"].startswith("report/") for f in result.publish.manifest["files"])


def test_a_report_picture_the_new_artifact_does_not_make_is_removed_with_the_old_artifact(tmp_path):
    # Training data with a train split, then validation only, to the same output: no stale classes_train.png.
    from imagenet_ops.testing.samples import make_train_tar, make_val_tar, val_synset_labels
    from imagenet_ops.training.pipeline import build_training_data
    from imagenet_ops.training.variations import resolve_training_config

    wnids = ["n01440764", "n01739381"]
    train = make_train_tar(tmp_path / "train.tar", wnids=wnids, per_class=2, width=40, height=30)
    val = make_val_tar(tmp_path / "val.tar", count=3, width=40, height=30)
    labels = tmp_path / "labels.txt"
    labels.write_text(val_synset_labels(3, wnids))
    out = tmp_path / "out"
    config = resolve_training_config({"train_shards": 1, "validation_shards": 1})
    common = {"config": config, "sink": LocalSink(out), "validation": val, "validation_labels": labels}
    build_training_data(**common, train=train, work_dir=tmp_path / "w1")
    assert (out / "report" / "classes_train.png").is_file()
    done = build_training_data(**common, train=None, work_dir=tmp_path / "w2")
    assert not (out / "report" / "classes_train.png").exists()
    assert (out / "report" / "classes_validation.png").is_file()
    assert "train" not in (out / REPORT_MD).read_text().split("## Classes per split")[1].split("##")[0].replace("validation", "")
    assert {f["path"] for f in done.publish.manifest["files"]} >= {REPORT_MD, "report/classes_validation.png"}
