"""Project rules that keep the layering honest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_FILES = sorted((ROOT / "include" / "imagenet_ops").rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_airflow(path):
    airflow = sorted(m for m in _imported_modules(path) if m == "airflow" or m.startswith("airflow."))
    assert not airflow, f"{path.relative_to(ROOT)} imports {airflow}: the library must stay Airflow-free"


def test_every_dependency_is_pinned():
    for name in ("requirements.txt", "requirements-test.txt", "constraints.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                assert "==" in line, f"{name}: {line!r} is not pinned with =="


# -- the layout (issue 11): artifact packages over core and imagenet -----------------------------

PACKAGE = ROOT / "include" / "imagenet_ops"
ARTIFACT_PACKAGES = ("aux", "model", "preprocessed", "training", "accuracy")
# An artifact made from other artifacts' published outputs reads their declarations (configs, env), nothing else.
CONSUMES = {"accuracy": {"model", "preprocessed"}}
SHARED_PACKAGES = ("core", "imagenet")
MAX_MODULE_LINES = 550
URI_PARSER = PACKAGE / "core" / "uris.py"


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _library_imports(path: Path) -> set[str]:
    """Every ``imagenet_ops.<package>`` module a file imports (top level or inside functions)."""
    return {m for m in _imported_modules(path) if m.startswith("imagenet_ops.")}


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_MODULE_LINES}): split it"


@pytest.mark.parametrize(
    "path", [p for p in LIBRARY_FILES if _package_of(p) in ARTIFACT_PACKAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_artifact_packages_import_only_core_imagenet_and_themselves(path):
    own = _package_of(path)
    allowed = {*SHARED_PACKAGES, own, *CONSUMES.get(own, ())}
    wrong = sorted(m for m in _library_imports(path) if m.split(".")[1] not in allowed)
    assert not wrong, (
        f"{path.relative_to(ROOT)} imports {wrong}: artifact packages use only core, imagenet, their own modules "
        "and the artifacts they consume"
    )


@pytest.mark.parametrize(
    "path", [p for p in LIBRARY_FILES if _package_of(p) in SHARED_PACKAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_core_and_imagenet_import_no_artifact_package(path):
    allowed = {"core"} if _package_of(path) == "core" else set(SHARED_PACKAGES)
    wrong = sorted(m for m in _library_imports(path) if m.split(".")[1] not in allowed)
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: shared code must not depend on an artifact"


@pytest.mark.parametrize(
    "path", [p for p in LIBRARY_FILES if _package_of(p) != "testing"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_pipelines_never_import_test_support(path):
    if path.name == "__main__.py":  # the CLI's `sample` subcommand writes the demo's sample data
        return
    wrong = sorted(m for m in _library_imports(path) if m.startswith("imagenet_ops.testing"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: imagenet_ops.testing is for tests, the demo and bench"


DAG_FILES = sorted((ROOT / "dags").glob("*.py"))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_each_dag_imports_one_artifact_package(path):
    used = {m.split(".")[1] for m in _library_imports(path) if m.split(".")[1] in ARTIFACT_PACKAGES}
    assert len(used) == 1, f"{path.name} uses artifact packages {sorted(used)}; a DAG is the face of exactly one artifact"


def _scheme_tests(path: Path) -> list[str]:
    """``x.startswith("s3://")``-style tests and ``"://"`` splits: the URI parsing core/uris owns."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("startswith", "partition", "split") and node.args:
                text = ast.unparse(node.args[0])
                if any(s in text for s in ("s3://", "gs://", "'://'", '"://"', "file://")):
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In):
            if isinstance(node.left, ast.Constant) and node.left.value == "://":
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


# redact.py looks for URLs inside free text (log lines, error messages); it parses no input or output location.
NOT_URI_PARSING = {URI_PARSER, PACKAGE / "core" / "redact.py"}
SOURCE_FILES = sorted(
    p for folder in ("include", "plugins", "dags") for p in (ROOT / folder).rglob("*.py") if p not in NOT_URI_PARSING
)


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_uri_scheme_test_outside_core_uris(path):
    found = _scheme_tests(path)
    assert not found, f"{path.relative_to(ROOT)} parses URIs itself ({found}); use imagenet_ops.core.uris"
