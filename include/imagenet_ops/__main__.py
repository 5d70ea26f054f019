"""Command line: ``python -m imagenet_ops <artifact> ...`` prints the CM env dict as JSON on stdout.

Logs go to stderr. Object-storage outputs use the environment's credentials (``AWS_*``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``STORAGE_EMULATOR_HOST``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from imagenet_ops import VERSION
from imagenet_ops.aux import DECLARATION as AUX
from imagenet_ops.aux import pipeline as aux_pipeline
from imagenet_ops.aux.variations import ARCHIVE_NAME
from imagenet_ops.core.cpus import available_cpus
from imagenet_ops.core.diskspace import disk_full_error, is_disk_full
from imagenet_ops.core.errors import ConfigError, ImagenetOpsError, StorageError
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.core.uris import scheme_of
from imagenet_ops.model import DECLARATION as MODEL
from imagenet_ops.model import pipeline as model_pipeline
from imagenet_ops.model import sources as model_sources
from imagenet_ops.testing import samples
from imagenet_ops.training import DECLARATION as TRAINING
from imagenet_ops.training import pipeline as training_pipeline

log = logging.getLogger("imagenet_ops")


def _private_tmp() -> Path:
    """``$TMPDIR/imagenet_ops-<uid>``: this user's own folder (0700), never a link someone planted."""
    parent = Path(tempfile.gettempdir()) / f"imagenet_ops-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    st = os.lstat(parent)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StorageError(f"{parent}: not a private folder of this user (mode 0700); remove it or pass --work-dir")
    return parent


def _work_dir(args: argparse.Namespace, sink: Any) -> tuple[Path, bool]:
    """The given work dir, or one named after the output: what a killed run left there is removed first."""
    if args.work_dir:
        return Path(args.work_dir), False
    # one output, one name: the endpoint too, since s3://b/p on two S3 services are two outputs
    endpoint_env = {"s3": "AWS_ENDPOINT_URL", "gs": "STORAGE_EMULATOR_HOST"}.get(scheme_of(sink.uri))
    endpoint = os.environ.get(endpoint_env, "") if endpoint_env else ""
    digest = hashlib.sha256(f"{endpoint}|{sink.uri}".encode()).hexdigest()[:16]
    work = _private_tmp() / f"work-{digest}"
    if work.is_symlink():
        work.unlink()
    elif work.exists():  # only this output's lease holder uses it: a killed run's staging and temporaries
        log.info("removing %s, left by an interrupted run on %s", work, sink.uri)
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    return work, True


@contextlib.contextmanager
def _output_lease(args: argparse.Namespace, sink: Any) -> Iterator[None]:
    """Hold ``sink``'s lease while the block runs; a read-only folder can only be a cache hit, without one."""
    from imagenet_ops.core.lease import CLI_TTL, Lease, OutputReadOnlyError, cli_owner, default_ttl

    try:
        lease = Lease(sink, owner=cli_owner(), ttl=default_ttl(CLI_TTL), process_bound=True).acquire(wait=args.wait_for_lease)
    except OutputReadOnlyError as exc:
        log.warning("%s; going on without the lease (only a cache hit can succeed on a read-only output)", exc)
        yield
        return
    try:
        with lease.keep_alive():
            yield
    finally:
        lease.release()


def _build_and_report(args: argparse.Namespace, label: str, sink: Any, build: Callable[[Path], Any]) -> dict[str, str]:
    """Under ``sink``'s lease, run ``build(work_dir)`` in the given or a temporary work dir and log a summary."""
    started = time.monotonic()
    with _output_lease(args, sink):
        work, temporary = _work_dir(args, sink)
        try:
            done = build(work)
        finally:
            if temporary:
                shutil.rmtree(work, ignore_errors=True)
    pub = done.publish
    log.info(
        "%s: %s, %d files at %s (cache key %s, %.1fs)",
        label,
        "cache hit, nothing uploaded" if pub.cache_hit else "published",
        pub.files,
        pub.uri,
        pub.cache_key[:12],
        time.monotonic() - started,
    )
    return done.env


def _cmd_aux(args: argparse.Namespace) -> dict[str, str]:
    # the job's work dir is not used: the CLI picks its own under the output's lease (_work_dir)
    job = AUX.resolve_job(vars(args), sink_uri=args.output, conn_id=None, work_dir=args.work_dir or "")
    sink = open_sink(job.sink_uri)
    return _build_and_report(
        args, f"aux {job.config.version}", sink, lambda work: aux_pipeline.build_aux(config=job.config, sink=sink, work_dir=work)
    )


def _cmd_model(args: argparse.Namespace) -> Any:
    if args.list:
        return model_sources.model_table_listing()
    if not args.output:
        raise ConfigError("model: --output is required (or use --list)")
    # the DAG's rules, with the CLI's one variant; the work dir is picked under the output's lease (_work_dir)
    (job,) = MODEL.resolve_job(
        vars(args), sink_uri=args.output, conn_id=None, work_dir=args.work_dir or "", per_variant_folder=args.per_variant_folder
    )
    sink = open_sink(job.sink_uri)
    return _build_and_report(
        args,
        f"model {job.variant_id}",
        sink,
        lambda work: model_pipeline.build_model(config=job.config, sink=sink, work_dir=work),
    )


