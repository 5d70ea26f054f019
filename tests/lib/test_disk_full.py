"""Full disks (issue 10 item 6): ENOSPC ends in a DiskFullError naming the path and the space left.

Two real sources of ENOSPC, no mocks: ``/dev/full`` (every write to it fails with ENOSPC), and a
tiny tmpfs mounted in a private user + mount namespace (``unshare``) around a subprocess, so the
filesystem that fills up is real and vanishes with the process. Where namespaces are not
allowed, the tmpfs tests are skipped.
"""

from __future__ import annotations

import errno
import hashlib
import pickle
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from imagenet_ops.aux.variations import ARCHIVE_NAME
from imagenet_ops.core.digests import AcceptedChecksums
from imagenet_ops.core.diskspace import disk_full_error, disk_full_guard
from imagenet_ops.core.download import download
from imagenet_ops.core.errors import DiskFullError, StorageError
from imagenet_ops.imagenet.constants import NUM_CLASSES
from imagenet_ops.testing.samples import make_aux_archive

DEV_FULL = Path("/dev/full")
LISTING = "== left on the full filesystem:"
# Mount a tmpfs of $2 bytes at $1 in this (private) mount namespace, run the rest, then list what is left there.
_IN_TMPFS = (
    'mnt=$1 size=$2; shift 2; mount -t tmpfs -o "size=$size" imagenet-ops-test "$mnt" || exit 97; '
    f'"$@"; rc=$?; echo "{LISTING}"; find "$mnt" -mindepth 1 | sort; exit $rc'
)

needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this machine")


def _can_mount_tmpfs(probe: Path) -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    try:
        proc = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _IN_TMPFS, "sh", str(probe), "16k", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {proc.stderr.strip()}"


@pytest.fixture(scope="session")
def full_disk(tmp_path_factory: pytest.TempPathFactory):
    """``run(mount, size, argv)``: runs ``argv`` with a ``size`` tmpfs at ``mount``; returns (proc, what was left)."""
    reason = _can_mount_tmpfs(tmp_path_factory.mktemp("probe"))
    if reason:
        pytest.skip(reason)

    def run(mount: Path, size: str, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        mount.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _IN_TMPFS, "sh", str(mount), size, *argv],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode != 97, proc.stderr
        out, _, listing = proc.stdout.partition(LISTING)
        proc.stdout = out
        return proc, listing.split()

    return run


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagenet_ops", *args]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


# -- the guard itself, on /dev/full -------------------------------------------------------------------


@needs_dev_full
def test_guard_turns_enospc_into_disk_full_error_naming_path_and_space() -> None:
    with pytest.raises(DiskFullError) as info, disk_full_guard(DEV_FULL), open(DEV_FULL, "wb") as fh:
        fh.write(b"x" * 4096)

    assert isinstance(info.value, StorageError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert info.value.path == "/dev/full" and isinstance(info.value.free, int)
    assert re.fullmatch(
        r"no space left on the device while writing /dev/full \(\d+(\.\d)? [KMG]?B free of \d+(\.\d)? [KMG]?B on that "
        r"filesystem\): free space or point the output/work dir elsewhere",
        str(info.value),
    ), str(info.value)


def test_guard_lets_other_os_errors_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), disk_full_guard(tmp_path / "missing"):
        (tmp_path / "missing" / "file").write_bytes(b"x")


@needs_dev_full
def test_disk_full_error_without_a_path() -> None:
    try:
        DEV_FULL.write_bytes(b"x")
    except OSError as exc:
        error = disk_full_error(exc)
    assert str(error).startswith("no space left on the device while writing ")


def _fill_dev_full(_: int) -> None:
    with disk_full_guard(DEV_FULL):
        DEV_FULL.write_bytes(b"x" * 4096)


@needs_dev_full
def test_disk_full_error_crosses_a_process_pool_intact() -> None:
    # Shard writers run in process pools: the error must arrive with its message, path and free space.
    with ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(DiskFullError, match="while writing /dev/full") as info:
        pool.submit(_fill_dev_full, 0).result()

    assert info.value.path == "/dev/full"
    assert pickle.loads(pickle.dumps(info.value)).free == info.value.free


@needs_dev_full
def test_download_onto_a_full_device_fails_at_once_without_trying_other_mirrors(http_server, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): ENOSPC while downloading gave a raw traceback.
    # The partial file is /dev/full itself (a symlink), with the marker of a resumable download from this mirror.
    (http_server.root / "f.bin").write_bytes(b"y" * 300_000)
    (http_server.root / "other.bin").write_bytes(b"y" * 300_000)
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "f.bin.part").symlink_to(DEV_FULL)
    (dest / "f.bin.part.url").write_text(f'{{"url": "{http_server.url("f.bin")}", "etag": null}}')

    with pytest.raises(DiskFullError, match=rf"while writing {re.escape(str(dest / 'f.bin.part'))} \("):
        download(
            urls=[http_server.url("f.bin"), http_server.url("other.bin")],
            dest_dir=dest,
            accepted=AcceptedChecksums.of(),
            filename="f.bin",
        )

    assert len(http_server.requests_for("/f.bin")) == 1  # no retry of the same mirror either
    assert http_server.requests_for("/other.bin") == []


# -- a real full filesystem: a tmpfs in a private mount namespace ----------------------------------------


