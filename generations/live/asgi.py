"""The event stream's ASGI handler: Django's, minus the thread it keeps per request.

Django runs each request's synchronous parts (here: the session, login and team middleware) in a thread of the
request's own, kept until the response ends: for a stream that lives for minutes, a parked thread and its stack
(~300 KiB) per open tab. The stream's synchronous parts are a few queries at connect; here they take turns in
asgiref's one shared thread instead, and the stream itself runs on the event loop.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler


class EventStreamHandler(ASGIHandler):
    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)  # no ThreadSensitiveContext: the shared thread, not one of its own
