"""Lineage and names on a real scheduler (issue 13 item 6): readable Asset names, one per sink, and the aux inlet.

* imagenet_aux publishes to two sinks in sequence: both runs succeed, and ``GET /api/v2/assets``
  (active assets only, as the UI lists them) shows both, each with its own readable name.
* The two dataset DAGs label their validation images with the aux artifact that run published:
  their Asset event names it in ``inlets``, and the OpenLineage provider's events (written to files
  by the cluster's file transport) carry it as an input next to the published output. A training
  run given ``aux_path`` but no validation split does not read it, and names no inlet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagenet_ops.core.lineage import asset_name

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 420  # s; generous: the runs share two cores
SMALL_TRAINING = {"train_shards": 2, "validation_shards": 2}  # the sample's 18 + 24 images, in a few files


def _uri(path: str) -> str:
    return Path(path).resolve().as_uri()


@pytest.fixture(scope="module")
def aux_sinks(cluster, dag_inputs) -> list[tuple[str, str]]:
    """``[(run_id, sink)]``: imagenet_aux published to one folder, then to another (two sinks of one artifact)."""
    cluster.set_paused("imagenet_aux", False)
    done = []
    for kind in ("lineage-a", "lineage-b"):
        sink = cluster.sink(kind, "imagenet_aux")
        run_id = cluster.trigger("imagenet_aux", {**dag_inputs.inputs["imagenet_aux"], "sink_uri": sink})
        cluster.wait_for_run("imagenet_aux", run_id, RUN_TIMEOUT)
        done.append((run_id, sink))
    return done


@pytest.fixture(scope="module")
def consumer_runs(cluster, dag_inputs, aux_sinks) -> dict[str, tuple[str, str]]:
    """``name -> (dag_id, run_id, sink)``: the dataset DAGs labelled by the aux artifact published above, and a
    training run given that aux_path but no validation split (so it never reads it)."""
    _, aux = aux_sinks[0]
    images = dag_inputs.inputs["imagenet_preprocessed"]["images"]
    train, validation = (dag_inputs.inputs["imagenet_training_data"][k] for k in ("train", "validation"))
    small = {**SMALL_TRAINING, "train": train, "aux_path": aux}
    confs = {
        "preprocessed": ("imagenet_preprocessed", {"images": images, "aux_path": aux}),
        "training": ("imagenet_training_data", {**small, "validation": validation}),
        "training_without_validation": ("imagenet_training_data", small),
    }
    runs = {}
    for name, (dag_id, conf) in confs.items():
        sink = cluster.sink("lineage", name)
        cluster.set_paused(dag_id, False)
        runs[name] = (dag_id, cluster.trigger(dag_id, {**conf, "sink_uri": sink}), sink)
    for dag_id, run_id, _ in runs.values():
        cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    return runs


def _event(cluster, dag_id: str, run_id: str) -> dict[str, Any]:
    (event,) = cluster.get("assets/events", source_dag_id=dag_id, source_run_id=run_id)["asset_events"]
    return event


def _completed_lineage(cluster, job_name: str, output: str) -> dict[str, Any]:
    """The OpenLineage COMPLETE event of ``job_name`` whose outputs include the folder ``output``."""

    def find() -> dict[str, Any] | None:
        for event in cluster.openlineage_events(job_name):
            outputs = {(d["namespace"], d["name"]) for d in event.get("outputs", [])}
            if event["eventType"] == "COMPLETE" and ("file", str(Path(output).resolve())) in outputs:
                return event
        return None

    return cluster.wait(find, 60, f"the OpenLineage COMPLETE event of {job_name} writing {output}")


def test_two_sinks_of_one_artifact_both_publish_with_their_own_readable_names(cluster, aux_sinks):
    expected = {_uri(sink): asset_name("imagenet_aux", _uri(sink)) for _, sink in aux_sinks}
    assert len(set(expected.values())) == 2 and all(n.startswith("imagenet_aux@file:") for n in expected.values())
    for run_id, sink in aux_sinks:
        event = _event(cluster, "imagenet_aux", run_id)
        assert (event["name"], event["uri"]) == (expected[_uri(sink)], _uri(sink)), event

    def listed() -> dict[str, str] | None:
        # active assets only (the API's and the UI's default): the scheduler activates an alias's assets on its
        # orphanage pass; an asset whose name or URI an active one already holds would never be listed
        assets = {a["uri"]: a["name"] for a in cluster.get("assets", limit=100, uri_pattern="lineage-")["assets"]}
        return assets if set(expected) <= set(assets) else None

    assets = cluster.wait(listed, 180, "both aux sinks listed as active assets")
    assert {uri: assets[uri] for uri in expected} == expected


@pytest.mark.parametrize("name", ["preprocessed", "training"])
def test_a_dataset_run_labelled_by_the_aux_artifact_names_it_as_its_inlet(cluster, aux_sinks, consumer_runs, name: str):
    _, aux = aux_sinks[0]
    published_aux = _event(cluster, "imagenet_aux", aux_sinks[0][0])
    dag_id, run_id, sink = consumer_runs[name]
    event = _event(cluster, dag_id, run_id)
    # the inlet is the very Asset imagenet_aux's event named: same name, same URI
    assert event["extra"]["inlets"] == [{"name": published_aux["name"], "uri": published_aux["uri"]}], event["extra"]
    assert event["name"] == asset_name(dag_id, _uri(sink)) and event["uri"] == _uri(sink)

    lineage = _completed_lineage(cluster, f"{dag_id}.finalize", sink)
    assert {"namespace": "file", "name": str(Path(aux).resolve())} in [
        {"namespace": d["namespace"], "name": d["name"]} for d in lineage["inputs"]
    ], lineage["inputs"]


def test_a_run_that_does_not_read_the_aux_artifact_names_no_inlet(cluster, consumer_runs):
    dag_id, run_id, sink = consumer_runs["training_without_validation"]
    event = _event(cluster, dag_id, run_id)
    assert "inlets" not in event["extra"] and event["extra"]["files"] > 0, event["extra"]
    lineage = _completed_lineage(cluster, f"{dag_id}.finalize", sink)
    assert lineage["inputs"] == [], lineage["inputs"]


def test_openlineage_sees_the_aux_publish_as_its_output(cluster, aux_sinks):
    for _, sink in aux_sinks:
        lineage = _completed_lineage(cluster, "imagenet_aux.publish", sink)
        assert lineage["inputs"] == [], lineage["inputs"]
