"""What a model must offer and what a check found: tensor names and shapes, compared per framework.

:class:`ModelInterface` is the expected side (names mapped to shapes, ``None`` = any size);
:class:`ModelCheckResult` is what :func:`imagenet_ops.model.checks.check_model` found. The
helpers here compare the two and word the errors the same way for every framework: each
:class:`ModelCheckError` names the file, what was expected and what was found.

No framework is imported here; the per-framework readers live in :mod:`imagenet_ops.model.checks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagenet_ops.core.errors import ConfigError, ModelCheckError

FRAMEWORKS = ("onnx", "tensorflow", "tflite", "pytorch", "ncnn")
# CM's aliases for the framework variation group.
FRAMEWORK_ALIASES = {"onnxruntime": "onnx", "tf": "tensorflow"}

Shape = tuple[int | None, ...]
# What a model declares: a static size, a symbolic name (ONNX dim_param) or None (unknown).
FoundShape = list[int | str | None] | None
_TENSOR_INDEX = re.compile(r":\d+$")


def normalize_framework(framework: str) -> str:
    """Map a framework name or CM alias (``tf``, ``onnxruntime``) to one of :data:`FRAMEWORKS`.

    Raises:
        ConfigError: unknown framework.
    """
    name = FRAMEWORK_ALIASES.get(str(framework).strip().lower(), str(framework).strip().lower())
    if name not in FRAMEWORKS:
        raise ConfigError(f"unknown model framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
    return name


def _norm_shape(shape: Iterable[Any]) -> Shape:
    # -1, None, "N" and other symbols all mean "any size"; bools are not sizes.
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape)


@dataclass(frozen=True)
class ModelInterface:
    """What a model must offer: tensor names mapped to shapes (``None`` = any size).

    Lists and ``-1`` are accepted and normalised to tuples and ``None``, so the JSON form from
    :meth:`as_dict` round-trips through :meth:`from_dict`.
    """

    framework: str
    inputs: Mapping[str, Shape]
    outputs: Mapping[str, Shape]

    def __post_init__(self) -> None:
        object.__setattr__(self, "framework", normalize_framework(self.framework))
        object.__setattr__(self, "inputs", {str(k): _norm_shape(v) for k, v in self.inputs.items()})
        object.__setattr__(self, "outputs", {str(k): _norm_shape(v) for k, v in self.outputs.items()})

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInterface:
        return cls(framework=data["framework"], inputs=data["inputs"], outputs=data["outputs"])


@dataclass(frozen=True)
class ModelCheckResult:
    """What :func:`check_model` found in a model that passed.

    ``kind`` says how the file was read (``onnx``, ``graphdef``, ``tflite``, ``state_dict``,
    ``torchscript``, ``ncnn``). For a state dict, ``inputs``/``outputs`` hold the first conv and
    the classifier weights, which fix the input channels and the class count.
    """

    framework: str
    files: list[str]
    kind: str
    inputs: dict[str, FoundShape]
    outputs: dict[str, FoundShape]
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt_shape(shape: Sequence[int | str | None] | None) -> str:
    if shape is None:
        return "[unknown rank]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def fmt_tensors(role: str, tensors: Mapping[str, FoundShape]) -> str:
    if not tensors:
        return f"found no {role}s"
    return f"found {role}s " + ", ".join(f"{name} {fmt_shape(shape)}" for name, shape in tensors.items())


def compatible(expected: Shape, found: FoundShape) -> bool:
    if found is None:
        return True
    if len(expected) != len(found):
        return False
    return all(e is None or not isinstance(f, int) or e == f for e, f in zip(expected, found, strict=True))


def mismatch(path: Path, role: str, name: str, shape: Shape, found: Mapping[str, FoundShape]) -> ModelCheckError:
    return ModelCheckError(f"{path}: expected {role} {name} {fmt_shape(shape)}, {fmt_tensors(role, found)}")


def unreadable(path: Path, what: str, exc: BaseException) -> ModelCheckError:
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ModelCheckError(f"{path}: expected {what}, found an unreadable file ({type(exc).__name__}: {reason})")


def tensor_node_name(name: str) -> str:
    """``softmax_tensor:0`` -> ``softmax_tensor`` (TF graphs name nodes, tensors add ``:<index>``)."""
    return _TENSOR_INDEX.sub("", name)


def match_exact(
    path: Path, role: str, expected: Mapping[str, Shape], found: Mapping[str, FoundShape], *, strip_index: bool = False
) -> None:
    for name, shape in expected.items():
        key = tensor_node_name(name) if strip_index else name
        if key not in found or not compatible(shape, found[key]):
            raise mismatch(path, role, name, shape, found)


def match_loose(
    path: Path,
    role: str,
    expected: Mapping[str, Shape],
    found: Mapping[str, FoundShape],
    aliases: Mapping[str, Sequence[str]],
) -> list[str]:
    """Match by name containment (tensor name or alias); else accept the only tensor of that shape."""
    notes: list[str] = []
    used: set[str] = set()
    for name, shape in expected.items():
        key = tensor_node_name(name)
        by_name = [t for t in found if t not in used and any(key in a for a in (t, *aliases.get(t, ())))]
        fitting = [t for t in by_name if compatible(shape, found[t])]
        if fitting:
            used.add(fitting[0])
            continue
        if by_name:
            raise mismatch(path, role, name, shape, found)
        by_shape = [t for t in found if t not in used and compatible(shape, found[t])]
        if len(by_shape) != 1:
            raise mismatch(path, role, name, shape, found)
        used.add(by_shape[0])
        notes.append(f"{role} {name} matched by shape to {by_shape[0]} {fmt_shape(found[by_shape[0]])}")
    return notes


def single_file(paths: Sequence[Path], framework: str) -> Path:
    if len(paths) != 1:
        names = ", ".join(str(p) for p in paths) or "none"
        raise ModelCheckError(f"expected one {framework} model file, found {len(paths)}: {names}")
    return paths[0]


def summary(path: Path, kind: str, inputs: Mapping[str, FoundShape], outputs: Mapping[str, FoundShape], notes: list[str]) -> str:
    text = f"{path.name}: {kind}; " + "; ".join(
        (
            "inputs " + ", ".join(f"{n} {fmt_shape(s)}" for n, s in inputs.items()),
            "outputs " + ", ".join(f"{n} {fmt_shape(s)}" for n, s in outputs.items()),
        )
    )
    return text + "".join(f"; note: {note}" for note in notes)
