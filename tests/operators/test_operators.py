"""Thin operators: each passes its (rendered) arguments to one library call and returns a small dict."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk import AssetAlias

from imagenet_operators import (
    ArchiveDownloadOperator,
    ArchiveExtractOperator,
    AuxPublishOperator,
    AuxValidateOperator,
    ChecksumVerifyOperator,
)
from imagenet_ops.core.digests import AcceptedChecksums, Digests
from imagenet_ops.core.download import DownloadResult
from imagenet_ops.core.extract import ExtractResult
from imagenet_ops.core.manifest import PublishResult


@contextlib.contextmanager
def lease_passthrough(sink: object, context: object) -> Iterator[object]:
    """Stands in for the run's lease (tested for real in test_operator_leases.py)."""
    yield sink


OPERATORS = [
    ArchiveDownloadOperator(task_id="d", urls=["http://x/a.tar.gz"], dest_dir="/w"),
    ChecksumVerifyOperator(task_id="v", path="/w/a.tar.gz"),
    ArchiveExtractOperator(task_id="e", archive="/w/a.tar.gz", dest="/w/x"),
    AuxValidateOperator(task_id="a", path="/w/x"),
    AuxPublishOperator(task_id="p", job={}, extracted_dir="/w/x", archive={}),
]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda o: type(o).__name__)
def test_template_fields_are_constructor_attributes(op):
    for name in op.template_fields:
        assert hasattr(op, name), f"{type(op).__name__}.{name} is templated but not an attribute"


class TestArchiveDownloadOperator:
    def setup_method(self):
        self.op = ArchiveDownloadOperator(
            task_id="download",
            urls=["http://m1/caffe.tar.gz", "http://m2/caffe.tar.gz"],
            dest_dir="/work/run/download",
            md5=["A" * 32, "b" * 32],
            sha256=[],
            filename="caffe.tar.gz",
            verify_ssl=False,
        )

    def test_execute_calls_download_once_with_exact_arguments(self):
        result = DownloadResult(
            path="/work/run/download/caffe.tar.gz", url="http://m2/caffe.tar.gz", size=3, md5="b" * 32, sha256="c" * 64
        )
        with mock.patch("imagenet_ops.core.download.download", return_value=result) as download:
            out = self.op.execute(context={})
        download.assert_called_once_with(
            urls=["http://m1/caffe.tar.gz", "http://m2/caffe.tar.gz"],
            dest_dir=Path("/work/run/download"),
            filename="caffe.tar.gz",
            accepted=AcceptedChecksums(md5=("a" * 32, "b" * 32), sha256=()),
            verify_ssl=False,
        )
        assert out == result.as_dict()


class TestChecksumVerifyOperator:
    def test_execute_returns_path_and_digests(self):
        op = ChecksumVerifyOperator(task_id="verify", path="/w/f.tar.gz", md5=["a" * 32])
        digests = Digests(md5="a" * 32, sha256="b" * 64, size=10)
        with mock.patch("imagenet_ops.core.digests.verify_file", return_value=digests) as verify:
            out = op.execute(context={})
        verify.assert_called_once_with(Path("/w/f.tar.gz"), AcceptedChecksums(md5=("a" * 32,), sha256=()))
        assert out == {"path": "/w/f.tar.gz", "md5": "a" * 32, "sha256": "b" * 64, "size": 10}


class TestArchiveExtractOperator:
    def test_execute(self):
        op = ArchiveExtractOperator(task_id="extract", archive="/w/f.tar.gz", dest="/w/out")
        with mock.patch("imagenet_ops.core.extract.extract_archive", return_value=ExtractResult("/w/out", 8, 100)) as extract:
            out = op.execute(context={})
        extract.assert_called_once_with(archive=Path("/w/f.tar.gz"), dest=Path("/w/out"))
        assert out == {"path": "/w/out", "files": 8, "bytes": 100}


class TestAuxValidateOperator:
    def test_execute(self):
        from imagenet_ops.aux.pipeline import AuxValidation

        op = AuxValidateOperator(task_id="validate", path="/w/out")
        with mock.patch(
            "imagenet_ops.aux.pipeline.validate_aux_dir", return_value=AuxValidation("/w/out", 1000, 50000)
        ) as validate:
            out = op.execute(context={})
        validate.assert_called_once_with(Path("/w/out"))
        assert out == {"path": "/w/out", "classes": 1000, "val_images": 50000}


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

    def _op(self):
        return AuxPublishOperator(
            task_id="publish",
            job=self.JOB,
            extracted_dir="/w/out",
            archive=self.ARCHIVE,
            outlets=[AssetAlias("imagenet_aux")],
        )

    def test_the_job_is_rebuilt_from_its_xcom_form(self):
        from imagenet_ops.aux.variations import AuxConfig, AuxJob

        op = self._op()
        assert op.template_fields == ("job", "extracted_dir", "archive")
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
    def test_execute_publishes_and_emits_an_event_only_when_something_changed(self, cache_hit):
        from imagenet_ops.aux.variations import AuxConfig

        sink = object()
        events = _Events()
        context = {"outlet_events": events}
        with (
            mock.patch("imagenet_operators.sinks.sink_from_connection", return_value=sink) as make_sink,
            mock.patch("imagenet_operators.leases.publishing", side_effect=lease_passthrough) as lease,
            mock.patch("imagenet_ops.aux.pipeline.publish_aux", return_value=self._published(cache_hit)) as publish,
        ):
            out = self._op().execute(context=context)
        make_sink.assert_called_once_with("s3://bucket/aux", "my_s3")
        lease.assert_called_once_with(sink, context)  # the publish runs under the run's lease
        publish.assert_called_once_with(
            extracted_dir=Path("/w/out"), sink=sink, config=AuxConfig.from_params(self.CONFIG), archive=self.ARCHIVE
        )
        assert out == {"CM_DATASET_AUX_PATH": "s3://bucket/aux", "CM_DATASET_AUX_VER": "2012"}
        if cache_hit:
            assert events == {}
        else:
            ((alias, recorder),) = events.items()
            assert alias == AssetAlias("imagenet_aux")
            (asset,), kwargs = recorder.add.call_args
            assert asset.uri == "s3://bucket/aux"
            assert kwargs["extra"]["cache_key"] == "k" * 64 and kwargs["extra"]["files"] == 8
