#!/usr/bin/env bash
# The embedded default: a project-local AIRFLOW_HOME with SQLite, the local executor, and a local
# folder as the object store. Sourced by the README commands; every value can be overridden.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
# SQLite lets one writer in at a time, and pysqlite gives up on its lock after 5 s. Writers wait up
# to 30 s for their turn instead (WAL mode is on already: Airflow sets it). The api-server's own
# deadlock on SQLite is fixed in plugins/airflow_local_settings.py.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db?timeout=30}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
export IMAGENET_OPS_SINK_ROOT="${IMAGENET_OPS_SINK_ROOT:-$ROOT/artifacts}"
export IMAGENET_OPS_WORK_DIR="${IMAGENET_OPS_WORK_DIR:-$AIRFLOW_HOME/imagenet_ops_work}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false NO_GCE_CHECK=true
mkdir -p "$AIRFLOW_HOME"
# A per-install JWT secret of 64+ bytes (Airflow warns on shorter ones), kept beside the DB.
if [ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]; then
  [ -f "$AIRFLOW_HOME/.jwt_secret" ] || python3 -c 'import secrets; print(secrets.token_hex(48))' > "$AIRFLOW_HOME/.jwt_secret"
  AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/.jwt_secret")"
  export AIRFLOW__API_AUTH__JWT_SECRET
fi
