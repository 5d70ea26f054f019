"""Extra links on each publishing task: the artifact's folder, its ``manifest.json`` and its data-quality report.

The publishing task records where it published (:func:`record_location`, an XCom); the links
read it. A local folder opens as ``file://``; an S3 or GCS sink opens in the AWS or Google Cloud
console (an S3-protocol server of its own, such as the compose deployment's MinIO, by its
path-style URL). A task that published nothing (it failed) shows no link, and an artifact
without a report (published before reports existed, or with ``IMAGENET_OPS_REPORTS=off``) no
report link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from imagenet_ops.core.uris import browse_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.execution_time.xcom import TIKey

LOCATION_XCOM = "artifact_location"


def artifact_links(op: BaseOperator, *, uri: str, manifest_uri: str, report_uri: str | None) -> dict[str, str]:
    """The URLs a person opens for the artifact at ``uri``: its folder, manifest and (if it has one) report."""
    endpoint = _endpoint(op)
    value = {
        "folder": browse_url(uri, endpoint=endpoint, folder=True),
        "manifest": browse_url(manifest_uri, endpoint=endpoint, folder=False),
    }
    if report_uri:
        value["report"] = browse_url(report_uri, endpoint=endpoint, folder=False)
    return value


def record_location(op: BaseOperator, context: Context, *, links: dict[str, str]) -> None:
    """Push the URLs the links show (a cache hit's too: the artifact is there)."""
    ti = context.get("ti")
    if ti is None:  # an execute() called without a task instance (tests, a plain call): no links to show
        return
    ti.xcom_push(key=LOCATION_XCOM, value=links)


def _endpoint(op: Any) -> str | None:
    """The sink's own endpoint (an S3-protocol server or a GCS emulator), when it has one."""
    try:
        sink = op._sink()
    except Exception:  # noqa: BLE001 - a link is a convenience: without the endpoint, the console's URL
        return None
    client = getattr(sink, "client", None)
    return getattr(getattr(client, "meta", None), "endpoint_url", None) or getattr(client, "api_endpoint", None)


class _ArtifactLink(BaseOperatorLink):
    field = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TIKey) -> str:
        value = XCom.get_value(ti_key=ti_key, key=LOCATION_XCOM)
        return value.get(self.field, "") if isinstance(value, dict) else ""


class ArtifactFolderLink(_ArtifactLink):
    name = "Artifact folder"
    field = "folder"


class ManifestLink(_ArtifactLink):
    name = "manifest.json"
    field = "manifest"


class ReportLink(_ArtifactLink):
    name = "Data-quality report"
    field = "report"


ARTIFACT_LINKS = (ArtifactFolderLink(), ManifestLink(), ReportLink())
