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
