"""ResNet-50 variants: the tables against the reference, resolution, env, and every framework end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_ops.core.errors import ChecksumMismatch, ConfigError
from imagenet_ops.core.sinks import open_sink
from imagenet_ops.model.pipeline import build_model
from imagenet_ops.model.sources import model_table_listing, supported_combinations
from imagenet_ops.model.variations import MODEL_TABLE, ModelJob, model_env, resolve_job, resolve_model_config

# (variations, file, first URL, md5) straight from the reference's download table (cm_spec.md §2).
REFERENCE = [
    (
        "_onnx,_fp32,_opset-11",
        "resnet50_v1.onnx",
        "https://zenodo.org/record/4735647/files/resnet50_v1.onnx",
        "f6a4da60cd5f084d97efc2c1ddb10beb",
    ),
    (
        "_onnx,_fp32,_opset-8",
        "resnet50_v1.onnx",
        "https://zenodo.org/record/2592612/files/resnet50_v1.onnx",
        "a638cf028b5870da29e09ccc2f7182e7",
    ),
    (
        "_onnx,_fp32,_opset-11,_huggingface_default",
        "resnet50_v1.onnx",
        "https://huggingface.co/ctuning/mlperf-inference-resnet50-onnx-fp32-imagenet2012-v1.0/resolve/main/resnet50_v1.onnx",
        "f6a4da60cd5f084d97efc2c1ddb10beb",
    ),
    (
        "_onnx,_fp32,_opset-11,_from-tf",
        "resnet50_v1_modified.onnx",
        "https://drive.google.com/uc?id=15wZ_8Vt12cb10IEBsln8wksD1zGwlbOM&export=download",
        "04a510152d9eded924883bdfcf85dd4a",
    ),
    (
        "_tensorflow,_fp32",
        "resnet50_v1.pb",
        "https://zenodo.org/record/2535873/files/resnet50_v1.pb",
        "7b94a2da05dd30f6c0af23a46bc08886",
    ),
    (
        "_pytorch,_fp32",
        "resnet50-19c8e357.pth",
        "https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth",
        "9e9c86b324d80e65229fab49b8d9a8e8",
    ),
    (
        "_pytorch,_int8",
        "resnet50_INT8bit_quantized.pt",
        "https://zenodo.org/record/4589637/files/resnet50_INT8bit_quantized.pt",
        "6893ea9769b0afce65bb0ddf002f4438",
    ),
    (
        "_tflite,_fp32,_argmax",
        "resnet50_v1.tflite",
        "https://www.dropbox.com/s/cvv2zlfo80h54uz/resnet50_v1.tflite.gz?dl=1",
        "92b5ae497e0de5c2d487507953b6e5cc",
    ),
    (
        "_tflite,_fp32,_no-argmax",
        "resnet50_v1.no-argmax.tflite",
        "https://www.dropbox.com/s/vhuqo0wc39lky0a/resnet50_v1.no-argmax.tflite?dl=1",
        "53e81f9f9b459ecfb6d64add3da91564",
    ),
    (
        "_tflite,_int8,_no-argmax",
        "resnet50_quant_full_mlperf_edgetpu.tflite",
        "https://zenodo.org/record/8234946/files/resnet50_quant_full_mlperf_edgetpu.tflite?download=1",
        "a657cf1f97545aefd058c1c718cc0e17",
    ),
    (
        "_ncnn,_fp32",
        "resnet50_v1.bin",
        "https://zenodo.org/record/8073420/files/resnet50_v1.bin?download=1",
        "0360777ab2178a65a8f78c35a7d619e0",
    ),
]


def test_list_matches_the_reference_table():
    rows = {r["variations"]: r for r in model_table_listing()}
    assert set(rows) == {v for v, *_ in REFERENCE}
    for variations, filename, url, md5 in REFERENCE:
        first = rows[variations]["files"][0]
        assert (first["file"], first["urls"][0], first["md5"]) == (filename, url, md5), variations
    ncnn = rows["_ncnn,_fp32"]["files"]
    assert ncnn[1] == {
        "file": "resnet50_v1.param",
        "download": "resnet50_v1.param",
        "md5": "f9ba6c4d7f66348e6d24c06bfe3f4ae8",
        "md5_of": "the file",
        "urls": ["https://zenodo.org/record/8073420/files/resnet50_v1.param?download="],
    }
    assert rows["_tflite,_fp32,_argmax"]["files"][0]["md5_of"] == "the .gz download"


def test_cli_list_prints_the_same_table_as_json(capsys):
    from imagenet_ops.__main__ import main

    assert main(["model", "--list"]) == 0
    assert json.loads(capsys.readouterr().out) == model_table_listing()


@pytest.mark.parametrize(
    ("tags", "variant_id"),
    [
        ("", "onnx-fp32-argmax-opset11"),
        ("_onnxruntime,_opset-8", "onnx-fp32-argmax-opset8"),
        ("_tf,_fix-input-shape,_batch_size.8", "tensorflow-fp32-argmax-fixed-bs8"),
        ("_tflite,_no-argmax", "tflite-fp32-no-argmax"),
        ("_tflite,_int8,_no-argmax", "tflite-int8-no-argmax"),
        ("_pytorch,_int8", "pytorch-int8"),
        ("_ncnn", "ncnn-fp32"),
    ],
)
def test_tags_resolve_to_a_supported_variant(tags, variant_id):
    assert resolve_model_config(variations=tags).variant_id == variant_id


@pytest.mark.parametrize("tags", ["_tflite,_int8", "_tflite,_int8,_argmax", "_pytorch,_uint8", "_onnx,_int8", "_ncnn,_int8"])
def test_unsupported_combinations_are_rejected_listing_the_supported_ones(tags):
    # tflite,int8,argmax: CM silently hands out the fp32 argmax file; we refuse instead.
    with pytest.raises(ConfigError, match="no model file for .*supported combinations: .*_tflite,_int8,_no-argmax"):
        resolve_model_config(variations=tags)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("_tflite,_fix-input-shape", "_fix-input-shape applies to _tensorflow only"),
        ("_pytorch,_from-tf", "_from-tf applies to _onnx only"),
        ("_tensorflow,_opset-8", "_opset-\\* applies to _onnx only"),
        ("_ncnn,_huggingface_default", "_huggingface_default applies to _onnx only"),
    ],
)
def test_flags_for_another_framework_are_rejected(tags, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model_config(variations=tags)


def test_overrides_mirror_url_and_md5():
    cfg = resolve_model_config({"mirror": "http://store.internal/models/"}, variations="_tflite")
    assert cfg.files[0].urls[0] == "http://store.internal/models/resnet50_v1.tflite.gz"
    assert cfg.files[0].urls[1].startswith("https://www.dropbox.com/")
    cfg = resolve_model_config({"url": "http://x/resnet50_v1.pb", "md5": "A" * 32}, variations="_tensorflow")
    assert cfg.files[0].urls == ("http://x/resnet50_v1.pb",) and cfg.files[0].md5 == "a" * 32
    cfg = resolve_model_config(variations="_ncnn", md5_by_file={"resnet50_v1.param": "b" * 32})
    assert [f.md5 for f in cfg.files] == ["0360777ab2178a65a8f78c35a7d619e0", "b" * 32]
    with pytest.raises(ConfigError, match="--url replaces a single file"):
        resolve_model_config({"url": "http://x/y.bin"}, variations="_ncnn")
    with pytest.raises(ConfigError, match="2 file\\(s\\) to download .* but 1 md5"):
        resolve_model_config({"md5": "a" * 32}, variations="_ncnn")


def test_params_form_covers_every_variation():
    specs = MODEL_TABLE.param_specs()
    assert specs["framework"]["enum"] == ["onnx", "tensorflow", "tflite", "pytorch", "ncnn"]
    assert specs["batch_size"]["minimum"] == 1 and specs["batch_size"]["default"] == 1
    assert {"fix_input_shape", "from_tf", "huggingface_default", "opset", "model_output", "precision"} <= set(specs)


def test_env_follows_the_reference_with_documented_fixes():
    onnx = model_env(resolve_model_config(), model_path="/m/resnet50_v1.onnx")
    assert onnx["CM_ML_MODEL_DATA_LAYOUT"] == "NCHW" and onnx["CM_ML_MODEL_INPUT_LAYERS"] == "input_tensor:0"
    assert onnx["CM_ML_MODEL_INPUT_SHAPES"] == '"input_tensor:0": (1, 3, 224, 224)'
    assert onnx["CM_ML_MODEL_FILE"] == "resnet50_v1.onnx" and onnx["CM_ML_MODEL_VER"] == "1.5"
    assert onnx["CM_ML_MODEL"] == "RESNET50" and onnx["CM_ML_MODEL_SUBTRACT_MEANS"] == "YES"
    tf = model_env(resolve_model_config({"batch_size": 4}, variations="_tensorflow"), model_path="/m/resnet50_v1.pb")
    # CM says NCHW for this NHWC graph; fixed.
    assert tf["CM_ML_MODEL_INPUT_SHAPES"] == '"input_tensor:0": (4, 224, 224, 3)'
    assert tf["CM_ML_MODEL_GIVEN_CHANNEL_MEANS"] == "123.68 116.78 103.94" and tf["CM_ML_MODEL_ACCURACY"] == "76.456"
    lite = model_env(resolve_model_config(variations="_tflite,_no-argmax"), model_path="/m/x.tflite")
    assert lite["CM_ML_MODEL_INPUT_SHAPES"] == '"input_tensor 2": (1, 224, 224, 3)'
    assert lite["CM_ML_MODEL_OUTPUT_LAYER_ARGMAX"] == "no"
    torch_env = model_env(resolve_model_config(variations="_pytorch"), model_path="/m/resnet50-19c8e357.pth")
    assert torch_env["CM_ML_MODEL_STARTING_WEIGHTS_FILENAME"].endswith("resnet50-19c8e357.pth")
    assert "?" not in json.dumps(torch_env)
    from_tf = model_env(resolve_model_config(variations="_onnx,_from-tf"), model_path="/m/resnet50_v1_modified.onnx")
    assert from_tf["CM_ML_MODEL_DATA_LAYOUT"] == "NHWC" and from_tf["CM_ML_MODEL_INPUT_LAYERS"] == "input_tensor"


FRAMEWORK_PATHS = [
    "_onnx",
    "_onnx,_from-tf",
    "_tensorflow",
    "_tensorflow,_fix-input-shape,_batch_size.2",
    "_tflite",  # the .gz path: md5 of the download, gunzipped
    "_tflite,_no-argmax",
    "_pytorch",
    "_pytorch,_int8",
    "_ncnn",
]


@pytest.mark.parametrize("tags", FRAMEWORK_PATHS)
def test_every_framework_end_to_end_from_a_mirror(tags, model_mirror, tmp_path):
    cfg = resolve_model_config({"mirror": model_mirror["mirror"]}, variations=tags, md5_by_file=model_mirror["md5_by_file"])
    sink = open_sink(str(tmp_path / "out"))
    done = build_model(config=cfg, sink=sink, work_dir=tmp_path / "work")
    assert not done.publish.cache_hit
    model = Path(done.env["CM_ML_MODEL_FILE_WITH_PATH"])
    assert model.is_file() and model.name == cfg.files[0].filename
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {f.filename for f in cfg.files}
    if cfg.fix_input_shape:
        assert (
            Path(done.env["CM_ML_MODEL_STARTING_FILE_PATH"]).read_bytes()
            == (model_mirror["server"].root / "resnet50_v1.pb").read_bytes()
        )
        assert model.read_bytes() != Path(done.env["CM_ML_MODEL_STARTING_FILE_PATH"]).read_bytes()
    again = build_model(config=cfg, sink=sink, work_dir=tmp_path / "work2")
    assert again.publish.cache_hit and again.env == done.env


def test_wrong_md5_publishes_nothing(model_mirror, tmp_path):
    # url (not mirror) replaces the mirror list: the test must never fall through to the real mirrors.
    cfg = resolve_model_config({"url": f"{model_mirror['mirror']}/resnet50_v1.onnx"}, variations="_onnx")  # reference md5
    with pytest.raises(ChecksumMismatch, match="f6a4da60cd5f084d97efc2c1ddb10beb"):
        build_model(config=cfg, sink=open_sink(str(tmp_path / "out")), work_dir=tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_a_file_of_the_wrong_framework_fails_the_load_check_and_is_not_published(model_mirror, tmp_path):
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.core.errors import ModelCheckError

    server = model_mirror["server"]
    (server.root / "resnet50_v1.pb").write_bytes((server.root / "resnet50_v1.onnx").read_bytes())  # an ONNX file named .pb
    cfg = resolve_model_config(
        {"mirror": model_mirror["mirror"], "md5": file_digests(server.root / "resnet50_v1.pb").md5}, variations="_tensorflow"
    )
    with pytest.raises(ModelCheckError, match="resnet50_v1.pb"):
        build_model(config=cfg, sink=open_sink(str(tmp_path / "out")), work_dir=tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_supported_combinations_are_tag_strings_that_resolve():
    for tags in supported_combinations():
        assert resolve_model_config(variations=tags).tags == tags


def test_resolve_job_gives_one_job_per_variant_in_its_own_folders():
    jobs = resolve_job(
        {"variants": ["_onnx", "_tflite", "_onnxruntime"], "mirror": "http://m/"},
        sink_uri="s3://b/m/",
        conn_id="c",
        work_dir="/w/r",
    )
    # _onnxruntime is _onnx again: one job per variant id
    assert [j.variant_id for j in jobs] == ["onnx-fp32-argmax-opset11", "tflite-fp32-argmax"]
    assert (jobs[1].sink_uri, jobs[1].work_dir, jobs[1].conn_id) == (
        "s3://b/m/tflite-fp32-argmax",
        "/w/r/tflite-fp32-argmax",
        "c",
    )
    assert jobs[1].config.files[0].urls[0] == "http://m/resnet50_v1.tflite.gz"
    assert jobs[1].download_dir == Path("/w/r/tflite-fp32-argmax/download")


def test_a_job_in_xcom_has_the_keys_the_resolve_task_always_returned():
    (job,) = resolve_job({"framework": "ncnn"}, sink_uri="/out", conn_id=None, work_dir="/w/r")
    data = json.loads(json.dumps(job.to_xcom()))
    assert list(data) == ["config", "work_dir", "sink_uri", "conn_id"]
    assert data["config"]["variant_id"] == "ncnn-fp32" and data["sink_uri"] == "/out/ncnn-fp32"
    assert ModelJob.from_xcom(data) == job


def test_a_scheduled_run_without_variants_refreshes_every_supported_variant():
    refresh = resolve_job({}, sink_uri="/out", conn_id=None, work_dir="/w/r", scheduled=True)
    assert [j.config.tags for j in refresh] == supported_combinations()
    (manual,) = resolve_job({}, sink_uri="/out", conn_id=None, work_dir="/w/r")
    assert manual.variant_id == "onnx-fp32-argmax-opset11"
    (listed,) = resolve_job({"variants": ["_ncnn"]}, sink_uri="/out", conn_id=None, work_dir="/w/r", scheduled=True)
    assert listed.variant_id == "ncnn-fp32"


@pytest.mark.parametrize(
    ("params", "scheduled"),
    [({"variants": ["_onnx"], "md5": "a" * 32}, False), ({"url": "http://x/resnet50_v1.onnx"}, True)],
)
def test_url_and_md5_apply_to_a_single_variant(params, scheduled):
    with pytest.raises(ConfigError, match="url and md5 apply to a single variant"):
        resolve_job(params, sink_uri="/out", conn_id=None, work_dir="/w/r", scheduled=scheduled)
    (single,) = resolve_job({k: v for k, v in params.items() if k != "variants"}, sink_uri="/out", conn_id=None, work_dir="/w")
    assert len(single.config.files) == 1


def test_without_per_variant_folders_the_locations_are_used_as_given():
    # the CLI's default: --output is the variant's folder
    (job,) = resolve_job({"variations": "_tflite"}, sink_uri="s3://b/m/", conn_id=None, work_dir="/w", per_variant_folder=False)
    assert (job.sink_uri, job.work_dir) == ("s3://b/m/", "/w")


def test_the_dag_steps_hand_over_only_staged_files(model_mirror, tmp_path):
    # Issue 12 item 1: each step gets a scratch of its own (another worker's disk) and reads only the staging area.
    from imagenet_ops.core.errors import StorageError
    from imagenet_ops.core.staging import Staging
    from imagenet_ops.core.store import ObjectStore
    from imagenet_ops.model import steps
    from imagenet_ops.model.pipeline import ModelPrepared

    cfg = resolve_model_config({"mirror": model_mirror["mirror"]}, variations="_tflite", md5_by_file=model_mirror["md5_by_file"])
    sink = open_sink(str(tmp_path / "out"))
    staging = Staging(sink=sink, run="resnet50_model/run-1", store=ObjectStore())

    def scratch(name: str) -> Path:
        (tmp_path / name).mkdir()
        return tmp_path / name

    fetched = steps.download_variant(config=cfg, staging=staging, scratch=scratch("a"))
    (f,) = fetched.files
    assert f.path == staging.uri(f"{cfg.variant_id}/download/resnet50_v1.tflite")  # the gunzipped file is staged
    with pytest.raises(StorageError, match="did the task that stages it finish"):
        steps.check_variant(config=cfg, prepared=ModelPrepared("", "", None, ()), staging=staging, scratch=scratch("too-early"))
    prepared = steps.prepare_variant(config=cfg, fetched=fetched, staging=staging, scratch=scratch("b"))
    assert prepared.dir == staging.uri(f"{cfg.variant_id}/prepared") and prepared.files == ("resnet50_v1.tflite",)
    check = steps.check_variant(config=cfg, prepared=prepared, staging=staging, scratch=scratch("c"))
    assert check.files == [f"{prepared.dir}/resnet50_v1.tflite"] and str(tmp_path / "c") not in check.summary
    done = steps.publish_variant(config=cfg, fetched=fetched, prepared=prepared, staging=staging, scratch=scratch("d"), sink=sink)
    assert done.env["CM_ML_MODEL_FILE_WITH_PATH"] == str(tmp_path / "out" / "resnet50_v1.tflite")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "staging" not in json.dumps(manifest) and str(tmp_path / "a") not in json.dumps(manifest)
    assert staging.remove() == 2
