"""Aux operators: each rebuilds the run's job, makes one library call in a scratch of its own, and returns a small dict.

The last tests run every step of the chain as if each were on another worker: a fresh work dir
per step, nothing left of the step before, against a local-folder sink and an S3 sink.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.sdk import AssetAlias
from step_calls import StepCall

from imagenet_operators import (
    ArchiveDownloadOperator,
    ArchiveExtractOperator,
    AuxPublishOperator,
    AuxValidateOperator,
    ChecksumVerifyOperator,
)
from imagenet_ops.aux.report import REPORT_FILES
from imagenet_ops.aux.variations import AUX_FILES, AuxConfig, AuxJob
from imagenet_ops.core.digests import file_digests
from imagenet_ops.core.download import DownloadResult
from imagenet_ops.core.extract import ExtractResult
from imagenet_ops.core.manifest import PublishResult
from imagenet_ops.core.staging import STAGING_DIR, Staging


@contextlib.contextmanager
def lease_passthrough(sink: object, context: object) -> Iterator[object]:
    """Stands in for the run's lease (tested for real in test_operator_leases.py)."""
    yield sink


OPERATORS = [
    ArchiveDownloadOperator(task_id="d", job={}),
    ChecksumVerifyOperator(task_id="v", job={}),
    ArchiveExtractOperator(task_id="e", job={}),
    AuxValidateOperator(task_id="a", job={}),
    AuxPublishOperator(task_id="p", job={}, archive={}),
]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda o: type(o).__name__)
def test_template_fields_are_constructor_attributes(op):
    for name in op.template_fields:
        assert hasattr(op, name), f"{type(op).__name__}.{name} is templated but not an attribute"


CONFIG = AuxConfig.from_params(
    {
        "source": "dropbox",
        "version": "2012",
        "urls": ["http://m1/caffe_ilsvrc12.tar.gz", "http://m2/caffe_ilsvrc12.tar.gz"],
        "md5": ["a" * 32, "b" * 32],
        "sha256": [],
        "verify_ssl": False,
        "filename": "caffe_ilsvrc12.tar.gz",
    }
)


def _context(dag_id: str = "imagenet_aux") -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": "manual__1", "outlet_events": _Events()}


@pytest.mark.parametrize(
    ("cls", "step", "result", "expected"),
    [
        (
            ArchiveDownloadOperator,
            "download_archive",
            DownloadResult(path="s3://x/a.tar.gz", url="http://m2/caffe_ilsvrc12.tar.gz", size=3, md5="b" * 32, sha256="c" * 64),
            None,
        ),
        (
            ChecksumVerifyOperator,
            "verify_archive",
            {"path": "s3://x/a.tar.gz", "md5": "a" * 32, "sha256": "b" * 64, "size": 10},
            {"path": "s3://x/a.tar.gz", "md5": "a" * 32, "sha256": "b" * 64, "size": 10},
        ),
        (ArchiveExtractOperator, "extract_archive_check", ExtractResult("s3://x/a.tar.gz", 8, 100), None),
    ],
    ids=["download", "verify", "extract"],
)
def test_archive_steps_call_the_library_once_in_a_scratch_of_their_own(cls, step, result, expected, tmp_path):
    work = tmp_path / "work" / "imagenet_aux" / "run"
    job = AuxJob(config=CONFIG, sink_uri=str(tmp_path / "out"), conn_id=None, work_dir=str(work)).to_xcom()
    call = StepCall(result)
    with mock.patch(f"imagenet_ops.aux.steps.{step}", side_effect=call):
        out = cls(task_id="t", job=job).execute(context=_context())
    assert set(call.kwargs) == {"config", "staging", "scratch"} and call.kwargs["config"] == CONFIG
    staging = call.kwargs["staging"]
    assert isinstance(staging, Staging) and staging.run == "imagenet_aux/manual__1"
    assert staging.sink.location() == str(tmp_path / "out")
    assert call.kwargs["scratch"].parent == work
    assert not (tmp_path / "work").exists(), "the scratch, and the folders it made, go when the step ends"
    assert out == (expected if expected is not None else result.as_dict())


