#!/usr/bin/env bash
# README command 1: run every DAG end to end on the embedded default (SQLite, local execution,
# ./artifacts as the object store, generated sample data served on 127.0.0.1). Installs .venv first if needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
source scripts/airflow_env.sh
echo "demo: AIRFLOW_HOME=$AIRFLOW_HOME, artifacts -> $IMAGENET_OPS_SINK_ROOT" >&2
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
python scripts/load_settings.py airflow_settings.yaml
python scripts/run_demo.py 2> >(grep -v -E "UserWarning|warnings.warn" >&2)
