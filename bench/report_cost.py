"""What the data-quality reports cost (issue 13 item 5): each artifact's CLI with its report against without it.

The target: a report costs at most 5% of its artifact's build. For each artifact the CLI process a
user runs (``python -m imagenet_ops <artifact> ...``) builds the same benchmark set into a fresh
folder, alternately with reports on and with ``IMAGENET_OPS_REPORTS=off``; the best of
``--repeat`` runs of each is kept (CPU-seconds of the whole process, user + system, and wall time;
the disk here is shared, so CPU is the steadier number). The cost is ``on / off - 1``.

Benchmark sets (generated, nothing downloaded): the aux archive (8 files, 50,000 labels) served by
a local HTTP server; a ResNet-50-shaped ONNX model (the test sample; the real one is 100 MB, its
md5 is what the model report adds, ~0.2 s/100 MB) served the same way; 500 ImageNet-like
validation JPEGs (500x375, the ``_500`` subset's size) preprocessed by ``pre_process_vgg``; and
training data from a train tar of ``--classes`` x ``--per-class`` JPEGs plus a 500-image
validation tar, in ``--train-shards`` + 4 shards.

Usage: .venv/bin/python bench/report_cost.py [--repeat 3] [--classes 20] [--per-class 50] [--only preprocessed,...]
The generated data and every output are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
TARGET = 0.05


def run_cli(args: list[str], *, reports: bool) -> tuple[float, float]:
    """CPU-seconds (user + system of the process and its children) and wall seconds of one CLI run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "IMAGENET_OPS_REPORTS": "on" if reports else "off"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "imagenet_ops", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"imagenet_ops {' '.join(args[:1])} failed:\n{proc.stderr[-3000:]}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), wall


def measure(name: str, make_args: Callable[[Path], list[str]], work: Path, repeat: int) -> dict[str, float]:
    best: dict[bool, tuple[float, float]] = {}
    for trial in range(repeat):
        for reports in (False, True):  # alternated, so a slow spell of the machine hits both
            out = work / f"{name}-{int(reports)}-{trial}"
            cpu, wall = run_cli(make_args(out), reports=reports)
            if reports:
                assert (out / "report" / "report.md").is_file() or any(out.glob("*/report/report.md")), f"{name}: no report"
            shutil.rmtree(out, ignore_errors=True)
            old = best.get(reports)
            best[reports] = (min(cpu, old[0]), min(wall, old[1])) if old else (cpu, wall)
    (cpu_off, wall_off), (cpu_on, wall_on) = best[False], best[True]
    return {"cpu_off": cpu_off, "cpu_on": cpu_on, "wall_off": wall_off, "wall_on": wall_on}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--train-shards", type=int, default=8)
    parser.add_argument("--only", default="aux,model,preprocessed,training-data")
    args = parser.parse_args()

    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.testing.devserver import DevServer
    from imagenet_ops.testing.model_samples import make_onnx
    from imagenet_ops.testing.preprocess_samples import val_map_text, val_name
    from imagenet_ops.testing.samples import (
        imagenet_like_jpeg,
        make_aux_archive,
        make_train_tar,
        make_val_tar,
        sample_wnids,
        val_synset_labels,
    )

    work = Path(tempfile.mkdtemp(prefix="report-cost-"))
    served = work / "served"
    served.mkdir()
    try:
        aux = make_aux_archive(served / "caffe_ilsvrc12.tar.gz")
        onnx = make_onnx(served / "resnet50_v1.onnx")
        images = work / "val"
        images.mkdir()
        names = [val_name(i) for i in range(1, 501)]
        for i, n in enumerate(names, 1):
            (images / n).write_bytes(imagenet_like_jpeg(i))
        (work / "val_map.txt").write_text(val_map_text(names))
        wnids = sample_wnids(args.classes)
        train = make_train_tar(work / "train.tar", wnids=wnids, per_class=args.per_class)
        val = make_val_tar(work / "val.tar", count=500)
        (work / "labels.txt").write_text(val_synset_labels(500, wnids))

        with DevServer(served) as server:
            cases: dict[str, Callable[[Path], list[str]]] = {
                "aux": lambda out: [
                    "aux",
                    *("--url", server.url(aux.name), "--md5", file_digests(aux).md5, "--output", str(out)),
                ],
                "model": lambda out: [
                    "model",
                    *("--framework", "onnx", "--url", server.url(onnx.name), "--md5", file_digests(onnx).md5),
                    *("--output", str(out)),
                ],
                "preprocessed": lambda out: [
                    "preprocessed",
                    *("--size", "500", "--images", str(images), "--val-map", str(work / "val_map.txt"), "--output", str(out)),
                ],
                "training-data": lambda out: [
                    "training-data",
                    *("--train", str(train), "--validation", str(val), "--validation-labels", str(work / "labels.txt")),
                    *("--train-shards", str(args.train_shards), "--validation-shards", "4", "--output", str(out)),
                ],
            }
            results = {name: measure(name, cases[name], work, args.repeat) for name in args.only.split(",")}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'artifact':15s} {'CPU off':>8s} {'CPU on':>8s} {'CPU cost':>9s} {'wall off':>9s} {'wall on':>8s} {'wall cost':>9s}")
    worst = 0.0
    for name, r in results.items():
        cpu_cost, wall_cost = r["cpu_on"] / r["cpu_off"] - 1, r["wall_on"] / r["wall_off"] - 1
        worst = max(worst, cpu_cost)
        print(
            f"{name:15s} {r['cpu_off']:7.2f}s {r['cpu_on']:7.2f}s {cpu_cost:+8.1%} "
            f"{r['wall_off']:8.2f}s {r['wall_on']:7.2f}s {wall_cost:+8.1%}"
        )
    print(json.dumps({"target": TARGET, "worst_cpu_cost": round(worst, 4), "met": worst <= TARGET}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