class TestAuxValidateOperator:
    def test_execute(self, tmp_path):
        from imagenet_ops.aux.pipeline import AuxValidation

        job = AuxJob(config=CONFIG, sink_uri=str(tmp_path / "out"), conn_id=None, work_dir=str(tmp_path / "w")).to_xcom()
        call = StepCall(AuxValidation("/out/x.tar.gz", 1000, 50000))
        with mock.patch("imagenet_ops.aux.steps.validate_archive", side_effect=call):
            out = AuxValidateOperator(task_id="validate", job=job).execute(context=_context())
        assert call.kwargs["config"] == CONFIG and call.kwargs["scratch"].parent == tmp_path / "w"
        assert out == {"path": "/out/x.tar.gz", "classes": 1000, "val_images": 50000}
        assert not (tmp_path / "w").exists()


class _Events(dict):
    def __missing__(self, key):
        self[key] = mock.Mock()
        return self[key]


class TestAuxPublishOperator:
    CONFIG = {
        "source": "dropbox",
        "version": "2012",
        "urls": ["http://m/caffe_ilsvrc12.tar.gz"],
        "md5": ["a" * 32],
        "sha256": [],
        "verify_ssl": True,
        "filename": "caffe_ilsvrc12.tar.gz",
    }
    ARCHIVE = {"md5": "a" * 32, "sha256": "b" * 64, "size": 5, "url": "http://m/caffe_ilsvrc12.tar.gz", "etag": '"e"'}

    # what the resolve task returns: the config's fields at the top level too (the DAG templates run["urls"])
    JOB = {**CONFIG, "config": CONFIG, "work_dir": "/w", "sink_uri": "s3://bucket/aux", "conn_id": "my_s3"}

    def _op(self, job=None):
        return AuxPublishOperator(
            task_id="publish", job=job or self.JOB, archive=self.ARCHIVE, outlets=[AssetAlias("imagenet_aux")]
        )

    def test_the_job_is_rebuilt_from_its_xcom_form(self):
        from imagenet_ops.aux.variations import AuxConfig, AuxJob

        op = self._op()
        assert op.template_fields == ("job", "archive")
        job = AuxJob(config=AuxConfig.from_params(self.CONFIG), sink_uri="s3://bucket/aux", conn_id="my_s3", work_dir="/w")
        assert op.typed_job() == job
        assert job.to_xcom() == self.JOB and list(job.to_xcom()) == list(self.JOB)

    def _published(self, cache_hit: bool):
        from imagenet_ops.aux.pipeline import AuxPublished

        manifest = {"artifact": "imagenet_aux", "library_version": "0.1.0", "upstream": {"sha256": "b" * 64}, "files": []}
        result = PublishResult(
            uri="s3://bucket/aux",
            asset_uri="s3://bucket/aux",
            manifest_uri="s3://bucket/aux/manifest.json",
            cache_hit=cache_hit,
            cache_key="k" * 64,
            files=8,
            bytes=1000,
            manifest=manifest,
        )
        return AuxPublished(publish=result, env={"CM_DATASET_AUX_PATH": "s3://bucket/aux", "CM_DATASET_AUX_VER": "2012"})

    @pytest.mark.parametrize("cache_hit", [False, True])
    def test_execute_publishes_and_emits_an_event_only_when_something_changed(self, cache_hit, tmp_path):
        from imagenet_ops.aux.variations import AuxConfig

        sink = mock.Mock(**{"location.return_value": "s3://bucket/aux"})
        events = _Events()
        started = datetime.now(UTC) - timedelta(seconds=4)
        context = {**_context(), "outlet_events": events, "dag_run": SimpleNamespace(start_date=started)}
        job = {**self.JOB, "work_dir": str(tmp_path / "w")}
        call = StepCall(self._published(cache_hit))
        with (
            mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
            mock.patch("imagenet_operators.sinks.store_from_connection", return_value=mock.Mock()),
            mock.patch("imagenet_operators.leases.publishing", side_effect=lease_passthrough) as lease,
            mock.patch("imagenet_ops.aux.steps.publish_archive", side_effect=call),
        ):
            out = self._op(job).execute(context=context)
        make_sink.assert_called_once_with("s3://bucket/aux", "my_s3")
        lease.assert_called_once_with(sink, context)  # the publish runs under the run's lease
        assert set(call.kwargs) == {"config", "staging", "scratch", "sink", "archive"}
        assert call.kwargs["config"] == AuxConfig.from_params(self.CONFIG) and call.kwargs["archive"] == self.ARCHIVE
        assert call.kwargs["sink"] is sink and call.kwargs["staging"].sink is sink
        assert call.kwargs["scratch"].parent == tmp_path / "w" and not (tmp_path / "w").exists()
        assert out == {"CM_DATASET_AUX_PATH": "s3://bucket/aux", "CM_DATASET_AUX_VER": "2012"}
        if cache_hit:
            assert events == {}
        else:
            ((alias, recorder),) = events.items()
            assert alias == AssetAlias("imagenet_aux")
            (asset,), kwargs = recorder.add.call_args
            assert asset.uri == "s3://bucket/aux"
            assert asset.name.startswith("imagenet_aux@s3:"), asset.name  # a readable name, one per sink (issue 13 item 6)
            assert kwargs["extra"]["cache_key"] == "k" * 64 and kwargs["extra"]["files"] == 8
            # duration and throughput, for trends (issue 13 item 6): the run so far, and bytes over it
            extra = kwargs["extra"]
            assert 4 <= extra["run_seconds"] < 60 and extra["bytes_per_second"] == round(extra["bytes"] / extra["run_seconds"])


