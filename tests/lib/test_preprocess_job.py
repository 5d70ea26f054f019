"""PreprocessJob and the DAG's steps: the job's XCom form, the labels rule, inputs, and a set built step by step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ConfigError, StorageError
from imagenet_ops.core.manifest import MANIFEST_NAME
from imagenet_ops.core.sinks import LocalSink
from imagenet_ops.preprocessed.config import resolve_preprocess_config
from imagenet_ops.preprocessed.job import PreprocessJob, resolve_job
from imagenet_ops.preprocessed.pipeline import build_preprocessed
from imagenet_ops.preprocessed.steps import fetch_job_inputs, finalize_chunks, run_chunk, select_chunks
from imagenet_ops.testing.preprocess_samples import plain_images, val_map_text, write_images_tar

# The keys the DAG's resolve task returned before the job was typed: every step reads them from XCom.
JOB_KEYS = {
    "config",
    "images",
    "val_map",
    "aux_path",
    "calibration_list",
    "source_conn_id",
    "sink_uri",
    "conn_id",
    "work_dir",
    "chunks",
    "labels_from_aux",  # issue 13 item 6: the inputs step says the labels came from the aux artifact (the run's inlet)
}
LOCATIONS = {"sink_uri": "/out/pre", "conn_id": None, "work_dir": "/w/run"}


def _form(**values) -> dict:
    """What the trigger form sends: every input field (empty ones as None), the scale-out fields."""
    base = {"images": None, "val_map": None, "aux_path": None, "calibration_list": None, "source_conn_id": None}
    return {**base, "chunks": 16, "workers": 0, "size": 4, **values}


def test_the_job_in_xcom_has_the_keys_the_dag_resolve_returned():
    job = resolve_job(_form(images="/d/val.tar", val_map="/d/val.txt"), **LOCATIONS)
    data = json.loads(json.dumps(job.to_xcom()))
    assert set(data) == JOB_KEYS
    assert data["config"] == resolve_preprocess_config({"size": 4}).as_dict()
    assert (data["images"], data["val_map"], data["chunks"], data["work_dir"]) == ("/d/val.tar", "/d/val.txt", 16, "/w/run")
    assert PreprocessJob.from_xcom(data) == job


def test_the_inputs_are_declared_once_with_the_form_titles():
    assert [(f.name, f.metadata["title"]) for f in PreprocessJob.inputs()] == [
        ("images", "Validation images"),
        ("val_map", "Validation labels (val.txt)"),
        ("aux_path", "Aux artifact folder"),
        ("calibration_list", "Calibration list"),
    ]


def test_validation_needs_labels_calibration_does_not():
    with pytest.raises(ConfigError, match="validation sets need labels: give val_map .* or aux_path"):
        resolve_job(_form(images="/d/val.tar"), **LOCATIONS)
    assert resolve_job(_form(images="/d/val.tar", aux_path="/aux"), **LOCATIONS).aux_path == "/aux"
    calibration = resolve_job(_form(images="/d/val.tar", variations="_calibration", size=None), **LOCATIONS)
    assert calibration.config.dataset_type == "calibration"


def test_conflicting_variations_fail_in_resolve():
    with pytest.raises(ConfigError, match="_tflite_tpu output is always NHWC"):
        resolve_job(_form(val_map="/v", variations="_tflite_tpu,_NCHW"), **LOCATIONS)


def _job(**fields) -> PreprocessJob:
    return PreprocessJob(config=resolve_preprocess_config({"size": 4}), **{**LOCATIONS, **fields})


def test_inputs_keep_what_was_given_and_take_the_aux_labels(tmp_path: Path):
    work = str(tmp_path / "w" / "run")
    given = _job(images="./val.tar", val_map="./val.txt", aux_path="/aux", work_dir=work)
    assert fetch_job_inputs(given) == given  # given values stay as written (no path normalisation)
    local = fetch_job_inputs(_job(images="/d/val.tar", aux_path=str(tmp_path / "aux"), work_dir=work))
    assert local.val_map == str(tmp_path / "aux" / "val.txt")
    assert not Path(work).exists(), "the step's scratch goes with it"


def test_the_aux_artifact_is_an_upstream_artifact_only_when_it_labels_the_set(tmp_path: Path):
    # issue 13 item 6: the publishing task names the aux artifact as its inlet only when the run read it
    aux = str(tmp_path / "aux")
    labelled = _job(images="/d/val.tar", aux_path=aux, work_dir=str(tmp_path / "w"))
    assert labelled.upstream_artifacts() == {"imagenet_aux": aux}
    fetched = fetch_job_inputs(labelled)  # val_map is now the aux's val.txt; the job still says where it came from
    assert (fetched.val_map, fetched.labels_from_aux) == (str(tmp_path / "aux" / "val.txt"), True)
    assert PreprocessJob.from_xcom(json.loads(json.dumps(fetched.to_xcom()))).upstream_artifacts() == {"imagenet_aux": aux}
    own_labels = _job(images="/d/val.tar", val_map="/d/val.txt", aux_path=aux, work_dir=str(tmp_path / "w"))
    assert own_labels.upstream_artifacts() == {} and fetch_job_inputs(own_labels).upstream_artifacts() == {}
    calibration = PreprocessJob(
        config=resolve_preprocess_config({"size": 4, "dataset_type": "calibration"}), aux_path=aux, **LOCATIONS
    )
    assert calibration.upstream_artifacts() == {}, "a calibration set has no labels to take from aux"


def test_an_object_storage_aux_folders_val_txt_is_staged_for_the_next_steps(tmp_path: Path):
    from imagenet_ops.core.staging import Staging
    from imagenet_ops.core.store import ObjectStore

    class Store:
        def download(self, uri: str, dest: Path) -> Path:
            self.uri = uri
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            Path(dest).write_text("ILSVRC2012_val_00000001.JPEG 65\n")
            return dest

    store = Store()
    staging = Staging(sink=LocalSink(tmp_path / "out"), run="imagenet_preprocessed/manual__1", store=ObjectStore())
    work = tmp_path / "w" / "run"
    job = fetch_job_inputs(_job(images="/d/val.tar", aux_path="gs://b/aux/", work_dir=str(work)), staging=staging, store=store)
    assert store.uri == "gs://b/aux/val.txt"
    # Regression (issue 12): the job named the inputs host's copy, and finalize on another host found nothing.
    assert job.val_map == staging.uri("aux/val.txt") and job.aux_path == "gs://b/aux/"
    assert Path(job.val_map).read_text() == "ILSVRC2012_val_00000001.JPEG 65\n"
    assert not work.exists(), "the step's scratch goes with it"
    with pytest.raises(ConfigError, match="no staging area"):
        fetch_job_inputs(_job(images="/d/val.tar", aux_path="gs://b/aux/", work_dir=str(work)), store=store)


@pytest.fixture
def val_set(tmp_path: Path) -> dict[str, str]:
    images = plain_images(5, width=64, height=48)
    (tmp_path / "val.txt").write_text(val_map_text(sorted(images)))
    tar = write_images_tar(tmp_path / "ILSVRC2012_img_val.tar", images)
    return {"images": str(tar), "val_map": str(tmp_path / "val.txt")}


def test_the_steps_build_the_same_bytes_as_the_cli_path_then_hit_the_cache(val_set, tmp_path: Path):
    job = _job(**val_set, sink_uri=str(tmp_path / "dag"), chunks=2, work_dir=str(tmp_path / "w"))
    sink = LocalSink(tmp_path / "dag")
    selection = select_chunks(job, sink=sink)
    assert (selection.hit, selection.chunks, selection.images) == (False, [0, 1], 4)
    named = []
    for index in selection.chunks:
        run_chunk(job, index=index, sink=sink, workers=1, on_plan=named.append)
    assert [len(n) for n in named] == [2, 2]
    publish, env = finalize_chunks(job, sink=sink, selection=selection.as_dict())
    assert not publish.cache_hit and env["CM_DATASET_SIZE"] == "4"
    assert not list((tmp_path / "dag" / ".chunks").glob("*.json")), "chunk state goes after the manifest"

    cli = build_preprocessed(
        config=job.config, source=val_set["images"], output=str(tmp_path / "cli"), val_map=Path(val_set["val_map"]), workers=1
    )
    for entry in cli.publish.manifest["files"]:
        if entry["path"] != "preprocessed_files.txt":  # it lists the output's own location
            assert (tmp_path / "dag" / entry["path"]).read_bytes() == (tmp_path / "cli" / entry["path"]).read_bytes()
    assert cli.publish.cache_key == publish.cache_key
    manifest = (tmp_path / "dag" / MANIFEST_NAME).read_text()
    assert manifest.startswith('{\n "artifact": "imagenet_preprocessed",\n "cache_key": ')  # indent=1, sorted keys

    again = select_chunks(job, sink=sink)
    assert again.hit and again.chunks == []
    hit, hit_env = finalize_chunks(job, sink=sink, selection=again.as_dict())
    assert hit.cache_hit and hit_env == env and (tmp_path / "dag" / MANIFEST_NAME).read_text() == manifest


def test_a_cache_hit_whose_manifest_went_missing_is_an_error(tmp_path: Path):
    with pytest.raises(StorageError, match="the manifest of the cache hit is gone"):
        finalize_chunks(_job(images="/d/val.tar"), sink=LocalSink(tmp_path), selection={"hit": True, "chunks": []})
