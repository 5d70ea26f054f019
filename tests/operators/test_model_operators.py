"""Model operators: each rebuilds the variant's job, makes one library call in a scratch of its own, returns its result.

The last test runs a variant's chain as if each step were on another worker: a fresh work dir per
step, nothing left of the step before, against a local-folder sink and an S3 sink.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from step_calls import StepCall

from imagenet_operators import ModelDownloadOperator, ModelLoadCheckOperator, ModelPrepareOperator, ModelPublishOperator
from imagenet_ops.core.staging import STAGING_DIR, Staging
from imagenet_ops.model.interface import ModelCheckResult
from imagenet_ops.model.pipeline import FetchedFile, ModelFetched, ModelPrepared
from imagenet_ops.model.report import REPORT_FILES
from imagenet_ops.model.variations import ModelJob, resolve_model_config


@contextlib.contextmanager
def lease_passthrough(sink: object, context: object) -> Iterator[object]:
    """Stands in for the run's lease (tested for real in test_operator_leases.py)."""
    yield sink


CONFIG = resolve_model_config(variations="_tflite,_no-argmax")
JOB = {"config": CONFIG.as_params(), "work_dir": "/w/run/tflite", "sink_uri": "s3://b/m/tflite", "conn_id": "aws"}
FETCHED = ModelFetched((FetchedFile(filename="resnet50_v1.no-argmax.tflite", path="/w/x", url="u", size=1, md5="m", sha256="s"),))
PREPARED = ModelPrepared("/w/run/tflite/prepared", "f", None, ("f",))

OPERATORS = [
    (ModelDownloadOperator, {}),
    (ModelPrepareOperator, {"fetched": FETCHED.as_dict()}),
    (ModelLoadCheckOperator, {"prepared": PREPARED.as_dict()}),
    (ModelPublishOperator, {"fetched": FETCHED.as_dict(), "prepared": PREPARED.as_dict(), "checked": None}),
]


@pytest.mark.parametrize(("cls", "results"), OPERATORS, ids=lambda o: getattr(o, "__name__", ""))
def test_the_job_and_the_step_inputs_are_the_templated_fields(cls, results):
    op = cls(task_id="t", job=JOB, **results)
    assert op.template_fields == ("job", *results) and op.job is JOB
    for name, value in results.items():
        assert getattr(op, name) is value
    assert op.typed_job() == ModelJob(config=CONFIG, sink_uri="s3://b/m/tflite", conn_id="aws", work_dir="/w/run/tflite")


def _context() -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id="resnet50_model"), "run_id": "manual__1", "outlet_events": {}}


def _local_job(tmp_path: Path) -> dict[str, Any]:
    work, sink = tmp_path / "w" / "run" / "tflite", tmp_path / "m" / "tflite"
    return {**JOB, "work_dir": str(work), "sink_uri": str(sink), "conn_id": None}


def test_download_passes_config_staging_and_a_scratch_of_its_own(tmp_path):
    call = StepCall(FETCHED)
    with mock.patch("imagenet_ops.model.steps.download_variant", side_effect=call):
        out = ModelDownloadOperator(task_id="download", job=_local_job(tmp_path)).execute(context=_context())
    assert set(call.kwargs) == {"config", "staging", "scratch"} and call.kwargs["config"] == CONFIG
    staging = call.kwargs["staging"]
    assert isinstance(staging, Staging) and staging.run == "resnet50_model/manual__1"
    assert staging.sink.location() == str(tmp_path / "m" / "tflite")
    assert call.kwargs["scratch"].parent == tmp_path / "w" / "run" / "tflite"
    assert not (tmp_path / "w").exists(), "the scratch, and the folders it made, go when the step ends"
    assert out == FETCHED.as_dict()
    assert out["files"][0] == {
        "filename": "resnet50_v1.no-argmax.tflite",
        "path": "/w/x",
        "url": "u",
        "size": 1,
        "md5": "m",
        "sha256": "s",
        "etag": None,
        "last_modified": None,
        "resumed_from": 0,
        "reused": False,
    }


def test_prepare_and_check_take_the_earlier_results_explicitly(tmp_path):
    job = _local_job(tmp_path)
    prepare = StepCall(PREPARED)
    with mock.patch("imagenet_ops.model.steps.prepare_variant", side_effect=prepare):
        out = ModelPrepareOperator(task_id="prepare", job=job, fetched=FETCHED.as_dict()).execute(context=_context())
    assert set(prepare.kwargs) == {"config", "fetched", "staging", "scratch"}
    assert (prepare.kwargs["config"], prepare.kwargs["fetched"]) == (CONFIG, FETCHED)
    assert out == {"dir": "/w/run/tflite/prepared", "model_file": "f", "starting_file": None, "files": ["f"]}

    check = ModelCheckResult("tflite", ["/w/f"], "tflite", {}, {}, "ok")
    check_model = StepCall(check)
    with mock.patch("imagenet_ops.model.steps.check_variant", side_effect=check_model):
        out2 = ModelLoadCheckOperator(task_id="load_check", job=job, prepared=out).execute(context=_context())
    assert set(check_model.kwargs) == {"config", "prepared", "staging", "scratch"}
    assert (check_model.kwargs["config"], check_model.kwargs["prepared"]) == (CONFIG, PREPARED)
    assert out2 == check.as_dict() and out2["summary"] == "ok"
    assert not (tmp_path / "w").exists()


