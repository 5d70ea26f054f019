"""Preprocessed sets end to end: selection, sources (folder, tar, S3, GCS), chunks, bad images, publish, CLI, cache."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.__main__ import main
from imagenet_ops.core.errors import ChecksumMismatch, ConfigError, ImageError, StorageError, ValidationError
from imagenet_ops.core.manifest import MANIFEST_NAME, read_manifest
from imagenet_ops.core.sinks import LocalSink, S3Sink
from imagenet_ops.core.store import ObjectStore
from imagenet_ops.preprocessed import chunks as chunk_state
from imagenet_ops.preprocessed import pipeline as preprocess
from imagenet_ops.preprocessed import sources
from imagenet_ops.preprocessed.chunks import plan_chunks, preprocess_chunk
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.pipeline import (
    BAD_IMAGES,
    FILES_LIST,
    NAMES_LIST,
    VAL_MAP,
    build_preprocessed,
    check_cache,
    finalize_preprocessed,
    select_images,
)
from imagenet_ops.preprocessed.report import REPORT_FILES
from imagenet_ops.testing.preprocess_samples import (
    calibration_list_text,
    plain_images,
    sample_images,
    val_map_text,
    val_name,
    write_folder,
    write_images_tar,
)

COUNT = 8


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    """``COUNT`` small validation images (fast to preprocess) plus one of each awkward kind after them."""
    out = plain_images(COUNT, width=64, height=48)
    out.update(sample_images(["gray", "cmyk", "png", "portrait"], start=COUNT + 1))
    return out


@pytest.fixture
def inputs(tmp_path: Path, images: dict[str, bytes]) -> dict[str, Path]:
    names = sorted(images)
    cal = [names[5], names[1], names[10], names[3]]  # calibration lists are not in val order
    (tmp_path / "val_map.txt").write_text(val_map_text(names))
    (tmp_path / "cal1.txt").write_text(calibration_list_text(cal, option="option1"))
    (tmp_path / "cal2.txt").write_text(calibration_list_text(cal, option="option2"))
    return {
        "folder": write_folder(tmp_path / "val", images),
        "tar": write_images_tar(tmp_path / "ILSVRC2012_img_val.tar", images),
        "val_map": tmp_path / "val_map.txt",
        "cal1": tmp_path / "cal1.txt",
        "cal2": tmp_path / "cal2.txt",
    }


def _build(config, inputs: dict[str, Path], source: str, out: Path, **kwargs):
    """build_preprocessed from ``inputs[source]`` with the sample val_map, in this process unless told."""
    kwargs.setdefault("workers", 1)
    return preprocess.build_preprocessed(
        config=config, source=str(inputs[source]), output=str(out), val_map=inputs["val_map"], **kwargs
    )


def _outputs(folder: Path) -> dict[str, str]:
    """sha256 of every published file (the report's too), by path; the output's own state is left out."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.relative_to(folder).as_posix().startswith("."))
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_validation_takes_the_first_lines_in_order(inputs) -> None:
    config = resolve_preprocess_config({"size": 5})
    items = select_images(config=config, source=str(inputs["folder"]), val_map=inputs["val_map"])
    assert [i.name for i in items] == [val_name(i) for i in range(1, 6)]
    assert all(i.container.endswith(i.name) and i.size > 0 for i in items)


def test_build_writes_cm_outputs_and_lists(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = resolve_preprocess_config({"size": 3})
    result = _build(config, inputs, "folder", out)
    names = [f"{val_name(i)}.npy" for i in (1, 2, 3)]
    assert (out / NAMES_LIST).read_text() == "\n".join(names)  # no trailing newline, as CM
    assert (out / FILES_LIST).read_text() == "\n".join(str(out / n) for n in names)
    assert (out / VAL_MAP).read_bytes() == inputs["val_map"].read_bytes()
    assert not (inputs["folder"] / VAL_MAP).exists()  # never written into the source
    arr = np.load(out / names[0])
    assert arr.shape == (3, 224, 224) and arr.dtype == np.float32
    env = result.env
    assert env["CM_DATASET_PREPROCESSED_PATH"] == str(out)
    assert env["CM_DATASET_PREPROCESSED_IMAGES_LIST"] == str(out / FILES_LIST)
    assert env["CM_DATASET_PREPROCESSED_IMAGENAMES_LIST"] == str(out / NAMES_LIST)
    assert env["CM_DATASET_IMAGES_LIST"] == str(out / VAL_MAP)
    assert (env["CM_DATASET_SIZE"], env["CM_DATASET_TYPE"], env["CM_DATASET_DATA_LAYOUT"]) == ("3", "validation", "NCHW")
    manifest = read_manifest(LocalSink(out))
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(names) | {FILES_LIST, NAMES_LIST, VAL_MAP} | set(REPORT_FILES)
    for name, entry in listed.items():
        data = (out / name).read_bytes()
        import google_crc32c

        assert (entry["size"], entry["checksum"]) == (len(data), f"crc32c:{google_crc32c.value(data):08x}")
    assert manifest["outputs"] == {"count": 3, "bad": []}
    assert not result.publish.cache_hit


def test_tar_and_folder_sources_give_the_same_bytes(inputs, tmp_path: Path) -> None:
    config = resolve_preprocess_config({"size": 12}, "_for.resnet50")
    _build(config, inputs, "folder", tmp_path / "a")
    _build(config, inputs, "tar", tmp_path / "b")
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    a.pop(MANIFEST_NAME), b.pop(MANIFEST_NAME)
    a.pop(FILES_LIST), b.pop(FILES_LIST)  # full paths differ
    assert a == b and len([n for n in a if n.endswith(".rgb32")]) == 12
    assert (tmp_path / "a" / "files.txt").read_text() == "".join(f"{val_name(i)[:-5]}.rgb32\n" for i in range(1, 13))


@pytest.mark.parametrize("option", ["cal1", "cal2"])
@pytest.mark.parametrize("preprocessor", ["generic-preprocessor", "mlcommons-reference-preprocessor"])
def test_both_calibration_lists_work_with_both_preprocessors(inputs, tmp_path: Path, option: str, preprocessor: str) -> None:
    # CM: the reference crashes on option1 (one token per line), the generic drops option2 lines.
    cm_option = "_mlperf.option1" if option == "cal1" else "_mlperf.option2"
    config = resolve_preprocess_config({"size": 4}, f"_calibration,{cm_option},_{preprocessor}")
    out = tmp_path / "out"
    result = build_preprocessed(
        config=config, source=str(inputs["tar"]), output=str(out), calibration_list=inputs[option], workers=1
    )
    listed = [line.split()[0] for line in inputs[option].read_text().splitlines()]
    expected = sorted(config.output_name(n) for n in listed)
    assert (out / NAMES_LIST).read_text().split("\n") == expected
    assert (out / config.calibration_filename).read_bytes() == inputs[option].read_bytes()
    assert result.env["CM_DATASET_IMAGES_LIST"] == str(out / config.calibration_filename)
    assert result.env["CM_DATASET_TYPE"] == "calibration"


def test_chunks_cover_the_set_and_match_a_single_run(inputs, tmp_path: Path) -> None:
    config = resolve_preprocess_config({"size": 12}, "_for.resnet50,_uint8")
    items = select_images(config=config, source=str(inputs["tar"]), val_map=inputs["val_map"])
    chunks = plan_chunks(items, 5)
    assert [len(c) for c in chunks] == [2, 2, 3, 2, 3]
    assert json.loads(json.dumps(chunks)) == chunks  # XCom-ready
    sink = LocalSink(tmp_path / "chunked")
    assert not check_cache(config=config, sink=sink, items=items, val_map=inputs["val_map"]).hit
    results = [
        preprocess_chunk(config=config, source=str(inputs["tar"]), items=c, sink=sink, workers=1).as_dict() for c in chunks
    ]
    finalize_preprocessed(config=config, sink=sink, items=items, chunk_results=results, val_map=inputs["val_map"])
    _build(config, inputs, "tar", tmp_path / "one")
    assert _outputs(tmp_path / "chunked").keys() == _outputs(tmp_path / "one").keys()
    a, b = read_manifest(sink), read_manifest(LocalSink(tmp_path / "one"))
    assert a["cache_key"] == b["cache_key"]
    strip = {FILES_LIST}
    assert [f for f in a["files"] if f["path"] not in strip] == [f for f in b["files"] if f["path"] not in strip]
    # a retried chunk rewrites exactly its own files
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "chunked").iterdir()}
    again = preprocess_chunk(config=config, source=str(inputs["tar"]), items=chunks[1], sink=sink, workers=1)
    changed = {p.name for p in (tmp_path / "chunked").iterdir() if p.stat().st_mtime_ns != before.get(p.name)}
    assert changed == {f["path"] for f in again.files} and again.files == results[1]["files"]


