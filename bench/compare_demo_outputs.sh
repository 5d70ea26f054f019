#!/usr/bin/env bash
# Are the demo's published bytes the same at two revisions? For refactors that must not change outputs.
#
# Usage: bench/compare_demo_outputs.sh BASE_REV [HEAD_REV]   (HEAD_REV defaults to HEAD)
#
# Both revisions run ./scripts/demo.sh in the same folder (so absolute paths recorded in list files
# and manifests are equal), sharing this checkout's .venv; the sha256 of every published file is
# compared, then the folder is removed. Prints "identical" or the differing files; exit 1 on a difference.
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
  (cd "$WORK/tree/artifacts" && find . -type f -not -path '*/.imagenet_ops/*' -print0 | sort -z | xargs -0 sha256sum) >"$2"
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
