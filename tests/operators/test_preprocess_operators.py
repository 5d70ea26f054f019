"""Preprocess operators: thin wrappers; each templated field is an attribute, chunks go through the sink."""

from __future__ import annotations

from unittest import mock

import pytest

from imagenet_operators import (
    PreprocessChunkOperator,
    PreprocessFinalizeOperator,
    PreprocessInputsOperator,
    PreprocessSelectOperator,
)
from imagenet_ops.core.sinks import LocalSink
from imagenet_ops.preprocessed.chunks import ChunkResult, save_chunk_plan
from imagenet_ops.preprocessed.config import resolve_preprocess_config

CONFIG = resolve_preprocess_config(variations="_size.4")
JOB = {
    "config": CONFIG.as_dict(),
    "images": "/data/ILSVRC2012_img_val.tar",
    "val_map": "/data/val.txt",
    "aux_path": None,
    "calibration_list": None,
    "source_conn_id": None,
    "sink_uri": "/out/pre",
    "conn_id": None,
    "work_dir": "/w/run",
    "chunks": 2,
}


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (PreprocessInputsOperator, {}),
        (PreprocessSelectOperator, {}),
        (PreprocessChunkOperator, {"chunk": 1, "workers": 2}),
        (PreprocessFinalizeOperator, {"selection": {"hit": False, "chunks": [0, 1]}}),
    ],
)
def test_template_fields_are_attributes(cls, kwargs):
    op = cls(task_id="t", job=JOB, **kwargs)
    for name in op.template_fields:
        assert getattr(op, name) is (JOB if name == "job" else kwargs[name])


def test_chunk_reads_its_rows_from_the_sink_and_returns_only_counts(tmp_path):
    sink = LocalSink(tmp_path / "pre")
    save_chunk_plan(sink=sink, chunks=[[["a.JPEG", "/t.tar", 512, 10]], [["b.JPEG", "/t.tar", 1024, 10]]])
    result = ChunkResult(count=1, bytes=602_240, files=[{"path": "b.JPEG.npy", "size": 602_240, "sha256": "x"}])
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink),
        mock.patch("imagenet_ops.preprocessed.steps.preprocess_chunk", return_value=result) as chunk,
    ):
        context: dict = {}
        out = PreprocessChunkOperator(task_id="p", job=JOB, chunk=1, workers="1").execute(context=context)
    # The mapped task's name in the UI (map_index_template="{{ chunk_images }}").
    assert context["chunk_images"] == "chunk 1: 1 image, b.JPEG"
    kwargs = chunk.call_args.kwargs
    assert kwargs["items"] == [["b.JPEG", "/t.tar", 1024, 10]] and kwargs["workers"] == 1 and kwargs["sink"] is sink
    assert out == result.summary()
    assert "files" not in out, "per-file lists stay in the sink, not in XCom"
    assert (tmp_path / "pre" / ".chunks" / "chunk-00001.json").is_file()


# -- every step on another host --------------------------------------------------------------------


def _hosts_conn(s3_endpoint: str) -> str:
    import json

    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": s3_endpoint}})


