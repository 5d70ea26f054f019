"""The accuracy check on a real scheduler, as its schedule runs it: a newly published set, then a new variant.

``imagenet_accuracy`` is scheduled on the model and preprocessed Assets (their AssetAliases). With
it unpaused, a set published before any variant triggers a run that has nothing to pair yet and is
skipped, not failed; the variant published next triggers a run that pairs the newest variant with
the newest set, scores it, and publishes. An NHWC TFLite variant published then fits no set yet:
its check is skipped, not failed (no alert); the NHWC set published after it is checked with it,
not with the newer NCHW ONNX variant it does not fit.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 420


def _asset_runs(cluster) -> list[dict]:
    return [r for r in cluster.runs("imagenet_accuracy") if r["run_type"] == "asset_triggered"]


def _publish_then_check(cluster, dag_id: str, conf: dict, before: set[str]) -> tuple[dict, dict[str, str]]:
    """Run ``dag_id`` with ``conf``; the check its publish's Asset event triggers, once finished, and its task states."""
    cluster.set_paused(dag_id, False)
    run_id = cluster.trigger(dag_id, conf)
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    new = cluster.wait(lambda: [r for r in _asset_runs(cluster) if r["dag_run_id"] not in before], 120, f"a check after {dag_id}")
    check = cluster.wait_for_run("imagenet_accuracy", new[-1]["dag_run_id"], RUN_TIMEOUT)
    before |= {r["dag_run_id"] for r in new}
    return check, {t["task_id"]: t["state"] for t in cluster.task_instances("imagenet_accuracy", check["dag_run_id"])}


def test_new_set_then_new_variant_each_trigger_a_check(cluster, dag_inputs):
    before = {r["dag_run_id"] for r in _asset_runs(cluster)}
    cluster.set_paused("imagenet_accuracy", False)
    try:
        set_sink, model_sink = cluster.sink("schedule", "imagenet_preprocessed"), cluster.sink("schedule", "resnet50_model")
        for dag_id, sink in (("imagenet_preprocessed", set_sink), ("resnet50_model", model_sink)):
            check, states = _publish_then_check(cluster, dag_id, {**dag_inputs.inputs[dag_id], "sink_uri": sink}, before)
            if dag_id == "imagenet_preprocessed":
                # no variant published yet in this cluster (the modules before publish none): nothing to pair
                assert states["resolve"] == "skipped" and states.get("publish") == "skipped", states
            else:
                assert states["publish"] == "success", states
                job = cluster.xcom("imagenet_accuracy", check["dag_run_id"], "resolve")
                assert job["model"] == f"{model_sink}/onnx-fp32-argmax-opset11" and job["preprocessed"] == set_sink, job
                env = cluster.xcom("imagenet_accuracy", check["dag_run_id"], "publish")
                assert env["CM_MLPERF_ACCURACY_IMAGES"] == "500" and "CM_MLPERF_ACCURACY_TOP1" in env, env
                events = cluster.get("assets/events", source_dag_id="imagenet_accuracy", source_run_id=check["dag_run_id"])
                assert [e["name"].split("@")[0] for e in events["asset_events"]] == ["imagenet_accuracy"], events

        from imagenet_ops.core.digests import file_digests
        from imagenet_ops.testing import model_samples

        tflite = model_samples.make_tflite(dag_inputs.server.root / "schedule_resnet50_v1.tflite", argmax=False)
        tflite_conf = {
            "variations": "_tflite,_no-argmax",
            "url": dag_inputs.server.url(tflite.name),
            "md5": file_digests(tflite).md5,
            "sink_uri": model_sink,
        }
        nhwc_sink = cluster.sink("schedule-nhwc", "imagenet_preprocessed")
        nhwc_conf = {**dag_inputs.inputs["imagenet_preprocessed"], "variations": "_NHWC", "sink_uri": nhwc_sink}
        for dag_id, conf in (("resnet50_model", tflite_conf), ("imagenet_preprocessed", nhwc_conf)):
            check, states = _publish_then_check(cluster, dag_id, conf, before)
            if dag_id == "resnet50_model":
                assert check["state"] == "success" and states["resolve"] == "skipped", states  # nothing fits: no failure
                log = cluster.task_log("imagenet_accuracy", check["dag_run_id"], "resolve")
                assert "tflite-fp32-no-argmax" in log and "an NCHW set into an NHWC model" in log, log[-2000:]
            else:
                assert states["publish"] == "success", states
                job = cluster.xcom("imagenet_accuracy", check["dag_run_id"], "resolve")
                assert (job["model"], job["preprocessed"]) == (f"{model_sink}/tflite-fp32-no-argmax", nhwc_sink), job
    finally:
        cluster.set_paused("imagenet_accuracy", True)
