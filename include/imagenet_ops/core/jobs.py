"""The typed job every artifact declares: its config, its inputs and where it writes, in one frozen object.

A DAG's resolve task (or the CLI) builds the job once from the form / flags; each step gets it
back from XCom with :meth:`Job.from_xcom`, so a mapped task on any worker has what it needs and
no step grows or reinterprets an untyped dict. The XCom form is a plain JSON object: the config
under ``"config"`` (the config's own serial form) and every other field by its name.

An artifact's job subclasses :class:`Job`, names its config type in ``config_type`` and marks its
input locations with :func:`input_field`, which records the title and description the trigger
form and the CLI show for them::

    @dataclass(frozen=True, kw_only=True)
    class TrainingJob(Job):
        config_type: ClassVar[type] = TrainingConfig
        config: TrainingConfig
        train: str | None = input_field("Train images", "ILSVRC2012_img_train.tar or a folder ...")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from imagenet_ops.core.errors import ConfigError


def input_field(title: str, description: str, *, kind: str = "location") -> Any:
    """A job field naming an input: a local path, ``s3://`` / ``gs://`` prefix (``kind="location"``) or a URL.

    Args:
        title: the label of the form field and the CLI flag's help.
        description: what the input is, shown under the form field.
        kind: ``"location"`` (local, s3:// or gs://, read through the input store) or ``"url"``.
    """
    return field(default=None, metadata={"input": True, "title": title, "description": description, "kind": kind})


@dataclass(frozen=True, kw_only=True)
class Job:
    """Where a job writes, shared by every artifact.

    Attributes:
        sink_uri: the output: a local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
        conn_id: the Airflow connection for the sink (``None``: the environment's credentials).
        work_dir: this run's scratch folder.
        source_conn_id: the connection for remote inputs (``None``: the sink's).
    """

    config_type: ClassVar[type] = type(None)

    config: Any = None
    sink_uri: str
    conn_id: str | None = None
    work_dir: str
    source_conn_id: str | None = None

    @classmethod
    def inputs(cls) -> list[dataclasses.Field[Any]]:
        """The fields declared with :func:`input_field`, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.metadata.get("input")]

    def input_locations(self) -> list[str]:
        """The given input locations (local, s3:// or gs://) read through the input store."""
        return [v for f in self.inputs() if f.metadata["kind"] == "location" and (v := getattr(self, f.name))]

    def upstream_artifacts(self) -> dict[str, str]:
        """The published artifacts this job reads, artifact -> location as given (the run's lineage inlets); none here."""
        return {}

    def to_xcom(self) -> dict[str, Any]:
        """This job as a JSON object: ``config`` in its serial form, every other field by name."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = _config_to_xcom(value) if f.name == "config" else value
        return out

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Self:
        """The job :meth:`to_xcom` wrote; unknown keys are refused so a renamed field cannot be lost silently.

        Raises:
            ConfigError: a key the job does not have, or a required one missing.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown job field(s) {', '.join(unknown)}")
        values = dict(data)
        if "config" in values and values["config"] is not None and cls.config_type is not type(None):
            values["config"] = _config_from_xcom(cls.config_type, values["config"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _config_to_xcom(config: Any) -> Any:
    for method in ("as_params", "as_dict"):
        if hasattr(config, method):
            return getattr(config, method)()
    return config


def _config_from_xcom(config_type: type, data: Any) -> Any:
    for method in ("from_params", "from_dict"):
        if hasattr(config_type, method):
            return getattr(config_type, method)(data)
    return data


@dataclass(frozen=True)
class Artifact:
    """An artifact's one declaration: what its trigger form, its CLI subcommand and its CM tag parser are made from.

    Attributes:
        name: the artifact (the DAG id, the default sink folder, the Asset alias).
        table: its :class:`~imagenet_ops.core.variations.VariationTable`: the form's variation fields,
            the CLI's variation flags and the CM tags it accepts.
        job: its :class:`Job` type; the ``input_field`` s are the form's input fields and the CLI's input flags.
        resolve_job: ``resolve_job(params, *, sink_uri, conn_id, work_dir, scheduled=False)``: every rule
            that turns a form (or the CLI's flags) into the job(s) of a run.
        version: the version of what it publishes.
        release_notes: ``{version: what changed}``, newest first (TFDS style).
    """

    name: str
    table: Any
    job: type[Job]
    resolve_job: Callable[..., Any]
    version: str
    release_notes: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.version not in self.release_notes:
            raise ValueError(f"{self.name}: version {self.version} has no release notes")
