"""The fair queue: at most APIFRAME_CONCURRENCY tasks of the whole Apiframe account upstream at once; the others
wait here, members taking turns (round-robin over every member of every team, since the account is shared), each
member's own tasks oldest first. A team's owners can pause its queue: its tasks wait, the others flow.

`queue_dispatch` is the one place that lets a task go: run when a task is created, when one ends (the apply
function, a refused submit, the deadline sweep), when a queue is paused or resumed, and by the poller every round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Case, Count, F, PositiveIntegerField, Q, Value, When
from django.utils import timezone

from generations import jobs
from generations.models import AuditEntry, Chore, Task, TaskQuerySet, Team
from generations.services.audit import audit_record

logger = logging.getLogger(__name__)

LOCK = "queue_dispatch"  # the Chore row dispatchers lock on PostgreSQL
POSITIONS_PER_UPDATE = 500  # one UPDATE ... CASE per this many changed positions


def waiting() -> TaskQuerySet:
    """Tasks waiting their turn: queued here, not given a slot yet."""
    return Task.objects.filter(status=Task.Status.QUEUED, dispatched_at=None)


def occupying() -> TaskQuerySet:
    """Tasks holding one of the account's slots: given one and about to be sent (or sent again after a 429),
    being sent, or running upstream. A slot is freed only when its task ends."""
    upstream = (Task.Status.SUBMITTING, Task.Status.PENDING, Task.Status.PROCESSING)
    return Task.objects.filter(Q(status__in=upstream) | Q(status=Task.Status.QUEUED, dispatched_at__isnull=False))


@dataclass(frozen=True, slots=True)
class Waiter:
    pk: int
    member: int
    created_at: datetime
    position: int | None = None  # as stored on the task


def fair_order(waiters: list[Waiter], upstream: dict[int, int]) -> list[Waiter]:
    """Who goes next. A member's k-th oldest waiting task comes in turn (their tasks holding slots) + k, and within
    one turn the oldest task goes first: a newcomer's first task passes a member who already has three upstream."""
    turns: dict[int, int] = dict(upstream)
    keyed = []
    for waiter in sorted(waiters, key=lambda w: (w.created_at, w.pk)):
        turns[waiter.member] = turns.get(waiter.member, 0) + 1
        keyed.append(((turns[waiter.member], waiter.created_at, waiter.pk), waiter))
    keyed.sort(key=lambda item: item[0])
    return [waiter for _, waiter in keyed]


def _lock() -> None:
    """Dispatchers take turns. PostgreSQL: the UPDATE locks one row until the commit; a second dispatcher waits
    there, then counts what the first granted. SQLite: the transaction is IMMEDIATE (settings), so it already
    holds the database's one write lock."""
    Chore.objects.get_or_create(name=LOCK, defaults={"last_run_at": timezone.now()})
    Chore.objects.filter(name=LOCK).update(last_run_at=timezone.now())  # the row lock: held until the commit


def queue_dispatch(
    *, now: datetime | None = None, order: Callable[[list[Waiter], dict[int, int]], list[Waiter]] | None = None
) -> list[int]:
    """Give the free slots to the next waiting tasks in fair order, queue their submit jobs, and keep every
    waiting task's `queue_position`. Returns the tasks let go.

    Never lets more than APIFRAME_CONCURRENCY hold slots, however many processes run it at once: each counts
    and grants under one lock, and only this function hands out slots. `order` replaces fair_order (the bench's
    first-come-first-served baseline).
    """
    # Nothing waits (or only behind a paused queue, already out of line): no lock taken; the poller asks every second.
    if not _anyone_waits():
        return []
    order_by = order or fair_order
    limit = settings.APIFRAME_CONCURRENCY
    with transaction.atomic():
        _lock()
        now = now or timezone.now()
        upstream = dict(occupying().values_list("created_by").annotate(n=Count("pk")).order_by())
        rows = waiting().values_list("pk", "created_by_id", "created_at", "queue_position", "team__queue_paused_at")
        waiters, moved = [], {}
        for pk, member, created_at, position, paused_at in rows:
            if paused_at is None:
                waiters.append(Waiter(pk=pk, member=member, created_at=created_at, position=position))
            elif position is not None:
                moved[pk] = None  # its team paused: out of the line until resumed
        line = order_by(waiters, upstream)
        free = len(line) if limit <= 0 else max(0, limit - sum(upstream.values()))
        granted = [waiter.pk for waiter in line[:free]]
        if granted:
            Task.objects.filter(pk__in=granted, status=Task.Status.QUEUED, dispatched_at=None).update_visibly(
                at=now,
                dispatched_at=now,
                # The clock starts now: a long line or a paused queue never times a task out.
                deadline=now + timedelta(seconds=settings.MJSTUDIO_TASK_TIMEOUT),
                queue_position=None,
            )
            for pk in granted:
                transaction.on_commit(partial(jobs.submit_task.enqueue, pk))
        shifts: dict[int, list[int]] = {}  # most moves are "up one place": one UPDATE for each distance moved
        for position, waiter in enumerate(line[free:], start=1):
            if waiter.position is None:
                moved[waiter.pk] = position
            elif waiter.position != position:
                shifts.setdefault(position - waiter.position, []).append(waiter.pk)
        for distance, pks in shifts.items():
            Task.objects.filter(pk__in=pks).update_visibly(at=now, queue_position=F("queue_position") + distance)
        _positions_store(moved, now=now)
    return granted