def _cmd_training_data(args: argparse.Namespace) -> dict[str, str]:
    # the DAG's rules; one process writes every unit, in a work dir picked under the output's lease (_work_dir)
    job = TRAINING.resolve_job({**vars(args), "parallel_tasks": 1}, sink_uri=args.output, conn_id=None, work_dir="")
    sink = open_sink(job.sink_uri)
    workers = args.workers or available_cpus()
    return _build_and_report(
        args,
        f"training data ({job.config.implementation})",
        sink,
        lambda work: training_pipeline.build_training_data(
            config=job.config,
            sink=sink,
            train=job.train,
            validation=job.validation,
            validation_labels=job.validation_labels,
            aux_path=job.aux_path,
            work_dir=work,
            workers=workers,
        ),
    )


def _cmd_preprocessed(args: argparse.Namespace) -> dict[str, str]:
    from imagenet_ops.preprocessed import DECLARATION as PREPROCESSED
    from imagenet_ops.preprocessed import pipeline as preprocess

    # the DAG's rules (a validation set needs labels); the work dir is picked under the output's lease
    job = PREPROCESSED.resolve_job(vars(args), sink_uri=args.output, conn_id=None, work_dir="")
    sink = open_sink(job.sink_uri)
    return _build_and_report(
        args,
        f"preprocessed {job.config.tags}",
        sink,
        lambda work: preprocess.build_preprocessed(
            config=job.config,
            source=job.images,
            output=job.sink_uri,
            val_map=Path(job.val_map) if job.val_map else None,
            aux_path=job.aux_path,
            calibration_list=Path(job.calibration_list) if job.calibration_list else None,
            workers=args.workers or None,
            chunks=job.chunks,
            work_dir=work,
            sink=sink,
        ),
    )


def _cmd_accuracy(args: argparse.Namespace) -> dict[str, str]:
    from imagenet_ops.accuracy import DECLARATION as ACCURACY
    from imagenet_ops.accuracy import pipeline as accuracy
    from imagenet_ops.core.store import ObjectStore

    # the DAG's rules; the work dir is picked under the output's lease (_work_dir)
    job = ACCURACY.resolve_job(vars(args), sink_uri=args.output, conn_id=None, work_dir="")
    sink = open_sink(job.sink_uri)
    done: list[Any] = []  # build_accuracy's CheckResult (it has .publish and .env, as _build_and_report reads them)

    def build(work: Path) -> Any:
        done.append(accuracy.build_accuracy(job, sink=sink, store=ObjectStore(), work_dir=work, threads=args.workers))
        return done[-1]

    env = _build_and_report(args, f"accuracy {Path(str(job.model)).name} on {Path(str(job.preprocessed)).name}", sink, build)
    accuracy.raise_unless_passed(done[-1].verdict)  # after the summary line: a fail is published, then an error
    return env


def _count(minimum: int, maximum: int = 256) -> Any:
    """An argparse type: an integer from ``minimum`` to ``maximum`` (``--workers -3`` used to be accepted)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not an integer") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is outside {minimum} to {maximum}")
        return value

    return parse


def _seconds(raw: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{raw} is not a finite number of seconds, 0 or more")
    return value


def _add_lease_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-for-lease",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="when another run is writing the same output, wait up to SECONDS for it (default 0: fail at once)",
    )


# The CLI takes a value the form cannot: "download" for the images.
PREPROCESSED_CLI_HELP = {"images": "On the command line, 'download' does the same."}
# Flags the CLI had before each input got one name in the form and the CLI (issue 11); still accepted.
INPUT_FLAG_ALIASES = {"val_map": ("--labels",), "aux_path": ("--aux",)}


def add_job_inputs(
    parser: argparse.ArgumentParser,
    job_type: Any,
    *,
    required: tuple[str, ...] = (),
    cli_help: dict[str, str] | None = None,
) -> None:
    """One flag per input the artifact's Job declares, named as the form names it (``val_map`` -> ``--val-map``)."""
    for field in job_type.inputs():
        flags = (f"--{field.name.replace('_', '-')}", *INPUT_FLAG_ALIASES.get(field.name, ()))
        text = field.metadata["description"] + (f" {cli_help[field.name]}" if cli_help and field.name in cli_help else "")
        parser.add_argument(*flags, dest=field.name, required=field.name in required, help=text.replace("%", "%%"))


