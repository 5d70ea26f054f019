"""Preprocessing benchmark: the CLI as users run it against MLPerf's threaded reference, whole processes, side by side.

Generates ImageNet-like JPEGs (mostly 500x375, ~100 KB) and a val_map, then runs, each in a fresh
process and in one interleaved loop:

* **reference**: MLPerf inference's own ``imagenet.Imagenet`` (vendored verbatim in
  ``tests/lib/upstream/``) with ``dataset.pre_process_vgg``, NCHW, ``threads`` = the cores: its
  ``ThreadPoolExecutor`` over chunks of the list, ``cv2.imread``, ``np.save``;
* **CLI**: ``python -m imagenet_ops preprocessed --images ... --val-map ... --size N --workers <cores>``,
  the whole command (interpreter start, imports, selection, report, manifest).

Each runs on two input sizes (``--small`` and ``--large`` images). A run's CPU-seconds are
user+sys of the process and everything it waited for (``RUSAGE_CHILDREN``), its wall time from
start to exit. Each figure is the median of ``--repeat`` runs. The marginal cost per image,
``(large - small) / (large_images - small_images)``, cancels what a run pays once (start-up,
imports, thread/process pools). Two ratios come from it: whole machine (reference wall / CLI
wall) and per core (reference CPU / CLI CPU). The marginal CPU is also split into user and
system time (mostly the kernel's page-cache pages for the outputs, the same bytes on both sides).
A last line gives the ratios for the inner function alone, timed inside the process
(``Imagenet(...)`` against ``build_preprocessed``).

Every output file of every run is compared byte for byte with the reference's, then removed.
Dirty pages are flushed (``sync``, not timed) before each run, so that no run pays another's
writeback.

Usage: .venv/bin/python bench/preprocess.py [--small 100] [--large 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "tests" / "lib" / "upstream"
sys.path.insert(0, str(ROOT / "include"))

# MLPerf inference's loader as main.py calls it for --dataset imagenet (pre_process_vgg), timed inside too.
REFERENCE = r"""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cv2, numpy  # imported before the inner timer, as imagenet.py imports them at its top
import dataset, imagenet

data_path, image_list, out_dir, count, threads = sys.argv[1:6]
c0, t0 = time.process_time(), time.perf_counter()
ds = imagenet.Imagenet(data_path=data_path, image_list=image_list, name="imagenet", image_format="NCHW",
                       pre_process=dataset.pre_process_vgg, count=int(count), cache_dir=out_dir, threads=int(threads))
assert ds.get_item_count() == int(count), ds.get_item_count()
print(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}))
"""

LIBRARY = r"""
import json, logging, resource, sys, time
from pathlib import Path
import cv2, numpy  # imported before the inner timer, as the reference does
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.pipeline import build_preprocessed

logging.basicConfig(level=logging.WARNING)
images, out, val_map, count, workers = sys.argv[1:6]
config = resolve_preprocess_config({"size": int(count)})
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
c0, t0 = cpu(), time.perf_counter()
build_preprocessed(config=config, source=images, output=out, val_map=Path(val_map), workers=int(workers))
print(json.dumps({"cpu": cpu() - c0, "wall": time.perf_counter() - t0}))
"""

DECODE = r"""
import json, os, sys, time
import cv2
import numpy as np
cv2.setNumThreads(1)
folder = sys.argv[1]
names = sorted(os.listdir(folder))
c0 = time.process_time()
for n in names:
    cv2.imread(os.path.join(folder, n))
