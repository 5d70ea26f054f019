"""Tiny real models with the ResNet-50 v1.5 (MLPerf) interface of each framework.

Each sample is a 3x3/stride-4 convolution with 8 filters, ReLU, global average pooling and a
dense layer, built in well under a second from fixed seeds. Names, layouts and shapes are those
of the real downloads (see :mod:`imagenet_ops.model.checks`):

- TF frozen graph and tflite: input ``input_tensor`` NHWC, outputs ``softmax_tensor`` [N,1001]
  and ``ArgMax`` (int64 top-1 id, 0 = background);
- ONNX: ``input_tensor:0`` NCHW [N,3,224,224] -> ``softmax_tensor:0``/``ArgMax:0``, or the
  from-tf layout ``input_tensor`` NHWC -> ``softmax_tensor``;
- PyTorch: the torchvision state-dict keys of :data:`RESNET50_STATE_DICT_SHAPES` (1000 classes),
  or a TorchScript module [N,3,224,224] -> [N,1000];
- ncnn: a ``.param``/``.bin`` pair.

The TF, tflite, ONNX and ncnn samples share one set of weights (the same function of the
input). Writes are byte-reproducible for a given library version; heavy imports stay inside
the functions.

The weights make every sample a *colour reader* whose answer is known from its input, so the
accuracy check can be tested end to end (:mod:`imagenet_ops.testing.pattern_samples` makes the
images): the convolution passes each channel through twice, as ``+x`` and ``-x`` (ReLU keeps both
signs), global pooling gives the image's mean colour, and the dense layer is a nearest-centroid
classifier over the 1000 colours of :data:`~imagenet_ops.testing.pattern_samples.LEVELS` cubed
(``logit_k = (2 p_k . u - |p_k|^2) / T`` is largest for the centroid ``p_k`` nearest to ``u``).
``u`` is the mean colour in pixel units, undone from the preprocessing the model expects:
MLPerf's ``pre_process_vgg`` (means subtracted) for TF, tflite, ONNX and ncnn, torchvision's
normalisation for the PyTorch samples. Class 0 of the 1001-class models (background) never wins.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

from imagenet_ops.model.checks import RESNET50_STATE_DICT_SHAPES

SEED = 0
IMAGE_SIZE = 224
CHANNELS = 3
TF_CLASSES = 1001  # MLPerf tf/onnx/tflite/ncnn: class 0 is background
TORCH_CLASSES = 1000
FILTERS = 8
KERNEL = 3
STRIDE = 4  # no padding: (224 - 3) // 4 + 1 = 56 (TF "VALID", ONNX/ncnn pads 0)


TEMPERATURE = 2000.0
"""Logit scale in squared pixel units: neighbouring colours differ by 625 / T in logit, so no softmax saturates."""
# The inverse of each preprocessing, per RGB channel: pixel = scale * x + shift.
_TO_PIXELS = {
    "vgg": ((1.0, 1.0, 1.0), (123.68, 116.78, 103.94)),  # MLPerf pre_process_vgg: x = pixel - mean
    "pytorch": (  # torchvision: x = (pixel / 255 - mean) / std
        (255 * 0.229, 255 * 0.224, 255 * 0.225),
        (255 * 0.485, 255 * 0.456, 255 * 0.406),
    ),
}


def colour_reader(classes: int = TF_CLASSES, *, preprocessing: str = "vgg") -> dict[str, Any]:
    """Dense weights ``(6, classes)`` and bias of the nearest-colour classifier on the ``+x, -x`` channel features.

    Args:
        classes: 1001 (class 0 is background and never wins) or 1000.
        preprocessing: what the model's input went through: ``vgg`` or ``pytorch`` (see module docstring).
    """
    import numpy as np

    from imagenet_ops.testing.pattern_samples import class_colours

    scale, shift = (np.asarray(v, dtype=np.float64) for v in _TO_PIXELS[preprocessing])
    centroids = class_colours().astype(np.float64)  # (1000, 3) RGB pixel values
    # logit = (2 p.(scale*x + shift) - |p|^2) / T, with x_c = relu(x_c) - relu(-x_c)
    per_channel = 2.0 * centroids * scale / TEMPERATURE  # (1000, 3)
    dense = np.zeros((2 * CHANNELS, classes), dtype=np.float64)
    bias = np.full((classes,), -1.0e4 / TEMPERATURE, dtype=np.float64)  # background: never the answer
    first = classes - len(centroids)
    dense[0::2, first:] = per_channel.T
    dense[1::2, first:] = -per_channel.T
    bias[first:] = (2.0 * centroids @ shift - (centroids**2).sum(axis=1)) / TEMPERATURE
    return {"dense": dense.astype(np.float32), "bias": bias.astype(np.float32)}


def _weights(classes: int = TF_CLASSES, *, preprocessing: str = "vgg") -> dict[str, Any]:
    """Conv kernel (HWIO), conv bias, dense weights (in, out) and bias of the colour reader."""
    import numpy as np

    conv_w = np.zeros((KERNEL, KERNEL, CHANNELS, FILTERS), dtype=np.float32)
    for c in range(CHANNELS):  # filter 2c passes channel c, filter 2c+1 its negative; 6 and 7 stay zero
        conv_w[KERNEL // 2, KERNEL // 2, c, 2 * c] = 1.0
        conv_w[KERNEL // 2, KERNEL // 2, c, 2 * c + 1] = -1.0
    reader = colour_reader(classes, preprocessing=preprocessing)
    fc_w = np.zeros((FILTERS, classes), dtype=np.float32)
    fc_w[: 2 * CHANNELS] = reader["dense"]
    return {"conv_w": conv_w, "conv_b": np.zeros((FILTERS,), dtype=np.float32), "fc_w": fc_w, "fc_b": reader["bias"]}


def _parent(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _tf_graph(*, batch: int | None, argmax: bool, argmax_first: bool = False) -> tuple[Any, Any, list[Any]]:
    """A TF1-style graph: ``input_tensor`` -> conv -> relu -> mean -> dense -> softmax (+ ArgMax)."""
    import tensorflow as tf

    w = _weights()
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], name="input_tensor")
        x = tf.nn.conv2d(images, tf.constant(w["conv_w"]), strides=STRIDE, padding="VALID", name="conv")
        x = tf.nn.relu(tf.nn.bias_add(x, tf.constant(w["conv_b"])), name="relu")
        x = tf.reduce_mean(x, axis=[1, 2], name="pool")
        logits = tf.nn.bias_add(tf.matmul(x, tf.constant(w["fc_w"])), tf.constant(w["fc_b"]), name="logits")
        outputs = [tf.nn.softmax(logits, name="softmax_tensor")]
        if argmax:
            top1 = tf.argmax(logits, axis=1, name="ArgMax", output_type=tf.int64)
            outputs.insert(0 if argmax_first else 1, top1)
    return graph, images, outputs


def make_tf_frozen_graph(path: Path, *, argmax: bool = True) -> Path:
    """Write a frozen GraphDef ``.pb``: ``input_tensor`` float32 [?,224,224,3] -> ``softmax_tensor`` [?,1001] (+ ``ArgMax``).

    The weights are Const nodes from the start, which is what freezing variables produces.
    """
    graph, _, _ = _tf_graph(batch=None, argmax=argmax)
    path = _parent(path)
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


def make_tflite(path: Path, *, argmax: bool) -> Path:
    """Write a ``.tflite`` with input ``input_tensor`` float32 [1,224,224,3].

    Outputs: ``softmax_tensor`` [1,1001]; with ``argmax``, ``ArgMax`` int64 [1] first, then the
    softmax. Converted from a TF1 session, so the tensors keep the graph's names.
    """
    import tensorflow as tf

    graph, images, outputs = _tf_graph(batch=1, argmax=argmax, argmax_first=True)
    with tf.compat.v1.Session(graph=graph) as session:
        data = tf.compat.v1.lite.TFLiteConverter.from_session(session, [images], outputs).convert()
    path = _parent(path)
    path.write_bytes(data)
    return path


def make_onnx(path: Path, *, opset: int = 11, argmax: bool = True, layout: str = "NCHW") -> Path:
    """Write an ONNX model (Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax [+ ArgMax]).

    ``layout="NCHW"``: input ``input_tensor:0`` [N,3,224,224], outputs ``softmax_tensor:0`` [N,1001]
    and ``ArgMax:0`` [N] int64. ``layout="NHWC"`` (CM's from-tf file): input ``input_tensor``
    [N,224,224,3] transposed first, outputs ``softmax_tensor`` (and ``ArgMax``). ``ir_version`` is
    the lowest the opset allows; below IR 4 (opset 8) initializers are listed as inputs as well.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    suffix = ":0" if layout == "NCHW" else ""
    in_name, softmax_name, argmax_name = f"input_tensor{suffix}", f"softmax_tensor{suffix}", f"ArgMax{suffix}"
    w = _weights()
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(w["conv_w"].transpose(3, 2, 0, 1)), "conv_w"),  # HWIO -> OIHW
        numpy_helper.from_array(w["conv_b"], "conv_b"),
        numpy_helper.from_array(w["fc_w"], "fc_w"),
        numpy_helper.from_array(w["fc_b"], "fc_b"),
    ]
    nodes = []
    first = in_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [in_name], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
        first = "nchw"
    nodes += [
        helper.make_node(
            "Conv", [first, "conv_w", "conv_b"], ["conv"], name="conv", kernel_shape=[KERNEL] * 2, strides=[STRIDE] * 2
        ),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="dense"),
        helper.make_node("Softmax", ["logits"], [softmax_name], name="softmax_tensor", axis=1),
    ]
    in_shape = ["N", CHANNELS, IMAGE_SIZE, IMAGE_SIZE] if layout == "NCHW" else ["N", IMAGE_SIZE, IMAGE_SIZE, CHANNELS]
    outputs = [helper.make_tensor_value_info(softmax_name, TensorProto.FLOAT, ["N", TF_CLASSES])]
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["logits"], [argmax_name], name="ArgMax", axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info(argmax_name, TensorProto.INT64, ["N"]))
    opset_id = helper.make_opsetid("", opset)
    ir_version = helper.find_min_ir_version_for([opset_id])
    inputs = [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)]
    if ir_version < 4:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    graph = helper.make_graph(nodes, "resnet50_sample", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[opset_id], ir_version=ir_version, producer_name="imagenet_ops")
    onnx.checker.check_model(model)
    path = _parent(path)
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


