"""``imagenet_preprocessed`` run for real with dag.test(): mapped chunks, bit-exact outputs, cache hit, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.testing.preprocess_samples import plain_images, sample_images, write_images_tar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def val_inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("val")
    images = {**sample_images(["landscape", "portrait", "gray", "cmyk", "png"]), **plain_images(4, start=6)}
    tar = write_images_tar(root / "ILSVRC2012_img_val.tar", images)
    val_map = root / "val.txt"
    val_map.write_text("".join(f"{name} {i % 1000}\n" for i, name in enumerate(sorted(images))))
    return {"images": str(tar), "val_map": str(val_map), "names": sorted(images)}


@pytest.fixture
def preprocessed_dag(airflow_db):
    from local_run import load_dag

    return load_dag("imagenet_preprocessed")


def _reference_vgg(data: bytes) -> np.ndarray:
    """MLPerf's pre_process_vgg written out plainly (cv2 decode, 87.5% resize, centre crop, mean subtraction, CHW)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    side = int(100.0 * 224 / 87.5)
    nh, nw = (int(side * h / w), side) if h > w else (side, int(side * w / h))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = int((nh - 224) / 2), int((nw - 224) / 2)
    img = np.asarray(img[top : top + 224, left : left + 224], dtype="float32") - np.array(
        [123.68, 116.78, 103.94], dtype="float32"
    )
    return img.transpose([2, 0, 1])


def test_mapped_chunks_bit_exact_then_cache_hit(preprocessed_dag, val_inputs, tmp_path):
    import tarfile

    from local_run import run_dag

    conf = {
        "images": val_inputs["images"],
        "val_map": val_inputs["val_map"],
        "size": 7,
        "chunks": 3,
        "workers": 1,
        "sink_uri": str(tmp_path / "pre"),
    }
    run = run_dag(preprocessed_dag, conf)
    assert run.state == "success", run.task_states
    assert sorted(k for k in run.task_states if k.startswith("preprocess[")) == [f"preprocess[{i}]" for i in range(3)]
    env = run.xcom("finalize")
    out = tmp_path / "pre"
    assert env["CM_DATASET_PREPROCESSED_PATH"] == str(out)
    assert env["CM_DATASET_SIZE"] == "7"
    names = val_inputs["names"][:7]  # the first 7 lines of val_map, in order
    assert (out / "preprocessed_filenames.txt").read_text() == "\n".join(f"{n}.npy" for n in names)
    assert (out / "val_map.txt").read_text() == Path(val_inputs["val_map"]).read_text()
    with tarfile.open(val_inputs["images"]) as tar:
        for name in names:
            expected = _reference_vgg(tar.extractfile(name).read())
            got = np.load(out / f"{name}.npy")
            assert got.dtype == np.float32 and got.shape == (3, 224, 224)
            assert got.tobytes() == expected.tobytes(), f"{name}: not bit-exact with pre_process_vgg"
    manifest_mtime = (out / "manifest.json").stat().st_mtime_ns

    again = run_dag(preprocessed_dag, conf)
    assert again.state == "success", again.task_states
    assert again.xcom("select")["hit"] is True
    assert not any(k.startswith("preprocess[") for k in again.task_states)
    assert again.xcom("finalize") == env
    assert (out / "manifest.json").stat().st_mtime_ns == manifest_mtime


def test_generic_uint8_from_cm_tags(preprocessed_dag, val_inputs, tmp_path):
    from local_run import run_dag

    conf = {
        "images": val_inputs["images"],
        "val_map": val_inputs["val_map"],
        "variations": "_for.resnet50,_NHWC,_uint8,_size.4",
        "chunks": 2,
        "workers": 1,
        "sink_uri": str(tmp_path / "u8"),
    }
    run = run_dag(preprocessed_dag, conf)
    assert run.state == "success", run.task_states
    env = run.xcom("finalize")
    assert (env["CM_DATASET_DATA_TYPE"], env["CM_DATASET_DATA_LAYOUT"], env["CM_DATASET_SIZE"]) == ("uint8", "NHWC", "4")
    files = sorted(p.name for p in (tmp_path / "u8").glob("ILSVRC2012_val_*"))
    assert files == [f"{n.rsplit('.', 1)[0]}.rgb32" for n in val_inputs["names"][:4]]
    assert all((tmp_path / "u8" / f).stat().st_size == 224 * 224 * 3 for f in files)


def test_conflicting_variations_fail_in_resolve(preprocessed_dag, val_inputs, tmp_path):
    from local_run import run_dag

    conf = {
        **{k: val_inputs[k] for k in ("images", "val_map")},
        "variations": "_tflite_tpu,_NCHW",
        "sink_uri": str(tmp_path / "x"),
    }
    run = run_dag(preprocessed_dag, conf)
    assert run.state == "failed" and run.task_states["resolve"] == "failed"
    assert run.tries["resolve"] == 1


def test_corrupt_image_fails_its_chunk_and_publishes_nothing(preprocessed_dag, val_inputs, tmp_path):
    from local_run import run_dag

    from imagenet_ops.testing.preprocess_samples import val_name

    images = plain_images(3)
    images[val_name(2)] = images[val_name(2)][:2000]  # truncated JPEG
    tar = write_images_tar(tmp_path / "bad.tar", images)
    val_map = tmp_path / "val.txt"
    val_map.write_text("".join(f"{n} 0\n" for n in sorted(images)))
    run = run_dag(
        preprocessed_dag,
        {"images": str(tar), "val_map": str(val_map), "size": 3, "chunks": 1, "workers": 1, "sink_uri": str(tmp_path / "o")},
    )
    assert run.state == "failed"
    assert run.task_states["preprocess[0]"] == "failed"
    assert run.tries["preprocess[0]"] == 1, "a corrupt image is bad input: no retries"
    assert not (tmp_path / "o" / "manifest.json").exists()
