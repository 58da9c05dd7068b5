"""The ASGI entry point: gunicorn's uvicorn workers serve the site through it when live push is on (the studio's
server-sent events hold a connection per open tab, which an event loop keeps cheaply)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")

django_application = get_asgi_application()

from django.urls import reverse  # noqa: E402 (after Django is set up)

from generations.live.asgi import EventStreamHandler  # noqa: E402

events_application = EventStreamHandler()
EVENTS_PATH = reverse("generations:studio_events")


async def application(scope: dict, receive: object, send: object) -> None:
    # The studio's event streams live for minutes: their own handler, without a thread parked per stream.
    if scope["type"] == "http" and scope["path"].endswith(EVENTS_PATH):
        await events_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)