def make_torch_state_dict(path: Path) -> Path:
    """Write a ``torch.save`` state dict with every key of :data:`RESNET50_STATE_DICT_SHAPES` (float32).

    Only those keys are present (about 13 MB); batch-norm scales/variances are ones, biases and
    means zeros, weights small normal values from :data:`SEED`.
    """
    import torch

    generator = torch.Generator().manual_seed(SEED)
    state: dict[str, Any] = {}
    for key, shape in RESNET50_STATE_DICT_SHAPES.items():
        if len(shape) > 1:
            state[key] = torch.randn(shape, generator=generator) * 0.01
        elif key.endswith(("running_var", "weight")):
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.zeros(shape)
    path = _parent(path)
    torch.save(state, path)
    return path


def make_resnet50_state_dict(path: Path) -> Path:
    """Write a complete ResNet-50 v1.5 state dict (torchvision keys, about 100 MB) that reads colours.

    :func:`imagenet_ops.accuracy.resnet50.resnet50` loads it with ``strict=True``. The stem passes
    each channel as ``+x`` and ``-x``; every bottleneck's residual branch is switched off (its
    batch-norm scales are 0), so the shortcuts (1x1 downsampling convolutions that copy those six
    channels) carry the mean colour to the classifier, a colour reader for torchvision-normalised
    input (see the module docstring). Batch norms are exact identities (``running_var = 1 - eps``).
    """
    import torch

    from imagenet_ops.accuracy.resnet50 import resnet50

    module = resnet50()
    state = {k: torch.zeros_like(v) for k, v in module.state_dict().items()}
    eps = 1e-5  # torch.nn.BatchNorm2d's default
    for key, value in state.items():
        if key.endswith("running_var"):
            value.fill_(1.0 - eps)
        elif key.endswith("weight") and value.dim() == 1 and ".bn3." not in key and not key.startswith("layer"):
            value.fill_(1.0)  # the stem's batch norm
        elif key.endswith("downsample.1.weight"):
            value.fill_(1.0)
    for c in range(CHANNELS):
        state["conv1.weight"][2 * c, c, 3, 3] = 1.0
        state["conv1.weight"][2 * c + 1, c, 3, 3] = -1.0
    for key, value in state.items():
        if key.endswith("downsample.0.weight"):
            for ch in range(2 * CHANNELS):
                value[ch, ch, 0, 0] = 1.0
    reader = colour_reader(TORCH_CLASSES, preprocessing="pytorch")
    state["fc.weight"][:, : 2 * CHANNELS] = torch.from_numpy(reader["dense"].T.copy())
    state["fc.bias"] = torch.from_numpy(reader["bias"].copy())
    path = _parent(path)
    torch.save(state, path)
    return path