@pytest.fixture
def aux_source(http_server) -> tuple[str, str]:
    archive = make_aux_archive(http_server.root / ARCHIVE_NAME)  # 258 KB, expands to 1.8 MB
    return http_server.url(ARCHIVE_NAME), hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.mark.parametrize(
    ("size", "on_tmpfs", "written"),
    [
        # The archive (258 KB) does not fit: the download's partial file is named.
        pytest.param("128k", "work", r"{mnt}/work/download/caffe_ilsvrc12\.tar\.gz\.part", id="download"),
        # The archive fits but its 1.8 MB of members do not: the member being extracted is named.
        pytest.param("1m", "work", r"{mnt}/work/\.extracted\.tmp-\w+/[\w.]+", id="extract"),
        # The local output cannot hold the files: the sink's file is named.
        pytest.param("512k", "output", r"{mnt}/out/[\w.]+", id="local-sink"),
    ],
)
def test_cli_on_a_full_filesystem_prints_one_error_line(
    full_disk, aux_source: tuple[str, str], tmp_path: Path, size: str, on_tmpfs: str, written: str
) -> None:
    # Regression (issue 10 item 6): ENOSPC while downloading or writing gave a raw traceback.
    url, md5 = aux_source
    mnt = tmp_path / "mnt"
    work = mnt / "work" if on_tmpfs == "work" else tmp_path / "work"
    out = mnt / "out" if on_tmpfs == "output" else tmp_path / "out"

    proc, left = full_disk(mnt, size, cli("aux", "--url", url, "--md5", md5, "--output", str(out), "--work-dir", str(work)))

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    pattern = rf"ERROR imagenet_ops: no space left on the device while writing {written.format(mnt=re.escape(str(mnt)))} "
    # Under 1 KB free: the space is measured when the write failed, before any cleanup. The sink's 4
    # parallel uploads fail together; the figure raised is the least one, taken before any of their
    # cleanups (regression: a 295 B file's error once reported 405 KB free, after val.txt's was removed).
    pattern += r"\(\d+ B free of \d+\.\d [KM]B on that filesystem\): free space or point the output/work dir elsewhere"
    [line] = error_lines(proc.stderr)
    assert re.search(pattern, line), line
    assert not [p for p in left if ".extracted.tmp-" in p or re.search(r"/out/\.[^/]+\.tmp-", p)]  # temporaries removed
    assert not (out / "manifest.json").exists() and not any(p.endswith("/out/manifest.json") for p in left)


def test_gunzip_and_object_store_download_on_a_full_filesystem(full_disk, tmp_path: Path, gcs_bucket) -> None:
    # The library calls the operators make, on a real full filesystem: a .gz extraction and a GCS download.
    import gzip
    import os

    payload = os.urandom(600_000)
    archive = tmp_path / "big.bin.gz"
    archive.write_bytes(gzip.compress(payload))
    client, bucket = gcs_bucket
    client.bucket(bucket).blob("big.bin").upload_from_string(payload)
    endpoint = client.api_endpoint
    mnt = tmp_path / "mnt"
    script = f"""
import sys
from pathlib import Path
from imagenet_ops.core.errors import DiskFullError
from imagenet_ops.core.extract import extract_archive
from imagenet_ops.core.store import ObjectStore
from imagenet_ops.core.clients import default_gcs_client

mnt = Path({str(mnt)!r})
for name, call in [
    ("gunzip", lambda: extract_archive(archive=Path({str(archive)!r}), dest=mnt / "big.bin")),
    ("gcs", lambda: ObjectStore(gcs_client=default_gcs_client(endpoint={endpoint!r})).download(
        "gs://{bucket}/big.bin", mnt / "dl" / "big.bin")),
]:
    try:
        call()
        print(name, "no error")
    except DiskFullError as exc:
        print(name, exc)
"""
    proc, left = full_disk(mnt, "256k", [sys.executable, "-c", script])

    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["gunzip"].startswith(f"no space left on the device while writing {mnt}/.big.bin.tmp-"), lines
    assert lines["gcs"].startswith(f"no space left on the device while writing {mnt}/dl/big.bin ("), lines
    assert left == [f"{mnt}/dl"]  # neither left a temporary behind


def _training_inputs(root: Path) -> dict[str, Path]:
    from imagenet_ops.testing.samples import aux_file_contents, make_class_tars, make_val_tar, sample_wnids, write_tar

    aux = root / "aux"
    aux.mkdir(parents=True)
    files = aux_file_contents()
    for name, data in files.items():
        (aux / name).write_bytes(data)
    wnids = sample_wnids(NUM_CLASSES)
    classes = sorted({wnids[int(line.split()[1])] for line in files["val.txt"].decode().splitlines()[:4]})
    tars = make_class_tars(root / "class_tars", wnids=classes, per_class=1, width=160, height=120)
    train = write_tar(root / "ILSVRC2012_img_train.tar", {p.name: p.read_bytes() for p in tars}, gz=False)
    val = make_val_tar(root / "ILSVRC2012_img_val.tar", count=4, width=160, height=120)
    return {"train": train, "validation": val, "aux": aux}


def test_cli_turns_any_other_enospc_into_the_one_line_error(full_disk, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): a full disk under a writer without its own guard (here the
    # TFRecord shards, 12 KB of room) still ends in the CLI's one-line error, not a traceback.
    inputs = _training_inputs(tmp_path / "inputs")
    mnt = tmp_path / "mnt"
    argv = cli(
        "training-data",
        *("--train", str(inputs["train"]), "--validation", str(inputs["validation"]), "--aux", str(inputs["aux"])),
        *("--output", str(mnt / "out"), "--work-dir", str(tmp_path / "work"), "--workers", "1"),
        *("--train-shards", "2", "--validation-shards", "1"),
    )

    proc, _ = full_disk(mnt, "12k", argv)

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert "ERROR imagenet_ops: no space left on the device while writing " in line
