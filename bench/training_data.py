"""Training-data benchmark (issues 5 and 15): the reference TFRecord converter against our CLI, side by side.

Generates ImageNet-like data in the real layout (``ILSVRC2012_img_train.tar`` = a tar of
``<wnid>.tar``; JPEGs 500x375, ~90-100 KB) at two sizes N1 < N2, then times, in one run:

* reference (a process): ``imagenet_to_gcs`` reimplemented from the spec: glob the images
  (sorted), ``Random(0)`` shuffle, ``ceil(N/S)`` chunks; per image read the file, decode it fully
  with TensorFlow for height/width (a compat.v1 Session like its ImageCoder, or eager), build the
  9-key ``tf.train.Example`` and write it with ``tf.io.TFRecordWriter``. It reads a pre-extracted
  ``train/<wnid>/*.JPEG`` folder (favourable to it: extraction is not timed).
* CLI (a process): ``python -m imagenet_ops training-data --train <tar> --workers 1 ...`` as a
  user runs it, straight from the tar: plan, shards, DALI indexes, report, manifest. On the fast
  path a user with the published ImageNet tars gets (``--check-md5``, header check only): the
  child points the published md5 at the bench's tar, and takes the md5 as already checked (the
  md5 read is a separate pass over the tar, the same for any writer, and not timed).
* inner functions (this process, the second line): ``list_train_images`` -> ``plan_reference``
  -> ``write_tfrecord_shard`` per shard, header check only.

Both processes' CPU time is user + system from ``os.wait4``. The marginal (N2 - N1) / (t2 - t1)
removes start-up (Python and TensorFlow imports, the plan, the report); the target is the CLI
>= 20x the reference per core (images per CPU-second). Checks: the CLI's shards are
byte-identical (sha256) to the inner functions' and to a plain record-by-record framing of the
same plan (the writer before buffering and preallocation); its DALI indexes equal
``tfrecord_index_lines``; and its records parse (TensorFlow, the reference's feature map) to the
same features as the reference's, by filename. Page cache is warm for both sides; every output
is removed at the end.

Usage: .venv/bin/python bench/training_data.py [--small] [--sizes 3000 6000] [--classes 25]
       [--images-per-shard 1252] [--data-dir DIR] [--repeat 5] [--ref-repeat 2]
       [--ref-decode session|eager] [--ceilings] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import math
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from imagenet_ops.core.digests import file_digests
from imagenet_ops.imagenet.image_header import CMYK_TRAIN_IMAGES, PNG_TRAIN_IMAGES, image_info, needs_conversion, to_rgb_jpeg
from imagenet_ops.imagenet.images import ImageReader, ImageRef, list_train_images
from imagenet_ops.testing.samples import imagenet_like_jpeg, sample_wnids, write_tar
from imagenet_ops.training.order import Shard, plan_reference
from imagenet_ops.training.shards import dali_index_name, write_tfrecord_shard
from imagenet_ops.training.tfrecord import frame_record, imagenet_example, tfrecord_index_lines

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


# --- ours ---------------------------------------------------------------------------------------------

# Run in the CLI child: the bench's tar stands in for the published ImageNet tar, whose md5 a
# --check-md5 run has just confirmed (so the header-only fast path applies and the tar is not
# read for its md5 again); then the CLI's own main() on the remaining arguments.
_CLI_FAST_PATH = """
import sys
from imagenet_ops.training import inputs, pipeline, variations
md5 = sys.argv[1]
variations.TRAIN_TAR_MD5 = md5
pipeline.check_input_archives = lambda *, config, train, validation, store=None: {
    path: expected for path, expected in inputs.archives_to_check(train=train, validation=validation, config=config)
}
from imagenet_ops.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def run_child(argv: list[str], work: Path, *, images: int, shards: int, in_bytes: int) -> Run:
    """Run ``argv`` as a child process; wall time, and its CPU (user + system) from ``os.wait4``. It must exit 0."""
    log = work / f"child-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    log.unlink()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(argv)}\n{text[-3000:]}")
    return Run(images, shards, in_bytes, wall, usage.ru_utime + usage.ru_stime, {"user": usage.ru_utime, "sys": usage.ru_stime})