def test_finalize_refuses_a_missing_chunk(inputs, tmp_path: Path) -> None:
    config = resolve_preprocess_config({"size": 4})
    items = select_images(config=config, source=str(inputs["folder"]), val_map=inputs["val_map"])
    sink = LocalSink(tmp_path / "out")
    first = preprocess_chunk(config=config, source="x", items=plan_chunks(items, 2)[0], sink=sink, workers=1)
    with pytest.raises(StorageError, match=rf"2 selected image\(s\) have no output .*{val_name(3)}"):
        finalize_preprocessed(config=config, sink=sink, items=items, chunk_results=[first])


def test_worker_processes_give_identical_outputs(inputs, tmp_path: Path) -> None:
    config = resolve_preprocess_config({"size": 12, "layout": "NHWC"})
    _build(config, inputs, "tar", tmp_path / "w1")
    result = build_preprocessed(
        config=config, source=str(inputs["tar"]), output=str(tmp_path / "w2"), val_map=inputs["val_map"], workers=2, chunks=2
    )
    one, two = _outputs(tmp_path / "w1"), _outputs(tmp_path / "w2")
    for name in (FILES_LIST, MANIFEST_NAME):  # they hold the output's own path
        one.pop(name), two.pop(name)
    assert one == two and len(one) == 12 + 2 + len(REPORT_FILES)
    assert [c.count for c in result.chunks] == [6, 6]