# -- every step on another worker ----------------------------------------------------------------


@pytest.fixture
def sink_of_the_run(sink_root) -> tuple[str, str | None]:
    """The run's sink (URI, connection id) under a local folder or an S3 bucket (see conftest)."""
    root, conn_id = sink_root
    return f"{root}/imagenet/aux", conn_id


def test_every_step_runs_on_another_worker_with_nothing_of_the_step_before(
    sink_of_the_run, http_server, aux_archive_bytes, tmp_path, monkeypatch
):
    # Regression (issue 12 item 1): download ran on host A and verify on host B raised
    # FileNotFoundError for the archive in A's work dir; validate then found no aux files.
    from imagenet_operators.files import clean_run
    from imagenet_ops.aux.variations import resolve_aux_config

    monkeypatch.setattr("imagenet_operators.leases.publishing", lease_passthrough)
    sink_uri, conn_id = sink_of_the_run
    archive = http_server.root / "caffe_ilsvrc12.tar.gz"
    archive.write_bytes(aux_archive_bytes)
    config = resolve_aux_config({"url": http_server.url(archive.name), "md5": file_digests(archive).md5})
    hosts = tmp_path / "hosts"
    context = _context()
    results: dict[str, Any] = {}
    steps = [
        ("download", ArchiveDownloadOperator, lambda: {}),
        ("verify", ChecksumVerifyOperator, lambda: {}),
        ("extract", ArchiveExtractOperator, lambda: {}),
        ("validate", AuxValidateOperator, lambda: {}),
        ("publish", AuxPublishOperator, lambda: {"archive": results["download"]}),
    ]
    for n, (name, cls, inputs) in enumerate(steps):
        work = hosts / f"host-{n}" / "work" / "imagenet_aux" / "run"  # this worker's private scratch disk
        job = AuxJob(config=config, sink_uri=sink_uri, conn_id=conn_id, work_dir=str(work)).to_xcom()
        results[name] = cls(task_id=name, job=job, **inputs()).execute(context=context)
        assert not hosts.exists(), f"{name} left scratch on its worker"
        shutil.rmtree(hosts, ignore_errors=True)

    assert results["verify"]["md5"] == file_digests(archive).md5
    assert (results["extract"]["files"], results["validate"]["classes"]) == (8, 1000)
    assert results["publish"] == {"CM_DATASET_AUX_PATH": sink_uri, "CM_DATASET_AUX_VER": "2012"}
    assert str(hosts) not in json.dumps(results), "no step hands over (or reports) a path on its own disk"
    assert all(STAGING_DIR in results[s]["path"] for s in ("download", "verify", "extract", "validate"))

    from imagenet_operators.sinks import sink_from_connection

    sink = sink_from_connection(sink_uri, conn_id)
    manifest = json.loads(sink.get_bytes("manifest.json"))
    assert sorted(f["path"] for f in manifest["files"]) == sorted([*AUX_FILES, *REPORT_FILES])
    assert manifest["provenance"]["url"] == config.urls[0]
    assert str(hosts) not in json.dumps(manifest) and STAGING_DIR not in json.dumps(manifest)

    # the run's clean-up, on yet another worker: the staging area goes, the published files stay
    assert clean_run([job], run="imagenet_aux/manual__1") == 1
    assert sink.get_bytes(f"{STAGING_DIR}/imagenet_aux_manual__1/download/caffe_ilsvrc12.tar.gz") is None
    assert sink.get_bytes("val.txt") is not None
