"""Training-data benchmark (issue 5): the reference TFRecord converter against ours, side by side.

Generates ImageNet-like data in the real layout (``ILSVRC2012_img_train.tar`` = a tar of
``<wnid>.tar``; JPEGs 500x375, ~90-100 KB) at two sizes N1 < N2, then times:

* reference: ``imagenet_to_gcs`` reimplemented from the spec in one process: glob the images
  (sorted), ``Random(0)`` shuffle, ``ceil(N/S)`` chunks; per image read the file, decode it fully
  with TensorFlow for height/width (a compat.v1 Session like its ImageCoder, or eager), build the
  9-key ``tf.train.Example`` and write it with ``tf.io.TFRecordWriter``. It reads a pre-extracted
  ``train/<wnid>/*.JPEG`` folder (favourable to it: extraction is not timed).
* ours: ``list_train_images(tar)`` -> ``plan_reference`` -> ``write_tfrecord_shard`` per shard,
  1 worker, straight from the tar; listing, planning and writing are all timed.
* ceiling: reading the same image bytes (``ImageReader`` in plan order), reading the tar
  sequentially, and copying the image bytes to one file (read + write, nothing else).

The marginal rate (N2 - N1) / (t2 - t1) removes start-up costs; the target is ours >= 20x the
reference per core (images per CPU-second). Both outputs are parsed back with TensorFlow and
compared feature by feature, by filename. Page cache is warm for both sides.

Usage: .venv/bin/python bench/training_data.py [--small] [--sizes 1000 3000] [--classes 25]
       [--images-per-shard 1252] [--data-dir DIR] [--repeat 3] [--ref-repeat 1]
       [--ref-decode session|eager] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from imagenet_ops.imagenet.image_header import CMYK_TRAIN_IMAGES, PNG_TRAIN_IMAGES
from imagenet_ops.imagenet.images import ImageReader, ImageRef, list_train_images
from imagenet_ops.testing.samples import imagenet_like_jpeg, sample_wnids, write_tar
from imagenet_ops.training.order import plan_reference
from imagenet_ops.training.shards import write_tfrecord_shard

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorflow is imported later, inside functions

TARGET = 20.0
TRAIN_CHUNK = 1252  # images per train shard in the real conversion (1,281,167 / 1024 shards)
FEATURES = (
    "image/encoded",
    "image/height",
    "image/width",
    "image/class/label",
    "image/class/synset",
    "image/format",
    "image/colorspace",
    "image/channels",
    "image/filename",
)
CEILINGS = {
    "read": "read image bytes (ImageReader, plan order)",
    "tar": "read the train tar sequentially (1 MiB reads)",
    "copy": "copy image bytes to one file (read + write)",
}
INT64_FEATURES = frozenset({"image/height", "image/width", "image/class/label", "image/channels"})


@dataclass
class Run:
    """One timed conversion: wall and CPU seconds (all threads of this process), and phase times."""

    images: int
    shards: int
    in_bytes: int
    wall: float
    cpu: float
    phases: dict[str, float] = field(default_factory=dict)


# --- data ------------------------------------------------------------------------------------------


def _image(job: tuple[int, int]) -> bytes:
    c, k = job
    return imagenet_like_jpeg(c * 1009 + k)  # the seed make_class_tars(seed=0) uses: same bytes


def make_data(root: Path, *, classes: int, per_class: Sequence[int]) -> list[tuple[Path, Path]]:
    """``(train tar, extracted folder)`` per size, generated once (a smaller size is a subset of the largest)."""
    root.mkdir(parents=True, exist_ok=True)
    wnids = sample_wnids(classes)
    paths = {k: (root / f"train_c{classes}_k{k}.tar", root / f"raw_c{classes}_k{k}") for k in per_class}
    missing = [k for k, (tar, raw) in paths.items() if not (tar.exists() and (raw / ".complete").exists())]
    if not missing:
        return list(paths.values())
    top = max(missing)
    jobs = [(c, k) for c in range(classes) for k in range(1, top + 1)]
    t0 = time.perf_counter()
    print(f"generating {len(jobs)} ImageNet-like JPEGs into {root} ...", flush=True)
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        images = dict(zip(jobs, pool.map(_image, jobs, chunksize=16), strict=True))
    for k in missing:
        tar, raw = paths[k]
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            inner = [
                write_tar(
                    Path(tmp) / f"{w}.tar",
                    dict(sorted((f"{w}_{j}.JPEG", images[c, j]) for j in range(1, k + 1))),
                )
                for c, w in enumerate(wnids)
            ]
            write_tar(Path(tmp) / "outer.tar", {p.name: p.read_bytes() for p in inner}, gz=False)
            os.replace(Path(tmp) / "outer.tar", tar)
        shutil.rmtree(raw, ignore_errors=True)
        for c, w in enumerate(wnids):
            (raw / "train" / w).mkdir(parents=True)
            for j in range(1, k + 1):
                (raw / "train" / w / f"{w}_{j}.JPEG").write_bytes(images[c, j])
        (raw / ".complete").touch()
    print(f"generated in {time.perf_counter() - t0:.1f}s", flush=True)
    return list(paths.values())


def shard_count(images: int, per_shard: int) -> int:
    return max(1, math.ceil(images / per_shard))


# --- reference: imagenet_to_gcs.py (tensorflow/tpu 7fe1551), train split, --nogcs_upload --------------


class _ImageCoder:
    """The reference's ImageCoder: PNG -> JPEG, CMYK -> RGB JPEG, and the full decode for height/width."""

    def __init__(self, tf, mode: str) -> None:
        self.tf, self.mode = tf, mode
        if mode == "session":
            graph = tf.Graph()
            with graph.as_default():
                self._png_data = tf.compat.v1.placeholder(dtype=tf.string)
                image = tf.image.decode_png(self._png_data, channels=3)
                self._png_to_jpeg = tf.image.encode_jpeg(image, format="rgb", quality=100)
                self._cmyk_data = tf.compat.v1.placeholder(dtype=tf.string)
                image = tf.image.decode_jpeg(self._cmyk_data, channels=0)
                self._cmyk_to_rgb = tf.image.encode_jpeg(image, format="rgb", quality=100)
                self._decode_jpeg_data = tf.compat.v1.placeholder(dtype=tf.string)
                self._decode_jpeg = tf.image.decode_jpeg(self._decode_jpeg_data, channels=3)
            self._sess = tf.compat.v1.Session(graph=graph)

    def png_to_jpeg(self, data: bytes) -> bytes:
        if self.mode == "session":
            return self._sess.run(self._png_to_jpeg, feed_dict={self._png_data: data})
        tf = self.tf
        return tf.image.encode_jpeg(tf.image.decode_png(data, channels=3), format="rgb", quality=100).numpy()

    def cmyk_to_rgb(self, data: bytes) -> bytes:
        if self.mode == "session":
            return self._sess.run(self._cmyk_to_rgb, feed_dict={self._cmyk_data: data})
        tf = self.tf
        return tf.image.encode_jpeg(tf.image.decode_jpeg(data, channels=0), format="rgb", quality=100).numpy()

    def decode_jpeg(self, data: bytes):
        if self.mode == "session":
            image = self._sess.run(self._decode_jpeg, feed_dict={self._decode_jpeg_data: data})
        else:
            image = self.tf.image.decode_jpeg(data, channels=3).numpy()
        assert len(image.shape) == 3
        assert image.shape[2] == 3
        return image

    def close(self) -> None:
        if self.mode == "session":
            self._sess.close()


