"""Asset events for published artifacts, and the one-line log summary of a publish."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from imagenet_ops.core.manifest import PublishResult
from imagenet_ops.core.progress import human_bytes

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context


def asset_extra(result: PublishResult) -> dict[str, Any]:
    """The manifest's key facts, for the Asset event's extra."""
    m = result.manifest
    return {
        "artifact": m["artifact"],
        "library_version": m["library_version"],
        "cache_key": result.cache_key,
        "manifest_uri": result.manifest_uri,
        "files": result.files,
        "bytes": result.bytes,
        "upstream": m.get("upstream", {}),
    }


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
            context["outlet_events"][alias].add(Asset(result.asset_uri), extra=asset_extra(result))
    op.log.info(
        "Published %d files (%s) to %s, manifest %s (%s)",
        result.files,
        human_bytes(result.bytes),
        result.uri,
        result.manifest_uri,
        why,
    )
