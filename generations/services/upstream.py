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


def webhook_kwargs(*, task_id: int | None = None) -> dict[str, str]:
    """The webhook fields of a create call. With our task's id in the URL, a delivery can still find its task when
    the worker that sent it died before saving the id Apiframe answered (applying.webhook_receive adopts it)."""
    if not settings.APIFRAME_WEBHOOK_URL:
        return {}
    url = settings.APIFRAME_WEBHOOK_URL
    if task_id is not None:
        url += f"{'&' if '?' in url else '?'}task={task_id}"
    return {"webhook_url": url, "webhook_secret": settings.APIFRAME_WEBHOOK_SECRET}
