"""What the data-quality reports cost (issue 13 item 5): each artifact's CLI with its report against without it.

The target: a report costs at most 5% of its artifact's build. For each artifact the CLI process a
user runs (``python -m imagenet_ops <artifact> ...``) builds the same benchmark set into a fresh
folder, alternately with reports on and with ``IMAGENET_OPS_REPORTS=off``. Two numbers:

* ``report/build``, the target's: the CPU-seconds the run's own log says its report took (the
  library logs ``<artifact> report: ... built in <s>s CPU``) over the rest of that same process's
  CPU-seconds (user + system, children included), the median over ``--repeat`` runs. One run
  measures both, so the machine's run-to-run jitter (about +-0.2 s here) does not enter it;
* ``CPU diff`` and ``wall diff``: the best of ``--repeat`` runs with reports against the best
  without, the whole process; a cross-check, as noisy as the machine.

Benchmark sets (generated, nothing downloaded): the aux archive (8 files, 50,000 labels, a
``train.txt`` of 1.28 million lines as the real one) served by a local HTTP server; a
ResNet-50-shaped ONNX model (the test sample; the real one is 100 MB, whose md5 is what the model
report adds, ~0.2 s) served the same way; 500 ImageNet-like validation JPEGs (500x375, the
``_500`` subset's size) preprocessed by ``pre_process_vgg``; and
training data from a train tar of ``--classes`` x ``--per-class`` JPEGs (3000 by default, the
larger set of ``bench/training_data.py``) plus a 500-image validation tar, in ``--train-shards`` + 4
shards. The model is far smaller than the real one (100 MB): its sub-second build makes that
ratio noisy, and the real build is dominated by its download and load check.

Usage: .venv/bin/python bench/report_cost.py [--repeat 5] [--classes 20] [--per-class 150] [--workers 1]
       [--only preprocessed,...]
(``--workers 1``: the dataset builds run in one process, the same CPU-seconds as the default pool
of all cores with much less run-to-run jitter; ``--workers 0`` measures the pool.)
The generated data and every output are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
TARGET = 0.05


REPORT_LINE = re.compile(r"report: .*built in ([0-9.]+)s CPU")


def run_cli(args: list[str], *, reports: bool) -> tuple[float, float, float]:
    """CPU-seconds (user + system of the process and its children), wall seconds, and the CPU-seconds
    the CLI's own log says its report took (0 without one), of one CLI run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "IMAGENET_OPS_REPORTS": "on" if reports else "off"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "imagenet_ops", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"imagenet_ops {' '.join(args[:1])} failed:\n{proc.stderr[-3000:]}")
    logged = REPORT_LINE.search(proc.stderr)
    if reports and not logged:
        raise SystemExit(f"imagenet_ops {args[0]}: no report line in its log:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu, wall, float(logged.group(1)) if logged else 0.0


def measure(name: str, make_args: Callable[[Path], list[str]], work: Path, repeat: int) -> dict[str, float]:
    best: dict[bool, tuple[float, float]] = {}
    shares = []
    for trial in range(repeat):
        for reports in (False, True):  # alternated, so a slow spell of the machine hits both
            out = work / f"{name}-{int(reports)}-{trial}"
            cpu, wall, report_cpu = run_cli(make_args(out), reports=reports)
            if reports:
                assert (out / "report" / "report.md").is_file() or any(out.glob("*/report/report.md")), f"{name}: no report"
                shares.append(report_cpu / (cpu - report_cpu))
            shutil.rmtree(out, ignore_errors=True)
            old = best.get(reports)
            best[reports] = (min(cpu, old[0]), min(wall, old[1])) if old else (cpu, wall)
    (cpu_off, wall_off), (cpu_on, wall_on) = best[False], best[True]
    share = statistics.median(shares)
    return {"cpu_off": cpu_off, "cpu_on": cpu_on, "wall_off": wall_off, "wall_on": wall_on, "share": share}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=150)  # 3000 train images: bench/training_data.py's larger set
    parser.add_argument("--train-shards", type=int, default=8)
    parser.add_argument("--only", default="aux,model,preprocessed,training-data")
    # One worker process: the same CPU-seconds as a pool, with far less run-to-run jitter (0 = all cores).
    parser.add_argument("--workers", type=int, default=1)
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
        wnids_all = sample_wnids()
        train_txt = "".join(f"{w}/{w}_{k}.JPEG {c}\n" for c, w in enumerate(wnids_all) for k in range(1281))
        aux = make_aux_archive(served / "caffe_ilsvrc12.tar.gz", overrides={"train.txt": train_txt.encode()})
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
                    *("--workers", str(args.workers)),
                ],
                "training-data": lambda out: [
                    "training-data",
                    *("--train", str(train), "--validation", str(val), "--validation-labels", str(work / "labels.txt")),
                    *("--train-shards", str(args.train_shards), "--validation-shards", "4", "--output", str(out)),
                    *("--workers", str(args.workers)),
                ],
            }
            results = {name: measure(name, cases[name], work, args.repeat) for name in args.only.split(",")}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{'artifact':15s} {'report/build':>12s} {'CPU off':>8s} {'CPU on':>8s} {'CPU diff':>9s} "
        f"{'wall off':>9s} {'wall on':>8s} {'wall diff':>9s}"
    )
    worst = 0.0
    for name, r in results.items():
        cpu_cost, wall_cost = r["cpu_on"] / r["cpu_off"] - 1, r["wall_on"] / r["wall_off"] - 1
        worst = max(worst, r["share"])
        print(
            f"{name:15s} {r['share']:11.1%} {r['cpu_off']:7.2f}s {r['cpu_on']:7.2f}s {cpu_cost:+8.1%} "
            f"{r['wall_off']:8.2f}s {r['wall_on']:7.2f}s {wall_cost:+8.1%}"
        )
    print(json.dumps({"target": TARGET, "worst_report_share": round(worst, 4), "met": worst <= TARGET}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
