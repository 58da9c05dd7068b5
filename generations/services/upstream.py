"""How the services reach Apiframe: a client from the settings, and the webhook fields every create call carries."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings

from generations.apiframe import ApiframeClient


def apiframe_client(
    client: ApiframeClient | None = None, **overrides: Any
) -> contextlib.AbstractContextManager[ApiframeClient]:
    """The given client (tests pass one), or a new one from the settings (keyword overrides win), closed after use."""
    return contextlib.nullcontext(client) if client else ApiframeClient.from_settings(**overrides)


def webhook_kwargs() -> dict[str, str]:
    if not settings.APIFRAME_WEBHOOK_URL:
        return {}
    return {"webhook_url": settings.APIFRAME_WEBHOOK_URL, "webhook_secret": settings.APIFRAME_WEBHOOK_SECRET}