def test_publish_builds_the_sink_from_the_connection_and_returns_the_env(tmp_path):
    from imagenet_ops.core.manifest import PublishResult
    from imagenet_ops.model.pipeline import ModelPublished

    result = PublishResult(
        uri="s3://b/m/tflite",
        asset_uri="s3://b/m/tflite",
        manifest_uri="s3://b/m/tflite/manifest.json",
        cache_hit=True,
        cache_key="k",
        files=1,
        bytes=3,
        manifest={"artifact": "resnet50_model", "upstream": {}},  # as every manifest names its artifact
    )
    sink = mock.Mock(**{"location.return_value": "s3://b/m/tflite"})
    context = _context()
    publish = StepCall(ModelPublished(result, {"CM_ML_MODEL": "RESNET50"}))
    with (
        mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
        mock.patch("imagenet_operators.sinks.store_from_connection", return_value=mock.Mock()),
        mock.patch("imagenet_operators.leases.publishing", side_effect=lease_passthrough) as lease,
        mock.patch("imagenet_ops.model.steps.publish_variant", side_effect=publish),
    ):
        job = {**JOB, "work_dir": str(tmp_path / "w")}
        op = ModelPublishOperator(task_id="publish", job=job, fetched=FETCHED.as_dict(), prepared=PREPARED.as_dict())
        out = op.execute(context=context)
    make_sink.assert_called_once_with("s3://b/m/tflite", "aws")
    lease.assert_called_once_with(sink, context)  # the publish runs under the run's lease
    assert set(publish.kwargs) == {"config", "fetched", "prepared", "staging", "scratch", "sink", "check"}
    assert (publish.kwargs["config"], publish.kwargs["fetched"], publish.kwargs["prepared"]) == (CONFIG, FETCHED, PREPARED)
    assert publish.kwargs["sink"] is sink and publish.kwargs["staging"].sink is sink
    assert not (tmp_path / "w").exists()
    assert out == {"CM_ML_MODEL": "RESNET50"}


# -- every step on another worker ----------------------------------------------------------------


@pytest.fixture
def sink_of_the_run(sink_root) -> tuple[str, str | None]:
    """The run's sink (URI, connection id) under a local folder or an S3 bucket (see conftest)."""
    root, conn_id = sink_root
    return f"{root}/models", conn_id


@pytest.mark.parametrize("tags", ["_tflite", "_tensorflow,_fix-input-shape"])  # a gunzipped download; a nested folder
def test_every_step_runs_on_another_worker_with_nothing_of_the_step_before(
    tags, sink_of_the_run, model_mirror, tmp_path, monkeypatch
):
    # Regression (issue 12 item 1): prepare raised FileNotFoundError for the download in another
    # worker's work dir, and load_check found no model file.
    from imagenet_operators.files import clean_run
    from imagenet_operators.sinks import sink_from_connection
    from imagenet_ops.model.variations import resolve_job

    monkeypatch.setattr("imagenet_operators.leases.publishing", lease_passthrough)
    root, conn_id = sink_of_the_run
    params = {"variants": [tags], "mirror": model_mirror["mirror"], "md5_by_file": model_mirror["md5_by_file"]}
    hosts = tmp_path / "hosts"
    context = _context()
    results: dict[str, Any] = {}
    steps = [
        ("download", ModelDownloadOperator, lambda: {}),
        ("prepare", ModelPrepareOperator, lambda: {"fetched": results["download"]}),
        ("load_check", ModelLoadCheckOperator, lambda: {"prepared": results["prepare"]}),
        (
            "publish",
            ModelPublishOperator,
            lambda: {"fetched": results["download"], "prepared": results["prepare"], "checked": results["load_check"]},
        ),
    ]
    for n, (name, cls, inputs) in enumerate(steps):
        work = hosts / f"host-{n}" / "work" / "resnet50_model" / "run"  # this worker's private scratch disk
        (job,) = resolve_job(params, sink_uri=root, conn_id=conn_id, work_dir=str(work))
        results[name] = cls(task_id=name, job=job.to_xcom(), **inputs()).execute(context=context)
        assert not hosts.exists(), f"{name} left scratch on its worker"
        shutil.rmtree(hosts, ignore_errors=True)

    vid = job.variant_id
    assert str(hosts) not in json.dumps(results), "no step hands over (or reports) a path on its own disk"
    assert all(STAGING_DIR in f["path"] for f in results["download"]["files"])
    assert STAGING_DIR in results["prepare"]["dir"] and all(STAGING_DIR in f for f in results["load_check"]["files"])
    env = results["publish"]
    assert env["CM_ML_MODEL_FILE_WITH_PATH"] == f"{root}/{vid}/{job.config.files[0].filename}"

    sink = sink_from_connection(f"{root}/{vid}", conn_id)
    manifest = json.loads(sink.get_bytes("manifest.json"))
    assert {f["path"] for f in manifest["files"]} == {*results["prepare"]["files"], *REPORT_FILES}
    report = sink.get_bytes("report/report.md").decode()
    assert "the load check passed" in report and results["load_check"]["kind"] in report  # the check's result reached it
    if job.config.fix_input_shape:
        assert "original/resnet50_v1.pb" in results["prepare"]["files"]
        assert sink.get_bytes("original/resnet50_v1.pb") == (model_mirror["server"].root / "resnet50_v1.pb").read_bytes()
    provenance = json.dumps(manifest["provenance"])
    assert model_mirror["mirror"] in provenance and str(hosts) not in provenance and STAGING_DIR not in provenance

    # the run's clean-up, on yet another worker: the staging area goes, the published files stay
    staged = len(results["download"]["files"]) + len(results["prepare"]["files"])
    assert clean_run([job.to_xcom()], run="resnet50_model/manual__1", prune_levels=2) == staged
    assert clean_run([job.to_xcom()], run="resnet50_model/manual__1", prune_levels=2) == 0
    assert sink.get_bytes(job.config.files[0].filename) is not None
