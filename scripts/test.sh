#!/usr/bin/env bash
# README command 2 (and CI): lint with ruff (incl. Airflow AIR rules), then the whole test suite.
# Installs .venv first if needed. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
ruff check .
ruff format --check .
python -m pytest "$@"
