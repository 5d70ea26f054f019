"""Asset events for published artifacts, and the one-line log summary of a publish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from imagenet_ops.progress import human_bytes
from imagenet_ops.storage import PublishResult

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
        "upstream_sha256": m.get("upstream", {}).get("sha256"),
    }


def emit_artifact_event(op: BaseOperator, context: Context, result: PublishResult) -> None:
    """Log the outcome; on a real publish add an event for the sink URI to each AssetAlias outlet."""
    if result.cache_hit:
        up = result.manifest.get("upstream", {})
        prov = result.manifest.get("provenance", {})
        op.log.info(
            "Cache hit: %s already holds this artifact (upstream bytes unchanged: sha256 %s, ETag %s); "
            "not re-publishing, no Asset event",
            result.uri,
            up.get("sha256"),
            prov.get("etag"),
        )
        return
    previous = (result.previous_upstream or {}).get("sha256")
    now = result.manifest.get("upstream", {}).get("sha256")
    why = (
        "first publish"
        if result.previous_upstream is None
        else (f"upstream changed: sha256 {previous} -> {now}" if previous != now else "configuration or library version changed")
    )
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
