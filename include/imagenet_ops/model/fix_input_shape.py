"""Give a frozen TF graph a static input shape (CM ``tensorflow,fix-input-shape``).

CM runs krai's ``fix_input_shape.py``: it replaces the ``input_tensor`` placeholder
([?,224,224,3]) by one of shape [1,224,224,3], writes the graph with ``_output_shapes``, then
reads it back and drops the first two nodes to get rid of a stray duplicate placeholder its
import created. Here the node is replaced in place while copying, so no duplicate ever exists,
and the result is written once, atomically, next to ``dest``. The source file is only read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ConfigError, ModelCheckError
from imagenet_ops.model.checks import load_graph_def
from imagenet_ops.model.interface import tensor_node_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FixInputShapeResult:
    """What :func:`fix_input_shape` wrote: the fixed graph, its input and node count, its sha256."""

    src: str
    dest: str
    input_name: str
    shape: list[int]
    nodes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_replaceable(src: Path, node: Any, shape: list[int]) -> None:
    """Refuse to change a static image size or rank: that would not be a fix but another model."""
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return
    dims = [d.size for d in node.attr["shape"].shape.dim]
    fixed = "[" + ",".join(str(d) for d in shape) + "]"
    found = "[" + ",".join("?" if d < 0 else str(d) for d in dims) + "]"
    if len(dims) != len(shape) or any(d >= 0 and d != want for d, want in zip(dims[1:], shape[1:], strict=True)):
        raise ModelCheckError(
            f"{src}: expected input {node.name} to be compatible with {fixed} (any batch), found a placeholder of shape {found}"
        )


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fix_input_shape(
    *,
    src: Path,
    dest: Path,
    input_name: str = "input_tensor",
    batch: int = 1,
    height: int = 224,
    width: int = 224,
    channels: int = 3,
) -> FixInputShapeResult:
    """Copy a frozen GraphDef, making ``input_name`` a Placeholder of static shape [batch,height,width,channels].

    Every other node is copied unchanged (stale ``_output_shapes`` dropped); the graph is
    imported into a fresh ``tf.Graph`` (which checks that it still type- and shape-checks) and
    written with ``add_shapes=True`` so every node carries ``_output_shapes``. The placeholder
    keeps its dtype (float32 for the MLPerf ResNet-50).

    Args:
        src: the frozen ``.pb``; never modified.
        dest: where the fixed ``.pb`` goes (written to a temporary sibling, then renamed).
        input_name: the placeholder node (a ``:0`` tensor suffix is ignored).
        batch, height, width, channels: the static NHWC shape.

    Returns:
        Paths, input name, shape, node count and sha256 of the written graph.

    Raises:
        ModelCheckError: ``src`` is not a GraphDef, has no node ``input_name``, has a static
            image size other than the requested one, or does not import with the new shape.
        ConfigError: a non-positive dimension, or ``dest`` is ``src``.
    """
    src, dest = Path(src), Path(dest)
    shape = [batch, height, width, channels]
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
        raise ConfigError(f"fix_input_shape needs positive integer dims, got batch/height/width/channels {shape}")
    if dest.resolve() == src.resolve():
        raise ConfigError(f"fix_input_shape writes a new file; dest {dest} is the source itself")
    graph_def = load_graph_def(src)
    name = tensor_node_name(input_name)
    matches = [n for n in graph_def.node if n.name == name]
    if not matches:
        placeholders = ", ".join(n.name for n in graph_def.node if n.op == "Placeholder") or "none"
        raise ModelCheckError(
            f"{src}: expected a node named {name} to fix, found placeholders {placeholders} ({len(graph_def.node)} nodes)"
        )
    original = matches[0]
    _check_replaceable(src, original, shape)

    from imagenet_ops.core.native_logs import import_tensorflow

    tf = import_tensorflow()

    dtype = (
        original.attr["dtype"].type if original.op == "Placeholder" and "dtype" in original.attr else tf.float32.as_datatype_enum
    )
    fixed = tf.compat.v1.GraphDef()
    fixed.versions.CopyFrom(graph_def.versions)
    fixed.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        copy = fixed.node.add()
        if node.name == name:
            copy.name, copy.op = name, "Placeholder"
            copy.attr["dtype"].type = dtype
            copy.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
        else:
            copy.CopyFrom(node)
            if "_output_shapes" in copy.attr:  # stale for the old input shape; regenerated below
                del copy.attr["_output_shapes"]

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(fixed, name="")
    except Exception as exc:  # an op rejecting the new shape or dtype
        reason = " ".join(str(exc).split())[:300]
        raise ModelCheckError(
            f"{src}: expected the graph to import with {name} fixed to {shape}, found an error: {reason}"
        ) from exc
    out = graph.as_graph_def(add_shapes=True)
    data = out.SerializeToString(deterministic=True)
    _write_atomically(dest, data)
    result = FixInputShapeResult(
        src=str(src), dest=str(dest), input_name=name, shape=shape, nodes=len(out.node), sha256=hashlib.sha256(data).hexdigest()
    )
    log.info("fixed %s of %s to %s: %d nodes written to %s", name, src, shape, result.nodes, dest)
    return result
