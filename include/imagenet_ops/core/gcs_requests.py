"""How every GCS request is made: bounded timeouts, and one retry loop (ours, which logs).

google-cloud-storage retries on its own by default (``DEFAULT_RETRY``, up to 120 s of silent
retries per call) and waits up to 60 s for each answer, so a run against an unreachable endpoint
sat silent for 85-119 s before failing. Every call the sinks and the object store make passes
:func:`call_options`: ``retry=None`` and an explicit ``timeout=(connect, read)``. The transient
failures (:func:`transient_errors`) are retried by the sinks' retry loop under
:class:`~imagenet_ops.core.clients.RetrySettings`, which logs each retry with the endpoint waited for.

Bounds with the default settings (4 attempts, pauses of 1 + 2 + 4 s, connect timeout 10 s, read
timeout 30 s), before a :class:`~imagenet_ops.core.errors.StorageError` names the endpoint:

- nothing listens at the endpoint (connection refused): about 7 s;
- the endpoint does not answer the connect (a firewall, a wrong address): at most 4 x 10 + 7 = 47 s;
- the endpoint accepts the connection but never answers: at most 4 x 30 + 7 = 127 s.
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the TCP connection to a GCS endpoint."""
READ_TIMEOUT = 30.0
"""Seconds to wait for each answer (or the next bytes of a download) once connected."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """The GCS failures worth another attempt: connection errors, timeouts, cut bodies, 429 and 5xx."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import TransportError

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        TransportError,
        gexc.ServerError,
        gexc.TooManyRequests,
        ConnectionError,
    )


def call_options(timeout: tuple[float, float]) -> dict[str, Any]:
    """Keyword arguments for every google-cloud-storage call: our timeout, none of its hidden retries."""
    return {"timeout": timeout, "retry": None}


def endpoint_of(client: Any) -> str:
    """The endpoint a ``google.cloud.storage.Client`` talks to (an emulator's URL, or Google's)."""
    return str(getattr(client, "api_endpoint", None) or "https://storage.googleapis.com")