def _reference_example(tf, filename: str, image_buffer: bytes, label: int, synset: bytes, height: int, width: int):
    def int64_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def bytes_feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/height": int64_feature(height),
                "image/width": int64_feature(width),
                "image/colorspace": bytes_feature(b"RGB"),
                "image/channels": int64_feature(3),
                "image/class/label": int64_feature(label),
                "image/class/synset": bytes_feature(synset),
                "image/format": bytes_feature(b"JPEG"),
                "image/filename": bytes_feature(os.path.basename(filename).encode()),
                "image/encoded": bytes_feature(image_buffer),
            }
        )
    )


def run_reference(raw_dir: Path, out_dir: Path, *, shards: int, mode: str) -> Run:
    """The reference's convert_to_tf_records for the train split, with the glob sorted (its order is the filesystem's)."""
    import tensorflow as tf

    t0, c0 = time.perf_counter(), time.process_time()
    files = sorted(tf.io.gfile.glob(os.path.join(raw_dir, "train", "*", "*.JPEG")))
    synsets = [os.path.basename(os.path.dirname(f)).encode() for f in files]
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    files, synsets = [files[i] for i in order], [synsets[i] for i in order]
    labels = {s: i + 1 for i, s in enumerate(sorted(set(synsets)))}
    out_dir.mkdir(parents=True, exist_ok=True)
    coder = _ImageCoder(tf, mode)
    t_list = time.perf_counter()
    size = math.ceil(len(files) / shards)
    in_bytes = 0
    for shard in range(shards):
        chunk = slice(shard * size, (shard + 1) * size)
        with tf.io.TFRecordWriter(str(out_dir / f"train-{shard:05d}-of-{shards:05d}")) as writer:
            for filename, synset in zip(files[chunk], synsets[chunk], strict=True):
                with tf.io.gfile.GFile(filename, "rb") as f:
                    image_data = f.read()
                in_bytes += len(image_data)
                base = os.path.basename(filename)
                if base in PNG_TRAIN_IMAGES:
                    image_data = coder.png_to_jpeg(image_data)
                elif base in CMYK_TRAIN_IMAGES:
                    image_data = coder.cmyk_to_rgb(image_data)
                image = coder.decode_jpeg(image_data)
                example = _reference_example(tf, filename, image_data, labels[synset], synset, image.shape[0], image.shape[1])
                writer.write(example.SerializeToString())
    coder.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Run(len(files), shards, in_bytes, wall, cpu, {"list+coder": t_list - t0, "write": wall - (t_list - t0)})