def make_resnet50_onnx(path: Path) -> Path:
    """Write a full-size ResNet-50 ONNX (about 100 MB, ResNet-50's compute) with the MLPerf ONNX interface.

    ``input_tensor:0`` [N,3,224,224] (``pre_process_vgg`` output) -> ``softmax_tensor:0`` [N,1001] and
    ``ArgMax:0`` [N]: the colour-reading ResNet-50 of :func:`make_resnet50_state_dict` behind a
    conversion of its input to torchvision's normalisation and a background class that never wins.
    For benchmarks: an image costs what it costs on the real model. Not byte-reproducible across
    torch versions (the exporter's graph), and it needs no reproducibility: its answers are known.
    """
    import tempfile

    import torch

    from imagenet_ops.accuracy.resnet50 import resnet50

    with tempfile.TemporaryDirectory() as tmp:
        net = resnet50()
        net.load_state_dict(torch.load(make_resnet50_state_dict(Path(tmp) / "rn50.pth"), weights_only=True), strict=True)
    net.eval()
    scale, shift = (torch.tensor(v, dtype=torch.float32).reshape(1, 3, 1, 1) for v in _TO_PIXELS["pytorch"])
    vgg_mean = torch.tensor(_TO_PIXELS["vgg"][1], dtype=torch.float32).reshape(1, 3, 1, 1)

    class MlperfInterface(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.net((x + vgg_mean - shift) / scale)  # vgg input -> torchvision-normalised
            logits = torch.cat([torch.full_like(logits[:, :1], -1.0e4), logits], dim=1)  # class 0: background
            return torch.softmax(logits, dim=1), torch.argmax(logits, dim=1)

    path = _parent(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            MlperfInterface().eval(),
            torch.zeros(1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE),
            str(path),
            input_names=["input_tensor:0"],
            output_names=["softmax_tensor:0", "ArgMax:0"],
            dynamic_axes={"input_tensor:0": {0: "N"}, "softmax_tensor:0": {0: "N"}, "ArgMax:0": {0: "N"}},
            opset_version=11,
            dynamo=False,
        )
    return path


def make_torchscript(path: Path) -> Path:
    """Write a traced TorchScript module: float32 [N,3,224,224] -> [N,1000] (like the int8 ``.pt``).

    A colour reader for torchvision-normalised input (see the module docstring).
    """
    import torch

    class TinyClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(CHANNELS, FILTERS, KERNEL, stride=STRIDE)
            self.fc = torch.nn.Linear(FILTERS, TORCH_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return self.fc(x)

    w = _weights(TORCH_CLASSES, preprocessing="pytorch")
    module = TinyClassifier().eval()
    with torch.no_grad():
        module.conv.weight.copy_(torch.from_numpy(w["conv_w"].transpose(3, 2, 0, 1).copy()))  # HWIO -> OIHW
        module.conv.bias.zero_()
        module.fc.weight.copy_(torch.from_numpy(w["fc_w"].T.copy()))
        module.fc.bias.copy_(torch.from_numpy(w["fc_b"]))
    path = _parent(path)
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.x; the real int8 model is still a TorchScript file.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        traced = torch.jit.trace(module, torch.zeros(1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
        torch.jit.save(traced, str(path))
    return path


def make_ncnn(param_path: Path, bin_path: Path) -> tuple[Path, Path]:
    """Write an ncnn pair: Input ``in0`` (3x224x224) -> Convolution -> ReLU -> Pooling -> InnerProduct 1001 -> Softmax ``out0``.

    The ``.bin`` holds, per layer, a 4-byte zero tag (raw float32) plus the weights, then the raw
    bias, as ncnn's model loader reads them.
    """
    w = _weights()
    conv_w = w["conv_w"].transpose(3, 2, 0, 1)  # HWIO -> OIHW (ncnn order)
    fc_w = w["fc_w"].T  # (in, out) -> (num_output, num_input)
    layers = [
        ("Input", "in0", [], ["in0"], f"0={IMAGE_SIZE} 1={IMAGE_SIZE} 2={CHANNELS}"),
        ("Convolution", "conv_0", ["in0"], ["1"], f"0={FILTERS} 1={KERNEL} 3={STRIDE} 4=0 5=1 6={conv_w.size}"),
        ("ReLU", "relu_1", ["1"], ["2"], ""),
        ("Pooling", "gap_2", ["2"], ["3"], "0=1 4=1"),
        ("InnerProduct", "fc_3", ["3"], ["4"], f"0={TF_CLASSES} 1=1 2={fc_w.size}"),
        ("Softmax", "softmax_4", ["4"], ["out0"], "0=0 1=1"),
    ]
    lines = ["7767517", f"{len(layers)} {len(layers)}"]
    for kind, name, bottoms, tops, params in layers:
        blobs = " ".join([*bottoms, *tops])
        lines.append(f"{kind:<16} {name:<16} {len(bottoms)} {len(tops)} {blobs} {params}".rstrip())
    tag = struct.pack("<I", 0)
    data = b"".join((tag, conv_w.astype("<f4").tobytes(), w["conv_b"].astype("<f4").tobytes()))
    data += b"".join((tag, fc_w.astype("<f4").tobytes(), w["fc_b"].astype("<f4").tobytes()))
    param_path, bin_path = _parent(param_path), _parent(bin_path)
    param_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bin_path.write_bytes(data)
    return param_path, bin_path
