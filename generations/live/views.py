"""The studio's live stream: server-sent events carrying changed cards, read from the team's Redis Stream.

An idle stream costs a blocking read on Redis and, once a heartbeat, the check that its user may still see it
(access.py: two queries); the cards are read (one query set per batch of changes, the pulse's card rules) only when
the team's stream has news. A stream whose user lost access (logged out, removed from the team) ends with a
`reload` event: the page loads itself again, as the login page or the team the user is in now. Served under ASGI
only (gunicorn's uvicorn workers): a WSGI server would hold a thread per open tab, so there the studio keeps its
pulse.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from generations.live import access, stream
from generations.models import Task
from generations.services import teams

logger = logging.getLogger(__name__)

# Changes read from the stream at once; their cards go out in events of at most PULSE_MAX_CARDS cards.
BATCH_ENTRIES = 100
# How long the browser waits before it reconnects (EventSource's `retry`), in milliseconds.
RECONNECT_MS = 1000
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}", re.ASCII)  # Redis reads ASCII digits only
_TEAM_ID = re.compile(r"[0-9]{1,19}")  # not str.isdigit(): "²" is a digit that int() refuses
# The stream's last words when its user may no longer see it: the page loads itself again (studio.js).
RELOAD = "event: reload\ndata: \n\n"
# This process's open streams (their slots), until each has given its slot back: a worker shutting down waits for
# the streams it cancelled to do so (worker.py), or their users' next tabs would find them taken for a minute.
_open_slots: set[str] = set()


@dataclass(frozen=True)
class Viewer:
    grant: access.Grant
    mine_only: bool

    @property
    def team_id(self) -> int:
        return self.grant.team_id


def live_for(request: HttpRequest) -> bool:
    """Live push for this page: Redis configured, and a server that can hold many open streams (ASGI)."""
    return stream.enabled() and isinstance(request, ASGIRequest)


def events_url(*, team_id: int, mine_only: bool) -> str:
    """The page's stream, starting after the team's newest change: read before the page reads its cards, so that
    a change made in between is sent (a card sent twice is skipped by the page). It names the page's team: a
    reconnect after the session left it (removed, or another tab chose another team) reloads the page instead."""
    query = [f"team={team_id}"]
    if after := stream.stream_position(team_id=team_id):
        query.append(f"after={after}")
    if mine_only:
        query.append("mine=1")
    return reverse("generations:studio_events") + "?" + "&".join(query)


def _resume_from(request: HttpRequest) -> str | None:
    """Where the stream starts: after the browser's last event (a reconnect), else after the page's position, else
    now (None). A malformed id counts as none."""
    for candidate in (request.headers.get("Last-Event-ID", ""), request.GET.get("after", "")):
        if _STREAM_ID.fullmatch(candidate.strip()):
            return candidate.strip()
    return None


def _viewer(request: HttpRequest) -> Viewer | None:
    """The stream's viewer; None when the page was rendered for a team other than the session's now."""
    page_team = request.GET.get("team", "")
    if _TEAM_ID.fullmatch(page_team) and int(page_team) != request.team.pk:
        return None
    return Viewer(grant=access.grant_for(request), mine_only=request.GET.get("mine") == "1")


@require_GET
@never_cache
async def studio_events(request: HttpRequest) -> HttpResponse:
    if not live_for(request):
        raise Http404("Live push is off: the studio page asks for changes itself.")
    viewer = await sync_to_async(_viewer)(request)
    if viewer is None:
        return HttpResponse(RELOAD, content_type="text/event-stream; charset=utf-8")
    redis = _connect(socket_timeout=5)
    try:
        if not await access.slot_take(redis, viewer.grant):
            # EventSource gives up on a refusal; htmx's SSE extension asks again later, waiting longer each time.
            refused = HttpResponse(
                "Too many studio tabs are open: this one gets live updates once another closes.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            refused["Retry-After"] = str(access.retry_after())
            return refused
        # Where it starts is settled before the browser hears the stream is open: no change after that is missed.
        after = _resume_from(request) or await _newest(redis, stream.stream_key(viewer.team_id))
    finally:
        await redis.aclose()
    # A slot taken for a stream that never starts (the browser gone before its first byte) lapses by itself.
    response = StreamingHttpResponse(_events(request, viewer, after), content_type="text/event-stream; charset=utf-8")
    response["X-Accel-Buffering"] = "no"  # a reverse proxy (nginx) passes each event on at once
    return response


def _connect(*, socket_timeout: float):
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(
        settings.LIVE_REDIS_URL,
        single_connection_client=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
    )


async def _events(request: HttpRequest, viewer: Viewer, after: str) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    # A read blocks up to a heartbeat: its socket waits a little longer than that before it gives up.
    redis = _connect(socket_timeout=settings.LIVE_HEARTBEAT_SECONDS + 5)
    key = stream.stream_key(viewer.team_id)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + settings.LIVE_STREAM_SECONDS
    _open_slots.add(viewer.grant.slot)
    try:
        missed = await _missed_some(redis, key, after)
        yield f"retry: {RECONNECT_MS}\n\n"  # sent at once, so that the browser knows the stream is open
        if missed:
            # Away longer than the stream keeps: the newest cards again, which is what a reload would show.
            if (html := await _render(request, viewer, task_ids=None)) is None:
                yield RELOAD
                return
            yield _event("cards", html, event_id=None)
        while (left := ends_at - loop.time()) > 0:
            block_ms = max(1, int(min(settings.LIVE_HEARTBEAT_SECONDS, left) * 1000))
            reply = await redis.xread({key: after}, count=BATCH_ENTRIES, block=block_ms)
            await access.slot_keep(redis, viewer.grant)
            if not reply:
                # A quiet stream asks too: a logged-out tab's stream ends within a heartbeat, not at its last event.
                if not await sync_to_async(access.still_allowed, thread_sensitive=False)(viewer.grant):
                    yield RELOAD
                    return
                yield ": idle\n\n"  # a comment: keeps proxies from closing a quiet connection
                continue
            entries = reply[0][1]
            after = entries[-1][0].decode()
            task_ids = sorted({int(pk) for _, fields in entries for pk in fields[b"tasks"].split(b",")})
            chunks = [task_ids[i : i + _max_cards()] for i in range(0, len(task_ids), _max_cards())]
            for number, chunk in enumerate(chunks, start=1):
                if (html := await _render(request, viewer, task_ids=chunk)) is None:
                    yield RELOAD
                    return
                # Only the last event of a batch carries its id: a reconnect in between sends the batch again.
                yield _event("cards", html, event_id=after if number == len(chunks) else None)
    except aioredis.RedisError as error:
        # The stream ends; the browser reconnects in RECONNECT_MS and resumes after its last event.
        logger.warning("live push: team %s's stream stopped: %s", viewer.team_id, error)
    finally:
        # A closed tab ends here (Django cancels the stream): its slot and Redis connection go too, even if the
        # cancellation is repeated while they do.
        await asyncio.shield(_close(redis, viewer))


async def _close(redis: object, viewer: Viewer) -> None:
    import redis.asyncio as aioredis

    try:
        await access.slot_give_back(redis, viewer.grant)
    except aioredis.RedisError as error:  # the slot lapses by itself
        logger.warning("live push: could not give back a stream's slot of user %s: %s", viewer.grant.user_id, error)
    finally:
        _open_slots.discard(viewer.grant.slot)
        await redis.aclose()  # type: ignore[attr-defined]


async def streams_ended(*, seconds: float) -> None:
    """Wait, up to `seconds`, until this process's cancelled streams have given their slots back."""
    deadline = asyncio.get_running_loop().time() + seconds
    while _open_slots and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def _newest(redis: object, key: str) -> str:
    """The id of the stream's newest entry (a stream opened without a position starts after it)."""
    newest = await redis.xrevrange(key, count=1)  # type: ignore[attr-defined]
    return newest[0][0].decode() if newest else stream.START


