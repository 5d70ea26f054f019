#!/usr/bin/env bash
# Start the Airflow UI on the embedded default (airflow standalone: api-server, scheduler,
# dag-processor, triggerer, LocalExecutor on SQLite) at http://127.0.0.1:8080.
# The admin password is printed below and kept in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
source scripts/airflow_env.sh
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
python scripts/load_settings.py airflow_settings.yaml
pw="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
( for _ in $(seq 1 60); do [ -s "$pw" ] && break; sleep 1; done
  [ -s "$pw" ] && echo "ui: http://$AIRFLOW__API__HOST:$AIRFLOW__API__PORT  login: admin / $(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$pw")" >&2 ) &
exec airflow standalone
