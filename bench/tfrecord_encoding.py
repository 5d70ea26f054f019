"""TFRecord encoding micro-benchmark: ``imagenet_example`` + framing, and + ``TFRecordWriter.write``.

Inner functions only, labelled as such (the user-level figure is ``bench/training_data.py``, which
times the CLI side by side with the reference converter). On 100 KB payloads it shows what the
second 100 KB buffer of ``frame_record`` costs: with glibc's default malloc settings the two large
allocations per record can cost more than the encoding itself; the writer writes header, payload
and CRC separately and avoids that copy. Formerly a test that measured and asserted nothing.

Usage: .venv/bin/python bench/tfrecord_encoding.py [--records 2000] [--repeat 3] [--size 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from imagenet_ops.testing.samples import example_fields  # noqa: E402
from imagenet_ops.training.tfrecord import TFRecordWriter, frame_record, imagenet_example  # noqa: E402


def best_rate(fn: Callable[[], object], n: int, repeat: int) -> tuple[float, float]:
    """Records per wall second and per CPU second, best of ``repeat``."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return n / best_wall, n / max(best_cpu, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    fields = example_fields(9, args.size)
    size = len(fields["encoded"])
    framed = best_rate(lambda: frame_record(imagenet_example(**fields)), args.records, args.repeat)
    with TFRecordWriter(os.devnull) as writer:
        written = best_rate(lambda: writer.write(imagenet_example(**fields)), args.records, args.repeat)
    print(f"inner functions, {size / 1e3:.0f} KB payloads, best of {args.repeat} x {args.records} records")
    for name, (wall, cpu) in (("imagenet_example+frame_record", framed), ("imagenet_example+TFRecordWriter(/dev/null)", written)):
        print(f"  {name:45s} {wall:10,.0f} records/s  {cpu:10,.0f} records/CPU-s  {wall * size / 1e6:8,.0f} MB/s")
    print(f"  ratio writer / frame_record: {written[1] / framed[1]:.2f}x per CPU-second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
