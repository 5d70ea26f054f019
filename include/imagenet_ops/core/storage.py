"""Transitional: the names that moved to :mod:`~imagenet_ops.core.sinks`, :mod:`~imagenet_ops.core.manifest`
and :mod:`~imagenet_ops.core.clients`."""

from imagenet_ops.core.clients import *  # noqa: F403
from imagenet_ops.core.clients import RetrySettings, default_gcs_client  # noqa: F401
from imagenet_ops.core.clients import retrying as _retrying  # noqa: F401
from imagenet_ops.core.manifest import *  # noqa: F403
from imagenet_ops.core.manifest import MANIFEST_NAME, MANIFEST_SCHEMA, PublishResult  # noqa: F401
from imagenet_ops.core.sinks import *  # noqa: F403
from imagenet_ops.core.sinks import STATE_DIR, GCSSink, LocalSink, S3Sink, Sink, _join  # noqa: F401
