"""The fixed cost of one mapped task on a real scheduler, and the chunk sizes that keep it under 5% (issue 15).

Starts ``airflow standalone`` (LocalExecutor on SQLite, the embedded default) on a throwaway home,
as ``tests/ui`` does, and triggers over REST runs whose mapped tasks have almost nothing to do:
``imagenet_preprocessed`` with one image per chunk and ``imagenet_training_data`` with one or two
tiny shards per group. A task instance's duration (its start to its end, as the API reports
them) is then the fixed cost a mapped task pays: the supervisor and task process start, the
imports, reading the job, the lease, the XCom; the gap from ``queued_when`` to ``start_date`` is
the executor's pick-up latency. Prints both per DAG (median and max) and the arithmetic of the
README: the images a task must get for that cost to stay under 5% of its work.

Usage: .venv/bin/python bench/dag_task_overhead.py [--chunks 8] [--rate-preprocess 600] [--rate-training 2300]
(the rates: images per second of one task on a 2-core worker, from bench/preprocess.py and
bench/training_data.py). Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "tests" / "ui"))
FULL_VAL, FULL_TRAIN = 50_000, 1_281_167


def _t(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--rate-preprocess", type=float, default=600.0)
    parser.add_argument("--rate-training", type=float, default=2300.0)
    args = parser.parse_args()

    from conftest import Cluster, _free_port, _run, _stop, cluster_env  # the tests' standalone, reused as it is

    from imagenet_ops.testing.preprocess_samples import plain_images, val_map_text, write_images_tar
    from imagenet_ops.testing.samples import make_class_tars, make_val_tar, sample_wnids, val_synset_labels, write_tar

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    home = work / "home"
    home.mkdir()
    port = _free_port()
    env = cluster_env(home, port)
    airflow = [sys.executable, "-m", "airflow"]
    _run([*airflow, "db", "migrate"], env, "airflow db migrate")
    _run([sys.executable, str(ROOT / "scripts" / "load_settings.py"), str(ROOT / "airflow_settings.yaml")], env, "load_settings")
    images = plain_images(args.chunks, width=320, height=240)
    tar = write_images_tar(work / "val.tar", images)
    (work / "val_map.txt").write_text(val_map_text(sorted(images)))
    wnids = sample_wnids(4)
    class_tars = make_class_tars(work / "class_tars", wnids=wnids, per_class=2, width=160, height=120)
    train = write_tar(work / "train.tar", {p.name: p.read_bytes() for p in class_tars}, gz=False)
    val = make_val_tar(work / "valtrain.tar", count=8, width=160, height=120)
    (work / "labels.txt").write_text(val_synset_labels(8, wnids))
    runs = {
        "imagenet_preprocessed": {
            "images": str(tar),
            "val_map": str(work / "val_map.txt"),
            "size": args.chunks,
            "chunks": args.chunks,
            "workers": 1,
            "sink_uri": str(work / "pre"),
        },
        "imagenet_training_data": {
            "train": str(train),
            "validation": str(val),
            "validation_labels": str(work / "labels.txt"),
            "train_shards": args.chunks,
            "validation_shards": args.chunks,
            "parallel_tasks": args.chunks,
            "workers": 1,
            "sink_uri": str(work / "td"),
        },
    }
    mapped = {"imagenet_preprocessed": "preprocess", "imagenet_training_data": "write_shards"}
    log_path = home / "standalone.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*airflow, "standalone"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    c = Cluster(home=home, base=f"http://127.0.0.1:{port}", password="", proc=proc, log_path=log_path)
    try:
        c.wait(lambda: requests.get(f"{c.base}/api/v2/monitor/health", timeout=3).ok, 120, "api-server health")
        c.password = c.wait(
            lambda: json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"], 60, "password"
        )
        c.login()
        c.wait(lambda: all(c.api.get(f"{c.base}/api/v2/dags/{d}", timeout=5).ok for d in runs), 180, "the DAGs parsed")
        print(
            f"mapped tasks on airflow standalone (LocalExecutor, SQLite, parallelism 4), {args.chunks} per run, each with "
            "almost no work; seconds"
        )
        print(f"{'DAG task':>36} {'duration med':>13} {'max':>6} {'pick-up med':>12}")
        costs = {}
        for dag_id, conf in runs.items():
            c.set_paused(dag_id, False)
            run_id = c.trigger(dag_id, conf)
            c.wait_for_run(dag_id, run_id, 600)
            tis = [t for t in c.task_instances(dag_id, run_id) if t["task_id"] == mapped[dag_id] and t["map_index"] >= 0]
            durations = [_t(t["end_date"]) - _t(t["start_date"]) for t in tis]
            pickups = [_t(t["start_date"]) - _t(t["queued_when"]) for t in tis if t.get("queued_when")]
            costs[dag_id] = statistics.median(durations)
            print(
                f"{dag_id + '.' + mapped[dag_id]:>36} {statistics.median(durations):13.2f} {max(durations):6.2f} "
                f"{statistics.median(pickups) if pickups else float('nan'):12.2f}"
            )
        print("\nimages a task needs for its fixed cost to be under 5% of its work (20 x cost x images/s of one task):")
        for dag_id, rate, full, what in (
            ("imagenet_preprocessed", args.rate_preprocess, FULL_VAL, "chunk"),
            ("imagenet_training_data", args.rate_training, FULL_TRAIN, "shard group"),
        ):
            need = 20 * costs[dag_id] * rate
            print(
                f"  {dag_id}: 20 x {costs[dag_id]:.2f} s x {rate:.0f} img/s = {need:,.0f} images per {what}; "
                f"the full set ({full:,}) in at most {max(1, int(full // need))} {what}s"
            )
    finally:
        _stop(proc)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    time.sleep(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
