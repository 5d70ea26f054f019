#!/usr/bin/env bash
# Are the demo's published bytes the same at two revisions? For refactors that must not change outputs.
#
# Usage: bench/compare_demo_outputs.sh BASE_REV [HEAD_REV]   (HEAD_REV defaults to HEAD)
#
# Both revisions run ./scripts/demo.sh in the same folder (so absolute paths recorded in list files
# and manifests are equal), sharing this checkout's .venv; the sha256 of every published file is
# compared (manifests without what each run's sample server makes differ: its port in source URLs,
# the samples' Last-Modified and the cache key over the URL), then the folder is removed (COMPARE_KEEP=DIR keeps both artifact trees there, to diff them).
# Prints "identical" or the differing files; exit 1 on a difference.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${1:?usage: $0 BASE_REV [HEAD_REV]}"
HEAD_REV="${2:-HEAD}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-demo-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

run_at() {  # run_at REV OUT: the demo at REV, then the sha256 of every artifact file into OUT
  rm -rf "$WORK/tree"
  git -C "$ROOT" worktree add -q --detach "$WORK/tree" "$1"
  ln -s "$ROOT/.venv" "$WORK/tree/.venv"
  (cd "$WORK/tree" && PATH="$ROOT/.venv/bin:$PATH" PYTHONPATH="$WORK/tree/include:$WORK/tree/plugins" \
    bash -c 'source scripts/airflow_env.sh && airflow db migrate >/dev/null 2>&1 &&
             python scripts/load_settings.py airflow_settings.yaml >/dev/null &&
             python scripts/run_demo.py' >"$2.log" 2>&1) || { tail -20 "$2.log" >&2; exit 1; }
  (cd "$WORK/tree/artifacts" && python3 - <<'PY') >"$2"
import hashlib, json, re
from pathlib import Path
# Each run serves freshly generated samples on a random port: a manifest's source URLs, their
# Last-Modified and the cache key (which covers the URL) are the run's, not the code's.
port = re.compile(r"http://127\.0\.0\.1:\d+/")
def norm(v):
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if k not in ("last_modified", "cache_key")}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return port.sub("http://127.0.0.1:PORT/", v) if isinstance(v, str) else v
for f in sorted(p for p in Path(".").rglob("*") if p.is_file() and ".imagenet_ops" not in p.parts):
    data = f.read_bytes()
    if f.name == "manifest.json":
        data = json.dumps(norm(json.loads(data)), sort_keys=True).encode()
    print(hashlib.sha256(data).hexdigest(), f"./{f}" + ("  (normalised)" if f.name == "manifest.json" else ""))
PY
  if [ -n "${COMPARE_KEEP:-}" ]; then mkdir -p "$COMPARE_KEEP" && cp -r "$WORK/tree/artifacts" "$COMPARE_KEEP/$(basename "$2" .sha256)"; fi
  git -C "$ROOT" worktree remove --force "$WORK/tree"
}

run_at "$BASE" "$WORK/base.sha256"
run_at "$HEAD_REV" "$WORK/head.sha256"
files=$(wc -l <"$WORK/head.sha256")
if diff "$WORK/base.sha256" "$WORK/head.sha256" >"$WORK/diff"; then
  echo "identical: $files published files of the demo at $BASE and $HEAD_REV"
else
  echo "DIFFERENT ($BASE vs $HEAD_REV):"; cat "$WORK/diff"; exit 1
fi
