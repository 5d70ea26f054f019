"""check_model on real (tiny) models of every framework: round trips, wrong files, wrong interfaces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ConfigError, ModelCheckError, ValidationError
from imagenet_ops.model.checks import RESNET50_STATE_DICT_SHAPES, ModelInterface, check_model
from imagenet_ops.testing import model_samples as ms

ONNX = ModelInterface("onnx", {"input_tensor:0": (None, 3, 224, 224)}, {"softmax_tensor:0": (None, 1001), "ArgMax:0": (None,)})
ONNX_NOARGMAX = ModelInterface("onnx", {"input_tensor:0": (None, 3, 224, 224)}, {"softmax_tensor:0": (None, 1001)})
ONNX_FROM_TF = ModelInterface("onnx", {"input_tensor": (None, 224, 224, 3)}, {"softmax_tensor": (None, 1001)})
TF = ModelInterface("tensorflow", {"input_tensor": (None, 224, 224, 3)}, {"softmax_tensor": (None, 1001), "ArgMax": (None,)})
TF_NOARGMAX = ModelInterface("tf", {"input_tensor:0": (None, 224, 224, 3)}, {"softmax_tensor:0": (None, 1001)})
TFLITE = ModelInterface("tflite", {"input_tensor": (1, 224, 224, 3)}, {"softmax_tensor": (1, 1001)})
TFLITE_ARGMAX = ModelInterface("tflite", {"input_tensor": (1, 224, 224, 3)}, {"ArgMax": (1,), "softmax_tensor": (1, 1001)})
TORCH = ModelInterface("pytorch", {"input_tensor:0": (None, 3, 224, 224)}, {"output": (None, 1000)})
NCNN = ModelInterface("ncnn", {"input_tensor:0": (None, 3, 224, 224)}, {"softmax_tensor:0": (None, 1001)})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Every sample model, built once for the module."""
    d = tmp_path_factory.mktemp("models")
    return {
        "onnx": [ms.make_onnx(d / "resnet50_v1.onnx")],
        "onnx-op8": [ms.make_onnx(d / "resnet50_v1_op8.onnx", opset=8, argmax=False)],
        "onnx-from-tf": [ms.make_onnx(d / "resnet50_v1_modified.onnx", argmax=False, layout="NHWC")],
        "tf": [ms.make_tf_frozen_graph(d / "resnet50_v1.pb")],
        "tf-noargmax": [ms.make_tf_frozen_graph(d / "resnet50_v1_noargmax.pb", argmax=False)],
        "tflite": [ms.make_tflite(d / "resnet50_v1.tflite", argmax=True)],
        "tflite-noargmax": [ms.make_tflite(d / "resnet50_v1.no-argmax.tflite", argmax=False)],
        "state-dict": [ms.make_torch_state_dict(d / "resnet50-19c8e357.pth")],
        "torchscript": [ms.make_torchscript(d / "resnet50_INT8bit_quantized.pt")],
        "ncnn": list(ms.make_ncnn(d / "resnet50_v1.param", d / "resnet50_v1.bin")),
    }


def _copy(src: Path, dest: Path, data: bytes | None = None) -> Path:
    dest.write_bytes(src.read_bytes() if data is None else data)
    return dest


