"""Lineage names: the readable, unique Asset name of a published artifact, and the URI of one given by location.

An artifact in a sink is named ``<artifact>[/<variant>]@<scheme>:<digest>``, for example
``imagenet_aux@file:3f0c2a91`` or ``resnet50_model/onnx-fp32-argmax-opset11@s3:8d2e51b0``:

* ``<artifact>`` is the DAG id (``imagenet_aux``, ``imagenet_preprocessed``, ...), ``<variant>`` the
  model's variant id (the folder it lands in), so a name says what the artifact is at a glance and
  ``name_prefix_pattern=imagenet_aux@`` finds every copy of it;
* ``<scheme>:<digest>`` tells which sink: its scheme (``file``, ``s3``, ``gs``) and the first 8 hex
  digits of the sha256 of its URI. The full location stays in the Asset's URI.

Why every name carries the sink: Airflow 3 keeps the name and the URI *each* unique among active
assets (``AssetActive``). Two sinks of one artifact (a local folder and an S3 prefix, a staging and
a production bucket) are two URIs, so they need two names; an asset whose name is already taken by
another URI is recorded but never activated, so ``GET /api/v2/assets`` and the UI do not list it.
A disambiguator added "only when needed" would need the metadata DB at publish time (a task has
none) and would make a sink's name depend on which sink was published first; a pure function of
artifact, variant and URI gives every sink the same name on every run, on every worker.

This module has no Airflow import: the operators build the ``Asset`` from these strings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagenet_ops.core.uris import is_remote, parse_location, scheme_of

AUX_ARTIFACT = "imagenet_aux"
"""The aux artifact's name (declared by :mod:`imagenet_ops.aux`): the dataset artifacts read it for their labels."""

DIGEST_CHARS = 8
"""Hex digits of the URI's sha256 in a name: two sinks of one artifact collide with odds of 1 in 4 billion."""


def artifact_uri(location: str) -> str:
    """The Asset URI of an artifact at ``location``: ``file:///abs/path``, or the ``s3://`` / ``gs://`` URI, no trailing ``/``.

    The same URI the publishing task's event carries for that sink (a local folder resolved as
    :class:`~imagenet_ops.core.sinks.LocalSink` resolves it), so a consumer's inlet names the
    asset the producer published.
    """
    if is_remote(location):
        return location.rstrip("/")
    return Path(parse_location(location).key).expanduser().resolve().as_uri()  # a path or a file:// URI


def location_of(uri: str) -> str:
    """The location an Asset URI names: a ``file://`` URI's local path, an ``s3://`` / ``gs://`` URI as it is."""
    loc = parse_location(uri)
    return loc.key if loc.scheme == "file" else uri


def asset_name(artifact: str, uri: str, *, variant: str | None = None) -> str:
    """``<artifact>[/<variant>]@<scheme>:<digest>``: the readable name of ``artifact`` (``variant``) published at ``uri``.

    Args:
        artifact: the artifact (the DAG id).
        uri: the Asset URI of the sink (:func:`artifact_uri`).
        variant: a variant id for artifacts published one folder per variant (ResNet-50 models).
    """
    base = f"{artifact}/{variant}" if variant else artifact
    digest = hashlib.sha256(uri.encode()).hexdigest()[:DIGEST_CHARS]
    return f"{base}@{scheme_of(uri)}:{digest}"
