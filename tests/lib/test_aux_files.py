"""Aux files: validation of the extracted folder, and the whole build against the local HTTP server."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from imagenet_ops.aux.pipeline import build_aux, validate_aux_dir, verify_aux_archive
from imagenet_ops.aux.report import REPORT_FILES
from imagenet_ops.aux.variations import ARCHIVE_NAME, AUX_FILES, resolve_aux_config
from imagenet_ops.core.errors import ChecksumMismatch, ValidationError
from imagenet_ops.core.extract import extract_archive
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.imagenet.labels import read_val_map
from imagenet_ops.testing.samples import aux_file_contents, make_aux_archive, sample_wnids


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def edit_lines(folder: Path, name: str, edit: Callable[[list[str]], list[str]]) -> None:
    path = folder / name
    path.write_text("".join(f"{line}\n" for line in edit(path.read_text().splitlines())))


def swap_first_two(lines: list[str]) -> list[str]:
    return [lines[1], lines[0], *lines[2:]]


def set_line(i: int, text: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [*lines[:i], text, *lines[i + 1 :]]


def insert_line(i: int, text: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [*lines[:i], text, *lines[i:]]


def test_sample_passes_validation(aux_dir: Path) -> None:
    result = validate_aux_dir(aux_dir)

    assert result.as_dict() == {"path": str(aux_dir), "classes": 1000, "val_images": 50_000}


def test_sample_archive_round_trip(tmp_path: Path) -> None:
    archive = make_aux_archive(tmp_path / ARCHIVE_NAME)
    assert archive.read_bytes() == make_aux_archive(tmp_path / "again" / ARCHIVE_NAME).read_bytes()  # byte-reproducible

    extracted = extract_archive(archive=archive, dest=tmp_path / "extracted")

    assert sorted(p.name for p in Path(extracted.path).iterdir()) == sorted(AUX_FILES)
    assert {name: (tmp_path / "extracted" / name).read_bytes() for name in AUX_FILES} == aux_file_contents()
    assert validate_aux_dir(Path(extracted.path)).classes == 1000


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        pytest.param("synsets.txt", swap_first_two, r"synsets\.txt: wnids are not sorted and unique", id="synsets-unsorted"),
        pytest.param(
            "synsets.txt",
            set_line(1, sample_wnids()[0]),
            r"synsets\.txt: wnids are not sorted and unique",
            id="synsets-duplicate",
        ),
        pytest.param(
            "synsets.txt", lambda lines: lines[:-1], r"synsets\.txt: expected 1000 wnids, found 999 lines", id="synsets-count"
        ),
        pytest.param(
            "synsets.txt", set_line(4, "dog"), r"synsets\.txt: line 5 'dog' is not a wnid like n01440764", id="synsets-not-a-wnid"
        ),
        pytest.param(
            "val.txt",
            set_line(0, "ILSVRC2012_val_00000001.JPEG 1000"),
            r"val\.txt: line 1 label 1000 is outside 0\.\.999",
            id="val-label-out-of-range",
        ),
        # Regression (issue 10 item 6): malformed val.txt lines must be named by file and line, never a traceback.
        pytest.param(
            "val.txt",
            set_line(2, "ILSVRC2012_val_00000003.JPEG"),
            r"val\.txt: line 3 'ILSVRC2012_val_00000003\.JPEG' has no label; expected '<image name> <label>'",
            id="val-missing-label",
        ),
        pytest.param(
            "val.txt",
            set_line(4, "ILSVRC2012_val_00000005.JPEG 3 7"),
            r"val\.txt: line 5 'ILSVRC2012_val_00000005\.JPEG 3 7' has 3 fields; expected '<image name> <label>'",
            id="val-extra-field",
        ),
        pytest.param(
            "val.txt",
            set_line(5, "ILSVRC2012_val_00000006.JPEG abc"),
            r"val\.txt: line 6 label 'abc' is not an integer",
            id="val-label-abc",
        ),
        pytest.param(
            "val.txt",
            set_line(5, "ILSVRC2012_val_00000006.JPEG 3.0"),
            r"val\.txt: line 6 label '3\.0' is not an integer",
            id="val-label-float",
        ),
        pytest.param(
            "val.txt",
            set_line(9, "ILSVRC2012_val_00000010.JPEG -1"),
            r"val\.txt: line 10 label -1 is outside 0\.\.999",
            id="val-negative-label",
        ),
        pytest.param("val.txt", insert_line(100, ""), r"val\.txt: line 101 is empty", id="val-empty-line-in-the-middle"),
        pytest.param(
            "val.txt", set_line(6, "val_7.jpg 3"), r"val\.txt: line 7 image 'val_7\.jpg' is not named", id="val-bad-image-name"
        ),
        pytest.param(
            "val.txt",
            set_line(1, "ILSVRC2012_val_00000001.JPEG 5"),
            r"val\.txt: line 2: ILSVRC2012_val_00000001\.JPEG repeats line 1",
            id="val-duplicate-image",
        ),
        pytest.param(
            "val.txt", swap_first_two, r"val\.txt: line 1 names image 00000002; expected ascending order", id="val-order"
        ),
        pytest.param(
            "val.txt",
            lambda lines: lines[:-1],
            r"val\.txt: expected 50000 lines, found 49999 \(it ends at line 49999\)",
            id="val-too-short",
        ),
        pytest.param(
            "val.txt",
            lambda lines: [*lines, "ILSVRC2012_val_00050001.JPEG 3"],
            r"val\.txt: expected 50000 lines, found 50001 \(line 50001 onwards is extra\)",
            id="val-too-long",
        ),
        pytest.param(
            "synset_words.txt",
            lambda lines: lines[:7] + lines[8:],
            rf"synset_words\.txt: 1 wnid\(s\) of synsets\.txt have no words, e\.g\. {sample_wnids()[7]}$",
            id="synset-words-missing-a-wnid",
        ),
    ],
)
def test_broken_aux_dir_is_refused(aux_dir: Path, name: str, edit: Callable[[list[str]], list[str]], message: str) -> None:
    edit_lines(aux_dir, name, edit)

    with pytest.raises(ValidationError, match=message) as info:
        validate_aux_dir(aux_dir)

    assert str(aux_dir / name) in str(info.value)


@pytest.mark.parametrize("missing", ["val.txt", "imagenet.bet.pickle"])
def test_missing_aux_file_is_named(aux_dir: Path, missing: str) -> None:
    (aux_dir / missing).unlink()

    with pytest.raises(
        ValidationError, match=rf"{re.escape(str(aux_dir))}: missing aux file\(s\) {re.escape(missing)} \(expected all of"
    ):
        validate_aux_dir(aux_dir)


def test_non_utf8_file_is_refused(aux_dir: Path) -> None:
    (aux_dir / "synsets.txt").write_bytes(b"\xff\xfe" * 10)

    with pytest.raises(ValidationError, match=r"synsets\.txt: not UTF-8 text"):
        validate_aux_dir(aux_dir)


def test_validation_counts_are_parameters(aux_dir: Path) -> None:
    edit_lines(aux_dir, "val.txt", lambda lines: lines[:10])

    assert validate_aux_dir(aux_dir, val_images=10).val_images == 10


def test_verify_aux_archive(tmp_path: Path, aux_archive_bytes: bytes) -> None:
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(aux_archive_bytes)
    good = resolve_aux_config({"url": "http://mirror/caffe_ilsvrc12.tar.gz", "md5": md5_of(aux_archive_bytes)})
    bad = resolve_aux_config({"url": "http://mirror/caffe_ilsvrc12.tar.gz", "md5": "0" * 32})

    assert verify_aux_archive(config=good, archive=archive)["md5"] == md5_of(aux_archive_bytes)
    with pytest.raises(
        ChecksumMismatch, match=f"checksum mismatch for {re.escape(str(archive))}: md5 {md5_of(aux_archive_bytes)} is not any"
    ):
        verify_aux_archive(config=bad, archive=archive)


def test_build_aux_publishes_then_hits_the_cache(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    config = resolve_aux_config({"url": served_archive, "md5": md5_of(aux_archive_bytes)})
    out = tmp_path / "published"

    first = build_aux(config=config, sink=open_sink(str(out)), work_dir=tmp_path / "work1")
    second = build_aux(config=config, sink=open_sink(str(out)), work_dir=tmp_path / "work2")

    assert first.env == {"CM_DATASET_AUX_PATH": str(out), "CM_DATASET_AUX_VER": "2012"}
    assert (first.publish.cache_hit, second.publish.cache_hit) == (False, True)
    assert sorted(p.name for p in out.iterdir()) == sorted([*AUX_FILES, "manifest.json", "report"])
    assert (out / "val.txt").read_bytes() == aux_file_contents()["val.txt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["upstream"] == {
        "md5": md5_of(aux_archive_bytes),
        "sha256": hashlib.sha256(aux_archive_bytes).hexdigest(),
        "size": len(aux_archive_bytes),
    }
    assert manifest["provenance"]["url"] == served_archive
    assert manifest["params"]["md5"] == [md5_of(aux_archive_bytes)]


def test_unexpected_archive_members_are_dropped_with_a_warning(
    http_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 10 item 5): members of the aux tarball that are not expected were published.
    from imagenet_ops.testing.samples import write_tar

    members = {**aux_file_contents(), "README.evil": b"not an aux file", "extra/notes.txt": b"x"}
    archive = write_tar(http_server.root / ARCHIVE_NAME, members)
    config = resolve_aux_config({"url": http_server.url(ARCHIVE_NAME), "md5": md5_of(archive.read_bytes())})
    out = tmp_path / "published"

    with caplog.at_level("WARNING", logger="imagenet_ops.aux.pipeline"):
        build_aux(config=config, sink=open_sink(str(out)), work_dir=tmp_path / "work")

    assert sorted(p.name for p in out.iterdir()) == sorted([*AUX_FILES, "manifest.json", "report"])
    assert {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]} == {*AUX_FILES, *REPORT_FILES}
    assert "dropping 2 unexpected member(s) of the archive, not published: README.evil, extra/notes.txt" in caplog.text


def test_read_val_labels_parses_any_names_in_file_order(tmp_path: Path) -> None:
    labels = tmp_path / "val_map.txt"
    labels.write_text("b.JPEG 3\na.JPEG 0\n")

    assert read_val_map(labels, classes=4) == [("b.JPEG", 3), ("a.JPEG", 0)]
    with pytest.raises(ValidationError, match=rf"{re.escape(str(labels))}: line 1 label 3 is outside 0\.\.2"):
        read_val_map(labels, classes=3)


def test_read_val_labels_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=rf"{re.escape(str(tmp_path / 'val.txt'))}: cannot read: No such file"):
        read_val_map(tmp_path / "val.txt")


def test_build_aux_with_a_malformed_val_txt_names_the_line(http_server, tmp_path: Path) -> None:
    # Regression (issue 10 item 6): a malformed aux val.txt gave a traceback instead of a named error.
    lines = aux_file_contents()["val.txt"].decode().splitlines()
    lines[41] = "ILSVRC2012_val_00000042.JPEG"
    archive = make_aux_archive(http_server.root / ARCHIVE_NAME, overrides={"val.txt": "\n".join(lines).encode() + b"\n"})
    config = resolve_aux_config({"url": http_server.url(ARCHIVE_NAME), "md5": md5_of(archive.read_bytes())})
    out = tmp_path / "published"

    with pytest.raises(ValidationError, match=r"extracted/val\.txt: line 42 'ILSVRC2012_val_00000042\.JPEG' has no label"):
        build_aux(config=config, sink=open_sink(str(out)), work_dir=tmp_path / "work")

    assert not (out / "manifest.json").exists()


def test_resolve_job_holds_the_config_and_its_xcom_form_keeps_the_templated_fields() -> None:
    from imagenet_ops.aux.variations import AuxJob, resolve_job

    job = resolve_job(
        {"source": "dropbox", "md5": "a" * 32, "sink_uri": "ignored"}, sink_uri="gs://b/aux", conn_id="g", work_dir="/w/r"
    )
    assert job.config == resolve_aux_config({"source": "dropbox", "md5": "a" * 32})
    assert (job.sink_uri, job.conn_id, job.work_dir) == ("gs://b/aux", "g", "/w/r")
    data = json.loads(json.dumps(job.to_xcom()))
    # the DAG templates run["urls"], run["md5"] ... and pulls key="work_dir": the keys the resolve task always had
    assert list(data) == [*job.config.as_params(), "config", "work_dir", "sink_uri", "conn_id"]
    assert data["urls"] == data["config"]["urls"] and data["md5"] == ["a" * 32]
    assert AuxJob.from_xcom(data) == job


def test_the_dag_steps_hand_over_only_the_staged_archive(served_archive: str, aux_archive_bytes: bytes, tmp_path: Path) -> None:
    # Issue 12 item 1: each step gets a scratch of its own (another worker's disk) and reads only the staging area.
    from imagenet_ops.aux import steps
    from imagenet_ops.core.errors import StorageError
    from imagenet_ops.core.staging import Staging
    from imagenet_ops.core.store import ObjectStore

    config = resolve_aux_config({"url": served_archive, "md5": md5_of(aux_archive_bytes)})
    sink = open_sink(str(tmp_path / "out"))
    staging = Staging(sink=sink, run="imagenet_aux/run-1", store=ObjectStore())
    with pytest.raises(StorageError, match="did the task that stages it finish"):
        steps.verify_archive(config=config, staging=staging, scratch=tmp_path / "nothing-staged")

    def scratch(name: str) -> Path:
        (tmp_path / name).mkdir()
        return tmp_path / name

    fetched = steps.download_archive(config=config, staging=staging, scratch=scratch("a"))
    assert fetched.path == staging.uri("download/caffe_ilsvrc12.tar.gz") and Path(fetched.path).read_bytes() == aux_archive_bytes
    for name in ("a", "b", "c", "d"):
        shutil.rmtree(tmp_path / name, ignore_errors=True)  # nothing of the step before is left
        if name == "b":
            assert steps.verify_archive(config=config, staging=staging, scratch=scratch(name))["md5"] == fetched.md5
        elif name == "c":
            assert steps.extract_archive_check(config=config, staging=staging, scratch=scratch(name)).files == 8
        elif name == "d":
            assert steps.validate_archive(config=config, staging=staging, scratch=scratch(name)).path == fetched.path
    shutil.rmtree(tmp_path / "d")
    done = steps.publish_archive(config=config, staging=staging, scratch=scratch("e"), sink=sink, archive=fetched.as_dict())
    assert done.env["CM_DATASET_AUX_PATH"] == str(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["provenance"]["url"] == served_archive and "staging" not in json.dumps(manifest)
    assert staging.remove() == 1