def run_cli(tar: Path, md5: str, out_dir: Path, work: Path, *, per_shard: int) -> Run:
    """``python -m imagenet_ops training-data`` on the tar, 1 worker, as a process (fast path, see ``_CLI_FAST_PATH``)."""
    refs = list_train_images(tar)  # only to fill the Run; the CLI lists the tar itself
    shards = shard_count(len(refs), per_shard)
    args = ["training-data", "--train", str(tar), "--train-shards", str(shards), "--validation-shards", "0"]
    args += ["--check-md5", "--train-md5", md5, "--workers", "1", "--output", str(out_dir)]
    argv = [sys.executable, "-c", _CLI_FAST_PATH, md5, *args]
    return run_child(argv, work, images=len(refs), shards=shards, in_bytes=sum(r.size for r in refs))


def run_reference_process(raw_dir: Path, out_dir: Path, work: Path, *, shards: int, mode: str, images: int, in_bytes: int) -> Run:
    """:func:`run_reference` in a child process (``--reference-child``), TensorFlow import included."""
    argv = [sys.executable, __file__, "--reference-child", str(raw_dir), str(out_dir), str(shards), mode]
    return run_child(argv, work, images=images, shards=shards, in_bytes=in_bytes)


def run_ours(tar: Path, out_dir: Path, *, per_shard: int) -> Run:
    """The inner functions in this process: list the tar, plan, write every shard (header check only, as the CLI's fast path)."""
    t0, c0 = time.perf_counter(), time.process_time()
    refs = list_train_images(tar)
    t1 = time.perf_counter()
    shards = shard_count(len(refs), per_shard)
    plan = plan_reference(train=refs, validation=[], val_labels=[], train_shards=shards, validation_shards=0)
    t2 = time.perf_counter()
    with ImageReader() as reader:
        for shard in plan:
            write_tfrecord_shard(shard=shard, out_dir=out_dir, reader=reader, verify=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    phases = {"list": t1 - t0, "plan": t2 - t1, "write": wall - (t2 - t0)}
    return Run(len(refs), shards, sum(r.size for r in refs), wall, cpu, phases)


def plain_sha256s(tar: Path, *, per_shard: int) -> dict[str, str]:
    """sha256 per shard of the plan's records framed one by one (``frame_record``), no buffering or preallocation.

    What the writer wrote before it batched records into large ``writev`` calls and preallocated
    its files: the bytes any TFRecord writer must produce for this plan.
    """
    refs = list_train_images(tar)
    plan = plan_reference(
        train=refs, validation=[], val_labels=[], train_shards=shard_count(len(refs), per_shard), validation_shards=0
    )
    sums = {}
    with ImageReader() as reader:
        for shard in plan:
            sums[shard.name] = _plain_sha256(shard, reader)
    return sums


def _plain_sha256(shard: Shard, reader: ImageReader) -> str:
    digest = hashlib.sha256()
    for item, (_, data) in zip(shard.items, reader.read_many(i.ref for i in shard.items), strict=True):
        if needs_conversion(item.ref.name, split=shard.split):
            data = to_rgb_jpeg(data, name=item.ref.name)
        info = image_info(data, name=item.ref.name)
        example = imagenet_example(
            encoded=data, height=info.height, width=info.width, label=item.label, synset=item.synset, filename=item.ref.name
        )
        digest.update(frame_record(example))
    return digest.hexdigest()


def shard_sha256s(out_dir: Path) -> dict[str, str]:
    return {p.name: file_digests(p).sha256 for p in sorted(out_dir.glob("train-*")) if p.is_file()}


def _differing(got: dict[str, str], want: dict[str, str]) -> list[str]:
    return sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))[:3]


