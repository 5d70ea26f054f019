"""fix_input_shape: a static input placeholder, shapes on every node, no stray placeholder, atomic write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.core.errors import ConfigError, ModelCheckError
from imagenet_ops.model.checks import ModelInterface, check_model
from imagenet_ops.model.fix_input_shape import fix_input_shape
from imagenet_ops.testing.model_samples import make_onnx, make_tf_frozen_graph


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample frozen graph (input [?,224,224,3], softmax + ArgMax), built once."""
    return make_tf_frozen_graph(tmp_path_factory.mktemp("frozen") / "resnet50_v1.pb")


@pytest.fixture
def src(frozen: Path, tmp_path: Path) -> Path:
    """A private copy of the frozen graph in an otherwise empty folder."""
    path = tmp_path / "resnet50_v1.pb"
    path.write_bytes(frozen.read_bytes())
    return path


def _graph_def(path: Path):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    return graph_def


def _run(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(_graph_def(path), name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(["softmax_tensor:0", "ArgMax:0"], {"input_tensor:0": images})


def test_input_becomes_static_and_every_node_has_shapes(src, tmp_path):
    before = src.read_bytes()
    dest = tmp_path / "fixed" / "resnet50_v1.pb"
    result = fix_input_shape(src=src, dest=dest)

    graph_def = _graph_def(dest)
    inputs = [n for n in graph_def.node if n.name == "input_tensor"]
    assert len(inputs) == 1
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["input_tensor"]  # no stray duplicate
    assert inputs[0].attr["dtype"].type == 1  # DT_FLOAT
    assert [d.size for d in inputs[0].attr["shape"].shape.dim] == [1, 224, 224, 3]
    assert all("_output_shapes" in n.attr for n in graph_def.node)
    assert [d.size for d in inputs[0].attr["_output_shapes"].list.shape[0].dim] == [1, 224, 224, 3]
    softmax_node = next(n for n in graph_def.node if n.name == "softmax_tensor")
    assert [d.size for d in softmax_node.attr["_output_shapes"].list.shape[0].dim] == [1, 1001]

    assert src.read_bytes() == before  # the original is untouched
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fixed", "resnet50_v1.pb", "resnet50_v1.pb"]  # no temp files
    assert result.as_dict() == {
        "src": str(src),
        "dest": str(dest),
        "input_name": "input_tensor",
        "shape": [1, 224, 224, 3],
        "nodes": len(graph_def.node),
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
    }
    json.dumps(result.as_dict())


def test_fixed_graph_runs_and_computes_the_same(src, tmp_path):
    dest = fix_input_shape(src=src, dest=tmp_path / "fixed.pb").dest
    image = np.random.default_rng(3).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    softmax, top1 = _run(Path(dest), image)
    assert softmax.shape == (1, 1001) and top1.shape == (1,) and top1.dtype == np.int64
    ref_softmax, ref_top1 = _run(src, image)
    np.testing.assert_allclose(softmax, ref_softmax, rtol=1e-6)
    assert top1.tolist() == ref_top1.tolist()
    with pytest.raises(ValueError, match="shape"):  # the batch really is static now
        _run(Path(dest), np.zeros((2, 224, 224, 3), np.float32))


def test_batch_8(src, tmp_path):
    result = fix_input_shape(src=src, dest=tmp_path / "b8.pb", batch=8)
    assert result.shape == [8, 224, 224, 3]
    softmax, top1 = _run(tmp_path / "b8.pb", np.zeros((8, 224, 224, 3), np.float32))
    assert softmax.shape == (8, 1001) and top1.shape == (8,)


def test_fixing_a_fixed_graph_regenerates_shapes(src, tmp_path):
    # Stale _output_shapes from batch 1 must not survive (or be appended to) when fixing to batch 4:
    # re-fixing gives the very bytes of fixing the original graph directly.
    fix_input_shape(src=src, dest=tmp_path / "b1.pb")
    twice = fix_input_shape(src=tmp_path / "b1.pb", dest=tmp_path / "b4.pb", input_name="input_tensor:0", batch=4)
    direct = fix_input_shape(src=src, dest=tmp_path / "direct.pb", batch=4)
    assert twice.sha256 == direct.sha256 and twice.input_name == "input_tensor"
    argmax = next(n for n in _graph_def(tmp_path / "b4.pb").node if n.name == "ArgMax")
    assert [[d.size for d in s.dim] for s in argmax.attr["_output_shapes"].list.shape] == [[4]]


def test_fixed_graph_passes_check_model_with_a_static_interface(src, tmp_path):
    fix_input_shape(src=src, dest=tmp_path / "fixed.pb")
    expected = ModelInterface("tensorflow", {"input_tensor": (1, 224, 224, 3)}, {"softmax_tensor": (1, 1001), "ArgMax": (1,)})
    result = check_model(framework="tensorflow", files=[tmp_path / "fixed.pb"], expected=expected)
    assert result.inputs == {"input_tensor": [1, 224, 224, 3]}
    assert result.outputs == {"softmax_tensor": [1, 1001], "ArgMax": [1]}


def test_output_is_reproducible_and_overwrites_atomically(src, tmp_path):
    dest = tmp_path / "out.pb"
    dest.write_bytes(b"old")
    first = fix_input_shape(src=src, dest=dest)
    data = dest.read_bytes()
    second = fix_input_shape(src=src, dest=dest)
    assert dest.read_bytes() == data and first.sha256 == second.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pb", "resnet50_v1.pb"]


def test_unknown_input_name(src, tmp_path):
    with pytest.raises(
        ModelCheckError, match=r"resnet50_v1\.pb: expected a node named images to fix, found placeholders input_tensor"
    ):
        fix_input_shape(src=src, dest=tmp_path / "out.pb", input_name="images")
    assert not (tmp_path / "out.pb").exists()


@pytest.mark.parametrize("kind", ["onnx", "garbage", "empty"])
def test_source_that_is_not_a_graph_def(tmp_path, kind):
    src = tmp_path / "model.pb"
    if kind == "onnx":
        src.write_bytes(make_onnx(tmp_path / "m.onnx").read_bytes())
    else:
        src.write_bytes(b"" if kind == "empty" else b"\xff\xfe not a protobuf \x00\x01" * 10)
    with pytest.raises(ModelCheckError, match=r"model\.pb: expected (a frozen TensorFlow GraphDef|a node named input_tensor)"):
        fix_input_shape(src=src, dest=tmp_path / "out.pb")
    assert not (tmp_path / "out.pb").exists()


def test_a_different_static_image_size_is_refused(src, tmp_path):
    with pytest.raises(
        ModelCheckError, match=r"expected input input_tensor to be compatible with \[1,299,299,3\] .*found .* \[\?,224,224,3\]"
    ):
        fix_input_shape(src=src, dest=tmp_path / "out.pb", height=299, width=299)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet50_v1.pb"]


def test_bad_arguments(src, tmp_path):
    with pytest.raises(ConfigError, match="dest .* is the source itself"):
        fix_input_shape(src=src, dest=src)
    with pytest.raises(ConfigError, match="positive integer dims"):
        fix_input_shape(src=src, dest=tmp_path / "out.pb", batch=0)
