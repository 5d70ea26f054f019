"""Every DAG on a real scheduler (``airflow standalone``, LocalExecutor on SQLite), triggered over REST.

Each run's ``conf`` holds only the inputs and the sink: every other param is at its default, so
the training DAG runs at its default "Processes per task" (``workers=0``: a process pool of all
cores inside each task). The five runs are triggered together and run side by side.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DAG_IDS = ("imagenet_aux", "resnet50_model", "imagenet_training_data", "imagenet_preprocessed", "imagenet_accuracy")
PUBLISH_TASK = {"imagenet_aux": "publish", "resnet50_model": "publish", "imagenet_accuracy": "publish"}  # others: finalize


def _publish_index(dag_id: str) -> int:
    """The publishing task's map index: the model's is mapped over the variants (the default run has one)."""
    return 0 if dag_id == "resnet50_model" else -1


RUN_TIMEOUT = 420  # s; generous: five DAGs share two cores


@pytest.fixture(scope="module")
def api_connection(cluster) -> None:
    """The connection the runs' notes are written with (``imagenet_ops_api``), made over REST as an operator makes it."""
    conn = {"connection_id": "imagenet_ops_api", "conn_type": "http", "host": cluster.base, "login": "admin"}
    resp = cluster.api.post(f"{cluster.base}/api/v2/connections", json={**conn, "password": cluster.password}, timeout=15)
    assert resp.ok or resp.status_code == 409, resp.text


@pytest.fixture(scope="module")
def rest_runs(cluster, dag_inputs, api_connection) -> Iterator[dict[str, tuple[str, str]]]:
    """``dag_id -> (run_id, sink)``: every DAG unpaused and triggered at once.

    The accuracy DAG is paused again afterwards: unpaused, every model or set the later tests
    publish would trigger a check of its own (tests/ui/test_accuracy_schedule.py tests that).
    """
    runs = {}
    for dag_id in DAG_IDS:
        sink = cluster.sink("rest", dag_id)
        cluster.set_paused(dag_id, False)
        runs[dag_id] = (cluster.trigger(dag_id, {**dag_inputs.inputs[dag_id], "sink_uri": sink}), sink)
    yield runs
    cluster.set_paused("imagenet_accuracy", True)