def _add_preprocessed_parser(sub: Any) -> None:
    from imagenet_ops.preprocessed import DECLARATION as PREPROCESSED

    pre = sub.add_parser("preprocessed", help="preprocessed ImageNet val/calibration sets (get-preprocessed-dataset-imagenet)")
    PREPROCESSED.table.add_cli_arguments(pre)
    add_job_inputs(pre, PREPROCESSED.job, required=("images",), cli_help=PREPROCESSED_CLI_HELP)
    pre.add_argument("--output", required=True, help="local folder, s3://bucket/prefix or gs://bucket/prefix")
    pre.add_argument("--workers", type=_count(0), default=0, help="processes, 0 to 256 (default 0: all cores)")
    pre.add_argument("--chunks", type=_count(1, 1024), default=1, help="chunks, run one after the other (1 to 1024)")
    pre.add_argument("--work-dir", help="scratch folder for downloads (default: a temporary folder, removed after)")
    _add_lease_argument(pre)
    pre.set_defaults(func=_cmd_preprocessed)


def _add_accuracy_parser(sub: Any) -> None:
    from imagenet_ops.accuracy import DECLARATION as ACCURACY

    acc = sub.add_parser("accuracy", help="top-1 / top-5 of a published model variant on a published preprocessed set")
    ACCURACY.table.add_cli_arguments(acc)
    add_job_inputs(acc, ACCURACY.job, required=("model", "preprocessed"))
    acc.add_argument("--output", required=True, help="local folder, s3://bucket/prefix or gs://bucket/prefix")
    acc.add_argument("--workers", type=_count(0), default=0, help="runtime threads, 0 to 256 (default 0: the runtime's own)")
    acc.add_argument("--chunks", type=_count(1, 1024), default=1, help="chunks, scored one after the other (1 to 1024)")
    acc.add_argument("--work-dir", help="scratch folder for remote model files (default: a temporary folder, removed after)")
    _add_lease_argument(acc)
    acc.set_defaults(func=_cmd_accuracy)


def _cmd_sample(args: argparse.Namespace) -> dict[str, str]:
    path = samples.make_aux_archive(Path(args.output) / ARCHIVE_NAME, seed=args.seed)
    return {"IMAGENET_OPS_SAMPLE_AUX_ARCHIVE": str(path)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imagenet_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=VERSION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    aux = sub.add_parser("aux", help="ImageNet aux files (get-dataset-imagenet-aux)")
    AUX.table.add_cli_arguments(aux)
    aux.add_argument("--output", required=True, help="local folder, s3://bucket/prefix or gs://bucket/prefix")
    aux.add_argument("--work-dir", help="scratch folder for the download (default: a temporary folder, removed after)")
    _add_lease_argument(aux)
    aux.set_defaults(func=_cmd_aux)

    model = sub.add_parser("model", help="ResNet-50 model variants (get-ml-model-resnet50)")
    MODEL.table.add_cli_arguments(model)
    model.add_argument("--list", action="store_true", help="print every supported combination (URLs, file names, md5s) as JSON")
    model.add_argument("--output", help="local folder, s3://bucket/prefix or gs://bucket/prefix")
    model.add_argument("--per-variant-folder", action="store_true", help="publish into <output>/<variant id>")
    model.add_argument("--work-dir", help="scratch folder for the download (default: a temporary folder, removed after)")
    _add_lease_argument(model)
    model.set_defaults(func=_cmd_model)

    tdata = sub.add_parser("training-data", help="ResNet-50 training TFRecords or RecordIO (prepare-training-data-resnet)")
    TRAINING.table.add_cli_arguments(tdata)
    add_job_inputs(tdata, TRAINING.job)
    tdata.add_argument("--output", required=True, help="local folder, s3://bucket/prefix or gs://bucket/prefix")
    tdata.add_argument(
        "--workers", type=_count(0), default=0, help="processes writing shards at once, 0 to 256 (default 0: all cores)"
    )
    tdata.add_argument("--work-dir", help="scratch folder (default: a temporary folder, removed after)")
    _add_lease_argument(tdata)
    tdata.set_defaults(func=_cmd_training_data)

    _add_preprocessed_parser(sub)

    _add_accuracy_parser(sub)

    sample = sub.add_parser("sample", help="write the small generated sample inputs (no download)")
    sample.add_argument("--output", required=True, help="folder for caffe_ilsvrc12.tar.gz")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_cmd_sample)
    return parser


def _redact_record(record: logging.LogRecord) -> bool:
    """Every line the CLI logs has the URL credentials in it masked (``user:***@``, ``X-Amz-Signature=***``)."""
    from imagenet_ops.core.redact import redact_text

    message = record.getMessage()
    if (masked := redact_text(message)) != message:
        record.msg, record.args = masked, ()
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    try:
        env = args.func(args)
    except ImagenetOpsError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:  # a full disk at a write no guard names: still one line, not a traceback
        if not is_disk_full(exc):
            raise
        log.error("%s", disk_full_error(exc))
        return 1
    try:
        print(json.dumps(env, indent=None, sort_keys=True), flush=True)
    except OSError as exc:  # a full or closed stdout: the work is done, only its report is lost
        log.error("cannot write the result to stdout: %s", exc)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - interpreter shutdown flushes it harmlessly
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
