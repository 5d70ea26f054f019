"""Credentials in URLs, kept out of what is recorded: logs, manifests, download results, cache keys.

A mirror URL may carry ``user:password@host``, or a presigned query (``X-Amz-Signature=…``,
``X-Goog-Signature=…``, ``token=…``). The URL is used as given to download; wherever it is
*recorded*, :func:`redact_url` writes ``***`` for the password and for every sensitive query
value. The rest of the URL stays, so a log line still says which mirror failed, and a cache
key stays the same when only a rotating signature changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SENSITIVE_QUERY = re.compile(r"(signature|sig|token|secret|password|passwd|credential|key|auth|session)", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def _netloc(parts: Any) -> str:
    if parts.password is None:
        return parts.netloc
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return f"{user}:{MASK}@{host}"


def url_secrets(url: str) -> list[str]:
    """The secret parts of ``url``: its password and the values of sensitive query parameters."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password] if parts.password else []
    except ValueError:
        return []
    secrets += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if v and _SENSITIVE_QUERY.search(k)]
    return secrets


def redact_url(url: str) -> str:
    """``url`` with its password and sensitive query values replaced by ``***``; unchanged if it has none."""
    if not url_secrets(url):
        return url
    parts = urlsplit(url)
    query = urlencode(
        [(k, MASK if v and _SENSITIVE_QUERY.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, _netloc(parts), parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (for messages that quote URLs)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_values(value: Any) -> Any:
    """``value`` (dicts, lists, strings) with every URL string redacted, for manifests and cache keys."""
    if isinstance(value, str):
        return redact_text(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_values(v) for v in value)
    return value


def secrets_in(value: Any) -> list[str]:
    """Every URL secret inside ``value`` (dicts, lists, strings)."""
    if isinstance(value, str):
        return [s for m in _URL_IN_TEXT.finditer(value) for s in url_secrets(m.group(0))] if "://" in value else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in secrets_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in secrets_in(v)]
    return []
