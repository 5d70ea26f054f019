"""Each framework's own CPU runtime behind one small interface: a batch in, class ids (and scores) out.

=================  ===========================================  ===========================
framework          runtime                                      batch
=================  ===========================================  ===========================
onnx               onnxruntime ``InferenceSession`` (defaults)  any
tensorflow         TensorFlow, the frozen GraphDef pruned       any, or the fixed one
tflite             TensorFlow's ``tf.lite.Interpreter``         1 per invoke
pytorch            torch: the state dict in :mod:`.resnet50`,   any
                   or ``torch.jit.load`` for TorchScript
ncnn               the ``ncnn`` pip package's ``Net``           1 per extract
=================  ===========================================  ===========================

A runner reports the model's real input (shape without the batch, dtype) so that a set of
another shape is refused before anything runs, and gives back, per image, the model's top-1
class id (its ArgMax output where it has one) and, where the model outputs scores, those. Heavy
imports happen when a runner is opened.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagenet_ops.accuracy.pair import ModelSide, PairError
from imagenet_ops.core.errors import ModelCheckError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    """One batch's answers: top-1 model class ids ``[N]`` and, when the model gives them, scores ``[N, classes]``."""

    top1: np.ndarray
    scores: np.ndarray | None


class Runner:
    """A loaded model. ``input_shape`` excludes the batch; ``batch`` is the largest batch one call takes."""

    input_shape: tuple[int, ...]
    input_dtype: str
    batch: int
    runtime: str

    def run(self, batch: np.ndarray) -> Outputs:  # pragma: no cover - interface
        raise NotImplementedError


def _top1(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores).argmax(axis=1).astype(np.int64)


def _split(outputs: Sequence[np.ndarray]) -> Outputs:
    """The ArgMax output (an integer vector) and the scores (a float matrix) among a model's outputs."""
    ids = next((o for o in outputs if np.issubdtype(o.dtype, np.integer) and o.ndim <= 2 and o.size == len(o)), None)
    scores = next((o for o in outputs if np.issubdtype(o.dtype, np.floating) and o.ndim == 2), None)
    if scores is None and ids is None:
        raise ModelCheckError(f"the model's outputs {[(o.dtype.name, o.shape) for o in outputs]} hold no class ids or scores")
    top1 = np.asarray(ids).reshape(-1).astype(np.int64) if ids is not None else _top1(scores)
    return Outputs(top1=top1, scores=None if scores is None else np.asarray(scores, dtype=np.float32))


class OnnxRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, *, threads: int, batch: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()  # MLPerf's reference backend uses the defaults; only the thread count is ours
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = tuple(int(d) if isinstance(d, int) else -1 for d in first.shape[1:])
        self.input_dtype = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}.get(
            first.type, first.type
        )
        fixed = first.shape[0]
        self.batch = fixed if isinstance(fixed, int) and fixed > 0 else batch
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> Outputs:
        return _split(self.session.run(self.output_names, {self.input_name: batch}))


class TensorflowRunner(Runner):
    runtime = "tensorflow"

    def __init__(self, path: Path, *, threads: int, batch: int, input_name: str = "input_tensor") -> None:
        import tensorflow as tf

        from imagenet_ops.model.checks import load_graph_def

        if threads:
            _set_tf_threads(tf, threads)
        graph_def = load_graph_def(path)
        node = next((n for n in graph_def.node if n.name == input_name), None)
        if node is None:
            raise ModelCheckError(f"{path}: no input node {input_name!r}")
        dims = [d.size for d in node.attr["shape"].shape.dim]
        self.input_shape = tuple(dims[1:])
        self.input_dtype = "float32"
        self.batch = dims[0] if dims and dims[0] > 0 else batch
        names = {n.name for n in graph_def.node}
        fetches = [f"{n}:0" for n in ("ArgMax", "softmax_tensor") if n in names]
        if not fetches:
            raise ModelCheckError(f"{path}: neither ArgMax nor softmax_tensor in the graph")

        def imported() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        self._fn = wrapped.prune(feeds=f"{input_name}:0", fetches=fetches)
        self._tf = tf

    def run(self, batch: np.ndarray) -> Outputs:
        return _split([np.asarray(t) for t in self._fn(self._tf.constant(batch))])


def _set_tf_threads(tf: Any, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: keep what it has
        pass


class TfliteRunner(Runner):
    runtime = "tflite (tf.lite.Interpreter)"

    def __init__(self, path: Path, *, threads: int, batch: int) -> None:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT)
            self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        self.input_shape = tuple(int(d) for d in detail["shape"][1:])
        self.input_dtype = np.dtype(detail["dtype"]).name
        self.batch = 1
        self.outputs = self.interpreter.get_output_details()

    def _output(self, detail: dict[str, Any]) -> np.ndarray:
        value = self.interpreter.get_tensor(detail["index"])
        scale, zero = detail.get("quantization", (0.0, 0))
        if np.issubdtype(value.dtype, np.integer) and value.ndim == 2 and scale:  # quantized scores
            return (value.astype(np.float32) - zero) * scale
        return value

    def run(self, batch: np.ndarray) -> Outputs:
        parts = []
        for image in batch:
            self.interpreter.set_tensor(self.input_index, image[None])
            self.interpreter.invoke()
            parts.append(_split([self._output(d) for d in self.outputs]))
        scores = [p.scores for p in parts]
        return Outputs(
            top1=np.concatenate([p.top1 for p in parts]),
            scores=None if any(s is None for s in scores) else np.concatenate(scores),
        )


