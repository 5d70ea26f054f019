"""Asset events for published artifacts, and the one-line log summary of a publish."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from imagenet_ops.core.manifest import PublishResult
from imagenet_ops.core.progress import human_bytes

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context


def asset_extra(result: PublishResult, *, run_seconds: float | None = None) -> dict[str, Any]:
    """The manifest's key facts, for the Asset event's extra; with the run's duration so far, its throughput.

    ``run_seconds`` is from the run's start to this publish, so trends of build time and
    bytes per second can be charted from the Asset events alone.
    """
    m = result.manifest
    extra = {
        "artifact": m["artifact"],
        "library_version": m["library_version"],
        "cache_key": result.cache_key,
        "manifest_uri": result.manifest_uri,
        "files": result.files,
        "bytes": result.bytes,
        "upstream": m.get("upstream", {}),
    }
    seconds = round(run_seconds, 3) if run_seconds is not None else 0.0
    if seconds > 0:
        extra |= {"run_seconds": seconds, "bytes_per_second": round(result.bytes / seconds)}
    return extra


def _run_seconds(context: Context) -> float | None:
    """Seconds since the DAG run started (None when the context has no started run)."""
    from datetime import UTC, datetime

    started = getattr(context.get("dag_run"), "start_date", None)
    return (datetime.now(UTC) - started).total_seconds() if isinstance(started, datetime) else None


def emit_artifact_event(op: BaseOperator, context: Context, result: PublishResult) -> None:
    """Log the outcome; on a real publish add an event for the sink URI to each AssetAlias outlet."""
    from imagenet_operators.links import record_location

    record_location(op, context, uri=result.uri, manifest_uri=result.manifest_uri)  # what the task's extra links open
    upstream = result.manifest.get("upstream", {})
    if result.cache_hit:
        op.log.info(
            "Cache hit: %s already holds this artifact (upstream bytes unchanged: %s; provenance %s); "
            "not re-publishing, no Asset event",
            result.uri,
            json.dumps(upstream, sort_keys=True),
            json.dumps(result.manifest.get("provenance", {}), sort_keys=True),
        )
        return
    previous = result.previous_upstream
    if previous is None:
        why = "first publish"
    elif previous != upstream:
        why = f"upstream changed: {json.dumps(previous, sort_keys=True)} -> {json.dumps(upstream, sort_keys=True)}"
    else:
        why = "configuration or library version changed"
    for alias in op.outlets:
        if isinstance(alias, AssetAlias):
            extra = asset_extra(result, run_seconds=_run_seconds(context))
            context["outlet_events"][alias].add(Asset(result.asset_uri), extra=extra)
    op.log.info(
        "Published %d files (%s) to %s, manifest %s (%s)",
        result.files,
        human_bytes(result.bytes),
        result.uri,
        result.manifest_uri,
        why,
    )
