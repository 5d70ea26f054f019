"""Build a library ``Sink`` from a sink URI and an Airflow connection id.

* ``s3://``: the Amazon provider's ``S3Hook`` makes the boto3 client (keys, role, ``endpoint_url`` extra).
* ``gs://``: a ``google_cloud_platform`` connection read here and turned into a
  ``google.cloud.storage.Client`` (extras ``keyfile_dict`` / ``key_path`` / ``project`` /
  ``endpoint_url``); the 1.6 GB Google provider is not needed for that (see README).
* a local path: no connection.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook

from imagenet_ops.core.clients import default_gcs_client
from imagenet_ops.core.sinks import Sink, open_sink
from imagenet_ops.core.uris import split_uri

_GCP_PREFIX = "extra__google_cloud_platform__"


def _gcp_extra(extra: dict[str, Any], key: str) -> Any:
    return extra.get(key) or extra.get(_GCP_PREFIX + key)


def gcs_client_from_connection(conn_id: str | None) -> Any:
    """A storage client for ``conn_id`` (environment defaults when ``None``)."""
    if not conn_id:
        return default_gcs_client()
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    credentials = None
    keyfile = _gcp_extra(extra, "keyfile_dict")
    key_path = _gcp_extra(extra, "key_path")
    if keyfile or key_path:
        from google.oauth2 import service_account

        if keyfile:
            info = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
            credentials = service_account.Credentials.from_service_account_info(info)
        else:
            credentials = service_account.Credentials.from_service_account_file(key_path)
    endpoint = _gcp_extra(extra, "endpoint_url") or extra.get("gcs.endpoint")
    return default_gcs_client(project=_gcp_extra(extra, "project"), endpoint=endpoint, credentials=credentials)


def sink_from_connection(uri: str, conn_id: str | None) -> Sink:
    """Open the sink at ``uri`` with credentials from ``conn_id``."""
    scheme, _, _ = split_uri(uri)
    if scheme == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return open_sink(uri, s3_client=S3Hook(aws_conn_id=conn_id).get_conn())
    if scheme == "gs":
        return open_sink(uri, gcs_client=gcs_client_from_connection(conn_id))
    return open_sink(uri)


def store_from_connection(uris: list[str | None], conn_id: str | None) -> Any:
    """An ``ObjectStore`` reading the inputs ``uris`` with credentials from ``conn_id``.

    Only the clients of the schemes actually used are built; local paths need none.
    """
    from imagenet_ops.core.store import ObjectStore

    schemes = {split_uri(u)[0] for u in uris if u}
    s3_client = gcs_client = None
    if "s3" in schemes:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        s3_client = S3Hook(aws_conn_id=conn_id).get_conn()
    if "gs" in schemes:
        gcs_client = gcs_client_from_connection(conn_id)
    return ObjectStore(s3_client=s3_client, gcs_client=gcs_client)
