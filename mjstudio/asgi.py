"""The ASGI entry point: gunicorn's uvicorn workers serve the site through it when live push is on (the studio's
server-sent events hold a connection per open tab, which an event loop keeps cheaply)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")

application = get_asgi_application()
