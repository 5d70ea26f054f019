"""The accuracy check end to end on real runtimes: colour-reading models, colour-pattern sets, known answers.

Each sample model (``imagenet_ops.testing.model_samples``) reads an image's mean colour and names
the class whose colour is nearest (``pattern_samples``). A set made right therefore scores 100%;
a set made wrong scores what ``pattern_samples.read_colour`` predicts from the same pixels; a
pair that cannot fit is refused before any inference, naming both sides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.accuracy import DECLARATION as ACCURACY
from imagenet_ops.accuracy.pair import PairError
from imagenet_ops.accuracy.pipeline import AccuracyGateError, build_accuracy, raise_unless_passed
from imagenet_ops.accuracy.scoring import Summary, judge, to_labels
from imagenet_ops.core.errors import ValidationError
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.core.store import ObjectStore
from imagenet_ops.testing import accuracy_samples as samples
from imagenet_ops.testing.devserver import DevServer
from imagenet_ops.testing.pattern_samples import class_colours, read_colour

VGG_MEANS = np.array([123.68, 116.78, 103.94])
# 24 images over many classes, with the corner colours (all channels at level 0 or 9) among them
LABELS = {f"ILSVRC2012_val_{i:08d}.JPEG": label for i, label in enumerate([0, 999, 990, 909, 99, 9, *range(37, 37 * 19, 37)], 1)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accuracy")


@pytest.fixture(scope="module")
def mirror(root: Path):
    md5 = samples.write_model_files(root / "www")
    with DevServer(root / "www") as server:
        yield {"mirror": server.base_url, "md5_by_file": md5}


@pytest.fixture(scope="module")
def variant(root: Path, mirror):
    made: dict[str, str] = {}

    def publish(tags: str) -> str:
        if tags not in made:
            made[tags] = samples.publish_variant(
                tags, sink_root=str(root / "models"), work_dir=root / "work" / tags.replace(",", ""), **mirror
            )
        return made[tags]

    return publish


@pytest.fixture(scope="module")
def pattern_set(root: Path):
    made: dict[str, str] = {}

    def publish(tags: str = "", **options) -> str:
        key = tags + json.dumps(options, sort_keys=True)
        if key not in made:
            name = f"set{len(made)}"
            made[key] = samples.publish_set(
                str(root / "sets" / name), LABELS, work_dir=root / "work" / name, tags=tags, options=options
            )
        return made[key]

    return publish


def check(model: str, preprocessed: str, out: Path, **params):
    job = ACCURACY.resolve_job(
        {"model": model, "preprocessed": preprocessed, **params}, sink_uri=str(out), conn_id=None, work_dir=""
    )
    out.mkdir(parents=True, exist_ok=True)
    return build_accuracy(job, sink=open_sink(str(out)), store=ObjectStore(), work_dir=out.parent)


# Every framework path, each with the set its harness feeds it.
FRAMEWORKS = {
    "onnx NCHW, ArgMax output": ("_onnx", ""),
    "onnx from-tf NHWC, scores only": ("_onnx,_from-tf,_no-argmax", "_NHWC"),
    "tensorflow frozen graph": ("_tensorflow", "_NHWC"),
    "tensorflow fix-input-shape (batch 1)": ("_tensorflow,_fix-input-shape", "_NHWC"),
    "tflite, ArgMax output": ("_tflite,_argmax", "_NHWC"),
    "tflite, scores": ("_tflite,_no-argmax", "_NHWC"),
    "pytorch state dict (library ResNet-50)": ("_pytorch", "_pytorch"),
    "pytorch TorchScript (int8 .pt)": ("_pytorch,_int8", "_pytorch"),
    "ncnn": ("_ncnn", ""),
}


@pytest.mark.parametrize("case", FRAMEWORKS)
def test_each_framework_scores_a_right_set_at_100_percent(case, variant, pattern_set, tmp_path):
    model_tags, set_tags = FRAMEWORKS[case]
    publish, env, verdict = check(variant(model_tags), pattern_set(set_tags), tmp_path / "out", expected_top1=100)
    assert (env["CM_MLPERF_ACCURACY_TOP1"], env["CM_MLPERF_ACCURACY_IMAGES"], env["CM_MLPERF_ACCURACY_PASSED"]) == (
        "100.0000",
        str(len(LABELS)),
        "yes",
    )
    assert verdict.passed is True and not publish.cache_hit
    document = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert document["top5_correct"] == len(LABELS)  # every sample outputs scores (the tflite ArgMax one beside its ArgMax)
    assert document["model"]["class_offset"] == (0 if "_pytorch" in model_tags else 1)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"accuracy.json", "report/report.md"}


def test_a_wrong_mean_scores_what_the_colours_predict(variant, pattern_set, tmp_path):
    """Raw pixels (CM's generic preprocessor, no means subtracted) into a model that adds the means back."""
    raw = pattern_set("_generic-preprocessor,_float32,_NCHW,_npy")
    publish, env, verdict = check(variant("_onnx"), raw, tmp_path / "out")
    colours = class_colours()[list(LABELS.values())]
    predicted = [read_colour(c + VGG_MEANS) for c in colours]
    expected = 100.0 * sum(p == lab for p, lab in zip(predicted, LABELS.values(), strict=True)) / len(LABELS)
    assert 0 < expected < 100  # the corner colours survive the shift, the others do not
    assert float(env["CM_MLPERF_ACCURACY_TOP1"]) == pytest.approx(expected, abs=1e-4)
    assert verdict.passed is None and env["CM_MLPERF_ACCURACY_PASSED"] == "no-verdict"  # a subset, no expectation
    document = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert document["confusions"] and document["worst_classes"][0]["top1_correct"] == 0
    assert (tmp_path / "out" / "report" / "misclassified.png").stat().st_size > 1000


def test_a_missing_class_offset_scores_zero(variant, pattern_set, tmp_path):
    """The 1001-class model read without the -1 offset: every answer is the next class."""
    from imagenet_ops.accuracy.pair import read_model
    from imagenet_ops.accuracy.runtimes import open_runner

    model = read_model(ObjectStore(), variant("_onnx"))
    runner = open_runner(model, Path(model.location), threads=1, batch=4)
    files = sorted(Path(pattern_set("")).glob("*.npy"))[:4]
    out = runner.run(np.stack([np.load(f) for f in files]))
    right, _ = to_labels(out.top1, out.scores, offset=model.offset)
    wrong, _ = to_labels(out.top1, out.scores, offset=0)
    truth = [LABELS[f.name.removesuffix(".npy")] for f in files]
    assert list(right) == truth and list(wrong) == [t + 1 for t in truth]


def test_nhwc_set_into_nchw_model_is_refused_naming_both(variant, pattern_set, tmp_path):
    with pytest.raises(PairError) as refused:
        check(variant("_onnx"), pattern_set("_NHWC"), tmp_path / "out")
    message = str(refused.value)
    assert "onnx-fp32-argmax-opset11" in message and "an NHWC set into an NCHW model" in message and "_NHWC" in message
    assert not (tmp_path / "out" / "accuracy.json").exists()


def test_integer_set_into_float_model_is_refused(variant, pattern_set, tmp_path):
    uint8 = pattern_set("_generic-preprocessor,_uint8,_NCHW,_rgb8")
    with pytest.raises(PairError, match=r"uint8 tensors into a float32 input"):
        check(variant("_onnx"), uint8, tmp_path / "out")


def test_calibration_set_and_missing_val_map_are_refused(variant, pattern_set, root, tmp_path):
    copy = tmp_path / "no_val_map"
    shutil.copytree(pattern_set(""), copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "val_map.txt"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "val_map.txt").unlink()
    with pytest.raises(PairError, match=r"without val_map\.txt, so there are no labels"):
        check(variant("_onnx"), str(copy), tmp_path / "out")
    with pytest.raises(ValidationError, match=r"no imagenet_preprocessed published here"):
        check(variant("_onnx"), str(root / "www"), tmp_path / "out")
    with pytest.raises(ValidationError, match=r"the manifest of 'resnet50_model', not of imagenet_preprocessed"):
        check(variant("_onnx"), variant("_onnx"), tmp_path / "out")


def test_a_failed_expectation_is_published_then_raised(variant, pattern_set, tmp_path):
    raw = pattern_set("_generic-preprocessor,_float32,_NCHW,_npy")
    publish, env, verdict = check(variant("_onnx"), raw, tmp_path / "out", expected_top1=90)
    assert verdict.passed is False and env["CM_MLPERF_ACCURACY_PASSED"] == "no"
    assert (tmp_path / "out" / "accuracy.json").exists()  # the report can be read
    with pytest.raises(AccuracyGateError) as failed:
        raise_unless_passed(verdict)
    message = str(failed.value)
    assert "onnx-fp32-argmax-opset11" in message and raw in message and "FAILS" in message
    assert f"{env['CM_MLPERF_ACCURACY_TOP1']}%" in message and "vs expected 90.0%" in message


def test_rerun_is_a_cache_hit_and_chunks_give_the_same_bytes(variant, pattern_set, tmp_path):
    model, data = variant("_onnx"), pattern_set("")
    first = check(model, data, tmp_path / "one", expected_top1=100)
    again = check(model, data, tmp_path / "one", expected_top1=100)
    assert again[0].cache_hit and again[1] == first[1]
    check(model, data, tmp_path / "three", expected_top1=100, chunks=3, batch_size=5)
    one, three = (json.loads((tmp_path / d / "accuracy.json").read_text()) for d in ("one", "three"))
    assert three["batch_size"] == [5] and one["batch_size"] == [32]
    del one["batch_size"], three["batch_size"]
    assert one == three


def test_a_corrupt_tensor_is_named(variant, pattern_set, tmp_path):
    copy = tmp_path / "corrupt"
    shutil.copytree(pattern_set(""), copy)
    victim = copy / "ILSVRC2012_val_00000003.JPEG.npy"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(ValidationError, match=r"ILSVRC2012_val_00000003\.JPEG\.npy: truncated"):
        check(variant("_onnx"), str(copy), tmp_path / "out")
    victim.write_bytes(b"not a numpy file at all" * 10)
    with pytest.raises(ValidationError, match=r"ILSVRC2012_val_00000003\.JPEG\.npy: not a \.npy file"):
        check(variant("_onnx"), str(copy), tmp_path / "out")


def test_an_incomplete_state_dict_is_refused(root, mirror, pattern_set, tmp_path):
    """The model DAG's light sample (a subset of the keys) loads into no ResNet-50: strict loading says so."""
    from imagenet_ops.testing import model_samples as ms

    www = tmp_path / "www"
    www.mkdir()
    ms.make_torch_state_dict(www / "resnet50-19c8e357.pth")
    from imagenet_ops.core.digests import file_digests

    md5 = {"resnet50-19c8e357.pth": file_digests(www / "resnet50-19c8e357.pth").md5}
    with DevServer(www) as server:
        folder = samples.publish_variant(
            "_pytorch", mirror=server.base_url, md5_by_file=md5, sink_root=str(tmp_path / "m"), work_dir=tmp_path / "w"
        )
    with pytest.raises(ValidationError, match=r"resnet50-19c8e357\.pth: not a complete ResNet-50 state dict"):
        check(folder, pattern_set("_pytorch"), tmp_path / "out")


@pytest.mark.parametrize(
    ("top1_correct", "passed"),
    [(37848, True), (37847, False)],  # 75.696% vs 75.694%: the 75.6954% bar
)
def test_the_full_set_is_held_to_mlperfs_target(top1_correct, passed):
    summary = Summary(images=50_000, top1_correct=top1_correct, top5_correct=None, per_class={}, confusions=[])
    verdict = judge(summary, full_set=True, expected_top1=99.0, model_accuracy=76.456, model="model m", data="set s")
    assert verdict.passed is passed and verdict.expected_top1 == 75.6954
    assert "99% of 76.46% on all 50,000 images" in verdict.rule and "the variant states 76.456%" in verdict.message


def test_a_subset_labelled_from_the_whole_val_txt_is_not_the_full_set(variant, root, tmp_path):
    """Regression: 16 images with the aux's 50,000-line val_map.txt were held to the full set's MLPerf target."""
    labels = dict(list(LABELS.items())[:6])
    subset = samples.publish_set(
        str(root / "sets" / "of-val-txt"), labels, work_dir=root / "work" / "of-val-txt", more_labels=50_000 - len(labels)
    )
    _, env, verdict = check(variant("_onnx"), subset, tmp_path / "out")
    assert verdict.passed is None and env["CM_MLPERF_ACCURACY_IMAGES"] == "6", env
    assert env["CM_MLPERF_ACCURACY_RULE"] == "none: 6 of 50,000 images and no expected top-1 given"


def test_images_the_full_set_skipped_count_as_wrong():
    summary = Summary(images=49_990, top1_correct=37_848, top5_correct=None, per_class={}, confusions=[]).with_unscored(10)
    assert summary.images == 50_000 and summary.top1 == pytest.approx(75.696)


# -- the pair an Asset-triggered check picks --------------------------------------------------


def test_a_new_nhwc_variant_is_paired_with_the_newest_set_that_fits_it(variant, pattern_set, root):
    from imagenet_ops.accuracy.pair import newest_fitting_pair

    tflite, nchw, nhwc = variant("_tflite,_no-argmax"), pattern_set(""), pattern_set("_NHWC")
    gone = str(root / "removed_set")  # an older event whose artifact was deleted since: passed over
    pair = newest_fitting_pair(
        ObjectStore(), models=[tflite, variant("_onnx")], sets=[nchw, gone, nchw, nhwc], published_last="resnet50_model"
    )
    assert pair == (tflite, nhwc)


def test_a_new_set_is_paired_with_the_newest_variant_that_fits_it(variant, pattern_set):
    from imagenet_ops.accuracy.pair import newest_fitting_pair

    tflite, onnx, nchw = variant("_tflite,_no-argmax"), variant("_onnx"), pattern_set("")
    pair = newest_fitting_pair(ObjectStore(), models=[tflite, onnx], sets=[nchw], published_last="imagenet_preprocessed")
    assert pair == (onnx, nchw)


def test_nothing_fitting_the_newest_artifact_says_why_the_newest_candidate_did_not(variant, pattern_set, tmp_path):
    from imagenet_ops.accuracy.pair import NoFittingPair, newest_fitting_pair

    store, tflite, nchw = ObjectStore(), variant("_tflite,_no-argmax"), pattern_set("")
    with pytest.raises(NoFittingPair) as none:
        newest_fitting_pair(store, models=[tflite], sets=[nchw], published_last="resnet50_model")
    message = str(none.value)
    assert "tflite-fp32-no-argmax" in message and "fits none of the 1 newest published imagenet_preprocessed" in message
    assert "an NCHW set into an NHWC model" in message

    calibration = tmp_path / "calibration"  # a set without labels, published last: nothing to check
    shutil.copytree(nchw, calibration)
    manifest = json.loads((calibration / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "val_map.txt"]
    (calibration / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NoFittingPair, match=r"no labels to score against: nothing to check"):
        newest_fitting_pair(store, models=[variant("_onnx")], sets=[str(calibration)], published_last="imagenet_preprocessed")

    with pytest.raises(ValidationError, match=r"no resnet50_model published here") as broken:  # the newest itself unreadable
        newest_fitting_pair(store, models=[str(tmp_path / "nothing")], sets=[nchw], published_last="resnet50_model")
    assert not isinstance(broken.value, NoFittingPair)
