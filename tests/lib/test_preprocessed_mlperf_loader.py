"""A published preprocessed set, loaded by MLPerf inference's own ``Imagenet`` dataset class, unchanged.

``tests/lib/upstream/imagenet.py.txt`` and ``dataset.py.txt`` are mlcommons/inference's
``vision/classification_and_detection/python/{imagenet,dataset}.py`` verbatim (see the README
there). They are written to a temporary folder as ``imagenet.py`` / ``dataset.py`` and imported as
``main.py`` imports them. Nothing is stubbed: their imports (cv2, numpy, logging, os, re, time,
concurrent.futures) are all installed here; only ``pre_process_imagenet_pytorch`` imports
torchvision, inside the function, and it is not called.

What ``Imagenet.__init__`` does with a set (read from the code):

* ``pre_process=None`` (``main.py --use_preprocessed_dataset``): every ``<name> <label>`` line of
  ``image_list`` (default ``<data_path>/val_map.txt``) whose ``<data_path>/<name>.npy`` exists is
  kept, the others are counted as not found; ``get_item`` then loads
  ``<cache_dir>/<name>.npy``, where ``cache_dir`` is ``preprocessed_dir`` if given, else
  ``cache_dir``, else the current directory. So ``--dataset-path`` and ``--preprocessed_dir``
  both name the published folder, and no source image is needed.
* ``pre_process`` set (plain ``main.py``): a line is kept only if the source image
  ``<data_path>/<name>`` exists; its output is ``<preprocessed_dir>/<name>.npy``, or
  ``<cache_dir>/preprocessed/<dataset name>/<NCHW|NHWC>/<name>.npy`` without
  ``preprocessed_dir``, and it is preprocessed and ``np.save``-d only if that file does not exist.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.pipeline import VAL_MAP, build_preprocessed
from imagenet_ops.testing.preprocess_samples import plain_images, sample_images, val_map_text, write_folder

UPSTREAM = Path(__file__).parent / "upstream"
SET_SIZE = 6  # the set: the first 6 lines of a 9-line val_map, as a 500-image set of the 50,000-line val.txt


@pytest.fixture
def mlperf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The vendored ``imagenet`` and ``dataset`` modules, imported from a temporary folder as ``main.py`` does."""
    folder = tmp_path / "mlperf"
    folder.mkdir()
    for name in ("imagenet", "dataset"):
        (folder / f"{name}.py").write_text((UPSTREAM / f"{name}.py.txt").read_text())
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(folder))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import dataset  # the vendored files, importable only now
        import imagenet
    finally:  # both call logging.basicConfig(level=INFO) at import: leave the root logger as it was
        root.handlers[:], root.level = handlers, level
    yield {"imagenet": imagenet, "dataset": dataset}
    for name in ("imagenet", "dataset"):
        sys.modules.pop(name, None)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Nine validation images (plain, grayscale, CMYK, PNG content, portrait) and their 9-line val_map."""
    images = plain_images(5, width=120, height=90)
    images.update(sample_images(["gray", "cmyk", "png", "portrait"], start=6))
    (tmp_path / "val.txt").write_text(val_map_text(sorted(images)))
    return {"folder": write_folder(tmp_path / "val", images), "val_map": tmp_path / "val.txt"}


def _publish(inputs: dict[str, Path], out: Path, layout: str) -> Path:
    config = resolve_preprocess_config({"size": SET_SIZE}, f"_{layout}")
    assert config.reference_function == "pre_process_vgg" and config.layout == layout
    build_preprocessed(config=config, source=str(inputs["folder"]), output=str(out), val_map=inputs["val_map"], workers=1)
    return out


def _labels(val_map: Path) -> list[tuple[str, int]]:
    """``(name, label)`` per line, split as ``Imagenet.process`` splits them."""
    pairs = [re.split(r"\s+", line.strip()) for line in val_map.read_text().splitlines()]
    return [(name, int(label)) for name, label in pairs]


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}


def _assert_serves_the_set(ds: Any, published: Path) -> None:
    """The loader's list, labels and arrays are the published set's: val_map.txt order, byte for byte."""
    expected = [(n, label) for n, label in _labels(published / VAL_MAP) if (published / f"{n}.npy").is_file()]
    assert len(expected) == SET_SIZE
    assert ds.get_item_count() == SET_SIZE
    assert list(zip(ds.image_list, ds.label_list.tolist(), strict=True)) == expected
    for nr, (name, label) in enumerate(expected):
        img, got_label = ds.get_item(nr)
        on_disk = (published / f"{name}.npy").read_bytes()
        assert _npy_bytes(img) == on_disk, name
        assert on_disk.endswith(img.tobytes()) and got_label == label
    ids = list(range(SET_SIZE))
    ds.load_query_samples(ids)
    data, labels = ds.get_samples(ids)
    assert [_npy_bytes(a) for a in data] == [(published / f"{n}.npy").read_bytes() for n, _ in expected]
    assert labels.tolist() == [label for _, label in expected]
    ds.unload_query_samples(None)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_use_preprocessed_dataset_loads_the_published_folder_without_source_images(
    mlperf, inputs, tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main.py --dataset imagenet --dataset-path PUB --preprocessed_dir PUB --use_preprocessed_dataset
    published = _publish(inputs, tmp_path / "pub", layout)
    monkeypatch.chdir(tmp_path)  # the loader's default cache_dir is the working directory: keep it out of the way
    before = _snapshot(published)
    ds = mlperf["imagenet"].Imagenet(
        data_path=str(published),
        image_list=None,  # <data_path>/val_map.txt: the copy the set publishes
        name="imagenet",
        image_format=layout,
        pre_process=None,
        preprocessed_dir=str(published),
        threads=2,
    )
    assert ds.not_found == 9 - SET_SIZE  # val_map.txt lists the whole val.txt, as CM's copy does
    _assert_serves_the_set(ds, published)
    assert _snapshot(published) == before


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocessed_dir_with_the_source_images_skips_preprocessing(mlperf, inputs, tmp_path: Path, layout: str) -> None:
    # main.py --dataset imagenet --dataset-path VAL --dataset-list PUB/val_map.txt --preprocessed_dir PUB --count 6
    published = _publish(inputs, tmp_path / "pub", layout)
    before = _snapshot(published)
    ds = mlperf["imagenet"].Imagenet(
        data_path=str(inputs["folder"]),
        image_list=str(published / VAL_MAP),
        name="imagenet",
        image_format=layout,
        pre_process=mlperf["dataset"].pre_process_vgg,
        count=SET_SIZE,  # without it the loader would preprocess the 3 listed images the set lacks into PUB
        preprocessed_dir=str(published),
        threads=2,
    )
    assert _snapshot(published) == before  # every .npy was there: nothing preprocessed, nothing rewritten
    _assert_serves_the_set(ds, published)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_loaders_own_cache_equals_the_published_set(mlperf, inputs, tmp_path: Path, layout: str) -> None:
    # main.py --dataset imagenet --dataset-path VAL --dataset-list val.txt --cache_dir CACHE --count 6: upstream preprocesses
    published = _publish(inputs, tmp_path / "pub", layout)
    cache = tmp_path / "cache"
    ds = mlperf["imagenet"].Imagenet(
        data_path=str(inputs["folder"]),
        image_list=str(inputs["val_map"]),
        name="imagenet",
        image_format=layout,
        pre_process=mlperf["dataset"].pre_process_vgg,
        count=SET_SIZE,
        cache_dir=str(cache),
        threads=2,
    )
    own = cache / "preprocessed" / "imagenet" / layout
    written = sorted(os.listdir(own))
    assert written == sorted(f"{n}.npy" for n in ds.image_list) and len(written) == SET_SIZE
    for name in written:
        assert (own / name).read_bytes() == (published / name).read_bytes(), name


def test_the_vendored_files_are_the_recorded_upstream_bytes() -> None:
    """Every ``.py.txt`` here has the sha256 its README records (they are verbatim copies, never edited)."""
    import hashlib

    recorded = dict(re.findall(r"`([\w.]+\.py\.txt)` ([0-9a-f]{64})", (UPSTREAM / "README.md").read_text()))
    assert {"imagenet.py.txt", "dataset.py.txt"} <= set(recorded)
    assert set(recorded) == {p.name for p in UPSTREAM.glob("*.py.txt")}
    for name, digest in recorded.items():
        assert hashlib.sha256((UPSTREAM / name).read_bytes()).hexdigest() == digest, name
