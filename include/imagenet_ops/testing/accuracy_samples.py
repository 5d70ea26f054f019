"""Published pairs for the accuracy check, made in-process: colour-reading variants and colour-pattern sets.

:func:`write_model_files` writes every sample model under its download name (the PyTorch state
dict complete, so the library's ResNet-50 loads it); :func:`publish_variant` publishes one variant
through ``resnet50_model``'s own pipeline from a mirror serving them; :func:`publish_set` publishes
a preprocessed set of :mod:`~imagenet_ops.testing.pattern_samples` images through
``imagenet_preprocessed``'s pipeline. Nothing downloads from outside 127.0.0.1.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MODEL_FILES = (
    "resnet50_v1.onnx",
    "resnet50_v1_modified.onnx",
    "resnet50_v1.pb",
    "resnet50_v1.tflite.gz",
    "resnet50_v1.no-argmax.tflite",
    "resnet50-19c8e357.pth",
    "resnet50_INT8bit_quantized.pt",
    "resnet50_v1.param",
    "resnet50_v1.bin",
)


def write_model_files(root: Path, *, full_state_dict: bool = True) -> dict[str, str]:
    """Every sample model under its download name in ``root``; returns ``md5_by_file`` for the model form.

    ``full_state_dict=False`` writes the PyTorch state dict with only the keys the load check reads
    (13 MB instead of 100 MB: enough for ``resnet50_model``, not for the accuracy check).
    """
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.testing import model_samples as ms

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ms.make_onnx(root / "resnet50_v1.onnx", opset=11, argmax=True)
    ms.make_onnx(root / "resnet50_v1_modified.onnx", opset=11, argmax=False, layout="NHWC")
    ms.make_tf_frozen_graph(root / "resnet50_v1.pb", argmax=True)
    tflite = ms.make_tflite(root / "argmax.tflite", argmax=True)
    (root / "resnet50_v1.tflite.gz").write_bytes(gzip.compress(tflite.read_bytes(), mtime=0))
    tflite.unlink()
    ms.make_tflite(root / "resnet50_v1.no-argmax.tflite", argmax=False)
    make_state_dict = ms.make_resnet50_state_dict if full_state_dict else ms.make_torch_state_dict
    make_state_dict(root / "resnet50-19c8e357.pth")
    ms.make_torchscript(root / "resnet50_INT8bit_quantized.pt")
    ms.make_ncnn(root / "resnet50_v1.param", root / "resnet50_v1.bin")
    return {name.removesuffix(".gz"): file_digests(root / name).md5 for name in MODEL_FILES}


def publish_variant(tags: str, *, mirror: str, md5_by_file: Mapping[str, str], sink_root: str, work_dir: Path) -> str:
    """Publish the variant of ``tags`` (e.g. ``_tflite,_no-argmax``) under ``sink_root``; returns its folder."""
    from imagenet_ops.core.sinks import open_sink
    from imagenet_ops.model import DECLARATION as MODEL
    from imagenet_ops.model.pipeline import build_model

    (job,) = MODEL.resolve_job(
        {"variants": [tags], "mirror": mirror, "md5_by_file": dict(md5_by_file)},
        sink_uri=sink_root,
        conn_id=None,
        work_dir=str(work_dir),
    )
    build_model(config=job.config, sink=open_sink(job.sink_uri), work_dir=Path(job.work_dir))
    return job.sink_uri


def publish_onnx_variant(root: Path, *, make: Callable[[Path], Path] | None = None) -> str:
    """The default ONNX variant, published through ``resnet50_model``'s pipeline from a mirror on 127.0.0.1.

    ``make`` writes the file (default: the small colour-reading ONNX sample; the bench passes
    ``make_resnet50_onnx``). Only that file is built and served; returns the variant's folder.
    """
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.testing import model_samples as ms
    from imagenet_ops.testing.devserver import DevServer

    root = Path(root)
    model = (make or ms.make_onnx)(root / "www" / "resnet50_v1.onnx")
    with DevServer(root / "www") as server:
        return publish_variant(
            "_onnx",
            mirror=server.base_url,
            md5_by_file={model.name: file_digests(model).md5},
            sink_root=str(root / "models"),
            work_dir=root / "work",
        )


def publish_set(
    output: str,
    labels: Mapping[str, int],
    *,
    work_dir: Path,
    tags: str = "",
    options: Mapping[str, Any] | None = None,
    more_labels: int = 0,
) -> str:
    """Publish a validation set of ``labels``' colour images (``name -> class``) at ``output``; returns ``output``.

    ``tags`` / ``options`` are the preprocessed form's (``_NHWC``, ``_pytorch`` …); the size is the image count.
    ``more_labels`` lines of images not in the set follow in ``val_map.txt``, as in the aux ``val.txt``
    a subset is labelled from (50,000 lines whatever the size).
    """
    from imagenet_ops.preprocessed import DECLARATION as PREPROCESSED
    from imagenet_ops.preprocessed.pipeline import build_preprocessed
    from imagenet_ops.testing.pattern_samples import write_pattern_folder

    folder = write_pattern_folder(Path(work_dir) / "images", labels)
    if more_labels:
        with (folder / "val_map.txt").open("a", encoding="utf-8") as fh:
            fh.writelines(f"ILSVRC2012_val_{len(labels) + i:08d}.JPEG {i % 1000}\n" for i in range(1, more_labels + 1))
    params = {"variations": tags, "size": len(labels), "val_map": str(folder / "val_map.txt"), "chunks": 1, **(options or {})}
    job = PREPROCESSED.resolve_job(params, sink_uri=output, conn_id=None, work_dir=str(work_dir))
    build_preprocessed(
        config=job.config,
        source=str(folder),
        output=output,
        val_map=folder / "val_map.txt",
        workers=1,
        work_dir=Path(work_dir) / "scratch",
    )
    return output