class TorchRunner(Runner):
    runtime = "torch"

    def __init__(self, path: Path, *, threads: int, batch: int, classes: int) -> None:
        import torch

        from imagenet_ops.model.checks import _is_torchscript

        if threads:
            torch.set_num_threads(threads)
        if _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; the int8 .pt is TorchScript
                self.module = torch.jit.load(str(path), map_location="cpu")
            self.runtime = "torch (TorchScript)"
        else:
            from imagenet_ops.accuracy.resnet50 import resnet50

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            self.module = resnet50(num_classes=classes)
            try:
                self.module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise ModelCheckError(f"{path}: not a complete ResNet-50 state dict ({first} ...)") from None
            self.runtime = "torch (ResNet-50 from the state dict)"
        self.module.eval()
        self.input_shape, self.input_dtype, self.batch = (3, 224, 224), "float32", batch
        self._torch = torch

    def run(self, batch: np.ndarray) -> Outputs:
        with self._torch.inference_mode():
            out = self.module(self._torch.from_numpy(np.ascontiguousarray(batch)))
        scores = out.numpy().astype(np.float32)
        return Outputs(top1=_top1(scores), scores=scores)


class NcnnRunner(Runner):
    runtime = "ncnn"

    def __init__(self, param: Path, weights: Path, *, threads: int, batch: int) -> None:
        import ncnn

        self.net = ncnn.Net()
        self.net.opt.num_threads = threads or (os.cpu_count() or 1)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise ModelCheckError(f"{param}, {weights}: ncnn could not load this pair")
        self.input_shape, self.input_dtype, self.batch = (3, 224, 224), "float32", 1
        self._ncnn = ncnn

    def run(self, batch: np.ndarray) -> Outputs:
        scores = []
        for image in batch:
            with self.net.create_extractor() as ex:
                ex.input("in0", self._ncnn.Mat(np.ascontiguousarray(image)))
                ret, out = ex.extract("out0")
                if ret != 0:
                    raise ModelCheckError(f"ncnn could not compute out0 (error {ret})")
                scores.append(np.array(out, dtype=np.float32).reshape(-1))
        matrix = np.stack(scores)
        return Outputs(top1=_top1(matrix), scores=matrix)


def open_runner(model: ModelSide, folder: Path, *, threads: int, batch: int) -> Runner:
    """Load ``model``'s files (downloaded into ``folder``) on its framework's runtime.

    Raises:
        ModelCheckError: the runtime cannot load the file(s).
    """
    files = [Path(folder) / name for name in model.files]
    fw = model.framework
    if fw == "onnx":
        return OnnxRunner(files[0], threads=threads, batch=batch)
    if fw == "tensorflow":
        return TensorflowRunner(files[0], threads=threads, batch=model.fixed_batch or batch)
    if fw == "tflite":
        return TfliteRunner(files[0], threads=threads, batch=batch)
    if fw == "pytorch":
        return TorchRunner(files[0], threads=threads, batch=batch, classes=model.classes)
    if fw == "ncnn":
        param = next((p for p in files if p.suffix == ".param"), None)
        weights = next((p for p in files if p.suffix == ".bin"), None)
        if param is None or weights is None:
            raise ModelCheckError(f"{model.location}: ncnn needs a .param and a .bin, found {', '.join(model.files)}")
        try:
            import ncnn  # noqa: F401
        except ImportError:
            raise ModelCheckError(
                "ncnn variants need the ncnn pip package (pinned in requirements.txt); it is not installed"
            ) from None
        return NcnnRunner(param, weights, threads=threads, batch=batch)
    raise ModelCheckError(f"{model.describe()}: no runtime for framework {fw!r}")


def check_input(runner: Runner, model: ModelSide, tensor: np.ndarray, *, where: str, set_description: str) -> None:
    """Refuse a set whose tensors the loaded model cannot take (shape or dtype), naming both.

    Raises:
        PairError: shape or dtype differ.
    """
    expected = tuple(runner.input_shape)
    shape_ok = len(expected) == tensor.ndim and all(e in (-1, t) for e, t in zip(expected, tensor.shape, strict=True))
    problems = []
    if not shape_ok:
        problems.append(f"the model takes {list(expected)} per image, {where} is {list(tensor.shape)}")
    if runner.input_dtype != tensor.dtype.name:
        problems.append(f"the model takes {runner.input_dtype}, {where} is {tensor.dtype.name}")
    if problems:
        raise PairError(f"cannot check {model.describe()} on {set_description}: {'; '.join(problems)}")