def check_bytes(cli_dir: Path, inner_dir: Path, plain: dict[str, str]) -> tuple[bool, str]:
    """The CLI's shards against the inner functions' and the plain framing (sha256), and its DALI indexes."""
    cli, inner = shard_sha256s(cli_dir), shard_sha256s(inner_dir)
    problems = []
    if cli != plain:
        problems.append(f"CLI shards differ from the plain framing: {_differing(cli, plain)}")
    if inner != plain:
        problems.append(f"inner-function shards differ from the plain framing: {_differing(inner, plain)}")
    bad_idx = [n for n in cli if (cli_dir / dali_index_name(n)).read_text() != "".join(tfrecord_index_lines(cli_dir / n))]
    if bad_idx:
        problems.append(f"DALI indexes differ from tfrecord_index_lines: {bad_idx[:3]}")
    manifest = json.loads((cli_dir / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    missing = [k for n in cli for k in (n, dali_index_name(n)) if k not in listed]
    if missing:
        problems.append(f"not in the CLI's manifest: {missing[:3]}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{len(cli)} shard(s) sha256-identical across CLI, inner functions and plain framing; {len(cli)} DALI indexes OK"


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


def best_of(repeat: int, work: Path, runs: Sequence[Callable[[Path], Run]]) -> list[tuple[Run, Path]]:
    """Per callable (one per size), the run with the least CPU of ``repeat``, each into a fresh folder.

    Only the best run's output is kept. The sizes take turns (N1, N2, N1, N2 ...), so a change of
    load on a shared machine hits both alike.
    """
    best: list[tuple[Run, Path] | None] = [None] * len(runs)
    for _ in range(repeat):
        for k, run in enumerate(runs):
            out = Path(tempfile.mkdtemp(dir=work))
            result = run(out)
            kept = best[k]
            if kept is None or result.cpu < kept[0].cpu:
                if kept:
                    shutil.rmtree(kept[1])
                best[k] = (result, out)
            else:
                shutil.rmtree(out)
    return [b for b in best if b is not None]


@dataclass
class Marginal:
    """(N2 - N1) over the differences of the two runs: images per wall second and per CPU-second, MB/s."""

    wall: float
    cpu: float
    mb: float

    @classmethod
    def of(cls, small: Run, large: Run) -> Marginal:
        d_img, d_wall, d_cpu = large.images - small.images, large.wall - small.wall, large.cpu - small.cpu
        inf = float("inf")
        return cls(
            d_img / d_wall if d_wall > 0 else inf,
            d_img / d_cpu if d_cpu > 0 else inf,
            (large.in_bytes - small.in_bytes) / 1e6 / d_wall if d_wall > 0 else inf,
        )


def _row(name: str, run: Run) -> str:
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in run.phases.items())
    return (
        f"{name:24} {run.images:>7} {run.shards:>6} {run.wall:>8.2f} {run.cpu:>8.2f} {run.images / run.wall:>9.0f}"
        f" {run.images / run.cpu:>10.0f} {run.in_bytes / 1e6 / run.wall:>8.1f}   {phases}"
    )


def report(
    args: argparse.Namespace,
    runs: dict[str, list[Run]],
    ceiling: dict[str, tuple[float, int, int]],
    checks: list[tuple[str, bool, str]],
    tf_info: str,
) -> bool:
    """Print the table, the marginal rates and ratios, the ceiling and the checks; True if all passed."""
    ref, cli, inner = runs["reference"], runs["CLI"], runs["inner functions"]
    mean_kb = cli[-1].in_bytes / cli[-1].images / 1e3
    print(f"\ntraining data, train split: {args.classes} classes, ImageNet-like JPEGs 500x375, mean {mean_kb:.0f} KB")
    print(f"  shards = ceil(N / {args.images_per_shard}); {os.cpu_count()} CPUs, shared (noisy); warm page cache")
    print(f"reference: a process, imagenet_to_gcs shape, {tf_info}; best of {args.ref_repeat} (least CPU)")
    print("  reads a PRE-EXTRACTED train/<wnid>/*.JPEG folder (extraction not timed)")
    print("CLI:       a process, python -m imagenet_ops training-data --workers 1 from the train tar, fast path")
    print(f"  (published md5 pointed at the bench's tar, md5 taken as checked: not re-read); best of {args.repeat} (least CPU)")
    print("inner:     list_train_images + plan_reference + write_tfrecord_shard(verify=False) in this process")
    print("CPU = user + system of the child (os.wait4); for inner, this process's CPU time")
    print(
        f"\n{'run':24} {'images':>7} {'shards':>6} {'wall s':>8} {'cpu s':>8} {'img/s':>9} {'img/cpu-s':>10} {'MB/s':>8}   phases"
    )
    for name, group in runs.items():
        for run in group:
            print(_row(f"{name} N={run.images}", run))

    m_ref, m_cli, m_inner = Marginal.of(*ref), Marginal.of(*cli), Marginal.of(*inner)
    d_img = cli[1].images - cli[0].images
    print(f"\nmarginal (N2 - N1) / (t2 - t1), N1={cli[0].images} N2={cli[1].images}:")
    print(f"  {'':24} {'img/s':>9} {'img/cpu-s':>10} {'MB/s':>8} {'CPU-s/1k img':>13}")
    for name, m in (("reference (process)", m_ref), ("CLI (process)", m_cli), ("inner functions", m_inner)):
        print(f"  {name:24} {m.wall:>9.0f} {m.cpu:>10.0f} {m.mb:>8.1f} {1000 / m.cpu:>13.3f}")
    per_core, wall_ratio = m_cli.cpu / m_ref.cpu, m_cli.wall / m_ref.wall
    d_sys = (cli[1].phases["sys"] - cli[0].phases["sys"]) / d_img * 1000
    d_user = (cli[1].phases["user"] - cli[0].phases["user"]) / d_img * 1000
    print(f"  CLI marginal CPU per 1k images: user {d_user:.3f} s, sys {d_sys:.3f} s")
    print(f"  ratio CLI / reference: {per_core:.1f}x per core (CPU-seconds), {wall_ratio:.1f}x wall")
    whole = statistics.fmean((c.images / c.cpu) / (r.images / r.cpu) for c, r in zip(cli, ref, strict=True))
    print(f"  (whole-process ratio per core, start-up included, mean of both sizes: {whole:.1f}x)")
    print(f"  inner functions / reference process (second line, not what users run): {m_inner.cpu / m_ref.cpu:.1f}x per core")

    if ceiling:
        print(f"\nceiling on the same bytes (N={cli[1].images}, best of {args.repeat}):")
        for kind, (secs, n, nbytes) in ceiling.items():
            print(f"  {CEILINGS[kind]:48} {nbytes / 1e6 / secs:>8.0f} MB/s {n / secs:>9.0f} img/s")
        read_mb, copy_mb = (ceiling[k][2] / 1e6 / ceiling[k][0] for k in ("read", "copy"))
        print(f"  CLI marginal {m_cli.mb:.0f} MB/s = {m_cli.mb / read_mb:.1%} of the read ceiling,", end=" ")
        print(f"{m_cli.mb / copy_mb:.1%} of the copy ceiling")

    print("\nchecks:")
    for what, ok, detail in checks:
        print(f"  {what}: {'OK' if ok else 'FAIL'}: {detail}")
    all_ok = all(ok for _, ok, _ in checks)
    verdict = "PASS" if per_core >= TARGET and all_ok else "FAIL"
    checked = "OK" if all_ok else "FAIL"
    print(f"\n{verdict}: CLI {per_core:.1f}x the reference per core (target >= {TARGET:.0f}x), checks {checked}")
    return verdict == "PASS"


def reference_child(argv: list[str]) -> int:
    """``--reference-child RAW OUT SHARDS MODE``: the reference converter alone in this process."""
    raw, out, shards, mode = argv
    run_reference(Path(raw), Path(out), shards=int(shards), mode=mode)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--reference-child"]:
        return reference_child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="quick mode (about a minute): sizes 200 600, 20 classes")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs=2,
        metavar=("N1", "N2"),
        help="images at the two sizes (default 3000 6000: both >= 3 shards, so the report samples 3 shards at both)",
    )
    parser.add_argument("--classes", type=int, help="wnids (default 25; 20 with --small)")
    parser.add_argument("--images-per-shard", type=int, default=TRAIN_CHUNK, help="shards = ceil(N / this), as ImageNet's 1252")
    parser.add_argument("--data-dir", type=Path, help="keep generated data here and reuse it on later runs")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of the CLI, the inner functions and the ceilings, least CPU kept"
    )
    parser.add_argument("--ref-repeat", type=int, default=2, help="runs of the reference per size, least CPU kept")
    parser.add_argument("--ref-decode", choices=("session", "eager"), default="session", help="reference: v1 Session or eager")
    parser.add_argument("--ceilings", action="store_true", help="also time plain reads and a plain copy of the image bytes")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the inner functions at the larger size")
    args = parser.parse_args()
    sizes = args.sizes or ((200, 600) if args.small else (3000, 6000))
    args.classes = args.classes or (20 if args.small else 25)
    per_class = sorted({max(1, round(n / args.classes)) for n in sizes})
    if len(per_class) != 2:
        parser.error(f"--sizes {sizes[0]} {sizes[1]} must differ in images per class ({args.classes} classes)")
    per_shard = args.images_per_shard

    with tempfile.TemporaryDirectory(prefix="bench-training-data-") as tmp:
        work = Path(tmp)
        data = make_data(args.data_dir or work / "data", classes=args.classes, per_class=per_class)
        for tar, raw in data:  # warm the page cache for both sides
            tar.read_bytes()
            for p in raw.glob("train/*/*.JPEG"):
                p.read_bytes()
        md5s = [file_digests(tar).md5 for tar, _ in data]
        plain = [plain_sha256s(tar, per_shard=per_shard) for tar, _ in data]
        ceiling = ceilings(data[-1][0], work, repeat=args.repeat) if args.ceilings else {}
        inner = best_of(args.repeat, work, [partial(run_ours, tar, per_shard=per_shard) for tar, _ in data])
        cli = best_of(
            args.repeat,
            work,
            [
                lambda out, tar=tar, md5=md5: run_cli(tar, md5, out, work, per_shard=per_shard)
                for (tar, _), md5 in zip(data, md5s, strict=True)
            ],
        )
        checks = [
            (f"bytes N={c.images}", *check_bytes(c_out, i_out, p))
            for (c, c_out), (_, i_out), p in zip(cli, inner, plain, strict=True)
        ]
        for _, i_out in inner:
            shutil.rmtree(i_out)
        profile = profile_ours(data[-1][0], work, per_shard=per_shard) if args.profile else []
        ref = best_of(
            args.ref_repeat,
            work,
            [
                lambda out, raw=raw, run=run: run_reference_process(
                    raw, out, work, shards=run.shards, mode=args.ref_decode, images=run.images, in_bytes=run.in_bytes
                )
                for (_, raw), (run, _) in zip(data, cli, strict=True)
            ],
        )
        import tensorflow as tf

        tf_info = f"TF {tf.__version__}, {args.ref_decode} decode, tensorflow import in its CPU"
        checks += [
            (f"records N={c.images}", *check_equivalence(r_out, c_out)) for (_, r_out), (c, c_out) in zip(ref, cli, strict=True)
        ]
        for _, out in (*ref, *cli):
            shutil.rmtree(out)

    runs = {"reference": [r for r, _ in ref], "CLI": [c for c, _ in cli], "inner functions": [i for i, _ in inner]}
    ok = report(args, runs, ceiling, checks, tf_info)
    if profile:
        print("\n" + "\n".join(profile))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
