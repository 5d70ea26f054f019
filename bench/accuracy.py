"""Images/s of the accuracy check, the CLI a user runs, beside the shape of MLPerf's reference accuracy run (issue 14).

Both sides are whole processes on the same machine, the same model and the same batch size:

* ours: ``python -m imagenet_ops accuracy --model <published variant> --preprocessed <published set>
  --output <fresh folder> --batch-size 32`` (reads the manifests, checks the pair, scores,
  publishes ``accuracy.json`` with its report);
* reference: ``bench/mlperf_accuracy_reference.py``, the shape of MLPerf inference's
  ``main.py --profile resnet50-onnxruntime --accuracy`` (every ``.npy`` loaded into memory, then
  batches through onnxruntime with default session options, ArgMax - 1 against ``val_map.txt``).

The model is a full-size ResNet-50 (``model_samples.make_resnet50_onnx``: ResNet-50's compute,
weights that read an image's colour) published by ``resnet50_model``'s pipeline; the sets are
``imagenet_preprocessed`` sets of colour-pattern images, so both sides must report 100% top-1
(checked). Each side runs on two set sizes, ``--repeat`` times each (best of), and the marginal
images/s ``(n2 - n1) / (t2 - t1)`` cancels start-up (imports, model load). CPU-seconds are the
process's user + system (``RUSAGE_CHILDREN``). Everything generated is removed at the end.

Usage: .venv/bin/python bench/accuracy.py [--sizes 64,256] [--repeat 3] [--batch 32]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def timed(cmd: list[str]) -> tuple[dict, float, float]:
    """``cmd``'s JSON line, its CPU-seconds (user + system) and wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return json.loads(proc.stdout.strip().splitlines()[-1]), cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    small, large = (int(s) for s in args.sizes.split(","))

    from imagenet_ops.testing import accuracy_samples as samples
    from imagenet_ops.testing.model_samples import make_resnet50_onnx

    work = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    try:
        model = samples.publish_onnx_variant(work / "onnx", make=make_resnet50_onnx)
        labels = {f"ILSVRC2012_val_{i:08d}.JPEG": (i * 7919) % 1000 for i in range(1, large + 1)}
        sets = {}
        for n in (small, large):
            sets[n] = samples.publish_set(str(work / f"set{n}"), dict(list(labels.items())[:n]), work_dir=work / f"ws{n}")
        model_file = str(Path(model) / "resnet50_v1.onnx")

        results: dict[tuple[str, int], tuple[float, float]] = {}
        for trial in range(args.repeat):
            for n in (small, large):
                for side in ("reference", "ours"):  # alternated, so a slow spell of the machine hits both
                    if side == "ours":
                        out = work / f"out-{n}-{trial}"
                        cmd = [
                            sys.executable,
                            "-m",
                            "imagenet_ops",
                            "accuracy",
                            "--model",
                            model,
                            "--preprocessed",
                            sets[n],
                            "--output",
                            str(out),
                            "--batch-size",
                            str(args.batch),
                        ]
                        env, cpu, wall = timed(cmd)
                        top1 = float(env["CM_MLPERF_ACCURACY_TOP1"])
                        shutil.rmtree(out)
                    else:
                        cmd = [
                            sys.executable,
                            str(ROOT / "bench" / "mlperf_accuracy_reference.py"),
                            model_file,
                            sets[n],
                            "--max-batchsize",
                            str(args.batch),
                        ]
                        line, cpu, wall = timed(cmd)
                        top1 = line["top1"]
                    if top1 != 100.0:
                        raise SystemExit(f"{side} on {n} images: top-1 {top1}%, expected 100% (the colour-reading model)")
                    best = results.get((side, n))
                    results[(side, n)] = (min(cpu, best[0]), min(wall, best[1])) if best else (cpu, wall)

        print(
            f"accuracy check, full-size ResNet-50 ONNX on onnxruntime, batch {args.batch}, sets of {small} and {large} "
            f"images, best of {args.repeat}; {os.cpu_count()} cores"
        )
        print(f"{'':>10} {'CPU s':>14} {'wall s':>14} {'marginal img/s (wall)':>22} {'img per CPU-s':>14}")
        rates = {}
        for side in ("reference", "ours"):
            (c1, w1), (c2, w2) = results[(side, small)], results[(side, large)]
            rates[side] = ((large - small) / (w2 - w1), (large - small) / (c2 - c1))
            print(f"{side:>10} {c1:6.1f} / {c2:6.1f} {w1:6.1f} / {w2:6.1f} {rates[side][0]:22.1f} {rates[side][1]:14.2f}")
        print(
            f"ratio ours/reference: images/s {rates['ours'][0] / rates['reference'][0]:.2f}x (wall, marginal), "
            f"images per CPU-second {rates['ours'][1] / rates['reference'][1]:.2f}x; whole runs at {large}: "
            f"wall {results[('reference', large)][1] / results[('ours', large)][1]:.2f}x"
        )
        print("both sides: 100% top-1 on every run (checked)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
