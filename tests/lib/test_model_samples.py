"""The sample models are real, small, deterministic, and compute the same function across frameworks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from imagenet_ops.model.checks import RESNET50_STATE_DICT_SHAPES
from imagenet_ops.testing import model_samples as ms


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("samples")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Two images with different statistics (mean-pooled features of two noise images would be alike)."""
    rng = np.random.default_rng(1)
    bright = rng.uniform(0, 255, (224, 224, 3))
    dark_red = rng.uniform(0, 64, (224, 224, 3)) * np.array([4.0, 0.5, 0.5])
    return np.stack([bright, dark_red]).astype(np.float32)


@pytest.fixture(scope="module")
def tf_reference(out: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Softmax and ArgMax of the frozen graph on two images (what every other sample must reproduce)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(ms.make_tf_frozen_graph(out / "ref.pb").read_bytes())
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            softmax, top1 = session.run(["softmax_tensor:0", "ArgMax:0"], {"input_tensor:0": images})
    return {"softmax": softmax, "argmax": top1}


def test_frozen_graph_runs_with_any_batch(tf_reference):
    assert tf_reference["softmax"].shape == (2, 1001)
    assert tf_reference["argmax"].dtype == np.int64
    np.testing.assert_allclose(tf_reference["softmax"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(tf_reference["argmax"], tf_reference["softmax"].argmax(axis=1))
    # Not a constant or saturated classifier: different images, different answers, no one-hot.
    assert tf_reference["argmax"][0] != tf_reference["argmax"][1]
    assert tf_reference["softmax"].max() < 0.5


def test_frozen_graph_without_argmax_has_no_argmax_node(out):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(ms.make_tf_frozen_graph(out / "noargmax.pb", argmax=False).read_bytes())
    names = {n.name for n in graph_def.node}
    assert "softmax_tensor" in names and "input_tensor" in names and "ArgMax" not in names
    assert not any(n.op in ("VariableV2", "VarHandleOp") for n in graph_def.node)  # frozen


@pytest.mark.parametrize("argmax", [True, False], ids=["argmax", "no-argmax"])
def test_tflite_matches_frozen_graph(out, images, tf_reference, argmax):
    import tensorflow as tf

    path = ms.make_tflite(out / f"m-{argmax}.tflite", argmax=argmax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    assert (inp["name"], list(inp["shape"]), inp["dtype"]) == ("input_tensor", [1, 224, 224, 3], np.float32)
    outputs = {d["name"]: d for d in interpreter.get_output_details()}
    assert sorted(outputs) == (["ArgMax", "softmax_tensor"] if argmax else ["softmax_tensor"])
    interpreter.set_tensor(inp["index"], images[:1])
    interpreter.invoke()
    softmax = interpreter.get_tensor(outputs["softmax_tensor"]["index"])
    np.testing.assert_allclose(softmax, tf_reference["softmax"][:1], rtol=1e-4, atol=1e-6)
    if argmax:
        assert interpreter.get_tensor(outputs["ArgMax"]["index"]).tolist() == tf_reference["argmax"][:1].tolist()


def _onnx_reference(model, images_nchw: np.ndarray) -> np.ndarray:
    """Evaluate the sample ONNX graph with numpy (no onnxruntime here) from its own initializers."""
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kernel, n = w["conv_w"], images_nchw.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(images_nchw, (3, 3), axis=(2, 3))[:, :, ::4, ::4]
    conv = np.einsum("nchwij,ocij->nohw", patches, kernel) + w["conv_b"][None, :, None, None]
    logits = np.maximum(conv, 0).mean(axis=(2, 3)).reshape(n, -1) @ w["fc_w"] + w["fc_b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("opset", "argmax", "layout"), [(11, True, "NCHW"), (8, False, "NCHW"), (11, True, "NHWC")], ids=["op11", "op8", "from-tf"]
)
def test_onnx_interface_and_weights(out, images, tf_reference, opset, argmax, layout):
    import onnx

    path = ms.make_onnx(out / f"m-{opset}-{layout}.onnx", opset=opset, argmax=argmax, layout=layout)
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import] == [opset]
    assert model.ir_version == (3 if opset == 8 else 6)
    suffix = ":0" if layout == "NCHW" else ""
    graph_inputs = [i.name for i in model.graph.input]
    assert graph_inputs[0] == f"input_tensor{suffix}"
    # IR 3 (opset 8) lists initializers as inputs too, as the real opset-8 download does.
    assert len(graph_inputs) == (5 if opset == 8 else 1)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["N", 3, 224, 224] if layout == "NCHW" else ["N", 224, 224, 3])
    outputs = [o.name for o in model.graph.output]
    assert outputs == [f"softmax_tensor{suffix}", f"ArgMax{suffix}"][: 2 if argmax else 1]
    if layout == "NCHW":
        softmax = _onnx_reference(model, images.transpose(0, 3, 1, 2))
        np.testing.assert_allclose(softmax, tf_reference["softmax"], rtol=1e-4, atol=1e-6)


def test_onnx_rejects_unknown_layout(out):
    with pytest.raises(ValueError, match="NCHW or NHWC"):
        ms.make_onnx(out / "bad.onnx", layout="CHW")


def test_torch_state_dict_has_required_keys(out):
    import torch

    state = torch.load(ms.make_torch_state_dict(out / "resnet50.pth"), weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == RESNET50_STATE_DICT_SHAPES
    assert all(v.dtype == torch.float32 for v in state.values())
    assert torch.equal(state["bn1.running_var"], torch.ones(64)) and torch.equal(state["fc.bias"], torch.zeros(1000))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_maps_any_batch_to_1000_classes(out):
    import torch

    module = torch.jit.load(str(ms.make_torchscript(out / "int8.pt")))
    with torch.inference_mode():
        assert tuple(module(torch.zeros(3, 3, 224, 224)).shape) == (3, 1000)


def test_ncnn_pair_is_consistent(out):
    param, weights = ms.make_ncnn(out / "m.param", out / "m.bin")
    lines = param.read_text().splitlines()
    assert lines[0] == "7767517"
    layer_count, blob_count = map(int, lines[1].split())
    assert layer_count == len(lines) - 2 == blob_count == 6
    assert lines[2].split()[:5] == ["Input", "in0", "0", "1", "in0"]
    # Two tagged weight blocks plus two raw biases, float32.
    assert weights.stat().st_size == 4 * (1 + 8 * 3 * 3 * 3 + 8 + 1 + 1001 * 8 + 1001)


def test_samples_are_byte_reproducible(tmp_path):
    makers = {
        "m.pb": lambda p: ms.make_tf_frozen_graph(p),
        "m.tflite": lambda p: ms.make_tflite(p, argmax=True),
        "m.onnx": lambda p: ms.make_onnx(p, opset=8, layout="NHWC"),
        "m.pth": ms.make_torch_state_dict,
        "m.param": lambda p: ms.make_ncnn(p, p.with_suffix(".bin"))[0],
    }
    for name, make in makers.items():
        first, second = make(tmp_path / "a" / name), make(tmp_path / "b" / name)
        assert first.read_bytes() == second.read_bytes(), name
    assert (tmp_path / "a" / "m.bin").read_bytes() == (tmp_path / "b" / "m.bin").read_bytes()
