"""Cost of the full-decode image verify (issue 10 item 4): each CLI timed both ways, in CPU seconds.

* ``training-data``: the same tars, once on the fast path (header check only: the bench points the
  published ImageNet md5 at its own tars, as the tests do, since the real ones are 146 GB) and once
  fully decoded (the same ``--check-md5`` with the md5 given as ``--train-md5``: a user's md5 does
  not skip the verify). Both runs read the tars once more for the md5.
* ``preprocessed``: with the verify, and without it (the behaviour before: ``verify_image``
  replaced by a no-op in the CLI process).

Every run is a fresh ``python -m imagenet_ops`` process with ``--workers 1`` into a new folder; its
CPU time (user + system, from ``getrusage(RUSAGE_CHILDREN)``) includes start-up, which both ways
share. Prints the best of ``--repeat`` runs, the ratios, and the verify's own rate: images per
CPU-second = images / (CPU verified - CPU without). Inputs and outputs are removed at the end.

Usage: .venv/bin/python bench/image_verify.py [--classes 10] [--per-class 60] [--val 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagenet_ops.testing.preprocess_samples import val_map_text, val_name
from imagenet_ops.testing.samples import make_train_tar, make_val_tar, sample_wnids, val_synset_labels

# Run in the child: optional patches, then the CLI's main() on the remaining arguments.
_FAST_MD5 = """
import sys
from imagenet_ops.training import variations
variations.TRAIN_TAR_MD5, variations.VAL_TAR_MD5 = sys.argv[1], sys.argv[2]
from imagenet_ops.__main__ import main
sys.exit(main(sys.argv[3:]))
"""
_NO_VERIFY = """
import sys
from imagenet_ops.imagenet import image_verify
image_verify.verify_image = lambda data, *, name, keep=None: None
from imagenet_ops.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
_PLAIN = """
import sys
from imagenet_ops.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def cpu_of(code: str, args: list[str]) -> float:
    """CPU seconds (user + system) of one ``python -c code args...`` process; it must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best(repeat: int, code: str, make_args) -> float:
    return min(cpu_of(code, make_args(i)) for i in range(repeat))


def report(what: str, images: int, without: float, verified: float, labels: tuple[str, str]) -> None:
    extra = verified - without
    rate = images / extra if extra > 0 else float("inf")
    print(f"{what}: {images} images 500x375")
    print(f"  {labels[0]:<28} {without:7.2f} CPU-s  ({without / images * 1e3:.2f} ms/image)")
    print(f"  {labels[1]:<28} {verified:7.2f} CPU-s  ({verified / images * 1e3:.2f} ms/image)")
    print(f"  ratio verified / without     {verified / without:7.2f}x")
    print(f"  verify alone                 {rate:7.0f} images/CPU-s ({extra / images * 1e3:.2f} ms/image)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-image-verify-"))
    try:
        started = time.monotonic()
        wnids = sample_wnids(args.classes)
        train = make_train_tar(root / "ILSVRC2012_img_train.tar", wnids=wnids, per_class=args.per_class)
        val = make_val_tar(root / "ILSVRC2012_img_val.tar", count=args.val)
        labels = root / "labels.txt"
        labels.write_text(val_synset_labels(args.val, wnids))
        val_map = root / "val_map.txt"
        val_map.write_text(val_map_text([val_name(i) for i in range(1, args.val + 1)]))
        print(f"generated {args.classes * args.per_class} train + {args.val} val JPEGs in {time.monotonic() - started:.0f}s")
        md5s = [_md5(train), _md5(val)]

        def training(i: int, tag: str) -> list[str]:
            return [
                "training-data", "--train", str(train), "--validation", str(val), "--validation-labels", str(labels),
                "--train-shards", "4", "--validation-shards", "2", "--check-md5", "--train-md5", md5s[0],
                "--validation-md5", md5s[1], "--workers", "1", "--output", str(root / f"td-{tag}-{i}"),
            ]  # fmt: skip

        def preprocessed(i: int, tag: str) -> list[str]:
            return [
                "preprocessed", "--images", str(val), "--labels", str(val_map), "--size", str(args.val),
                "--workers", "1", "--output", str(root / f"pp-{tag}-{i}"),
            ]  # fmt: skip

        images = args.classes * args.per_class + args.val
        fast = best(args.repeat, _FAST_MD5, lambda i: [*md5s, *training(i, "fast")])
        full = best(args.repeat, _PLAIN, lambda i: training(i, "full"))
        report("training-data", images, fast, full, ("fast path (md5 published)", "fully decoded"))
        plain = best(args.repeat, _NO_VERIFY, lambda i: preprocessed(i, "plain"))
        checked = best(args.repeat, _PLAIN, lambda i: preprocessed(i, "checked"))
        report("preprocessed", args.val, plain, checked, ("without the verify (before)", "with the verify"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
