"""Load an Astro-CLI ``airflow_settings.yaml`` into a plain Airflow (connections, pools, variables).

Converts the file to the JSON formats of ``airflow connections|pools|variables import`` and runs
them. By default existing objects are overwritten (the local default: the file is the truth).
With ``--only-missing`` (what the compose file's ``airflow-init`` runs on every ``up``) only what
does not exist yet is created, so a pool an operator resized or a connection pointed at another
endpoint is never reset.

Usage: python scripts/load_settings.py [--only-missing] [airflow_settings.yaml]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml


def convert(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (connections, pools, variables) in the Airflow import formats."""
    section = (settings or {}).get("airflow") or {}
    connections: dict[str, Any] = {}
    for c in section.get("connections") or []:
        fields = {
            k if k == "conn_type" else k[5:]: c[k]
            for k in ("conn_type", "conn_host", "conn_schema", "conn_login", "conn_password", "conn_port")
            if c.get(k) not in (None, "")
        }
        extra = c.get("conn_extra")
        if extra:
            fields["extra"] = extra if isinstance(extra, dict) else json.loads(extra)
        if c.get("conn_uri") and len(fields) == 0:
            connections[c["conn_id"]] = c["conn_uri"]
        else:
            connections[c["conn_id"]] = fields
    pools = {
        p["pool_name"]: {"slots": int(p["pool_slot"]), "description": p.get("pool_description", ""), "include_deferred": False}
        for p in section.get("pools") or []
        if p.get("pool_slot") is not None
    }
    variables = {v["variable_name"]: v.get("variable_value", "") for v in section.get("variables") or []}
    return connections, pools, variables


def existing_pools() -> set[str]:
    """The names of the pools already defined (``airflow pools list``)."""
    done = subprocess.run([sys.executable, "-m", "airflow", "pools", "list", "-o", "json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"load_settings: listing pools failed:\n{done.stdout}{done.stderr}")
    return {p["pool"] for p in json.loads(done.stdout or "[]")}


def main(*argv: str) -> int:
    only_missing = "--only-missing" in argv
    paths = [a for a in argv if a != "--only-missing"] or ["airflow_settings.yaml"]
    path = paths[0]
    connections, pools, variables = convert(yaml.safe_load(Path(path).read_text()))
    if only_missing:
        pools = {name: spec for name, spec in pools.items() if name not in existing_pools()}
    with tempfile.TemporaryDirectory() as tmp:
        steps = []
        for name, data, cmd in (
            ("connections", connections, ["connections", "import"] + ([] if only_missing else ["--overwrite"])),
            ("pools", pools, ["pools", "import"]),
            ("variables", variables, ["variables", "import", "-a", "skip" if only_missing else "overwrite"]),
        ):
            if not data:
                continue
            file = Path(tmp) / f"{name}.json"
            file.write_text(json.dumps(data))
            steps.append((name, len(data), [sys.executable, "-m", "airflow", *cmd, str(file)]))
        for name, count, cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"load_settings: importing {name} failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
                return done.returncode
            what = "checked (existing ones kept)" if only_missing and name != "pools" else "imported"
            print(f"load_settings: {count} {name} {what} from {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
