"""Run every DAG end to end on the embedded default and print, per DAG, its env outputs and artifacts.

Sample inputs are generated (no internet) and served by a local HTTP server on 127.0.0.1;
artifacts go to ``$IMAGENET_OPS_SINK_ROOT`` (default ./artifacts). Later DAGs add an entry to
``DEMOS``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.digests import file_digests
from imagenet_ops.testing.devserver import DevServer
from imagenet_ops.testing.samples import make_aux_archive, make_class_tars, make_val_tar, write_tar

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / ".demo" / "www"


@dataclass(frozen=True)
class Demo:
    dag_id: str
    publish_task: str
    conf: Callable[[DevServer], dict[str, Any]]
    artifact: Callable[[dict[str, str]], str]


def aux_conf(server: DevServer) -> dict[str, Any]:
    archive = make_aux_archive(SAMPLES / "caffe_ilsvrc12.tar.gz")
    return {"url": server.url(archive.name), "md5": file_digests(archive).md5}


def model_conf(server: DevServer) -> dict[str, Any]:
    """Every framework path of resnet50_model, from small real models served as an internal mirror."""
    import gzip

    from imagenet_ops.testing import model_samples as ms

    root = SAMPLES
    ms.make_onnx(root / "resnet50_v1.onnx", opset=11, argmax=True)
    ms.make_tf_frozen_graph(root / "resnet50_v1.pb", argmax=True)
    tflite = ms.make_tflite(root / "argmax.tflite", argmax=True)
    (root / "resnet50_v1.tflite.gz").write_bytes(gzip.compress(tflite.read_bytes(), mtime=0))
    tflite.unlink()
    ms.make_torch_state_dict(root / "resnet50-19c8e357.pth")
    ms.make_ncnn(root / "resnet50_v1.param", root / "resnet50_v1.bin")
    names = [
        "resnet50_v1.onnx",
        "resnet50_v1.pb",
        "resnet50_v1.tflite.gz",
        "resnet50-19c8e357.pth",
        "resnet50_v1.param",
        "resnet50_v1.bin",
    ]
    return {
        "variants": ["_onnx", "_tflite", "_tensorflow,_fix-input-shape", "_pytorch", "_ncnn"],
        "mirror": server.base_url,
        "md5_by_file": {n.removesuffix(".gz"): file_digests(root / n).md5 for n in names},
    }


def training_conf(server: DevServer) -> dict[str, Any]:
    """A small train tar-of-tars and val tar whose labels come from the aux artifact the first demo published."""
    sink_root = Path(os.environ.get("IMAGENET_OPS_SINK_ROOT", "artifacts"))
    aux = sink_root / "imagenet_aux"
    synsets = (aux / "synsets.txt").read_text().split()
    val_labels = [synsets[int(line.split()[1])] for line in (aux / "val.txt").read_text().splitlines()[:24]]
    root = SAMPLES / "training"
    make_class_tars(root / "class_tars", wnids=sorted(set(val_labels)), per_class=3)
    train = write_tar(
        root / "ILSVRC2012_img_train.tar", {p.name: p.read_bytes() for p in sorted((root / "class_tars").glob("*.tar"))}
    )
    val = make_val_tar(root / "ILSVRC2012_img_val.tar", count=len(val_labels))
    return {
        "train": str(train),
        "validation": str(val),
        "aux_path": str(aux.resolve()),
        "train_shards": 8,
        "validation_shards": 2,
        "parallel_tasks": 2,
    }


def preprocessed_conf(server: DevServer) -> dict[str, Any]:
    """A small preprocessed validation set (reference pre_process_vgg, NCHW float32 .npy) of the aux's first 16 images.

    Each image is its label's colour (``testing.pattern_samples``), so the colour-reading sample
    models name it; one is a CMYK JPEG and one grayscale (which no longer shows its colour).
    """
    from imagenet_ops.testing.pattern_samples import pattern_images, pattern_jpeg, val_labels
    from imagenet_ops.testing.preprocess_samples import write_images_tar

    aux = Path(os.environ.get("IMAGENET_OPS_SINK_ROOT", "artifacts")) / "imagenet_aux"
    labels = val_labels((aux / "val.txt").read_text(), 16)
    images = pattern_images(labels)
    cmyk, gray = list(labels)[3], list(labels)[9]
    images[cmyk] = pattern_jpeg(labels[cmyk], mode="CMYK")
    images[gray] = pattern_jpeg(labels[gray], mode="L")
    tar = write_images_tar(SAMPLES / "preprocessed" / "ILSVRC2012_img_val.tar", images)
    return {"images": str(tar), "aux_path": str(aux.resolve()), "size": len(images), "chunks": 2}


def accuracy_conf(server: DevServer) -> dict[str, Any]:
    """The default ONNX variant and the set the two demos before published: 15 of 16 right (the grayscale one is not)."""
    root = Path(os.environ.get("IMAGENET_OPS_SINK_ROOT", "artifacts")).resolve()
    return {
        "model": str(root / "resnet50_model" / "onnx-fp32-argmax-opset11"),
        "preprocessed": str(root / "imagenet_preprocessed"),
        "expected_top1": 90,
        "chunks": 2,
    }


DEMOS = [
    Demo("imagenet_aux", "publish", aux_conf, lambda env: env["CM_DATASET_AUX_PATH"]),
    Demo("resnet50_model", "publish", model_conf, lambda env: str(Path(env["CM_ML_MODEL_FILE_WITH_PATH"]).parent)),
    Demo("imagenet_training_data", "finalize", training_conf, lambda env: env["CM_MLPERF_TRAINING_RESNET_DATA_PATH"]),
    Demo("imagenet_preprocessed", "finalize", preprocessed_conf, lambda env: env["CM_DATASET_PREPROCESSED_PATH"]),
    Demo("imagenet_accuracy", "publish", accuracy_conf, lambda env: env["CM_MLPERF_ACCURACY_PATH"]),
]


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))  # the in-process dag.test() runner the DAG tests use
    from local_run import load_dag, run_dag

    SAMPLES.mkdir(parents=True, exist_ok=True)
    failed = []
    with DevServer(SAMPLES) as server:
        print(f"demo: sample inputs served from {server.base_url} ({SAMPLES})", file=sys.stderr)
        for demo in DEMOS:
            started = time.monotonic()
            run = run_dag(load_dag(demo.dag_id), demo.conf(server))
            envs = run.xcoms(demo.publish_task)  # one per mapped variant, or the single env
            print(f"\n=== {demo.dag_id}: {run.state} in {time.monotonic() - started:.1f}s (run {run.run_id})")
            print("tasks: " + ", ".join(f"{t}={s}" for t, s in sorted(run.task_states.items())))
            for env in envs:
                print("env outputs:\n" + json.dumps(env, indent=2, sort_keys=True))
                artifact = demo.artifact(env)
                print(f"artifacts: {artifact} (manifest: {artifact.rstrip('/')}/manifest.json)")
            if run.state != "success" or not envs:
                failed.append(demo.dag_id)
    if failed:
        print(f"\ndemo: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\ndemo: {len(DEMOS)} DAG(s) succeeded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
