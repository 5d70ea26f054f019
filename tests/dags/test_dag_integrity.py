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
def test_parsing_does_not_import_heavy_modules(path):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='dag_parse'); "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"{path.name} imports {done.stdout.strip()} at parse time"


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
