"""Preprocessing benchmark: the MLPerf reference (pre_process_vgg + np.save) against the library, side by side.

Generates ImageNet-like JPEGs (mostly 500x375, ~100 KB) and a val_map, then measures in fresh processes:

(a) per core: images per CPU-second of a plain loop of the reference algorithm (cv2.imread,
    dataset.py resize/crop/normalise, np.save) against the CLI with ``--workers 1`` (CPU of the
    whole process, interpreter start included) and the library call alone (what an Airflow task
    pays, its process being up already);
(b) whole machine: wall time of the reference as MLPerf runs it (imagenet.py: a ThreadPoolExecutor
    with one thread per core over chunks of the list) against the CLI/library with one worker per core;
(c) the decode-only ceiling (cv2.imread / cv2.imdecode per CPU-second).

Every output of the library is compared byte for byte with the reference's. Each measurement is
the best of ``--repeat`` runs (the machine may be shared); the page cache is flushed (``sync``)
before each run so that no run is slowed by the writeback of the one before.

Usage: .venv/bin/python bench/preprocess.py [--images 300] [--repeat 3]
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

# The reference, as MLPerf inference vision/classification_and_detection/python/{dataset,imagenet}.py has it:
# pre_process_vgg from the tests' oracle (tests/lib/mlperf_reference.py), run in imagenet.py's thread pool.
REFERENCE = r"""
import concurrent.futures, json, os, re, sys, time
import cv2
import numpy as np
sys.path.insert(0, os.environ["MLPERF_REFERENCE_DIR"])
from mlperf_reference import pre_process_vgg


def process(data_path, out_dir, files):
    for s in files:
        image_name, label = re.split(r"\s+", s.strip())
        src = os.path.join(data_path, image_name)
        if not os.path.exists(src):
            continue
        dst = os.path.join(out_dir, image_name)
        if not os.path.exists(dst + ".npy"):
            img_org = cv2.imread(src)
            processed = pre_process_vgg(img_org, need_transpose=True, dims=[224, 224, 3])
            np.save(dst, processed)


