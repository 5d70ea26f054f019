"""Check that a ResNet-50 model file has the interface CM promises: names and shapes, per framework.

A downloaded model can be the wrong file (an HTML error page, a .pb where an .onnx belongs), a
truncated download, or the right framework with another interface (1000 vs 1001 classes, NHWC vs
NCHW, renamed tensors). :func:`check_model` opens the file with its framework's own reader and
compares what it finds with a :class:`ModelInterface`; every failure is a :class:`ModelCheckError`
naming the file, what was expected and what was found.

Shapes are tuples where ``None`` means "any size". A dimension the model leaves dynamic (an ONNX
``dim_param`` such as ``N``, a TF ``?``, a TFLite ``-1``) accepts any expected size, because the
model accepts that size at run time; a static dimension must equal the expected one.

This module holds the per-framework readers; the types they compare (:class:`ModelInterface`,
:class:`ModelCheckResult`) and the shared matching and error wording are in
:mod:`imagenet_ops.model.interface`. Heavy imports (onnx, tensorflow, torch) happen inside the
per-framework checks only.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ConfigError, ModelCheckError
from imagenet_ops.model.interface import (
    FoundShape,
    ModelCheckResult,
    ModelInterface,
    Shape,
    compatible,
    fmt_shape,
    match_exact,
    match_loose,
    mismatch,
    normalize_framework,
    single_file,
    summary,
    tensor_node_name,
    unreadable,
)

log = logging.getLogger(__name__)

# A representative subset of torchvision's resnet50 state dict (resnet50-19c8e357.pth): the stem,
# one block per stage including the stride/downsample blocks, and the classifier. Every key exists
# with exactly this shape in ResNet-50 v1 and v1.5 alike (v1.5 only moves the stride to conv2).
RESNET50_STATE_DICT_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.weight": (64,),
    "bn1.bias": (64,),
    "bn1.running_mean": (64,),
    "bn1.running_var": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.2.bn3.weight": (256,),
    "layer2.0.conv1.weight": (128, 256, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "layer2.3.conv3.weight": (512, 128, 1, 1),
    "layer3.0.downsample.0.weight": (1024, 512, 1, 1),
    "layer3.5.conv3.weight": (1024, 256, 1, 1),
    "layer3.5.bn3.running_var": (1024,),
    "layer4.0.conv2.weight": (512, 512, 3, 3),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "layer4.2.bn3.weight": (2048,),
    "fc.weight": (1000, 2048),
    "fc.bias": (1000,),
}

NCNN_MAGIC = "7767517"
# ncnn layers that keep the shape of their (first) input: walked through to find the classifier width.
_NCNN_SHAPE_KEEPING = {"Softmax", "Split", "Dropout", "Noop", "ReLU", "Sigmoid", "BatchNorm", "Scale"}


# --- ONNX ---------------------------------------------------------------------------------------


def _onnx_shape(value_info: Any) -> FoundShape:
    kind = value_info.type
    if not kind.HasField("tensor_type") or not kind.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in kind.tensor_type.shape.dim]


def _check_onnx(paths: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    path = single_file(paths, "onnx")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))
    except Exception as exc:  # any reader failure means "not this framework's file"
        raise unreadable(path, "an ONNX model", exc) from exc
    graph = model.graph
    # IR < 4 (opset-8 files) lists every initializer as a graph input too; only the rest are fed.
    initializers = {t.name for t in graph.initializer}
    inputs = {vi.name: _onnx_shape(vi) for vi in graph.input if vi.name not in initializers}
    outputs = {vi.name: _onnx_shape(vi) for vi in graph.output}
    match_exact(path, "input", expected.inputs, inputs)
    match_exact(path, "output", expected.outputs, outputs)
    extra = [n for n in inputs if n not in expected.inputs]
    if extra:
        raise ModelCheckError(
            f"{path}: expected only inputs {', '.join(expected.inputs)}, found inputs "
            + ", ".join(f"{n} {fmt_shape(inputs[n])}" for n in inputs)
        )
    opsets = ",".join(str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))
    kind = f"onnx opset {opsets} ir_version {model.ir_version}"
    return ModelCheckResult("onnx", [str(path)], "onnx", inputs, outputs, summary(path, kind, inputs, outputs, []))


# --- TensorFlow frozen graph --------------------------------------------------------------------


def load_graph_def(path: Path) -> Any:
    """Parse a frozen TF ``GraphDef`` (``.pb``).

    Raises:
        ModelCheckError: unreadable, not a GraphDef, or a GraphDef without nodes.
    """
    path = Path(path)
    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise unreadable(path, "a frozen TensorFlow GraphDef", exc) from exc
    if not graph_def.node:
        raise ModelCheckError(f"{path}: expected a frozen TensorFlow GraphDef, found a file that parses to a graph without nodes")
    return graph_def


def _tf_placeholder_shape(node: Any) -> FoundShape:
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim]


def _tf_tensor_shape(shape: Any) -> FoundShape:
    return None if shape.rank is None else list(shape.as_list())


def _tf_sinks(graph_def: Any) -> list[str]:
    consumed = {tensor_node_name(i.lstrip("^")) for node in graph_def.node for i in node.input}
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder")]


def _check_tensorflow(paths: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    path = single_file(paths, "tensorflow")
    graph_def = load_graph_def(path)
    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except Exception as exc:
        raise unreadable(path, "a frozen TensorFlow GraphDef that imports into a graph", exc) from exc
    nodes = {n.name for n in graph_def.node}
    inputs = {n.name: _tf_placeholder_shape(n) for n in graph_def.node if n.op == "Placeholder"}
    match_exact(path, "input", expected.inputs, inputs, strip_index=True)

    wanted = [tensor_node_name(n) for n in expected.outputs]
    outputs: dict[str, FoundShape] = {}
    for name in [*(w for w in wanted if w in nodes), *_tf_sinks(graph_def)]:
        op = graph.get_operation_by_name(name)
        outputs.setdefault(name, _tf_tensor_shape(op.outputs[0].shape) if op.outputs else None)
    match_exact(path, "output", expected.outputs, outputs, strip_index=True)
    outputs = {n: outputs[n] for n in wanted}
    extra = [n for n in inputs if n not in {tensor_node_name(i) for i in expected.inputs}]
    notes = [f"unused placeholder(s) {', '.join(extra)}"] if extra else []
    kind = f"tensorflow graphdef, {len(graph_def.node)} nodes"
    return ModelCheckResult("tensorflow", [str(path)], "graphdef", inputs, outputs, summary(path, kind, inputs, outputs, notes))


# --- TFLite -------------------------------------------------------------------------------------


def _tflite_shape(detail: Mapping[str, Any]) -> FoundShape:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) == len(detail["shape"]) else detail["shape"]
    return [int(d) if d >= 0 else None for d in dims]


def _check_tflite(paths: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    path = single_file(paths, "tflite")
    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()

    try:
        # model_content, not model_path: only the buffer path runs the flatbuffer verifier; a
        # truncated file given by path crashes the interpreter (segmentation fault, TF 2.21).
        content = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT)
            interpreter = tf.lite.Interpreter(
                model_content=content,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
        interpreter.allocate_tensors()
        in_details, out_details = interpreter.get_input_details(), interpreter.get_output_details()
        # Signature keys (e.g. "softmax_tensor") are the readable names when tensors are "PartitionedCall:1".
        by_index: dict[int, list[str]] = {}
        for key in interpreter.get_signature_list():
            runner = interpreter.get_signature_runner(key)
            for alias, detail in (*runner.get_input_details().items(), *runner.get_output_details().items()):
                by_index.setdefault(int(detail["index"]), []).append(alias)
    except Exception as exc:
        raise unreadable(path, "a TFLite flatbuffer model", exc) from exc

    def table(details: list[dict[str, Any]]) -> tuple[dict[str, FoundShape], dict[str, list[str]]]:
        shapes: dict[str, FoundShape] = {}
        aliases: dict[str, list[str]] = {}
        for d in details:
            name = d["name"] if d["name"] not in shapes else f"{d['name']}#{d['index']}"
            shapes[name] = _tflite_shape(d)
            aliases[name] = by_index.get(int(d["index"]), [])
        return shapes, aliases

    inputs, in_aliases = table(in_details)
    outputs, out_aliases = table(out_details)
    notes = match_loose(path, "input", expected.inputs, inputs, in_aliases)
    notes += match_loose(path, "output", expected.outputs, outputs, out_aliases)
    dtypes = ",".join(sorted({getattr(d["dtype"], "__name__", str(d["dtype"])) for d in in_details}))
    kind = f"tflite, input dtype {dtypes}"
    return ModelCheckResult("tflite", [str(path)], "tflite", inputs, outputs, summary(path, kind, inputs, outputs, notes))


# --- PyTorch ------------------------------------------------------------------------------------


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold ``<root>/code/`` and ``<root>/constants.pkl``; torch.save archives do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _check_state_dict(path: Path, expected: ModelInterface) -> ModelCheckResult:
    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise unreadable(path, "a PyTorch state dict (torch.save) or TorchScript module", exc) from exc
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ModelCheckError(f"{path}: expected a PyTorch state dict (name -> tensor), found a {type(loaded).__name__}")
    if all(str(k).startswith("module.") for k in state):  # saved from DataParallel
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    shapes = {str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}

    problems = [f"missing {k}" for k in RESNET50_STATE_DICT_SHAPES if k not in shapes]
    problems += [
        f"{k} {fmt_shape(want)} has shape {fmt_shape(shapes[k])}"
        for k, want in RESNET50_STATE_DICT_SHAPES.items()
        if k in shapes and shapes[k] != want
    ]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ModelCheckError(
            f"{path}: expected a torchvision ResNet-50 state dict ({len(RESNET50_STATE_DICT_SHAPES)} required keys), "
            f"found {len(shapes)} tensors: {shown}"
        )
    inputs: dict[str, FoundShape] = {"conv1.weight": list(shapes["conv1.weight"])}
    outputs: dict[str, FoundShape] = {k: list(shapes[k]) for k in ("fc.weight", "fc.bias")}
    for name, shape in expected.outputs.items():
        if shape and shape[-1] is not None and shape[-1] != shapes["fc.weight"][0]:
            raise ModelCheckError(
                f"{path}: expected output {name} {fmt_shape(shape)}, found a classifier fc.weight "
                f"{fmt_shape(shapes['fc.weight'])} ({shapes['fc.weight'][0]} classes)"
            )
    kind = f"pytorch state dict, {len(shapes)} tensors"
    return ModelCheckResult("pytorch", [str(path)], "state_dict", inputs, outputs, summary(path, kind, inputs, outputs, []))


def _check_torchscript(path: Path, expected: ModelInterface) -> ModelCheckResult:
    import torch

    if len(expected.inputs) != 1 or len(expected.outputs) != 1:
        raise ConfigError(
            f"checking TorchScript {path} needs exactly one expected input and one output, "
            f"got {len(expected.inputs)} and {len(expected.outputs)}"
        )
    (in_name, in_shape), (out_name, out_shape) = next(iter(expected.inputs.items())), next(iter(expected.outputs.items()))
    if not in_shape or any(d is None for d in in_shape[1:]):
        raise ConfigError(f"checking TorchScript {path} runs a forward pass: input {in_name} needs static dims after batch")
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in torch 2.x, but the int8 download is a TorchScript file.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise unreadable(path, "a TorchScript module (torch.jit.load)", exc) from exc
    try:
        arg_name = module.forward.schema.arguments[1].name
    except (AttributeError, IndexError, RuntimeError):
        arg_name = "input"
    sample = torch.zeros((1, *in_shape[1:]), dtype=torch.float32)
    try:
        with torch.inference_mode():
            result = module(sample)
    except Exception as exc:
        raise ModelCheckError(
            f"{path}: expected a forward pass on input {in_name} {fmt_shape(sample.shape)} to work, found an error "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        ) from exc
    if isinstance(result, Mapping):
        result = next(iter(result.values()))
    elif isinstance(result, tuple | list):
        result = result[0]
    inputs: dict[str, FoundShape] = {arg_name: list(sample.shape)}
    outputs: dict[str, FoundShape] = {"output": list(getattr(result, "shape", ()))}
    if not compatible(out_shape, outputs["output"]):
        raise mismatch(path, "output", out_name, out_shape, outputs)
    kind = "pytorch torchscript, forward pass on zeros"
    return ModelCheckResult("pytorch", [str(path)], "torchscript", inputs, outputs, summary(path, kind, inputs, outputs, []))


def _check_pytorch(paths: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    path = single_file(paths, "pytorch")
    return _check_torchscript(path, expected) if _is_torchscript(path) else _check_state_dict(path, expected)


# --- ncnn ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NcnnLayer:
    kind: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[str, str]


def _ncnn_pair(paths: Sequence[Path]) -> tuple[Path, Path]:
    if len(paths) != 2:
        names = ", ".join(str(p) for p in paths) or "none"
        raise ModelCheckError(f"expected two ncnn files (.param and .bin), found {len(paths)}: {names}")
    by_suffix = {p.suffix: p for p in paths}
    if set(by_suffix) == {".param", ".bin"}:
        return by_suffix[".param"], by_suffix[".bin"]
    return paths[0], paths[1]


def _parse_ncnn_param(path: Path) -> tuple[int, list[_NcnnLayer]]:
    data = path.read_bytes()
    first = data.lstrip().split(b"\n", 1)[0].strip()
    if first != NCNN_MAGIC.encode():
        shown = first.decode("utf-8", "replace")[:40]
        raise ModelCheckError(f"{path}: expected the ncnn magic {NCNN_MAGIC} on line 1, found {shown!r}")
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise unreadable(path, "an ncnn .param text file", exc) from exc
    counts = lines[1].split() if len(lines) > 1 else []
    if len(counts) != 2 or not all(c.isdigit() for c in counts):
        raise ModelCheckError(f"{path}: expected '<layer_count> <blob_count>' on line 2, found {' '.join(counts)[:40]!r}")
    layer_count, blob_count = int(counts[0]), int(counts[1])
    if len(lines) - 2 != layer_count:
        raise ModelCheckError(f"{path}: expected {layer_count} layer lines (line 2), found {len(lines) - 2}")

    layers: list[_NcnnLayer] = []
    produced: set[str] = set()
    for number, line in enumerate(lines[2:], 3):
        tokens = line.split()
        ok = len(tokens) >= 4 and tokens[2].isdigit() and tokens[3].isdigit()
        n_in, n_out = (int(tokens[2]), int(tokens[3])) if ok else (0, 0)
        if not ok or len(tokens) < 4 + n_in + n_out or any("=" not in t for t in tokens[4 + n_in + n_out :]):
            raise ModelCheckError(
                f"{path}: line {number}: expected '<type> <name> <inputs> <outputs> <blobs...> <k=v...>', found {line[:80]!r}"
            )
        bottoms, tops = tuple(tokens[4 : 4 + n_in]), tuple(tokens[4 + n_in : 4 + n_in + n_out])
        unknown = [b for b in bottoms if b not in produced]
        if unknown:
            raise ModelCheckError(
                f"{path}: line {number}: expected layer {tokens[1]} to read blobs produced earlier, "
                f"found unknown {', '.join(unknown)}"
            )
        produced.update(tops)
        params = dict(t.split("=", 1) for t in tokens[4 + n_in + n_out :])
        layers.append(_NcnnLayer(tokens[0], tokens[1], bottoms, tops, params))
    if len(produced) > blob_count:
        raise ModelCheckError(f"{path}: expected at most {blob_count} blobs (line 2), found {len(produced)}")
    return blob_count, layers


def _ncnn_classes(blob: str, producers: Mapping[str, _NcnnLayer]) -> int | None:
    layer = producers.get(blob)
    while layer is not None and layer.kind in _NCNN_SHAPE_KEEPING and layer.bottoms:
        layer = producers.get(layer.bottoms[0])
    if layer is not None and layer.kind == "InnerProduct" and layer.params.get("0", "").isdigit():
        return int(layer.params["0"])
    return None


def _check_ncnn(paths: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    param, weights = _ncnn_pair(paths)
    _, layers = _parse_ncnn_param(param)
    size = weights.stat().st_size
    if size == 0 or size % 4:
        raise ModelCheckError(f"{weights}: expected a non-empty ncnn .bin whose size is a multiple of 4, found {size} bytes")

    input_layers = [layer for layer in layers if layer.kind == "Input"]
    if not input_layers:
        kinds = ", ".join(sorted({layer.kind for layer in layers})) or "none"
        raise ModelCheckError(f"{param}: expected an Input layer, found layer types {kinds}")
    # ncnn blobs are CHW without a batch dimension; Input params are 0=w 1=h 2=c.
    inputs: dict[str, FoundShape] = {}
    in_aliases: dict[str, list[str]] = {}
    for layer in input_layers:
        dims = [layer.params.get(k) for k in ("2", "1", "0")]
        shape = [int(d) if d is not None and d.lstrip("-").isdigit() and int(d) > 0 else None for d in dims]
        for top in layer.tops:
            inputs[top] = None if all(d is None for d in shape) else shape
            in_aliases[top] = [layer.name]
    producers = {top: layer for layer in layers for top in layer.tops}
    consumed = {b for layer in layers for b in layer.bottoms}
    outputs: dict[str, FoundShape] = {}
    out_aliases: dict[str, list[str]] = {}
    for blob, layer in producers.items():
        if blob not in consumed and layer.kind != "Input":
            classes = _ncnn_classes(blob, producers)
            outputs[blob] = None if classes is None else [classes]
            out_aliases[blob] = [layer.name]

    def no_batch(shapes: Mapping[str, Shape], rank: int) -> dict[str, Shape]:
        return {n: s[1:] if len(s) == rank else s for n, s in shapes.items()}

    notes = match_loose(param, "input", no_batch(expected.inputs, 4), inputs, in_aliases)
    notes += match_loose(param, "output", no_batch(expected.outputs, 2), outputs, out_aliases)
    kind = f"ncnn, {len(layers)} layers, {size} weight bytes"
    files = [str(param), str(weights)]
    return ModelCheckResult("ncnn", files, "ncnn", inputs, outputs, summary(param, kind, inputs, outputs, notes))


_CHECKS = {
    "onnx": _check_onnx,
    "tensorflow": _check_tensorflow,
    "tflite": _check_tflite,
    "pytorch": _check_pytorch,
    "ncnn": _check_ncnn,
}


def check_model(*, framework: str, files: Sequence[Path], expected: ModelInterface) -> ModelCheckResult:
    """Open a model with its framework's reader and compare its interface with ``expected``.

    Per framework:

    - ``onnx``: ``onnx.load`` + checker; graph inputs (minus initializers) and outputs by exact name.
    - ``tensorflow``: a frozen GraphDef; expected inputs are Placeholder nodes, expected outputs
      are nodes (``:0`` suffixes are ignored); output shapes come from importing the graph.
    - ``tflite``: interpreter input/output details; a name matches a tensor (or signature key)
      containing it, else the only tensor of the expected shape (noted in the summary).
    - ``pytorch``: a state dict must hold :data:`RESNET50_STATE_DICT_SHAPES`; a TorchScript module
      runs once on zeros of the expected input shape (batch 1) and its output shape is compared.
    - ``ncnn``: ``files`` is the ``.param`` and ``.bin`` pair; magic, counts, layer lines, an Input
      layer, a non-empty ``.bin``; names match loosely as for tflite, shapes without the batch dim.

    Args:
        framework: one of :data:`~imagenet_ops.model.interface.FRAMEWORKS` or a CM alias (``tf``, ``onnxruntime``).
        files: the model file (two files for ncnn).
        expected: the interface the model must offer.

    Returns:
        What was found, with a one-line summary.

    Raises:
        ModelCheckError: missing or unreadable file, a file of another framework, or an interface
            mismatch; the message names the file, what was expected and what was found.
        ConfigError: unknown framework, or ``expected`` describes another framework.
    """
    name = normalize_framework(framework)
    if expected.framework != name:
        raise ConfigError(f"check_model(framework={framework!r}) was given an interface for {expected.framework}")
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise ModelCheckError(f"{path}: expected a model file ({name}), found nothing there")
    result = _CHECKS[name](paths, expected)
    log.info("model check passed: %s", result.summary)
    return result
