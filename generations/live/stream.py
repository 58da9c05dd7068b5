"""The team streams: one Redis Stream per team, an entry per committed write naming the tasks it changed.

An entry is tiny ("tasks": "12,13"): the SSE view reads the cards themselves, as the user may see them, from the
database. Entry ids are the SSE event ids, so a page that reconnects resumes exactly after the last change it got.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from functools import cache

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

STREAM_PREFIX = "mjstudio:live:team:"
START = "0-0"  # before every entry: what a team that never changed anything is at


def enabled() -> bool:
    return settings.LIVE_PUSH


def stream_key(team_id: int) -> str:
    return f"{STREAM_PREFIX}{team_id}"


@cache
def _client(url: str):
    import redis  # an optional package (the `scale` extra): imported only when live push is on

    # A failing Redis must not hold a write up: short timeouts, and the publish is dropped (logged).
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def client():
    return _client(settings.LIVE_REDIS_URL)


def tasks_changed(changed: Iterable[tuple[int, int]]) -> None:
    """Publish (task id, team id) pairs once the current transaction commits (at once outside one; never on a
    rollback). Every write that a card shows comes through here (TaskQuerySet.update_visibly, and the two writes
    that bypass it: a task's creation and the apply function's raw UPDATE)."""
    if not enabled():
        return
    by_team: dict[int, list[int]] = defaultdict(list)
    for task_id, team_id in changed:
        by_team[team_id].append(task_id)
    if by_team:
        transaction.on_commit(lambda: _publish(by_team))


def task_changed(*, task_id: int, team_id: int) -> None:
    tasks_changed([(task_id, team_id)])


def _publish(by_team: dict[int, list[int]]) -> None:
    import redis

    try:
        with client().pipeline(transaction=False) as pipe:
            for team_id, task_ids in by_team.items():
                entry = {"tasks": ",".join(map(str, sorted(set(task_ids))))}
                pipe.xadd(stream_key(team_id), entry, maxlen=settings.LIVE_STREAM_MAXLEN, approximate=True)
            pipe.execute()
    except (redis.RedisError, OSError, ValueError):  # ValueError: redis-py's reader on a socket closed under it
        # The change is committed and must stand: open pages miss this one update of these cards (a reload shows it).
        logger.exception("live push: could not publish changes of tasks %s", dict(by_team))


def stream_position(*, team_id: int) -> str | None:
    """The id of the team's newest entry (START if none): a page rendered now asks for what comes after it.
    None when Redis does not answer: the page still renders, and its stream starts from its first connection."""
    import redis

    try:
        newest = client().xrevrange(stream_key(team_id), count=1)
    except redis.RedisError:
        logger.exception("live push: could not read the position of team %s", team_id)
        return None
    return newest[0][0].decode() if newest else START
