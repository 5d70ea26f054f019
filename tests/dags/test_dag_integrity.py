"""Every DAG file: imports cleanly, stays light to parse, and follows the project's DAG policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY_MODULES = ("tensorflow", "torch", "cv2")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def _dags_of(dagbag, path: Path):
    return [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]


def test_there_are_dags():
    assert DAG_FILES, "no DAG files found in dags/"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_imports_without_errors(dagbag, path):
    assert str(path) not in dagbag.import_errors, dagbag.import_errors.get(str(path))
    dags = _dags_of(dagbag, path)
    assert [d.dag_id for d in dags] == [path.stem], "one DAG per file, dag_id = file stem"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_tags_retries_and_docs(dagbag, path):
    from imagenet_operators.dag_helpers import APPROVED_TAGS

    for dag in _dags_of(dagbag, path):
        assert dag.tags and set(dag.tags) <= APPROVED_TAGS, f"{dag.dag_id}: tags {dag.tags} not in {sorted(APPROVED_TAGS)}"
        assert dag.doc_md and dag.description, f"{dag.dag_id}: needs doc_md and description"
        assert dag.catchup is False
        for task in dag.tasks:
            assert (task.retries or 0) >= 2, f"{dag.dag_id}.{task.task_id}: retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_param_has_type_title_description_section_default(dagbag, path):
    for dag in _dags_of(dagbag, path):
        for name in dag.params:
            param = dag.params.get_param(name)
            schema = param.schema
            where = f"{dag.dag_id}.params.{name}"
            assert schema.get("type"), f"{where}: no type"
            assert schema.get("title"), f"{where}: no title"
            assert param.description or schema.get("description_md"), f"{where}: no description"
            assert schema.get("section"), f"{where}: no section"
            default = param.value
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            assert default is not None or "null" in types, f"{where}: no default and not nullable"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_the_trigger_form_is_submittable_with_its_defaults(dagbag, path):
    # Regression: "CM variation tags" was type "string" with default "" and `variants` / `md5_by_file`
    # were [] / {}; Airflow's form treats a type without "null" as required, flagged them and kept
    # Trigger disabled on every DAG. An empty default needs a nullable type (and default None).
    import jsonschema

    for dag in _dags_of(dagbag, path):
        for name in dag.params:
            param = dag.params.get_param(name)
            schema, default = param.schema, param.value
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            where = f"{dag.dag_id}.params.{name}"
            if "null" not in types:
                assert default not in (None, "", [], {}), f"{where}: required by the form but empty by default ({default!r})"
            else:
                assert default not in ("", [], {}), f"{where}: an empty optional field must default to None, not {default!r}"
            jsonschema.validate(default, schema)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_descriptions_state_bounds_and_formats(dagbag, path):
    # The form clamps numbers silently and checks patterns only on submit: each field says its limits.
    for dag in _dags_of(dagbag, path):
        for name in dag.params:
            param = dag.params.get_param(name)
            schema, where = param.schema, f"{dag.dag_id}.params.{name}"
            if "minimum" in schema and "maximum" in schema:
                assert f"{schema['minimum']:,}" in param.description, f"{where}: bounds not stated"
                assert f"{schema['maximum']:,}" in param.description, f"{where}: bounds not stated"
            if "pattern" in schema:
                assert "Format:" in param.description, f"{where}: format not stated"


def test_scheduled_refreshes_are_off_unless_an_operator_turns_them_on(tmp_path):
    # Regression: "Unpause on trigger" on @weekly/@monthly DAGs created a catch-up refresh with
    # default params (real mirrors, every model variant), and the user's manual run queued behind it.
    code = "import runpy, sys; g = runpy.run_path(sys.argv[1], run_name='dag_parse'); print(repr(g['dag'].schedule))"
    for stem, suggested in (("imagenet_aux", "@weekly"), ("resnet50_model", "@monthly")):
        path = str(ROOT / "dags" / f"{stem}.py")
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("IMAGENET_OPS_SCHEDULE_")}
        off = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True, env=env)
        assert off.stdout.strip().splitlines()[-1] == "None", f"{stem}: scheduled by default"
        env[f"IMAGENET_OPS_SCHEDULE_{stem.upper()}"] = suggested
        on = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True, env=env)
        assert on.stdout.strip().splitlines()[-1] == repr(suggested), f"{stem}: the operator's schedule is ignored"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_mapped_tasks_are_named(dagbag, path):
    # Mapped task instances showed bare indexes (0, 1, ...); each names its variant, chunk or shard group.
    for dag in _dags_of(dagbag, path):
        for task in dag.tasks:
            if getattr(task, "_is_mapped", False) or type(task).__name__ == "MappedOperator":
                assert task.map_index_template, f"{dag.dag_id}.{task.task_id}: mapped without map_index_template"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_does_not_import_heavy_modules(path):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='dag_parse'); "
        f"print('heavy:' + ','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    # Airflow's own info lines (e.g. "Registered DeadlineReference ...") share stdout: read ours only.
    [heavy] = [line for line in done.stdout.splitlines() if line.startswith("heavy:")]
    assert heavy == "heavy:", f"{path.name} imports {heavy.removeprefix('heavy:')} at parse time"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_pool_used_is_declared_in_airflow_settings(dagbag, path):
    # Regression: a task in an undeclared pool is never scheduled ("non-existent pool"), and
    # dag.test() does not notice; the production-topology test found it.
    import yaml

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    declared = {p["pool_name"] for p in settings["airflow"]["pools"]} | {"default_pool"}
    for dag in _dags_of(dagbag, path):
        for task in dag.tasks:
            assert task.pool in declared, f"{dag.dag_id}.{task.task_id} uses pool {task.pool!r}, not in airflow_settings.yaml"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_task_says_what_it_does_and_what_its_failure_means(dagbag, path):
    """Issue 13 item 7: the task page is where a failure notification's log link lands."""
    for dag in _dags_of(dagbag, path):
        for task in dag.tasks:
            doc = task.doc_md or ""
            what, _, hint = doc.partition("**When it fails:**")
            assert len(what.strip()) > 20 and len(hint.strip()) > 20, f"{dag.dag_id}.{task.task_id}: doc_md is {doc!r}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_has_both_deadline_alerts_and_their_form_fields(dagbag, path):
    # Each alert must also survive serialization and come back through the plugin registry, as in the scheduler.
    from airflow.serialization.decoders import decode_deadline_reference
    from airflow.serialization.encoders import encode_deadline_reference

    from imagenet_operators.deadlines import RunLimitDeadline, RuntimeMultipleDeadline, notify_deadline_missed

    for dag in _dags_of(dagbag, path):
        alerts = {a.name: a for a in dag.deadline or []}
        assert {n: type(a.reference) for n, a in alerts.items()} == {
            "run_limit": RunLimitDeadline,
            "runtime_multiple": RuntimeMultipleDeadline,
        }, f"{dag.dag_id}: deadline alerts"
        for name, alert in alerts.items():
            assert type(alert.callback).__name__ == "AsyncCallback", f"{dag.dag_id}.{name}: runs in the triggerer"
            assert alert.callback.path == f"{notify_deadline_missed.__module__}.{notify_deadline_missed.__qualname__}"
            assert decode_deadline_reference(encode_deadline_reference(alert.reference)).inner_ref == alert.reference
        for name in ("deadline_minutes", "deadline_runtime_multiple"):
            schema = dag.params.get_param(name).schema
            assert schema["section"] == "Operations" and "null" in schema["type"], f"{dag.dag_id}.params.{name}"
        # a scheduled run has no conf: the reference's own default stands in for the Param's
        assert dag.params["deadline_runtime_multiple"] == alerts["runtime_multiple"].reference.default_multiple