async def _missed_some(redis: object, key: str, after: str) -> bool:
    """Entries after `after` may have been trimmed away: the stream has dropped entries, and `after` is older than
    its oldest (or the stream is gone while the page had a position: Redis restarted)."""
    try:
        info = await redis.xinfo_stream(key)  # type: ignore[attr-defined]
    except Exception as error:  # redis.ResponseError: no such key
        if "no such key" not in str(error).lower():
            raise
        return after != stream.START
    info = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
    if info["entries-added"] <= info["length"]:
        return False  # never trimmed
    first = info["first-entry"][0] if info.get("first-entry") else info["last-generated-id"]
    return _id_tuple(first.decode() if isinstance(first, bytes) else str(first)) > _id_tuple(after)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _max_cards() -> int:
    from generations.views.studio import PULSE_MAX_CARDS

    return PULSE_MAX_CARDS


def _event(name: str, html: str, *, event_id: str | None) -> str:
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


async def _render(request: HttpRequest, viewer: Viewer, *, task_ids: list[int] | None) -> str | None:
    # In the shared thread pool, whose few threads keep their database connections: not one per open tab.
    return await sync_to_async(_render_cards, thread_sensitive=False)(request, viewer, task_ids)


def _render_cards(request: HttpRequest, viewer: Viewer, task_ids: list[int] | None) -> str | None:
    """The changed cards as the pulse sends them (the same partials, hidden-task and image rules, queue line);
    with no ids, the newest page of cards. None when the viewer may no longer see them (access.allowed)."""
    from generations.views.studio import STUDIO_PAGE_SIZE, changed_cards_context

    try:
        if (membership := access.allowed(viewer.grant)) is None:
            return None
        # The user, the team and the role as they are now (staff, a paused queue, an owner no more), read with the
        # check. This request is this stream's own.
        request.user, request.team = membership.user, membership.team
        request.is_team_owner = teams.is_team_owner(user=membership.user, team=membership.team, role=membership.role)
        tasks = Task.objects.for_team(request.team)
        if viewer.mine_only:
            tasks = tasks.filter(created_by=request.user)
        tasks = tasks.for_cards(user=request.user)
        if task_ids is None:
            batch = list(tasks.visible_to(request.user).order_by("-created_at")[:STUDIO_PAGE_SIZE])
        else:
            batch = list(tasks.filter(pk__in=task_ids))
        context = changed_cards_context(request, batch, mine_only=viewer.mine_only)
        return render_to_string("generations/pulse_response.html", context, request=request)
    finally:
        close_old_connections()  # a broken or expired connection of this pool thread is not kept