def main(mode, data_path, image_list, out_dir, threads):
    if mode == "loop-1thread":
        cv2.setNumThreads(1)
    with open(image_list) as f:
        lines = f.readlines()
    c0, t0 = time.process_time(), time.perf_counter()
    if mode.startswith("loop"):
        process(data_path, out_dir, lines)
    else:  # imagenet.py: N threads over chunks of CNT/N lines plus a remainder chunk
        CNT, N = len(lines), min(threads, len(lines))
        lists = [lines[i * (CNT // N):(i + 1) * (CNT // N)] for i in range(N)]
        if CNT % N:
            lists.append(lines[N * (CNT // N):])
        executor = concurrent.futures.ThreadPoolExecutor(N)
        futures = [executor.submit(process, data_path, out_dir, item) for item in lists]
        concurrent.futures.wait(futures)
        for f in futures:
            f.result()
    print(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}))


main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
"""

LIBRARY = r"""
import json, logging, sys, time, resource
from pathlib import Path
sys.path.insert(0, sys.argv[5])
import cv2, numpy  # imported before the timer, as the reference script does at its top
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.pipeline import build_preprocessed

logging.basicConfig(level=logging.WARNING)
config = resolve_preprocess_config({"size": int(sys.argv[4])})
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
c0, t0 = cpu(), time.perf_counter()
build_preprocessed(config=config, source=sys.argv[1], output=sys.argv[2], val_map=Path(sys.argv[3]), workers=int(sys.argv[6]))
print(json.dumps({"cpu": cpu() - c0, "wall": time.perf_counter() - t0}))
"""

DECODE = r"""
import json, os, sys, time
import cv2
import numpy as np
cv2.setNumThreads(1)
folder = sys.argv[1]
names = sorted(os.listdir(folder))
blobs = [np.frombuffer(open(os.path.join(folder, n), "rb").read(), np.uint8) for n in names]
c0 = time.process_time()
for n in names:
    cv2.imread(os.path.join(folder, n))
c1 = time.process_time()
for b in blobs:
    cv2.imdecode(b, cv2.IMREAD_COLOR)
c2 = time.process_time()
print(json.dumps({"imread": c1 - c0, "imdecode": c2 - c1, "n": len(names)}))
"""


def make_images(folder: Path, count: int) -> None:
    from imagenet_ops.testing.preprocess_samples import val_map_text, val_name
    from imagenet_ops.testing.samples import imagenet_like_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(1, count + 1):
        # mostly 500x375 like ImageNet val; every 10th portrait, every 25th larger
        w, h = (375, 500) if i % 10 == 0 else ((640, 480) if i % 25 == 0 else (500, 375))
        (folder / val_name(i)).write_bytes(imagenet_like_jpeg(i, width=w, height=h))
        names.append(val_name(i))
    (folder.parent / "val_map.txt").write_text(val_map_text(names))


def run(cmd: list[str]) -> dict:
    """Run ``cmd``; its JSON line plus the whole process's CPU (rusage) and wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "include"), "MLPERF_REFERENCE_DIR": str(ROOT / "tests" / "lib")},
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    inner = json.loads(lines[-1]) if lines else {}
    return {"outer_cpu": cpu, "outer_wall": wall, **inner}


def best(runs: list[dict], key: str) -> float:
    return min(r[key] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    try:
        images, val_map = tmp / "val", tmp / "val_map.txt"
        make_images(images, args.images)
        ref_script, lib_script = tmp / "reference.py", tmp / "library.py"
        ref_script.write_text(REFERENCE)
        lib_script.write_text(LIBRARY)
        (tmp / "decode.py").write_text(DECODE)
        n = args.images
        size_mb = sum(p.stat().st_size for p in images.iterdir()) / n / 1e3
        print(f"{n} ImageNet-like JPEGs (mostly 500x375, {size_mb:.0f} KB average), {cores} cores, best of {args.repeat}")

        def fresh(name: str) -> Path:
            """An empty output folder; earlier runs' dirty pages are flushed first so that no run pays
            for another's writeback."""
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            os.sync()
            return out

        results: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for mode in ("loop", "loop-1thread", "threads"):
                out = fresh(f"ref-{mode}")
                results.setdefault(f"ref-{mode}", []).append(
                    run([py, str(ref_script), mode, str(images), str(val_map), str(out), str(cores)])
                )
            for workers in (1, cores):
                out = fresh(f"lib-{workers}")
                results.setdefault(f"lib-{workers}", []).append(
                    run([py, str(lib_script), str(images), str(out), str(val_map), str(n), str(ROOT / "include"), str(workers)])
                )
                out = fresh(f"cli-{workers}")
                cli = [py, "-m", "imagenet_ops", "preprocessed", "--images", str(images), "--output", str(out)]
                cli += ["--labels", str(val_map), "--size", str(n), "--workers", str(workers)]
                results.setdefault(f"cli-{workers}", []).append(run(cli))
            os.sync()
            results.setdefault("decode", []).append(run([py, str(tmp / "decode.py"), str(images)]))

        # every output byte-identical to the reference
        ref_dir = tmp / "ref-loop"
        compared = 0
        for other in ("ref-threads", "lib-1", f"lib-{cores}", "cli-1", f"cli-{cores}"):
            for f in sorted(ref_dir.glob("*.npy")):
                if (tmp / other / f.name).read_bytes() != f.read_bytes():
                    print(f"MISMATCH: {other}/{f.name} differs from the reference")
                    return 1
                compared += 1
        assert len(list(ref_dir.glob("*.npy"))) == n

        def rate(key: str, field: str) -> float:
            return n / best(results[key], field)

        print("\n(a) per core: images per CPU-second (1 process, 1 worker)")
        ref_loop = rate("ref-loop", "cpu")
        ref_loop1 = rate("ref-loop-1thread", "cpu")
        lib1 = rate("lib-1", "cpu")
        cli1 = rate("cli-1", "outer_cpu")
        print(f"  {'':50} {'timed loop':>12} {'whole process':>14}")
        rows = [
            ("reference loop, as written (cv2 default threads)", ref_loop, rate("ref-loop", "outer_cpu")),
            ("reference loop, cv2.setNumThreads(1)", ref_loop1, rate("ref-loop-1thread", "outer_cpu")),
            ("library build_preprocessed(workers=1)", lib1, rate("lib-1", "outer_cpu")),
            ("CLI preprocessed --workers 1", None, cli1),
        ]
        for label, inner, outer in rows:
            inner_s = f"{inner:8.1f}" if inner else "       -"
            print(f"  {label:50} {inner_s:>12} {outer:14.1f}   img/CPU-s")
        print(
            f"  ratios, timed: library / reference as written {lib1 / ref_loop:.2f}x, / single-threaded reference "
            f"{lib1 / ref_loop1:.2f}x;  whole process: CLI / reference as written {cli1 / rate('ref-loop', 'outer_cpu'):.2f}x, "
            f"/ single-threaded {cli1 / rate('ref-loop-1thread', 'outer_cpu'):.2f}x"
        )

        print(f"\n(b) whole machine: wall seconds for {n} images")
        ref_threads = best(results["ref-threads"], "wall")
        lib_w = best(results[f"lib-{cores}"], "wall")
        cli_w = best(results[f"cli-{cores}"], "outer_wall")
        ref_threads_outer = best(results["ref-threads"], "outer_wall")
        print(f"  {'':50} {'timed':>8} {'whole process':>14}")
        print(
            f"  {'reference, ThreadPoolExecutor(' + str(cores) + ') as imagenet.py':50} {ref_threads:8.2f} "
            f"{ref_threads_outer:14.2f} s"
        )
        lib_w_outer = best(results[f"lib-{cores}"], "outer_wall")
        print(f"  {'library build_preprocessed(workers=' + str(cores) + ')':50} {lib_w:8.2f} {lib_w_outer:14.2f} s")
        print(f"  {'CLI preprocessed --workers ' + str(cores):50} {'-':>8} {cli_w:14.2f} s")
        print(
            f"  ratios: timed reference / library {ref_threads / lib_w:.2f}x;  whole process reference / CLI "
            f"{ref_threads_outer / cli_w:.2f}x"
        )

        dec = min(results["decode"], key=lambda r: r["imread"])
        print("\n(c) decode-only ceiling (1 thread)")
        print(f"  cv2.imread   {dec['n'] / dec['imread']:8.1f} img/CPU-s")
        print(f"  cv2.imdecode {dec['n'] / min(r['imdecode'] for r in results['decode']):8.1f} img/CPU-s (bytes in memory)")
        print(f"\nverified: {compared} output files byte-identical to the reference's np.save output")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