print(json.dumps({"cpu": time.process_time() - c0, "n": len(names)}))
"""


def make_images(folder: Path, count: int) -> Path:
    """``count`` JPEGs in ``folder`` and their ``val_map.txt`` beside it; returns the val_map."""
    from imagenet_ops.testing.preprocess_samples import val_map_text, val_name
    from imagenet_ops.testing.samples import imagenet_like_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(1, count + 1):
        # mostly 500x375 like ImageNet val; every 10th portrait, every 25th larger
        w, h = (375, 500) if i % 10 == 0 else ((640, 480) if i % 25 == 0 else (500, 375))
        (folder / val_name(i)).write_bytes(imagenet_like_jpeg(i, width=w, height=h))
        names.append(val_name(i))
    val_map = folder.parent / "val_map.txt"
    val_map.write_text(val_map_text(names))
    return val_map


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd`` to its end: its CPU-seconds (itself and the children it waited for), wall seconds, inner JSON line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:5])} ... failed:\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    system = after.ru_stime - before.ru_stime
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"cpu"')]
    inner = json.loads(lines[-1]) if lines else {}
    return {"cpu": cpu, "sys": system, "wall": wall, **{f"inner_{k}": v for k, v in inner.items()}}


def npy_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.rglob("*.npy")}


def same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=100, help="images in the small run")
    parser.add_argument("--large", type=int, default=400, help="images in the large run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="reference threads and CLI workers")
    args = parser.parse_args()
    if not 0 < args.small < args.large:
        parser.error("need 0 < --small < --large")
    cores, py = args.cores, sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    try:
        images = tmp / "val"
        val_map = make_images(images, args.large)
        ref_dir = tmp / "reference"
        ref_dir.mkdir()
        for name in ("imagenet", "dataset"):
            (ref_dir / f"{name}.py").write_text((UPSTREAM / f"{name}.py.txt").read_text())
        (ref_dir / "run.py").write_text(REFERENCE)
        (tmp / "library.py").write_text(LIBRARY)
        (tmp / "decode.py").write_text(DECODE)
        kb = sum(p.stat().st_size for p in images.iterdir()) / args.large / 1e3
        print(
            f"{args.large} ImageNet-like JPEGs (mostly 500x375, {kb:.0f} KB average); runs of {args.small} and "
            f"{args.large} images; {cores} reference threads / CLI workers on {os.cpu_count()} cores; median of {args.repeat}"
        )

        def command(kind: str, n: int, out: Path) -> list[str]:
            if kind == "reference":
                return [py, str(ref_dir / "run.py"), str(images), str(val_map), str(out), str(n), str(cores)]
            if kind == "cli":
                cmd = [py, "-m", "imagenet_ops", "preprocessed", "--images", str(images), "--val-map", str(val_map)]
                return cmd + ["--output", str(out), "--size", str(n), "--workers", str(cores)]
            return [py, str(tmp / "library.py"), str(images), str(out), str(val_map), str(n), str(cores)]

        kinds = ("reference", "cli", "library")
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        compared = 0
        for _ in range(args.repeat):
            for n in (args.small, args.large):
                outs = {}
                for kind in kinds:
                    out = tmp / f"out-{kind}"
                    shutil.rmtree(out, ignore_errors=True)
                    os.sync()  # earlier runs' writeback is not this run's cost
                    results.setdefault((kind, n), []).append(run(command(kind, n, out), env))
                    outs[kind] = npy_files(out)
                reference = outs["reference"]
                if len(reference) != n:
                    raise SystemExit(f"the reference wrote {len(reference)} .npy files for {n} images")
                for kind in ("cli", "library"):
                    if outs[kind].keys() != reference.keys():
                        raise SystemExit(f"{kind} wrote other files than the reference ({len(outs[kind])} against {n})")
                    for name, path in reference.items():
                        if not same_bytes(path, outs[kind][name]):
                            raise SystemExit(f"MISMATCH: {kind} {name} differs from the reference's np.save output")
                        compared += 1
                for kind in kinds:
                    shutil.rmtree(tmp / f"out-{kind}", ignore_errors=True)
        decode = [run([py, str(tmp / "decode.py"), str(images)], env) for _ in range(args.repeat)]

        def med(kind: str, n: int, key: str) -> float:
            return statistics.median(r[key] for r in results[(kind, n)])

        def marginal(kind: str, key: str) -> float:
            """Seconds per image beyond what a run pays once."""
            return (med(kind, args.large, key) - med(kind, args.small, key)) / (args.large - args.small)

        print("\nwhole processes (median seconds: wall / CPU = user+sys incl. children)")
        print(f"  {'':44} {f'{args.small} images':>16} {f'{args.large} images':>16} {'marginal ms/image':>22}")
        labels = {"reference": f"reference: imagenet.Imagenet, {cores} threads", "cli": f"CLI preprocessed --workers {cores}"}
        for kind, label in labels.items():
            cells = [f"{med(kind, n, 'wall'):6.2f} / {med(kind, n, 'cpu'):6.2f}" for n in (args.small, args.large)]
            mw, mc = marginal(kind, "wall") * 1e3, marginal(kind, "cpu") * 1e3
            print(f"  {label:44} {cells[0]:>16} {cells[1]:>16} {f'{mw:6.2f} / {mc:6.2f}':>22}")
        whole = marginal("reference", "wall") / marginal("cli", "wall")
        per_core = marginal("reference", "cpu") / marginal("cli", "cpu")
        at_large = med("reference", args.large, "wall") / med("cli", args.large, "wall")
        print(
            f"  CLI against the reference, marginal: whole machine {whole:.2f}x (wall), per core {per_core:.2f}x (CPU); "
            f"whole {args.large}-image runs incl. start-up: {at_large:.2f}x (wall)"
        )

        user = {kind: marginal(kind, "cpu") - marginal(kind, "sys") for kind in labels}
        system = {kind: marginal(kind, "sys") for kind in labels}
        print(
            f"  marginal CPU split, ms/image: reference user {user['reference'] * 1e3:.2f} + system "
            f"{system['reference'] * 1e3:.2f}, CLI user {user['cli'] * 1e3:.2f} + system {system['cli'] * 1e3:.2f}; "
            f"user CPU alone: {user['reference'] / user['cli']:.2f}x (system time is mostly the kernel's pages "
            "for the same 602 KB per output file on both sides)"
        )

        def inner_marginal(kind: str, key: str) -> float:
            return (med(kind, args.large, key) - med(kind, args.small, key)) / (args.large - args.small)

        iw = inner_marginal("reference", "inner_wall") / inner_marginal("library", "inner_wall")
        ic = inner_marginal("reference", "inner_cpu") / inner_marginal("library", "inner_cpu")
        print(
            f"inner function only (timed inside the process, marginal): Imagenet(...) against "
            f"build_preprocessed(workers={cores}): whole machine {iw:.2f}x (wall), per core {ic:.2f}x (CPU)"
        )
        rate = statistics.median(d["inner_n"] / d["inner_cpu"] for d in decode)
        print(f"decode-only ceiling: cv2.imread {rate:.0f} images per CPU-second (1 thread)")
        print(f"verified: {compared} output files byte-identical to the reference's np.save output")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