def test_rerun_is_a_cache_hit(inputs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = resolve_preprocess_config({"size": 2})
    args = {"config": config, "source": str(inputs["folder"]), "output": str(tmp_path / "out"), "val_map": inputs["val_map"]}
    first = build_preprocessed(**args, workers=1)
    stamp = (tmp_path / "out" / MANIFEST_NAME).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="imagenet_ops.preprocessed.pipeline"):
        second = build_preprocessed(**args, workers=1)
    assert second.publish.cache_hit and second.chunks == [] and second.env == first.env
    assert second.publish.cache_key == first.publish.cache_key
    assert (tmp_path / "out" / MANIFEST_NAME).stat().st_mtime_ns == stamp
    assert "cache hit" in caplog.text
    # other params: the old manifest goes first, then everything is rebuilt
    other = resolve_preprocess_config({"size": 2, "layout": "NHWC"})
    third = build_preprocessed(**{**args, "config": other}, workers=1)
    assert not third.publish.cache_hit and third.publish.cache_key != first.publish.cache_key


# -- bad inputs ------------------------------------------------------------------------------------


def test_missing_image_is_named(inputs) -> None:
    (inputs["folder"] / val_name(3)).unlink()
    config = resolve_preprocess_config({"size": 5})
    with pytest.raises(ValidationError, match=rf"lacks 1 of the 5 listed images: {val_name(3)}"):
        select_images(config=config, source=str(inputs["folder"]), val_map=inputs["val_map"])


def test_short_list_is_an_error(inputs) -> None:
    config = resolve_preprocess_config({"size": 40})
    with pytest.raises(ValidationError, match=r"lists only 12 images but 40 were requested \(missing list entries 13..40\)"):
        select_images(config=config, source=str(inputs["folder"]), val_map=inputs["val_map"])