@pytest.mark.parametrize("dataset", ["validation", "calibration"])
@pytest.mark.parametrize("sink_kind", ["local", "s3"])
def test_each_step_on_another_host_reads_nothing_another_step_left_on_its_disk(
    sink_kind, dataset, http_server, s3_bucket, s3_endpoint, tmp_path, monkeypatch
):
    # Regression (issue 12 item 1): the inputs task left the downloads (and an S3 aux val.txt) in its
    # own host's work dir and the job named them there, so finalize on another host found nothing.
    # Here every step runs with its own fresh work dir (another host's private scratch) and must
    # leave nothing there; the tar is downloaded once and later steps read the staged copy.
    import hashlib
    import json
    import shutil
    from types import SimpleNamespace

    from imagenet_operators.preprocess import PreprocessCleanupOperator
    from imagenet_ops.core.staging import STAGING_DIR
    from imagenet_ops.preprocessed.job import resolve_job
    from imagenet_ops.preprocessed.pipeline import build_preprocessed
    from imagenet_ops.testing.preprocess_samples import (
        calibration_list_text,
        plain_images,
        val_map_text,
        write_images_tar,
    )

    client, bucket = s3_bucket
    monkeypatch.setenv("AIRFLOW_CONN_TEST_S3", _hosts_conn(s3_endpoint))
    images = plain_images(4, width=64, height=48)
    names = sorted(images)
    form = {"images": "download", "val_map": None, "aux_path": None, "calibration_list": None, "source_conn_id": "test_s3"}
    form |= {"chunks": 2, "workers": 1, "size": 3, "mirror": http_server.base_url}
    if dataset == "calibration":
        form["variations"] = "_calibration,_mlperf.option2"
        cal = http_server.root / "cal_image_list_option_2.txt"
        cal.write_text(calibration_list_text([names[2], names[0], names[3]], option="option2"))
        form["calibration_md5"] = hashlib.md5(cal.read_bytes(), usedforsecurity=False).hexdigest()
    else:
        val_txt = val_map_text(names)
        client.put_object(Bucket=bucket, Key="aux/val.txt", Body=val_txt.encode())
        form["aux_path"] = f"s3://{bucket}/aux"
    sink_uri, conn_id = (str(tmp_path / "pre"), None) if sink_kind == "local" else (f"s3://{bucket}/pre", "test_s3")
    first = resolve_job({**form, "images_md5": "0" * 32}, sink_uri=sink_uri, conn_id=conn_id, work_dir="unused")
    tar = write_images_tar(http_server.root / first.config.images_filename, images)
    form["images_md5"] = hashlib.md5(tar.read_bytes(), usedforsecurity=False).hexdigest()
    job = resolve_job(form, sink_uri=sink_uri, conn_id=conn_id, work_dir="unused").to_xcom()
    context = {"dag": SimpleNamespace(dag_id="imagenet_preprocessed"), "run_id": "manual__two-hosts"}
    hosts = iter(range(100))

    def on_another_host(op_type, job_dict, **kwargs):
        work = tmp_path / f"host-{next(hosts)}" / "imagenet_preprocessed" / "manual__two-hosts"
        op = op_type(task_id="t", job={**job_dict, "work_dir": str(work)}, **kwargs)
        out = op.execute(context=context)
        assert not work.exists(), f"{op_type.__name__} left its scratch on its host"
        shutil.rmtree(work.parents[1], ignore_errors=True)  # that host is gone
        return out

    staged = on_another_host(PreprocessInputsOperator, job)
    staging_prefix = f"{sink_uri}/{STAGING_DIR}/"
    assert staged["images"].startswith(staging_prefix) and staged["images"].endswith(first.config.images_filename)
    listed = "calibration_list" if dataset == "calibration" else "val_map"
    assert staged[listed].startswith(staging_prefix), "the job names the staged list, not a host path"
    downloads = [r.path for r in http_server.requests]
    selection = on_another_host(PreprocessSelectOperator, staged)
    assert (selection["hit"], selection["chunks"], selection["images"]) == (False, [0, 1], 3)
    for chunk in selection["chunks"]:
        on_another_host(PreprocessChunkOperator, staged, chunk=chunk, workers=1)
    env = on_another_host(PreprocessFinalizeOperator, staged, selection=selection)
    assert [r.path for r in http_server.requests] == downloads, "later steps read the staged tar, not the mirror again"
    on_another_host(PreprocessCleanupOperator, job)
    assert env["CM_DATASET_SIZE"] == "3" and env["CM_DATASET_PREPROCESSED_PATH"] == sink_uri

    def published(name: str) -> bytes | None:
        if sink_kind == "local":
            path = tmp_path / "pre" / name
            return path.read_bytes() if path.exists() else None
        try:
            return client.get_object(Bucket=bucket, Key=f"pre/{name}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    if sink_kind == "local":
        assert not (tmp_path / "pre" / STAGING_DIR).exists(), "the run's staging area goes with the run"
    else:
        assert not client.list_objects_v2(Bucket=bucket, Prefix=f"pre/{STAGING_DIR}/").get("Contents")
    manifest = json.loads(published("manifest.json"))
    url = http_server.url(first.config.images_filename)
    assert manifest["provenance"]["source"] == url, "the manifest records where the tar came from, not a staging path"

    # The same set built in one process (the CLI path) from local copies of the inputs: the same bytes.
    local_list = tmp_path / "list.txt"
    local_list.write_text(cal.read_text() if dataset == "calibration" else val_txt)
    lists = {"calibration_list": local_list} if dataset == "calibration" else {"val_map": local_list}
    cli = build_preprocessed(config=first.config, source=str(tar), output=str(tmp_path / "cli"), workers=1, **lists)
    files = [f["path"] for f in cli.publish.manifest["files"] if f["path"] != "preprocessed_files.txt"]
    assert len(files) >= 5
    for name in files:
        assert published(name) == (tmp_path / "cli" / name).read_bytes(), name