# --- ours --------------------------------------------------------------------------------------------


def run_ours(tar: Path, out_dir: Path, *, per_shard: int) -> Run:
    """What a user pays: list the tar, plan, write every shard with one worker."""
    t0, c0 = time.perf_counter(), time.process_time()
    refs = list_train_images(tar)
    t1 = time.perf_counter()
    shards = shard_count(len(refs), per_shard)
    plan = plan_reference(train=refs, validation=[], val_labels=[], train_shards=shards, validation_shards=0)
    t2 = time.perf_counter()
    with ImageReader() as reader:
        for shard in plan:
            write_tfrecord_shard(shard=shard, out_dir=out_dir, reader=reader)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    phases = {"list": t1 - t0, "plan": t2 - t1, "write": wall - (t2 - t0)}
    return Run(len(refs), shards, sum(r.size for r in refs), wall, cpu, phases)


# --- ceiling -------------------------------------------------------------------------------------------


def _timed(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, result = math.inf, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def ceilings(tar: Path, work: Path, *, repeat: int) -> dict[str, tuple[float, int, int]]:
    """``{kind: (seconds, images, bytes)}`` for plain reads and a plain copy of the same image bytes (see CEILINGS)."""
    refs = list_train_images(tar)
    plan = plan_reference(train=refs, validation=[], val_labels=[], train_shards=1, validation_shards=0)
    ordered: list[ImageRef] = [item.ref for item in plan[0].items]
    n, total = len(ordered), sum(r.size for r in ordered)

    def read_refs() -> int:
        with ImageReader() as reader:
            return sum(len(reader.read(r)) for r in ordered)

    def read_tar() -> int:
        got = 0
        with open(tar, "rb") as fh:
            while chunk := fh.read(1 << 20):
                got += len(chunk)
        return got

    def copy_refs() -> int:
        with ImageReader() as reader, open(work / "copy.bin", "wb") as out:
            for r in ordered:
                out.write(reader.read(r))
        size = (work / "copy.bin").stat().st_size
        (work / "copy.bin").unlink()
        return size

    t_read, _ = _timed(read_refs, repeat)
    t_tar, tar_bytes = _timed(read_tar, repeat)
    t_copy, _ = _timed(copy_refs, repeat)
    return {"read": (t_read, n, total), "tar": (t_tar, n, tar_bytes), "copy": (t_copy, n, total)}


# --- equivalence -----------------------------------------------------------------------------------------


@dataclass
class Record:
    """One parsed record: its features (as TF parses them), raw payload, and where it sits."""

    features: dict[str, object]
    raw: bytes
    shard: str
    position: int


def parse_records(out_dir: Path) -> dict[str, Record]:
    """Every record of ``out_dir``'s shards by filename, parsed by TF with the reference's feature map."""
    import tensorflow as tf

    fmap = {k: tf.io.FixedLenFeature([], tf.int64 if k in INT64_FEATURES else tf.string) for k in FEATURES}
    records: dict[str, Record] = {}
    for path in sorted(out_dir.glob("train-*")):
        for position, raw in enumerate(tf.data.TFRecordDataset(str(path))):
            features = {k: v.numpy() for k, v in tf.io.parse_single_example(raw, fmap).items()}
            name = features["image/filename"].decode()
            if name in records:
                raise AssertionError(f"{path}: {name} appears twice")
            records[name] = Record(features, raw.numpy(), path.name, position)
    return records


def check_equivalence(ref_dir: Path, our_dir: Path) -> tuple[bool, str]:
    """Compare both outputs record by record (by filename); the detail also says how far they are byte-identical."""
    import tensorflow as tf

    ref, ours = parse_records(ref_dir), parse_records(our_dir)
    problems = []
    if set(ref) != set(ours):
        only_ref, only_ours = len(set(ref) - set(ours)), len(set(ours) - set(ref))
        problems.append(f"filenames differ: {only_ref} only in reference, {only_ours} only in ours")
    common = sorted(set(ref) & set(ours))
    for name in common:
        bad = [k for k in FEATURES if ref[name].features[k] != ours[name].features[k]]
        if bad:
            problems.append(f"{name}: {', '.join(bad)} differ")
    ref_shards, our_shards = sorted(p.name for p in ref_dir.glob("train-*")), sorted(p.name for p in our_dir.glob("train-*"))
    if ref_shards != our_shards:
        problems.append(f"shard names differ: {ref_shards} vs {our_shards}")
    if problems:
        return False, f"{len(problems)} problems, first: " + "; ".join(problems[:3])
    placed = sum((ref[n].shard, ref[n].position) == (ours[n].shard, ours[n].position) for n in common)
    same = sum(tf.train.Example.FromString(ref[n].raw).SerializeToString(deterministic=True) == ours[n].raw for n in common)
    return True, (
        f"{len(ours)} records in {len(our_shards)} shard(s), all 9 features equal; {placed} in the same shard and position; "
        f"{same} byte-identical to the reference Example serialized deterministically"
    )


# --- profile ---------------------------------------------------------------------------------------------


def profile_ours(tar: Path, work: Path, *, per_shard: int, top: int = 15) -> list[str]:
    """cProfile of one run of ours, as report lines: top functions by own time, then the library's by cumulative time."""
    prof = cProfile.Profile()
    out = Path(tempfile.mkdtemp(dir=work))
    prof.enable()
    run = run_ours(tar, out, per_shard=per_shard)
    prof.disable()
    shutil.rmtree(out)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in stats.values())

    def rows(keys: list) -> list[str]:
        lines = [f"  {'own s':>7} {'own %':>6} {'cum s':>7} {'cum %':>6} {'calls':>8}  function"]
        for path, line, func in keys:
            _, calls, own, cum, _ = stats[path, line, func]
            where = func if path == "~" else f"{func} ({Path(path).name}:{line})"
            lines.append(f"  {own:7.3f} {own / total:6.1%} {cum:7.3f} {cum / total:6.1%} {calls:8d}  {where}")
        return lines

    by_own = sorted(stats, key=lambda k: stats[k][2], reverse=True)[:top]
    library = sorted((k for k in stats if "imagenet_ops" in k[0]), key=lambda k: stats[k][3], reverse=True)[:top]
    head = f"profile of ours (cProfile, N={run.images}, {total:.3f}s profiled)"
    return [
        f"{head}; top {top} by own time:",
        *rows(by_own),
        "\nlibrary functions (imagenet_ops) by cumulative time:",
        *rows(library),
    ]


