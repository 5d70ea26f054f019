"""The reference's download table for the ResNet-50 variants (CM get-ml-model-resnet50), as data.

``MODEL_SOURCES`` lists every *supported* combination and the file(s) it downloads, with the
reference's mirrors and md5s (for the tflite argmax model, the md5 of the ``.gz`` download). A
combination with no row is rejected before any download (:func:`~imagenet_ops.model.variations.resolve_model_config`)
with a message listing :func:`supported_combinations`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ZENODO_PB = "https://zenodo.org/record/2535873/files/resnet50_v1.pb"


@dataclass(frozen=True)
class RemoteFile:
    """One downloaded file: final name, mirrors in order, accepted md5 of the *download*."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    gunzip: bool = False

    @property
    def download_name(self) -> str:
        return self.filename + ".gz" if self.gunzip else self.filename


@dataclass(frozen=True)
class ModelSource:
    """A supported combination: the selections it needs and what it downloads."""

    when: Mapping[str, Any]
    files: tuple[RemoteFile, ...]


def _src(files: Iterable[RemoteFile], **when: Any) -> ModelSource:
    return ModelSource(when=when, files=tuple(files))


MODEL_SOURCES: tuple[ModelSource, ...] = (
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                (
                    "https://huggingface.co/ctuning/mlperf-inference-resnet50-onnx-fp32-imagenet2012-v1.0/resolve/main/resnet50_v1.onnx",
                ),
                "f6a4da60cd5f084d97efc2c1ddb10beb",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=False,
        huggingface_default=True,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                (
                    "https://zenodo.org/record/4735647/files/resnet50_v1.onnx",
                    "https://armi.in/files/resnet50_v1_op11/resnet50_v1.onnx",
                    "https://storage.googleapis.com/resnet50_assets/resnet50_v1.onnx",
                ),
                "f6a4da60cd5f084d97efc2c1ddb10beb",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=False,
        huggingface_default=False,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.onnx",
                ("https://zenodo.org/record/2592612/files/resnet50_v1.onnx",),
                "a638cf028b5870da29e09ccc2f7182e7",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="8",
        from_tf=False,
        huggingface_default=False,
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1_modified.onnx",
                ("https://drive.google.com/uc?id=15wZ_8Vt12cb10IEBsln8wksD1zGwlbOM&export=download",),
                "04a510152d9eded924883bdfcf85dd4a",
            )
        ],
        framework="onnx",
        precision="fp32",
        opset="11",
        from_tf=True,
        huggingface_default=False,
    ),
    _src(
        [RemoteFile("resnet50_v1.pb", (ZENODO_PB, "https://armi.in/files/resnet50_v1.pb"), "7b94a2da05dd30f6c0af23a46bc08886")],
        framework="tensorflow",
        precision="fp32",
    ),
    _src(
        [
            RemoteFile(
                "resnet50-19c8e357.pth",
                ("https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth",),
                "9e9c86b324d80e65229fab49b8d9a8e8",
            )
        ],
        framework="pytorch",
        precision="fp32",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_INT8bit_quantized.pt",
                ("https://zenodo.org/record/4589637/files/resnet50_INT8bit_quantized.pt",),
                "6893ea9769b0afce65bb0ddf002f4438",
            )
        ],
        framework="pytorch",
        precision="int8",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.tflite",
                ("https://www.dropbox.com/s/cvv2zlfo80h54uz/resnet50_v1.tflite.gz?dl=1",),
                "92b5ae497e0de5c2d487507953b6e5cc",
                gunzip=True,
            )
        ],
        framework="tflite",
        precision="fp32",
        model_output="argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.no-argmax.tflite",
                ("https://www.dropbox.com/s/vhuqo0wc39lky0a/resnet50_v1.no-argmax.tflite?dl=1",),
                "53e81f9f9b459ecfb6d64add3da91564",
            )
        ],
        framework="tflite",
        precision="fp32",
        model_output="no-argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_quant_full_mlperf_edgetpu.tflite",
                ("https://zenodo.org/record/8234946/files/resnet50_quant_full_mlperf_edgetpu.tflite?download=1",),
                "a657cf1f97545aefd058c1c718cc0e17",
            )
        ],
        framework="tflite",
        precision="int8",
        model_output="no-argmax",
    ),
    _src(
        [
            RemoteFile(
                "resnet50_v1.bin",
                ("https://zenodo.org/record/8073420/files/resnet50_v1.bin?download=1",),
                "0360777ab2178a65a8f78c35a7d619e0",
            ),
            RemoteFile(
                "resnet50_v1.param",
                ("https://zenodo.org/record/8073420/files/resnet50_v1.param?download=",),
                "f9ba6c4d7f66348e6d24c06bfe3f4ae8",
            ),
        ],
        framework="ncnn",
        precision="fp32",
    ),
)


def matches(source: ModelSource, sel: Mapping[str, Any]) -> bool:
    """True when the selections ``sel`` have every value the source's row needs."""
    return all(sel.get(k) == v for k, v in source.when.items())


def describe(when: Mapping[str, Any]) -> str:
    """The CM tag string of a row's selections (``_onnx,_fp32,_opset-11``)."""
    parts = []
    for k, v in when.items():
        if isinstance(v, bool):
            if v:
                parts.append(f"_{k.replace('_', '-') if k != 'huggingface_default' else k}")
        else:
            parts.append(f"_opset-{v}" if k == "opset" else f"_{v}")
    return ",".join(parts)


def supported_combinations() -> list[str]:
    """CM tag strings of every supported combination (the reference's download table)."""
    return [describe(s.when) for s in MODEL_SOURCES]


def model_table_listing() -> list[dict[str, Any]]:
    """Every supported combination with URLs, file names and md5s (``model --list``)."""
    rows = []
    for s in MODEL_SOURCES:
        rows.append(
            {
                "variations": describe(s.when),
                "files": [
                    {
                        "file": f.filename,
                        "download": f.download_name,
                        "urls": list(f.urls),
                        "md5": f.md5,
                        "md5_of": "the .gz download" if f.gunzip else "the file",
                    }
                    for f in s.files
                ],
            }
        )
    return rows