def _positions_store(positions: dict[int, int | None], *, now: datetime) -> None:
    """Write new positions (first places, or none while paused) in one UPDATE per 500, bumping `updated_at` so that
    live refresh resends the cards."""
    cleared = [pk for pk, position in positions.items() if position is None]
    if cleared:
        Task.objects.filter(pk__in=cleared).update_visibly(at=now, queue_position=None)
    items = [(pk, position) for pk, position in positions.items() if position is not None]
    for start in range(0, len(items), POSITIONS_PER_UPDATE):
        chunk = items[start : start + POSITIONS_PER_UPDATE]
        value = Case(
            *(When(pk=pk, then=Value(position)) for pk, position in chunk), output_field=PositiveIntegerField()
        )
        Task.objects.filter(pk__in=[pk for pk, _ in chunk]).update_visibly(at=now, queue_position=value)


@cache
def _anyone_waits_sql(vendor: str) -> tuple[str, tuple]:
    in_line = waiting().filter(Q(team__queue_paused_at=None) | Q(queue_position__isnull=False)).values("pk")[:1]
    return in_line.query.sql_with_params()


def _anyone_waits() -> bool:
    """Whether a task waits its turn in a queue not paused, or still has a place in line to give up. Asked after
    every finished task, most often of an empty line: its statement is built once (building costs more than
    running it)."""
    with connection.cursor() as cursor:
        cursor.execute(*_anyone_waits_sql(connection.vendor))
        return cursor.fetchone() is not None


def queue_dispatch_after_commit() -> None:
    """Dispatch once the current transaction commits (a task just ended, or a queue changed); a failure there is
    logged, never raised into the caller's answer (the poller's round dispatches again within a second)."""
    transaction.on_commit(_dispatch_logged)


def _dispatch_logged() -> None:
    try:
        queue_dispatch()
    except Exception:
        logger.exception("queue dispatch failed; the poller tries again")


# --- Pausing a team's queue -----------------------------------------------------------------------------------


def team_queue_pause(*, team: Team, actor: AbstractBaseUser) -> bool:
    """Hold the team's waiting tasks (the ones already sent run on). False if it was paused already."""
    now = timezone.now()
    with transaction.atomic():
        if not Team.objects.filter(pk=team.pk, queue_paused_at=None).update(queue_paused_at=now):
            return False  # someone paused it first: one audit row for one act
        audit_record(actor=actor, act=AuditEntry.Act.QUEUE_PAUSE, team=team, target=team)
        queue_dispatch_after_commit()
    team.queue_paused_at = now
    return True


def team_queue_resume(*, team: Team, actor: AbstractBaseUser) -> bool:
    """Let the team's tasks take their turns again (their place: by age, as if never paused). False if not paused."""
    with transaction.atomic():
        paused_at = Team.objects.filter(pk=team.pk).values_list("queue_paused_at", flat=True).first()
        if paused_at is None or not Team.objects.filter(pk=team.pk, queue_paused_at=paused_at).update(
            queue_paused_at=None
        ):
            return False
        audit_record(
            actor=actor,
            act=AuditEntry.Act.QUEUE_RESUME,
            team=team,
            target=team,
            paused_for_seconds=round((timezone.now() - paused_at).total_seconds()),
        )
        queue_dispatch_after_commit()
    team.queue_paused_at = None
    return True


def queue_paused_by(*, team: Team) -> str:
    """Who paused the team's queue, from the audit trail (one indexed query, only while it is paused)."""
    if team.queue_paused_at is None:
        return ""
    entry = (
        AuditEntry.objects.filter(team=team, act=AuditEntry.Act.QUEUE_PAUSE)
        .order_by("-created_at", "-pk")
        .values_list("actor_name", flat=True)
        .first()
    )
    return entry or "an owner"