def _truncated(src: Path, dest: Path) -> Path:
    return _copy(src, dest, src.read_bytes()[: src.stat().st_size // 2])


ROUND_TRIPS = [
    ("onnx", "onnx", ONNX, "onnx"),
    ("onnx-op8", "onnxruntime", ONNX_NOARGMAX, "onnx"),
    ("onnx-from-tf", "onnx", ONNX_FROM_TF, "onnx"),
    ("tf", "tensorflow", TF, "graphdef"),
    ("tf-noargmax", "tf", TF_NOARGMAX, "graphdef"),
    ("tflite", "tflite", TFLITE_ARGMAX, "tflite"),
    ("tflite-noargmax", "tflite", TFLITE, "tflite"),
    ("state-dict", "pytorch", TORCH, "state_dict"),
    ("torchscript", "pytorch", TORCH, "torchscript"),
    ("ncnn", "ncnn", NCNN, "ncnn"),
]


@pytest.mark.parametrize(("sample", "framework", "expected", "kind"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_every_sample_passes_its_interface(models, sample, framework, expected, kind):
    result = check_model(framework=framework, files=models[sample], expected=expected)
    assert result.kind == kind
    assert result.framework == expected.framework
    assert result.files == [str(p) for p in models[sample]]
    assert result.summary.startswith(models[sample][0].name)
    json.dumps(result.as_dict())  # XCom-ready


def test_found_shapes_are_reported(models):
    onnx = check_model(framework="onnx", files=models["onnx"], expected=ONNX)
    assert onnx.inputs == {"input_tensor:0": ["N", 3, 224, 224]}
    assert onnx.outputs == {"softmax_tensor:0": ["N", 1001], "ArgMax:0": ["N"]}
    # opset 8 lists initializers as graph inputs; they are not model inputs.
    assert check_model(framework="onnx", files=models["onnx-op8"], expected=ONNX_NOARGMAX).inputs == {
        "input_tensor:0": ["N", 3, 224, 224]
    }
    tf = check_model(framework="tensorflow", files=models["tf"], expected=TF)
    assert tf.inputs == {"input_tensor": [None, 224, 224, 3]}
    assert tf.outputs == {"softmax_tensor": [None, 1001], "ArgMax": [None]}
    tflite = check_model(framework="tflite", files=models["tflite"], expected=TFLITE_ARGMAX)
    assert tflite.inputs == {"input_tensor": [1, 224, 224, 3]}
    assert tflite.outputs == {"ArgMax": [1], "softmax_tensor": [1, 1001]}
    torchscript = check_model(framework="pytorch", files=models["torchscript"], expected=TORCH)
    assert torchscript.outputs == {"output": [1, 1000]}
    state = check_model(framework="pytorch", files=models["state-dict"], expected=TORCH)
    assert state.outputs == {"fc.weight": [1000, 2048], "fc.bias": [1000]}


def test_dynamic_dims_accept_a_fixed_batch(models):
    # The ONNX batch is the symbol N, so a batch of 8 is accepted (the model takes it at run time).
    fixed = ModelInterface("onnx", {"input_tensor:0": (8, 3, 224, 224)}, {"softmax_tensor:0": (8, 1001)})
    check_model(framework="onnx", files=models["onnx"], expected=fixed)


def test_tflite_and_ncnn_match_by_shape_when_names_differ(models):
    renamed = ModelInterface("tflite", {"images": (1, 224, 224, 3)}, {"probabilities": (1, 1001)})
    result = check_model(framework="tflite", files=models["tflite"], expected=renamed)
    assert "input images matched by shape to input_tensor [1,224,224,3]" in result.summary
    assert "output probabilities matched by shape to softmax_tensor [1,1001]" in result.summary
    ncnn = check_model(framework="ncnn", files=models["ncnn"][::-1], expected=NCNN)  # order does not matter
    assert ncnn.inputs == {"in0": [3, 224, 224]} and ncnn.outputs == {"out0": [1001]}
    assert "matched by shape to in0" in ncnn.summary


WRONG_FRAMEWORK = [
    ("tf", "onnx", ONNX, "expected an ONNX model"),
    ("onnx", "tflite", TFLITE, "expected a TFLite flatbuffer model"),
    ("onnx", "tensorflow", TF, "expected .*(GraphDef|input input_tensor)"),
    ("tflite", "onnx", ONNX, "expected an ONNX model"),
    ("tflite", "tensorflow", TF, "expected .*(GraphDef|input input_tensor)"),
    ("tf", "pytorch", TORCH, "expected a PyTorch state dict"),
    ("onnx", "pytorch", TORCH, "expected a PyTorch state dict"),
    ("state-dict", "onnx", ONNX, "expected an ONNX model"),
    ("torchscript", "tflite", TFLITE, "expected a TFLite flatbuffer model"),
    ("tf", "ncnn", NCNN, "expected two ncnn files"),
]


@pytest.mark.parametrize(
    ("sample", "framework", "expected", "match"), WRONG_FRAMEWORK, ids=[f"{r[0]}-as-{r[1]}" for r in WRONG_FRAMEWORK]
)
def test_a_file_of_another_framework_is_a_model_check_error(models, sample, framework, expected, match):
    path = models[sample][0]
    with pytest.raises(ModelCheckError, match=match) as info:
        check_model(framework=framework, files=[path], expected=expected)
    assert str(path) in str(info.value) or "ncnn" in str(info.value)
    assert "found" in str(info.value)


def test_pb_given_as_ncnn_pair_fails_on_the_magic(models):
    with pytest.raises(ModelCheckError, match=r"resnet50_v1\.pb: expected the ncnn magic 7767517 on line 1, found"):
        check_model(framework="ncnn", files=[models["tf"][0], models["ncnn"][1]], expected=NCNN)


TRUNCATED = [
    ("onnx", "onnx", ONNX, "expected an ONNX model, found an unreadable file"),
    ("tf", "tensorflow", TF, "expected a frozen TensorFlow GraphDef"),
    ("tflite", "tflite", TFLITE, "expected a TFLite flatbuffer model, found an unreadable file"),
    ("state-dict", "pytorch", TORCH, "expected a PyTorch state dict .*found an unreadable file"),
    ("torchscript", "pytorch", TORCH, "expected a PyTorch state dict .*found an unreadable file"),
]


@pytest.mark.parametrize(("sample", "framework", "expected", "match"), TRUNCATED, ids=[r[0] for r in TRUNCATED])
def test_truncated_download_is_a_model_check_error(models, tmp_path, sample, framework, expected, match):
    path = _truncated(models[sample][0], tmp_path / models[sample][0].name)
    with pytest.raises(ModelCheckError, match=match) as info:
        check_model(framework=framework, files=[path], expected=expected)
    assert str(info.value).startswith(str(path))


def test_model_check_error_is_a_validation_error():
    assert issubclass(ModelCheckError, ValidationError)


# --- wrong interfaces ---------------------------------------------------------------------------


def test_onnx_wrong_input_name_names_expected_and_found(models):
    expected = ModelInterface("onnx", {"data": (1, 3, 224, 224)}, {"softmax_tensor:0": (None, 1001)})
    with pytest.raises(
        ModelCheckError,
        match=re.escape("resnet50_v1.onnx: expected input data [1,3,224,224], found inputs input_tensor:0 [N,3,224,224]"),
    ):
        check_model(framework="onnx", files=models["onnx"], expected=expected)


def test_onnx_layout_mismatch(models):
    # The from-tf file is NHWC; asking for the NCHW interface fails on the input.
    with pytest.raises(
        ModelCheckError, match=re.escape("expected input input_tensor:0 [?,3,224,224], found inputs input_tensor [N,224,224,3]")
    ):
        check_model(framework="onnx", files=models["onnx-from-tf"], expected=ONNX_NOARGMAX)


def test_onnx_wrong_class_count(models):
    expected = ModelInterface("onnx", {"input_tensor:0": (None, 3, 224, 224)}, {"softmax_tensor:0": (None, 1000)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected output softmax_tensor:0 [?,1000], found outputs softmax_tensor:0 [N,1001]")
    ):
        check_model(framework="onnx", files=models["onnx"], expected=expected)


def test_onnx_missing_argmax_output(models):
    with pytest.raises(ModelCheckError, match=re.escape("expected output ArgMax:0 [?], found outputs softmax_tensor:0 [N,1001]")):
        check_model(framework="onnx", files=models["onnx-op8"], expected=ONNX)


def test_tf_wrong_input_shape(models):
    expected = ModelInterface("tensorflow", {"input_tensor": (None, 3, 224, 224)}, {"softmax_tensor": (None, 1001)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected input input_tensor [?,3,224,224], found inputs input_tensor [?,224,224,3]")
    ):
        check_model(framework="tensorflow", files=models["tf"], expected=expected)


def test_tf_missing_output_lists_graph_outputs(models):
    with pytest.raises(ModelCheckError, match=re.escape("expected output ArgMax [?], found outputs softmax_tensor [?,1001]")):
        check_model(framework="tensorflow", files=models["tf-noargmax"], expected=TF)


def test_tf_wrong_class_count_from_imported_shapes(models):
    expected = ModelInterface("tensorflow", {"input_tensor": (None, 224, 224, 3)}, {"softmax_tensor": (None, 1000)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected output softmax_tensor [?,1000], found outputs softmax_tensor [?,1001]")
    ):
        check_model(framework="tensorflow", files=models["tf"], expected=expected)


def test_tflite_name_match_with_wrong_shape_is_not_rescued_by_shape(models):
    expected = ModelInterface("tflite", {"input_tensor": (1, 3, 224, 224)}, {"softmax_tensor": (1, 1001)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected input input_tensor [1,3,224,224], found inputs input_tensor [1,224,224,3]")
    ):
        check_model(framework="tflite", files=models["tflite"], expected=expected)


def test_tflite_no_tensor_of_the_expected_shape(models):
    expected = ModelInterface("tflite", {"input_tensor": (1, 224, 224, 3)}, {"probabilities": (1, 1000)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected output probabilities [1,1000], found outputs softmax_tensor [1,1001]")
    ):
        check_model(framework="tflite", files=models["tflite-noargmax"], expected=expected)


def test_state_dict_missing_and_misshapen_keys(models, tmp_path):
    import torch

    state = torch.load(models["state-dict"][0], weights_only=True)
    del state["layer3.5.conv3.weight"]
    state["fc.weight"], state["fc.bias"] = torch.zeros(1001, 2048), torch.zeros(1001)
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # wrapped, DataParallel prefix
    with pytest.raises(ModelCheckError) as info:
        check_model(framework="pytorch", files=[path], expected=TORCH)
    message = str(info.value)
    assert message.startswith(
        f"{path}: expected a torchvision ResNet-50 state dict ({len(RESNET50_STATE_DICT_SHAPES)} required keys)"
    )
    assert "missing layer3.5.conv3.weight" in message
    assert "fc.weight [1000,2048] has shape [1001,2048]" in message


def test_state_dict_of_another_model(tmp_path):
    import torch

    path = tmp_path / "tiny.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    with pytest.raises(
        ModelCheckError, match=r"expected a torchvision ResNet-50 state dict .*found 2 tensors: missing conv1\.weight"
    ):
        check_model(framework="pytorch", files=[path], expected=TORCH)


def test_state_dict_against_a_1001_class_interface(models):
    expected = ModelInterface("pytorch", {"input": (None, 3, 224, 224)}, {"output": (None, 1001)})
    with pytest.raises(
        ModelCheckError, match=re.escape("expected output output [?,1001], found a classifier fc.weight [1000,2048]")
    ):
        check_model(framework="pytorch", files=models["state-dict"], expected=expected)


def test_torchscript_output_shape_mismatch(models):
    expected = ModelInterface("pytorch", {"input_tensor:0": (None, 3, 224, 224)}, {"output": (None, 1001)})
    with pytest.raises(ModelCheckError, match=re.escape("expected output output [?,1001], found outputs output [1,1000]")):
        check_model(framework="pytorch", files=models["torchscript"], expected=expected)


def test_torchscript_forward_failure(models):
    expected = ModelInterface("pytorch", {"input_tensor:0": (None, 4, 224, 224)}, {"output": (None, 1000)})
    with pytest.raises(
        ModelCheckError, match=r"expected a forward pass on input input_tensor:0 \[1,4,224,224\] to work, found an error"
    ):
        check_model(framework="pytorch", files=models["torchscript"], expected=expected)


def test_torchscript_needs_static_input_dims(models):
    expected = ModelInterface("pytorch", {"x": (None, 3, None, None)}, {"output": (None, 1000)})
    with pytest.raises(ConfigError, match="needs static dims after batch"):
        check_model(framework="pytorch", files=models["torchscript"], expected=expected)


def _ncnn_variant(models, tmp_path: Path, edit) -> list[Path]:
    param, weights = models["ncnn"]
    lines = param.read_text().splitlines()
    new_param = tmp_path / "variant.param"
    new_param.write_text("\n".join(edit(lines)) + "\n")
    return [new_param, _copy(weights, tmp_path / "variant.bin")]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda lines: ["7767518", *lines[1:]], "expected the ncnn magic 7767517 on line 1, found '7767518'"),
        (lambda lines: [lines[0], "six 6", *lines[2:]], "expected '<layer_count> <blob_count>' on line 2, found 'six 6'"),
        (lambda lines: [lines[0], "7 7", *lines[2:]], "expected 7 layer lines \\(line 2\\), found 6"),
        (lambda lines: lines[:-1], "expected 6 layer lines \\(line 2\\), found 5"),
        (lambda lines: [lines[0], "5 6", *lines[3:]], "expected layer conv_0 to read blobs produced earlier, found unknown in0"),
        (lambda lines: [*lines[:2], "Input in0 0 1", *lines[3:]], "line 3: expected '<type> <name> <inputs> <outputs>"),
    ],
    ids=["magic", "counts", "too-few-lines", "truncated", "no-input", "short-line"],
)
def test_ncnn_param_problems(models, tmp_path, edit, match):
    files = _ncnn_variant(models, tmp_path, edit)
    with pytest.raises(ModelCheckError, match=match) as info:
        check_model(framework="ncnn", files=files, expected=NCNN)
    assert str(info.value).startswith(str(files[0]))


def test_ncnn_needs_an_input_layer(models, tmp_path):
    def without_input(lines):
        return [lines[0], "1 1", "Softmax softmax_0 0 1 out0 0=0"]

    with pytest.raises(ModelCheckError, match="expected an Input layer, found layer types Softmax"):
        check_model(framework="ncnn", files=_ncnn_variant(models, tmp_path, without_input), expected=NCNN)


def test_ncnn_wrong_classes(models):
    expected = ModelInterface("ncnn", {"in0": (1, 3, 224, 224)}, {"out0": (1, 1000)})
    with pytest.raises(ModelCheckError, match=re.escape("expected output out0 [1000], found outputs out0 [1001]")):
        check_model(framework="ncnn", files=models["ncnn"], expected=expected)


@pytest.mark.parametrize("data", [b"", b"\x00" * 7], ids=["empty", "unaligned"])
def test_ncnn_bad_bin(models, tmp_path, data):
    weights = _copy(models["ncnn"][1], tmp_path / "w.bin", data)
    with pytest.raises(ModelCheckError, match=f"w.bin: expected a non-empty ncnn .bin .*found {len(data)} bytes"):
        check_model(framework="ncnn", files=[models["ncnn"][0], weights], expected=NCNN)


# --- arguments ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelCheckError, match=r"nope\.onnx: expected a model file \(onnx\), found nothing there"):
        check_model(framework="onnx", files=[tmp_path / "nope.onnx"], expected=ONNX)


def test_wrong_number_of_files(models):
    with pytest.raises(ModelCheckError, match="expected one onnx model file, found 2"):
        check_model(framework="onnx", files=[*models["onnx"], *models["tf"]], expected=ONNX)


def test_unknown_or_mismatched_framework(models):
    with pytest.raises(ConfigError, match="unknown model framework 'caffe'"):
        check_model(framework="caffe", files=models["onnx"], expected=ONNX)
    with pytest.raises(ConfigError, match="was given an interface for tensorflow"):
        check_model(framework="onnx", files=models["onnx"], expected=TF)


def test_interface_normalises_and_round_trips():
    interface = ModelInterface("TF", {"input_tensor": [-1, 224, 224, 3]}, {"softmax_tensor": ["N", 1001]})
    assert interface.framework == "tensorflow"
    assert interface.inputs == {"input_tensor": (None, 224, 224, 3)}
    assert interface.outputs == {"softmax_tensor": (None, 1001)}
    data = json.loads(json.dumps(interface.as_dict()))
    assert data == {
        "framework": "tensorflow",
        "inputs": {"input_tensor": [None, 224, 224, 3]},
        "outputs": {"softmax_tensor": [None, 1001]},
    }
    assert ModelInterface.from_dict(data) == interface
