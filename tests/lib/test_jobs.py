"""The typed job: one frozen object per run, round-tripped through XCom as plain JSON."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, ClassVar

import pytest

from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Job, input_field


@dataclass(frozen=True)
class _Config:
    size: int

    def as_params(self) -> dict[str, Any]:
        return {"size": self.size}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> _Config:
        return cls(int(params["size"]))


@dataclass(frozen=True, kw_only=True)
class _Job(Job):
    config_type: ClassVar[type] = _Config
    images: str | None = input_field("Images", "a tar")
    labels_url: str | None = input_field("Labels URL", "a URL", kind="url")
    chunks: int = 1


def _job(**kw: Any) -> _Job:
    return _Job(config=_Config(3), sink_uri="s3://b/p", work_dir="/w", **kw)


def test_round_trip_through_json():
    job = _job(images="gs://b/val.tar", chunks=4)
    data = json.loads(json.dumps(job.to_xcom()))
    assert data["config"] == {"size": 3} and data["images"] == "gs://b/val.tar"
    assert _Job.from_xcom(data) == job


def test_inputs_are_declared_once_with_their_titles():
    assert [(f.name, f.metadata["title"], f.metadata["kind"]) for f in _Job.inputs()] == [
        ("images", "Images", "location"),
        ("labels_url", "Labels URL", "url"),
    ]
    # only locations go to the input store; URLs are downloaded
    assert _job(images="/d/val.tar", labels_url="http://h/l.txt").input_locations() == ["/d/val.tar"]


def test_a_job_is_frozen():
    with pytest.raises(FrozenInstanceError):
        _job().chunks = 2  # type: ignore[misc]


def test_unknown_or_missing_fields_are_refused_by_name():
    data = _job().to_xcom()
    with pytest.raises(ConfigError, match="unknown job field.*imgs"):
        _Job.from_xcom({**data, "imgs": "x"})
    del data["sink_uri"]
    with pytest.raises(ConfigError, match="_Job.*sink_uri"):
        _Job.from_xcom(data)


def test_every_artifact_declares_itself_once():
    from pathlib import Path

    import imagenet_ops.accuracy
    import imagenet_ops.aux
    import imagenet_ops.model
    import imagenet_ops.preprocessed
    import imagenet_ops.training
    from imagenet_ops.core.jobs import Artifact

    dags = {p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("*.py")}
    packages = (imagenet_ops.aux, imagenet_ops.model, imagenet_ops.preprocessed, imagenet_ops.training, imagenet_ops.accuracy)
    declared = [pkg.DECLARATION for pkg in packages]
    assert {d.name for d in declared} == dags  # one DAG per declared artifact, named after it
    for d in declared:
        assert d.table.artifact == d.name and issubclass(d.job, Job)
        assert d.version in d.release_notes and list(d.release_notes)[0] == d.version  # newest first, current
    with pytest.raises(ValueError, match="no release notes"):
        Artifact(name="x", table=None, job=_Job, resolve_job=len, version="2.0.0", release_notes={"1.0.0": "..."})
