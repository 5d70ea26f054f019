#!/usr/bin/env bash
# README command 2 (and CI): lint with ruff (incl. Airflow AIR rules), then the whole test suite,
# including the real-browser UI tests (Debian chromium + chromium-driver, installed here when missing).
# Installs .venv first if needed. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
./scripts/install_browser.sh
ruff check .
ruff format --check .
python -m pytest "$@"