def test_lists_are_required(inputs) -> None:
    with pytest.raises(ConfigError, match="validation needs val_map"):
        select_images(config=resolve_preprocess_config(), source=str(inputs["folder"]))
    with pytest.raises(ValidationError, match=r"line 2 'x y z' is not"):
        inputs["cal1"].write_text("ILSVRC2012_val_00000001.JPEG\nx y z\n")
        select_images(config=resolve_preprocess_config({"size": 1}, "_calibration"), source=".", calibration_list=inputs["cal1"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: b"", r"ILSVRC2012_val_00000002.JPEG: empty file \(0 bytes\)"),
        (lambda d: d[: len(d) // 2], r"ILSVRC2012_val_00000002.JPEG: truncated JPEG"),
        (lambda d: b"GIF89a" + d[6:], r"ILSVRC2012_val_00000002.JPEG: cannot decode image"),
    ],
)
def test_bad_image_fails_with_its_name(inputs, tmp_path: Path, damage, message: str) -> None:
    path = inputs["folder"] / val_name(2)
    path.write_bytes(damage(path.read_bytes()))
    config = resolve_preprocess_config({"size": 4})
    with pytest.raises(ImageError, match=message):
        _build(config, inputs, "folder", tmp_path / "o")
    assert not (tmp_path / "o" / MANIFEST_NAME).exists()


def test_skip_bad_images_reports_them(inputs, tmp_path: Path) -> None:
    (inputs["folder"] / val_name(2)).write_bytes(b"")
    (inputs["folder"] / val_name(4)).unlink()
    data = (inputs["folder"] / val_name(5)).read_bytes()
    (inputs["folder"] / val_name(5)).write_bytes(data[:-300])
    config = resolve_preprocess_config({"size": 6, "skip_bad_images": True}, "_for.resnet50")
    out = tmp_path / "out"
    result = _build(config, inputs, "folder", out)
    report = (out / BAD_IMAGES).read_text().splitlines()
    assert [line.split("\t")[0] for line in report] == [val_name(2), val_name(4), val_name(5)]
    assert "empty file" in report[0] and "not found in the image source" in report[1] and "truncated JPEG" in report[2]
    assert (out / NAMES_LIST).read_text().split("\n") == [f"{val_name(i)[:-5]}.rgb32" for i in (1, 3, 6)]
    assert result.env["CM_DATASET_SIZE"] == "3"
    assert read_manifest(LocalSink(out))["outputs"]["bad"] == [val_name(2), val_name(4), val_name(5)]
    # Regression (issue 10 item 4): the skipped images stayed listed in the published val_map.txt.
    published = [line.split()[0] for line in (out / VAL_MAP).read_text().splitlines()]
    listed = [line.split()[0] for line in inputs["val_map"].read_text().splitlines()]
    assert published == [n for n in listed if n not in {val_name(2), val_name(4), val_name(5)}]


def test_url_source_needs_a_download(inputs) -> None:
    with pytest.raises(ConfigError, match="is a URL: download it first"):
        select_images(config=resolve_preprocess_config({"size": 1}), source="http://127.0.0.1:9/v.tar", val_map=inputs["val_map"])


# -- downloads and object storage --------------------------------------------------------------------


def test_downloads_use_the_mirror_and_checksums(inputs, images, http_server, tmp_path: Path) -> None:
    # calibration images come from the full validation tar; the mirror is tried first (no internet in tests)
    tar = write_images_tar(http_server.root / "ILSVRC2012_img_val.tar", images)
    (http_server.root / "cal_image_list_option_2.txt").write_bytes(inputs["cal2"].read_bytes())
    md5 = hashlib.md5(tar.read_bytes(), usedforsecurity=False).hexdigest()
    cal_md5 = hashlib.md5(inputs["cal2"].read_bytes(), usedforsecurity=False).hexdigest()
    config = resolve_preprocess_config(
        {"mirror": http_server.base_url, "images_md5": md5, "calibration_md5": cal_md5, "size": 3},
        "_calibration,_mlperf.option2",
    )
    result = build_preprocessed(
        config=config, source="download", output=str(tmp_path / "out"), workers=1, work_dir=tmp_path / "w"
    )
    assert result.env["CM_DATASET_SIZE"] == "3"
    assert (tmp_path / "w" / "images" / "ILSVRC2012_img_val.tar").read_bytes() == tar.read_bytes()
    assert [r.path for r in http_server.requests] == ["/cal_image_list_option_2.txt", "/ILSVRC2012_img_val.tar"]
    bad = resolve_preprocess_config(
        {"calibration_url": http_server.url("cal_image_list_option_2.txt"), "calibration_md5": "0" * 32}, "_calibration"
    )
    with pytest.raises(ChecksumMismatch, match=r"cal_image_list_option_1.txt"):
        sources.fetch_calibration_list(config=bad, dest_dir=tmp_path / "c")


def _upload(client, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)


def test_s3_prefix_and_tar_sources_and_s3_sink(inputs, images, s3_bucket, tmp_path: Path) -> None:
    client, bucket = s3_bucket
    _upload(client, bucket, "val", {n: images[n] for n in sorted(images)[:6]})
    client.put_object(Bucket=bucket, Key="tars/ILSVRC2012_img_val.tar", Body=inputs["tar"].read_bytes())
    store = ObjectStore(s3_client=client)
    config = resolve_preprocess_config({"size": 5})
    _build(config, inputs, "folder", tmp_path / "local")
    sink = S3Sink(client=client, bucket=bucket, prefix="out")
    remote = build_preprocessed(
        config=config, source=f"s3://{bucket}/val", output="", sink=sink, val_map=inputs["val_map"], workers=1, store=store
    )
    assert remote.env["CM_DATASET_PREPROCESSED_PATH"] == f"s3://{bucket}/out"
    for name in (f"{val_name(i)}.npy" for i in range(1, 6)):
        body = client.get_object(Bucket=bucket, Key=f"out/{name}")["Body"].read()
        assert body == (tmp_path / "local" / name).read_bytes()
    files = client.get_object(Bucket=bucket, Key=f"out/{FILES_LIST}")["Body"].read().decode()
    assert files.split("\n")[0] == f"s3://{bucket}/out/{val_name(1)}.npy"
    assert read_manifest(sink)["outputs"]["count"] == 5
    items = select_images(
        config=config, source=f"s3://{bucket}/tars/ILSVRC2012_img_val.tar", val_map=inputs["val_map"], store=store
    )
    assert [i.container for i in items] == [f"s3://{bucket}/tars/ILSVRC2012_img_val.tar"] * 5
    out = tmp_path / "from_tar"
    preprocess_chunk(config=config, source="tar", items=items, sink=LocalSink(out), workers=1, store=store)
    assert _outputs(out) == {k: v for k, v in _outputs(tmp_path / "local").items() if k.endswith(".npy")}
    missing = resolve_preprocess_config({"size": 7})
    with pytest.raises(ValidationError, match=rf"lacks 1 of the 7 listed images: {val_name(7)}"):
        select_images(config=missing, source=f"s3://{bucket}/val", val_map=inputs["val_map"], store=store)


def test_gcs_prefix_source(inputs, images, gcs_bucket, tmp_path: Path) -> None:
    client, bucket = gcs_bucket
    b = client.bucket(bucket)
    for name in sorted(images)[:3]:
        b.blob(f"imagenet/val/{name}").upload_from_string(images[name])
    config = resolve_preprocess_config({"size": 3}, "_for.mobilenet")
    store = ObjectStore(gcs_client=client)
    out = tmp_path / "gcs"
    build_preprocessed(
        config=config, source=f"gs://{bucket}/imagenet/val", output=str(out), val_map=inputs["val_map"], workers=1, store=store
    )
    _build(config, inputs, "folder", tmp_path / "local")
    a, b2 = _outputs(out), _outputs(tmp_path / "local")
    assert {k: v for k, v in a.items() if k.endswith(".rgb32")} == {k: v for k, v in b2.items() if k.endswith(".rgb32")}
    assert len([k for k in a if k.endswith(".rgb32")]) == 3


# -- CLI -----------------------------------------------------------------------------------------------


def test_cli_prints_the_env_and_hits_the_cache(
    inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "cli"
    argv = [
        "preprocessed",
        "--images",
        str(inputs["tar"]),
        "--output",
        str(out),
        "--labels",
        str(inputs["val_map"]),
        "--variations",
        "_for.resnet50,_NHWC,_rgb8",
        "--size",
        "3",
        "--workers",
        "1",
    ]
    assert main(argv) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["CM_DATASET_PREPROCESSED_EXTENSION"] == "rgb8" and env["CM_DATASET_DATA_TYPE"] == "uint8"
    assert env["CM_DATASET_SIZE"] == "3" and env["CM_DATASET_DATA_LAYOUT"] == "NHWC"
    raw = (out / f"{val_name(1)[:-5]}.rgb8").read_bytes()
    assert len(raw) == 224 * 224 * 3  # raw uint8 pixels, no header
    stamp = (out / MANIFEST_NAME).stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == env
    assert (out / MANIFEST_NAME).stat().st_mtime_ns == stamp
    assert "cache hit" in caplog.text
    assert main([*argv[:-4], "--variations", "_resolution.160", "--size", "1"]) == 1
    assert "_resolution.160 conflicts with _mlcommons-reference-preprocessor" in caplog.text


def test_raw_outputs_read_back(inputs, tmp_path: Path) -> None:
    # rgb32 of for.resnet50,uint8 holds uint8 CHW (the extension does not say the dtype, as in CM).
    config = resolve_preprocess_config({"size": 1}, "_for.resnet50,_uint8")
    _build(config, inputs, "folder", tmp_path / "o")
    raw = np.fromfile(tmp_path / "o" / f"{val_name(1)[:-5]}.rgb32", dtype=np.uint8)
    assert raw.size == 3 * 224 * 224
    npy = resolve_preprocess_config({"size": 1, "subtract_means": True}, "_generic-preprocessor,_npy")
    _build(npy, inputs, "folder", tmp_path / "n")
    arr = np.load(io.BytesIO((tmp_path / "n" / f"{val_name(1)[:-5]}.npy").read_bytes()))  # a real .npy, not raw bytes
    assert arr.shape == (3, 224, 224) and arr.dtype == np.float32


def test_workers_fork_safely_after_opencv_ran_threaded(inputs, tmp_path: Path) -> None:
    # A child forked while OpenCV's thread pool runs hangs in its first cv2 call; run it in a
    # subprocess with a timeout so that a regression fails instead of hanging the suite.
    import subprocess
    import sys

    script = f"""
import cv2, numpy as np
import re
from pathlib import Path
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.report import REPORT_FILES
from imagenet_ops.preprocessed.pipeline import build_preprocessed
if __name__ == "__main__":
    cv2.setNumThreads(2)
    big = np.zeros((2000, 3000, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (1500, 1000), interpolation=cv2.INTER_AREA)
    r = build_preprocessed(config=resolve_preprocess_config({{"size": 6}}), source={str(inputs["tar"])!r},
                           output={str(tmp_path / "out")!r}, val_map=Path({str(inputs["val_map"])!r}), workers=2)
    assert cv2.getNumThreads() == 2
    print(r.env["CM_DATASET_SIZE"])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6"


def test_chunk_results_round_trip_through_the_sink(inputs, tmp_path: Path) -> None:
    # mapped tasks hand on a small summary; finalize reads the file lists back from the sink
    config = resolve_preprocess_config({"size": 4})
    items = select_images(config=config, source=str(inputs["tar"]), val_map=inputs["val_map"])
    sink = LocalSink(tmp_path / "out")
    assert chunk_state.save_chunk_plan(sink=sink, chunks=plan_chunks(items, 2)) == 2
    with pytest.raises(StorageError, match="no plan for chunk 2"):
        chunk_state.load_chunk_plan(sink=sink, index=2)
    for index in range(2):
        chunk = chunk_state.load_chunk_plan(sink=sink, index=index)
        assert chunk == plan_chunks(items, 2)[index]
        result = preprocess_chunk(config=config, source="tar", items=chunk, sink=sink, workers=1)
        assert chunk_state.save_chunk_result(sink=sink, index=index, result=result).endswith(f"chunk-{index:05d}.json")
        assert set(result.summary()) == {"count", "bytes", "bad", "seconds"}
    with pytest.raises(StorageError, match="no result for chunk 2"):
        chunk_state.load_chunk_results(sink=sink, count=3)
    results = chunk_state.load_chunk_results(sink=sink, count=2, remove=True)
    assert [r.count for r in results] == [2, 2] and not list((tmp_path / "out" / ".chunks").iterdir())
    publish, env = finalize_preprocessed(config=config, sink=sink, items=items, chunk_results=results, val_map=inputs["val_map"])
    assert env["CM_DATASET_SIZE"] == "4" and publish.files == 4 + 3 + len(REPORT_FILES)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ILSVRC2012_val_00000002.JPEG 5000", "the label must be an integer 0..999"),
        ("ILSVRC2012_val_00000002.JPEG -1", "the label must be an integer 0..999"),
        ("ILSVRC2012_val_00000002.JPEG abc", "the label must be an integer 0..999"),
        ("ILSVRC2012_val_00000002.JPEG", "the label must be an integer 0..999"),
        ("ILSVRC2012_val_00000001.JPEG 3", "ILSVRC2012_val_00000001.JPEG repeats line 1"),
    ],
)
def test_bad_val_map_labels_are_refused_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    # Regression (issue 10 item 4): labels 5000, -1 and abc were accepted and copied into the output.
    val_map = tmp_path / "val.txt"
    val_map.write_text(f"ILSVRC2012_val_00000001.JPEG 65\n{line}\n")
    with pytest.raises(ValidationError, match=rf"{re.escape(str(val_map))}: line 2.*{re.escape(message)}"):
        select_images(config=resolve_preprocess_config({"size": 2}), source=str(tmp_path), val_map=val_map)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_cache_hit_verifies_the_outputs_and_rebuilds_damage(inputs, tmp_path: Path, damage: str) -> None:
    # Regression (issue 10 item 9): cache hits trusted what they found under an intact manifest.
    config = resolve_preprocess_config({"size": 2})
    out = tmp_path / "out"
    args = {"config": config, "source": str(inputs["folder"]), "output": str(out), "val_map": inputs["val_map"]}
    first = build_preprocessed(**args, workers=1)
    target = out / f"{val_name(2)}.npy"
    good = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(good[:-10])
    elif damage == "flip":
        target.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    else:
        target.unlink()
    second = build_preprocessed(**args, workers=1)
    assert not second.publish.cache_hit
    assert target.read_bytes() == good
    assert second.publish.cache_key == first.publish.cache_key and second.env == first.env


# -- corrupt JPEGs (issue 10 item 4) ----------------------------------------------------------------


@pytest.mark.parametrize("source", ["folder", "tar"])
def test_a_jpeg_corrupted_mid_scan_fails_with_its_name(inputs, tmp_path: Path, source: str) -> None:
    # Regression (issue 10 item 4): OpenCV decoded the rows above the damage, a garbage .npy was published, "0 bad".
    from jpeg_damage import stray_marker

    images = {n: (inputs["folder"] / n).read_bytes() for n in sorted(p.name for p in inputs["folder"].iterdir())}
    images[val_name(2)] = stray_marker(images[val_name(2)])
    inputs = {**inputs, "folder": write_folder(tmp_path / "damaged", images)}
    inputs["tar"] = write_images_tar(tmp_path / "damaged.tar", images)
    where = rf"{re.escape(str(inputs['tar']))}: " if source == "tar" else ""
    with pytest.raises(ImageError, match=rf"{where}{val_name(2)}: corrupt JPEG: a full decode fails"):
        _build(resolve_preprocess_config({"size": 4}), inputs, source, tmp_path / "o", workers=2)
    assert not (tmp_path / "o" / MANIFEST_NAME).exists()


def test_skip_bad_images_lists_a_corrupt_jpeg(inputs, tmp_path: Path) -> None:
    # Regression (issue 10 item 4): the corrupt file became a .npy and the run reported "0 bad".
    from jpeg_damage import stray_marker, truncated_then_eoi

    path = inputs["folder"] / val_name(3)
    path.write_bytes(stray_marker(path.read_bytes()))
    repaired = inputs["folder"] / val_name(4)  # damage libjpeg repairs with a warning: kept, as TF would decode it
    repaired.write_bytes(truncated_then_eoi(repaired.read_bytes()))
    out = tmp_path / "out"
    result = _build(resolve_preprocess_config({"size": 5, "skip_bad_images": True}), inputs, "folder", out)
    report = (out / BAD_IMAGES).read_text().splitlines()
    assert [line.split("\t")[0] for line in report] == [val_name(3)]
    assert "corrupt JPEG: a full decode fails" in report[0]
    assert not (out / f"{val_name(3)}.npy").exists() and (out / f"{val_name(4)}.npy").exists()
    assert read_manifest(LocalSink(out))["outputs"] == {"count": 4, "bad": [val_name(3)]}
    assert result.env["CM_DATASET_SIZE"] == "4"