# --- main --------------------------------------------------------------------------------------------------


def best_of(repeat: int, work: Path, run: Callable[[Path], Run]) -> tuple[Run, Path]:
    """The fastest of ``repeat`` runs, each into a fresh folder (ours skips complete shards); only its output is kept."""
    best: tuple[Run, Path] | None = None
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(dir=work))
        result = run(out)
        if best is None or result.wall < best[0].wall:
            if best:
                shutil.rmtree(best[1])
            best = (result, out)
        else:
            shutil.rmtree(out)
    assert best is not None
    return best


def _marginal(small: Run, large: Run) -> tuple[float, float, float]:
    """Marginal images per wall second, per CPU-second, and input MB per wall second."""
    d_img, d_wall, d_cpu = large.images - small.images, large.wall - small.wall, large.cpu - small.cpu
    inf = float("inf")
    return (
        d_img / d_wall if d_wall > 0 else inf,
        d_img / d_cpu if d_cpu > 0 else inf,
        (large.in_bytes - small.in_bytes) / 1e6 / d_wall if d_wall > 0 else inf,
    )


def _row(name: str, run: Run) -> str:
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in run.phases.items())
    return (
        f"{name:18} {run.images:>7} {run.shards:>6} {run.wall:>8.2f} {run.cpu:>8.2f} {run.images / run.wall:>9.0f}"
        f" {run.images / run.cpu:>10.0f} {run.in_bytes / 1e6 / run.wall:>8.1f}   {phases}"
    )