def _expected(dag_id: str, sink: str, env: dict[str, str]) -> None:
    if dag_id == "imagenet_aux":
        assert env == {"CM_DATASET_AUX_PATH": sink, "CM_DATASET_AUX_VER": "2012"}
    elif dag_id == "resnet50_model":
        model = Path(env["CM_ML_MODEL_FILE_WITH_PATH"])
        assert model.is_relative_to(sink) and model.is_file(), env
        assert (env["CM_ML_MODEL_FRAMEWORK"], env["CM_ML_MODEL_ONNX_OPSET"]) == ("onnx", "11"), env
        assert (model.parent / "manifest.json").is_file()  # each variant has its own folder and manifest
        return
    elif dag_id == "imagenet_training_data":
        assert env["CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"] == sink, env
        # The sample: 6 classes x 3 train images, 24 validation images; the reference's default shard counts.
        prefix = "CM_MLPERF_TRAINING_RESNET_"
        expected = {"TRAIN_IMAGES": "18", "VALIDATION_IMAGES": "24", "TRAIN_SHARDS": "1024", "VALIDATION_SHARDS": "128"}
        assert {k: env.get(prefix + k) for k in expected} == expected, env
    elif dag_id == "imagenet_accuracy":
        # the published colour-pattern set, read right by the colour-reading ONNX sample; no expectation: no verdict
        assert (env["CM_MLPERF_ACCURACY_PATH"], env["CM_MLPERF_ACCURACY_IMAGES"]) == (sink, "12"), env
        assert (env["CM_MLPERF_ACCURACY_TOP1"], env["CM_MLPERF_ACCURACY_PASSED"]) == ("100.0000", "no-verdict"), env
    else:
        assert env["CM_DATASET_PREPROCESSED_PATH"] == sink, env
        assert env["CM_DATASET_SIZE"] == "500", env
    assert (Path(sink) / "manifest.json").is_file()


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_succeeds_with_only_inputs_and_sink(cluster, rest_runs, dag_id: str):
    run_id, sink = rest_runs[dag_id]
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert run["run_type"] == "manual"
    assert set(run["conf"]) <= {"url", "md5", "train", "validation", "aux_path", "images", "model", "preprocessed", "sink_uri"}

    map_index = _publish_index(dag_id)
    env = cluster.xcom(dag_id, run_id, PUBLISH_TASK.get(dag_id, "finalize"), map_index=map_index)
    _expected(dag_id, sink, env)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_runs_result_is_its_cm_env_dict(cluster, rest_runs, dag_id: str):
    """What a CI caller gets from ``GET .../dagRuns/{run}/wait`` (the DAG result, issue 13 item 4)."""
    run_id, _ = rest_runs[dag_id]
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    resp = cluster.api.get(
        f"{cluster.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/wait",
        params={"interval": 1},
        headers={"Accept": "application/x-ndjson"},
        timeout=60,
    )
    assert resp.ok, resp.text
    last = json.loads(resp.text.strip().splitlines()[-1])
    task = PUBLISH_TASK.get(dag_id, "finalize")
    env = cluster.xcom(dag_id, run_id, task, map_index=_publish_index(dag_id))
    assert last == {"state": "success", "results": {task: [env] if dag_id == "resnet50_model" else env}}, last


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_page_has_its_docs(cluster, dag_id: str):
    """What the UI's "Task docs" shows, mapped tasks included (they keep doc_md in their partial arguments)."""
    tasks = cluster.get(f"dags/{dag_id}/tasks")["tasks"]
    missing = [t["task_id"] for t in tasks if "**When it fails:**" not in (t.get("doc_md") or "")]
    assert tasks and not missing, missing


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_publishing_task_links_to_the_artifact_its_manifest_and_its_report(cluster, rest_runs, dag_id: str):
    """The task's extra links (issue 13 item 3), as the UI gets them from the api-server."""
    run_id, sink = rest_runs[dag_id]
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    task = PUBLISH_TASK.get(dag_id, "finalize")
    resp = cluster.api.get(
        f"{cluster.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task}/links",
        params={"map_index": _publish_index(dag_id)},
        timeout=15,
    )
    assert resp.ok, resp.text
    links = resp.json()["extra_links"]
    env = cluster.xcom(dag_id, run_id, task, map_index=_publish_index(dag_id))
    folder = Path(env["CM_ML_MODEL_FILE_WITH_PATH"]).parent if dag_id == "resnet50_model" else Path(sink)
    assert links == {
        "Artifact folder": folder.resolve().as_uri(),
        "manifest.json": (folder / "manifest.json").resolve().as_uri(),
        "Data-quality report": (folder / "report" / "report.md").resolve().as_uri(),
    }
    report = (folder / "report" / "report.md").read_text()
    assert "Data-quality report: all checks passed." in report, report  # the sample data is sound


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_run_note_summarises_what_was_published_with_its_links(cluster, rest_runs, dag_id: str):
    """What the UI shows as the run's note (issue 13 item 5): the Asset, its links and the report's verdict."""
    run_id, _ = rest_runs[dag_id]
    note = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)["note"]
    task = PUBLISH_TASK.get(dag_id, "finalize")
    links = cluster.api.get(
        f"{cluster.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task}/links",
        params={"map_index": _publish_index(dag_id)},
        timeout=15,
    ).json()["extra_links"]
    event = cluster.get("assets/events", source_dag_id=dag_id, source_run_id=run_id)["asset_events"][0]
    assert note and f"**{event['name']}**: published" in note, note
    assert "✅ data-quality checks passed" in note, note
    for label, url in (("folder", "Artifact folder"), ("manifest.json", "manifest.json"), ("report", "Data-quality report")):
        assert f"[{label}]({links[url]})" in note, note


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_asset_event_records_duration_and_throughput(cluster, rest_runs, dag_id: str):
    """What a trend chart reads from the Asset events alone (issue 13 item 6)."""
    run_id, _ = rest_runs[dag_id]
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    events = cluster.get("assets/events", source_dag_id=dag_id, source_run_id=run_id)["asset_events"]
    assert events, f"{dag_id}: no asset event"
    for event in events:
        extra = event["extra"]
        assert extra["run_seconds"] > 0 and extra["bytes_per_second"] == round(extra["bytes"] / extra["run_seconds"]), extra


def test_training_ran_at_its_default_processes_per_task(cluster, rest_runs):
    """workers=0 (all cores) is the form's default; every shard group ran with it and wrote its shards."""
    dag_id = "imagenet_training_data"
    params = cluster.get(f"dags/{dag_id}/details")["params"]
    assert params["workers"]["value"] == 0, params["workers"]
    run_id, _ = rest_runs[dag_id]
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    writers = [t for t in cluster.task_instances(dag_id, run_id) if t["task_id"] == "write_shards"]
    assert len(writers) == params["parallel_tasks"]["value"] and all(t["state"] == "success" for t in writers), writers
    for t in writers:
        text = cluster.task_log(dag_id, run_id, "write_shards", map_index=t["map_index"])
        assert "Group done:" in text, f"shard group {t['map_index']}: no summary line in its log:\n{text[-2000:]}"


def test_a_tflite_load_check_logs_no_errors(cluster, dag_inputs):
    """Regression: a successful TFLite load check showed six red ERROR lines (TensorFlow's native start-up noise)."""
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.testing import model_samples

    dag_id = "resnet50_model"
    model = model_samples.make_tflite(dag_inputs.server.root / "resnet50_v1.tflite", argmax=False)
    conf = {
        "variations": "_tflite,_no-argmax",
        "url": dag_inputs.server.url(model.name),
        "md5": file_digests(model).md5,
        "sink_uri": cluster.sink("tflite", dag_id),
    }
    cluster.set_paused("imagenet_accuracy", True)  # this variant is not for a check (tests/ui/test_accuracy_schedule.py)
    cluster.set_paused(dag_id, False)
    run_id = cluster.trigger(dag_id, conf)
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    text = cluster.task_log(dag_id, run_id, "load_check", map_index=0)
    assert "Load check passed for tflite-fp32-no-argmax" in text, text[-2000:]
    errors = [line for line in text.splitlines() if line.startswith("error ")]
    assert errors == [], errors
