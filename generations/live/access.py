"""Who may keep a stream open. A stream is opened by a logged-in member; it goes on sending a team's cards only
while the session it was opened with still logs that user in (logging out ends it, and so does a password change
elsewhere: Django's session auth hash), the user is still active and still a member of the team. The stream asks
before each event and on each heartbeat (`allowed`: two queries, one when the session is gone).

And no user holds more than LIVE_MAX_STREAMS_PER_USER streams at once, across every web process: a slot each, in
Redis, that its stream keeps alive on the same beats and gives back when it ends; a slot whose stream never ends
cleanly (a crashed worker) expires by itself.
"""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import close_old_connections
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from generations.models import Membership

SLOTS_PREFIX = "mjstudio:live:streams:user:"

# KEYS[1]: a user's open streams, a sorted set (stream -> when its slot lapses, by Redis's clock: one clock for
# every web process). ARGV: the stream, its slot's seconds, the cap (0 for a stream already open: it keeps its slot
# whatever the count). Lapsed slots go first. 1 if the stream holds its slot now, 0 if the user is at the cap.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local seconds, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= cap then
  return 0
end
redis.call('ZADD', KEYS[1], now + seconds, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(seconds))
return 1
"""


@dataclass(frozen=True)
class Grant:
    """What a stream was opened with: the session, its user, the team (request.team then), and its slot."""

    session_key: str
    user_id: int
    team_id: int
    slot: str = field(default_factory=lambda: uuid.uuid4().hex)


def grant_for(request: HttpRequest) -> Grant:
    return Grant(session_key=request.session.session_key or "", user_id=request.user.pk, team_id=request.team.pk)


def allowed(grant: Grant) -> Membership | None:
    """The user's membership of the team (with the user and the team, read now) while the stream may go on; None
    when it must end. The session is read, never changed: django.contrib.auth.get_user would flush a session it
    rejects, or give it a new key the browser never hears of; the next page the browser asks for does that."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(grant.session_key)
    if session.get(SESSION_KEY) != str(grant.user_id):  # logged out, expired, or another user's login since
        return None
    if session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return None
    membership = (
        Membership.objects.select_related("user", "team")
        .filter(team_id=grant.team_id, user_id=grant.user_id, user__is_active=True)
        .first()
    )
    if membership is None:
        return None
    # As get_user verifies it: the hash of the password the session logged in with, under any key still accepted.
    session_hash = session.get(HASH_SESSION_KEY) or ""
    user = membership.user
    hashes = itertools.chain([user.get_session_auth_hash()], user.get_session_auth_fallback_hash())
    if not session_hash or not any(constant_time_compare(session_hash, known) for known in hashes):
        return None
    return membership


def still_allowed(grant: Grant) -> bool:
    """`allowed`, for the heartbeat, in a pool thread that gives its database connection back."""
    try:
        return allowed(grant) is not None
    finally:
        close_old_connections()


def slot_seconds() -> float:
    """A slot outlives the beats that keep it (one per heartbeat at most apart, plus a slow check) by a margin;
    a crashed worker's slots lapse that much later."""
    return 2 * settings.LIVE_HEARTBEAT_SECONDS + 30


def retry_after() -> int:
    return math.ceil(slot_seconds())


def slots_key(user_id: int) -> str:
    return f"{SLOTS_PREFIX}{user_id}"


async def slot_take(redis: object, grant: Grant) -> bool:
    """A slot for a new stream: False when the user has LIVE_MAX_STREAMS_PER_USER streams open already."""
    cap = settings.LIVE_MAX_STREAMS_PER_USER
    return bool(await redis.eval(_HOLD, 1, slots_key(grant.user_id), grant.slot, slot_seconds(), cap))  # type: ignore[attr-defined]


async def slot_keep(redis: object, grant: Grant) -> None:
    """An open stream's beat: its slot lasts another slot_seconds()."""
    await redis.eval(_HOLD, 1, slots_key(grant.user_id), grant.slot, slot_seconds(), 0)  # type: ignore[attr-defined]


async def slot_give_back(redis: object, grant: Grant) -> None:
    await redis.zrem(slots_key(grant.user_id), grant.slot)  # type: ignore[attr-defined]
