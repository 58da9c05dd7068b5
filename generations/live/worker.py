"""gunicorn's web worker when live push is on: uvicorn (ASGI), with a short graceful shutdown.

Open event streams never end by themselves: on a reload or a stop, a worker would otherwise wait out gunicorn's
whole graceful_timeout for them. Here it waits LIVE_SHUTDOWN_SECONDS for requests in flight, then ends the streams,
and lets them give their slots back (access.py) before the event loop closes; the browsers reconnect (to the new
workers) and resume after their last event.
"""

from __future__ import annotations

import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

LIVE_SHUTDOWN_SECONDS = 10
# Cancelled streams give their slots back in a few milliseconds; a Redis that does not answer lets them lapse.
SLOTS_BACK_SECONDS = 2


class StudioUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "timeout_graceful_shutdown": LIVE_SHUTDOWN_SECONDS,
        "lifespan": "off",
    }

    async def _serve(self) -> None:  # uvicorn_worker's, with the server below
        self.config.app = self.wsgi
        server = _Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class _Server(Server):
    async def shutdown(self, sockets: list | None = None) -> None:
        await super().shutdown(sockets)
        # uvicorn has just cancelled the streams still open, and the worker exits as soon as this returns (the
        # signal it caught is raised again): the streams' tidy-up gets its moment here.
        from generations.live import views  # after Django is set up, which loading the app did

        await views.streams_ended(seconds=SLOTS_BACK_SECONDS)