def report(
    args: argparse.Namespace,
    ref: list[Run],
    ours: list[Run],
    ceiling: dict[str, tuple[float, int, int]],
    checks: list[tuple[bool, str]],
    tf_info: str,
) -> bool:
    """Print the table, the marginal rates and ratio, the ceiling and the check; True if all passed."""
    mean_kb = ours[-1].in_bytes / ours[-1].images / 1e3
    print(f"\ntraining data, train split: {args.classes} classes, ImageNet-like JPEGs 500x375, mean {mean_kb:.0f} KB")
    print(f"  shards = ceil(N / {args.images_per_shard}); {os.cpu_count()} CPUs, shared (noisy); warm page cache")
    print(f"reference: imagenet_to_gcs shape, {tf_info}")
    print(f"  reads a PRE-EXTRACTED train/<wnid>/*.JPEG folder (extraction not timed); best of {args.ref_repeat}")
    print("ours:      list_train_images + plan_reference + write_tfrecord_shard, 1 worker, from the train tar")
    print(f"  listing, planning and writing timed; best of {args.repeat}")
    print(
        f"\n{'run':18} {'images':>7} {'shards':>6} {'wall s':>8} {'cpu s':>8} {'img/s':>9} {'img/cpu-s':>10} {'MB/s':>8}   phases"
    )
    for name, runs in (("reference", ref), ("ours", ours)):
        for run in runs:
            print(_row(f"{name} N={run.images}", run))

    r_wall, r_cpu, r_mb = _marginal(*ref)
    o_wall, o_cpu, o_mb = _marginal(*ours)
    per_core, wall_ratio = o_cpu / r_cpu, o_wall / r_wall
    whole = statistics.fmean((o.images / o.cpu) / (r.images / r.cpu) for o, r in zip(ours, ref, strict=True))
    print(f"\nmarginal (N2 - N1) / (t2 - t1), N1={ours[0].images} N2={ours[1].images}:")
    print(f"  {'':10} {'img/s':>9} {'img/cpu-s':>10} {'MB/s':>8}")
    print(f"  {'reference':10} {r_wall:>9.0f} {r_cpu:>10.0f} {r_mb:>8.1f}")
    print(f"  {'ours':10} {o_wall:>9.0f} {o_cpu:>10.0f} {o_mb:>8.1f}")
    print(f"  ratio ours / reference: {per_core:.1f}x per core (CPU-seconds), {wall_ratio:.1f}x wall")
    print(f"  (whole-run ratio per core, start-up included, mean of both sizes: {whole:.1f}x)")

    print(f"\nceiling on the same bytes (N={ours[1].images}, best of {args.repeat}):")
    for kind, (secs, n, nbytes) in ceiling.items():
        print(f"  {CEILINGS[kind]:48} {nbytes / 1e6 / secs:>8.0f} MB/s {n / secs:>9.0f} img/s")
    read_mb, copy_mb = (ceiling[k][2] / 1e6 / ceiling[k][0] for k in ("read", "copy"))
    print(f"  ours marginal {o_mb:.0f} MB/s = {o_mb / read_mb:.1%} of the read ceiling, {o_mb / copy_mb:.1%} of the copy ceiling")

    print("\nequivalence (tf.io.parse_single_example, reference feature map, compared by filename):")
    for run, (ok, detail) in zip(ours, checks, strict=True):
        print(f"  N={run.images}: {'OK' if ok else 'FAIL'}: {detail}")
    all_ok = all(ok for ok, _ in checks)
    verdict = "PASS" if per_core >= TARGET and all_ok else "FAIL"
    check = "OK" if all_ok else "FAIL"
    print(f"\n{verdict}: ours {per_core:.1f}x the reference per core (target >= {TARGET:.0f}x), equivalence {check}")
    return verdict == "PASS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="quick mode (< 1 minute): sizes 200 600, 20 classes")
    parser.add_argument("--sizes", type=int, nargs=2, metavar=("N1", "N2"), help="images at the two sizes (default 1000 3000)")
    parser.add_argument("--classes", type=int, help="wnids (default 25; 20 with --small)")
    parser.add_argument("--images-per-shard", type=int, default=TRAIN_CHUNK, help="shards = ceil(N / this), as ImageNet's 1252")
    parser.add_argument("--data-dir", type=Path, help="keep generated data here and reuse it on later runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours and of the ceilings, best kept")
    parser.add_argument("--ref-repeat", type=int, default=1, help="runs of the reference per size, best kept")
    parser.add_argument("--ref-decode", choices=("session", "eager"), default="session", help="reference: v1 Session or eager")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of ours at the larger size")
    args = parser.parse_args()
    sizes = args.sizes or ((200, 600) if args.small else (1000, 3000))
    args.classes = args.classes or (20 if args.small else 25)
    per_class = sorted({max(1, round(n / args.classes)) for n in sizes})
    if len(per_class) != 2:
        parser.error(f"--sizes {sizes[0]} {sizes[1]} must differ in images per class ({args.classes} classes)")

    with tempfile.TemporaryDirectory(prefix="bench-training-data-") as tmp:
        work = Path(tmp)
        data = make_data(args.data_dir or work / "data", classes=args.classes, per_class=per_class)
        for tar, raw in data:  # warm the page cache for both sides
            tar.read_bytes()
            for p in raw.glob("train/*/*.JPEG"):
                p.read_bytes()
        ceiling = ceilings(data[-1][0], work, repeat=args.repeat)
        ours = [best_of(args.repeat, work, partial(run_ours, tar, per_shard=args.images_per_shard)) for tar, _ in data]
        profile = profile_ours(data[-1][0], work, per_shard=args.images_per_shard) if args.profile else []

        t0 = time.perf_counter()
        import tensorflow as tf

        tf_info = f"TF {tf.__version__}, {args.ref_decode} decode; tensorflow import ({time.perf_counter() - t0:.1f}s) not timed"
        ref = [
            best_of(args.ref_repeat, work, partial(run_reference, raw, shards=run.shards, mode=args.ref_decode))
            for (_, raw), (run, _) in zip(data, ours, strict=True)
        ]
        checks = [check_equivalence(r_out, o_out) for (_, r_out), (_, o_out) in zip(ref, ours, strict=True)]

    ok = report(args, [r for r, _ in ref], [o for o, _ in ours], ceiling, checks, tf_info)
    if profile:
        print("\n" + "\n".join(profile))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
