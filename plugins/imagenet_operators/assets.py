"""Asset events and lineage of published artifacts, and the one-line log summary of a publish.

Names: every Asset carries the readable name of :func:`imagenet_ops.core.lineage.asset_name`,
``<artifact>[/<variant>]@<scheme>:<digest of the URI>`` (``imagenet_aux@file:3f0c2a91``,
``resnet50_model/onnx-fp32-argmax-opset11@s3:8d2e51b0``); its URI is the sink's. Airflow 3 keeps
names and URIs each unique among active assets, so each sink of an artifact has a name of its
own, the same on every run (that module says why the sink is always in the name).

Inlets: a run that reads another published artifact (a dataset DAG labelling its validation
images with the aux artifact) names it in ``inlets`` (artifact -> location as given). Airflow 3.3
has no per-run inlet record a task can write (static ``inlets=`` are fixed at parse time, and
``inlet_events`` only reads), so the publishing task records it twice:

* in the Asset event's extra, ``"inlets": [{"name", "uri"}]``, visible in the metadata DB and
  through ``GET /api/v2/assets/events``;
* through Airflow's hook-lineage collector (``add_input_asset``, with the published artifact as
  ``add_output_asset``), which the OpenLineage provider reads when it is installed. It reads the
  collector *instead of* the task's outlets once the collector holds anything, hence the output is
  added there too. Without a lineage reader (no OpenLineage) the collector is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from imagenet_ops.core.lineage import artifact_uri, asset_name
from imagenet_ops.core.manifest import PublishResult
from imagenet_ops.core.progress import human_bytes

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context


def artifact_asset(artifact: str, uri: str, *, variant: str | None = None) -> Asset:
    """The Asset of ``artifact`` (``variant``) at the sink ``uri``, with its readable name."""
    return Asset(name=asset_name(artifact, uri, variant=variant), uri=uri)


def inlet_assets(inlets: Mapping[str, str] | None) -> list[Asset]:
    """The Assets of the published artifacts a run read: ``{"imagenet_aux": "/data/aux"}`` -> that sink's Asset."""
    return [artifact_asset(artifact, artifact_uri(location)) for artifact, location in sorted((inlets or {}).items())]


def asset_extra(result: PublishResult, *, run_seconds: float | None = None, inlets: list[Asset] | None = None) -> dict[str, Any]:
    """The manifest's key facts, for the Asset event's extra; with the run's duration so far, its throughput.

    ``run_seconds`` is from the run's start to this publish, so trends of build time and
    bytes per second can be charted from the Asset events alone. ``inlets``, the published
    artifacts the run read, are listed by name and URI when there are any.
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
    if inlets:
        extra["inlets"] = [{"name": a.name, "uri": a.uri} for a in inlets]
    return extra


def _hook_lineage(op: BaseOperator, *, inputs: list[Asset], outputs: list[Asset]) -> None:
    """Report ``inputs`` / ``outputs`` to Airflow's hook-lineage collector (read by OpenLineage; a no-op without it)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for asset in inputs:
        collector.add_input_asset(context=op, uri=asset.uri, name=asset.name)
    for asset in outputs:
        collector.add_output_asset(context=op, uri=asset.uri, name=asset.name)


def _run_seconds(context: Context) -> float | None:
    """Seconds since the DAG run started (None when the context has no started run)."""
    from datetime import UTC, datetime

    started = getattr(context.get("dag_run"), "start_date", None)
    return (datetime.now(UTC) - started).total_seconds() if isinstance(started, datetime) else None


def emit_artifact_event(
    op: BaseOperator,
    context: Context,
    result: PublishResult,
    *,
    variant: str | None = None,
    inlets: Mapping[str, str] | None = None,
) -> None:
    """Log the outcome and record the lineage; on a real publish add an event for the sink's Asset to each AssetAlias outlet.

    :param variant: the variant id, for artifacts published one folder per variant (in the Asset's name).
    :param inlets: the published artifacts this run read, artifact -> location as given; recorded
        on a cache hit too (the run read them to find the hit), as lineage inputs only.
    """
    from imagenet_operators.links import artifact_links, record_location
    from imagenet_operators.run_note import record_summary

    published = artifact_asset(result.manifest["artifact"], result.asset_uri, variant=variant)
    run_seconds = _run_seconds(context)
    if context.get("ti") is not None:  # the links and the run's note read these XComs of the task instance
        report = result.manifest.get("report")
        report_uri = f"{result.uri.rstrip('/')}/{report['report']}" if report else None
        links = artifact_links(op, uri=result.uri, manifest_uri=result.manifest_uri, report_uri=report_uri)
        record_location(op, context, links=links)  # what the task's extra links open
        record_summary(context, name=published.name, result=result, links=links, run_seconds=run_seconds)  # the run's note
    used = inlet_assets(inlets)
    upstream = result.manifest.get("upstream", {})
    if result.cache_hit:
        _hook_lineage(op, inputs=used, outputs=[])
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
            extra = asset_extra(result, run_seconds=run_seconds, inlets=used)
            context["outlet_events"][alias].add(published, extra=extra)
    _hook_lineage(op, inputs=used, outputs=[published])
    op.log.info(
        "Published %d files (%s) to %s as Asset %s, manifest %s (%s)%s",
        result.files,
        human_bytes(result.bytes),
        result.uri,
        published.name,
        result.manifest_uri,
        why,
        f"; read {', '.join(a.name for a in used)}" if used else "",
    )
