"""DAG parse benchmark: each DAG file's parse time in a fresh process, and what it imports.

The dag-processor has Airflow imported already, so the number that matters is the time to
execute the DAG file *after* ``import airflow.sdk``; both are printed. Side by side, the same
process imports tensorflow / torch / cv2 to show what a top-level import would cost per parse.

Usage: .venv/bin/python bench/dag_parse.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "torch", "cv2")

PROBE = (
    r"""
import json, runpy, sys, time
t0 = time.perf_counter()
import airflow.sdk  # the dag-processor has this already
t1 = time.perf_counter()
runpy.run_path(sys.argv[1], run_name="dag_parse")
t2 = time.perf_counter()
print(json.dumps({"sdk": t1 - t0, "parse": t2 - t1, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""
).replace("HEAVY", repr(HEAVY))

HEAVY_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
__import__(sys.argv[1])
print(json.dumps({"import": time.perf_counter() - t0}))
"""


def _run(code: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    heavy_cost = {m: statistics.median(_run(HEAVY_PROBE, m)["import"] for _ in range(2)) for m in HEAVY}
    worst = 0.0
    print(f"{'DAG file':32} {'parse (median)':>15} {'max':>8} {'+sdk import':>12}  heavy modules  vs. top-level tf+torch+cv2")
    for path in sorted((ROOT / "dags").glob("*.py")):
        runs = [_run(PROBE, str(path)) for _ in range(args.repeat)]
        parse = statistics.median(r["parse"] for r in runs)
        worst = max(worst, max(r["parse"] for r in runs))
        heavy = sorted({m for r in runs for m in r["heavy"]}) or ["none"]
        naive = parse + sum(heavy_cost.values())
        slowest = max(r["parse"] for r in runs)
        sdk = statistics.median(r["sdk"] for r in runs)
        print(
            f"{path.name:32} {parse:>14.3f}s {slowest:>7.3f}s {sdk:>11.3f}s"
            f"  {','.join(heavy):13}  {naive:.2f}s would be {naive / parse:.0f}x slower"
        )
    print("heavy import cost (cold-ish, median of 2): " + ", ".join(f"{m} {s:.2f}s" for m, s in heavy_cost.items()))
    verdict = "PASS" if worst < 1.0 else "FAIL"
    print(f"{verdict}: slowest single DAG parse {worst:.3f}s (target < 1 s, without tensorflow/torch/cv2)")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
