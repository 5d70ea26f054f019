"""URL credentials in an operator's arguments are masked in its task log by Airflow's secrets masker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from airflow.sdk import Context


class MasksURLSecrets:
    """Mixin for our operators: before ``execute``, register every URL credential found in the
    templated fields (``user:password@``, presigned signature and token values) with Airflow's
    secrets masker, so the task log shows ``***`` wherever one would appear."""

    template_fields: Any = ()

    def pre_execute(self, context: Context) -> None:
        from airflow.sdk.log import mask_secret

        from imagenet_ops.core.redact import secrets_in

        for name in self.template_fields:
            for secret in secrets_in(getattr(self, name, None)):
                mask_secret(secret)
                mask_secret(quote(secret, safe=""))
