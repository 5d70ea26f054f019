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
