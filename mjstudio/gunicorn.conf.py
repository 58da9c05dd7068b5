"""gunicorn settings for the web process (Procfile `web`, and `make run`). Every value can be overridden with
GUNICORN_CMD_ARGS, e.g. GUNICORN_CMD_ARGS="--bind 0.0.0.0:8000 --access-logfile -" in a container.

Reload gracefully with `kill -HUP <master pid>`: new workers load the new code, old ones finish their requests.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")

chdir = str(Path(__file__).resolve().parent.parent)  # manage.py's folder, whatever the caller's
sys.path.insert(0, chdir)  # the settings decide the worker class below
from django.conf import settings  # noqa: E402

# Live push (REDIS_URL) keeps a server-sent event stream open per studio tab: uvicorn workers (ASGI) hold them on
# an event loop; a gthread worker would spend a thread on each. Without it, gthread (WSGI) as before.
live_push = settings.LIVE_PUSH
wsgi_app = "mjstudio.asgi:application" if live_push else "mjstudio.wsgi:application"
# Loopback by default: a reverse proxy on the same box terminates TLS and forwards here.
bind = [f"127.0.0.1:{os.environ.get('PORT', '8000')}"]

# Sized to the machine: a few processes per core, each with threads for requests that wait on the database.
cores = os.cpu_count() or 1
workers = int(os.environ.get("WEB_CONCURRENCY", cores + 1))
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "generations.live.worker.StudioUvicornWorker" if live_push else "gthread"
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 30  # on HUP/TERM, requests in flight get this long to finish
keepalive = 5  # seconds an idle keep-alive connection from the proxy is kept

accesslog = None  # the reverse proxy logs requests; add --access-logfile - to see them here
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "mjstudio-web"
# gunicorn's control socket has one default path per user, which several copies on one box would share.
control_socket_disable = True


def on_starting(server: object) -> None:
    """In the master, before any worker: a missing production variable stops gunicorn here, in one line."""
    from django.conf import settings

    if not settings.DEBUG and settings.APIFRAME_IS_SANDBOX:
        server.log.warning(  # type: ignore[attr-defined]
            "Production mode pointed at a sandbox (%s): fine for CI and staging, never for real users.",
            settings.APIFRAME_BASE_URL,
        )


def post_worker_init(worker: object) -> None:
    """In each worker, once the app is loaded: Django, its settings and our modules live as long as the worker.
    Frozen, the garbage collector's full passes skip them instead of walking them all again every few thousand
    requests (bench/webhook_ingest.py: about 5 % of the web process's CPU)."""
    gc.collect()
    gc.freeze()
