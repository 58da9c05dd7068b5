"""gunicorn's web worker when live push is on: uvicorn (ASGI), with a short graceful shutdown.

Open event streams never end by themselves: on a reload or a stop, a worker would otherwise wait out gunicorn's
whole graceful_timeout for them. Here it waits LIVE_SHUTDOWN_SECONDS for requests in flight, then ends the streams;
the browsers reconnect (to the new workers) and resume after their last event.
"""

from __future__ import annotations

from uvicorn_worker import UvicornWorker

LIVE_SHUTDOWN_SECONDS = 10


class StudioUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "timeout_graceful_shutdown": LIVE_SHUTDOWN_SECONDS,
        "lifespan": "off",
    }
