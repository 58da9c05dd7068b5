"""Operations on stuck work, for staff: refresh tasks from Apiframe, retry mirrors that gave up, fail a task with a
reason, replay a logged webhook delivery. Each act is audited; results only ever land through
`task_apply_state`, the one function that applies Apiframe's answers."""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from generations.apiframe import FETCH_MANY_MAX, ApiframeClient, InvalidPayload, TaskState
from generations.models import AuditEntry, Image, Task, WebhookDelivery
from generations.services import mirroring, queue
from generations.services.applying import task_apply_state
from generations.services.audit import audit_record
from generations.services.moderation import ModerationError, reason_clean  # one rule for every audited reason
from generations.services.upstream import apiframe_client

logger = logging.getLogger(__name__)

# Statuses a task may be failed from by hand: never finished nor already failed (monotonic, as Task.RANK).
FAILABLE: tuple[str, ...] = (*Task.IN_FLIGHT, Task.Status.TIMED_OUT)


class OperationError(ModerationError):
    """An operation that changes nothing: the message says why, for the staff member."""


def tasks_stuck(*, tasks: QuerySet[Task] | None = None, now: datetime | None = None) -> QuerySet[Task]:
    """Work that needs a hand: tasks in flight past their deadline, tasks our deadline timed out (Apiframe may
    still finish them), and tasks with an image whose mirror gave up."""
    now = now or timezone.now()
    gave_up = Image.objects.mirror_gave_up()
    # A task waiting its turn in the fair queue has no deadline yet (its clock starts when it is let go).
    overdue = Q(status__in=Task.IN_FLIGHT, deadline__lt=now) & ~Q(status=Task.Status.QUEUED, dispatched_at=None)
    return (Task.objects.all() if tasks is None else tasks).filter(
        overdue | Q(status=Task.Status.TIMED_OUT) | Q(pk__in=gave_up.values("task_id"))
    )


REFRESH_MAX = 200  # tasks asked about in one request (10 calls): as many as a poller round


def tasks_refresh(
    *, actor: AbstractBaseUser, tasks: QuerySet[Task], client: ApiframeClient | None = None, limit: int = REFRESH_MAX
) -> dict:
    """Ask Apiframe for these tasks (fetch-many, at most 20 ids a call) and apply each answer through
    `task_apply_state`. At most `limit`, those heard of longest ago first: an answer stamps `last_heard_at`, so
    running it again asks about the next ones. Returns counts: asked, answered, applied (moved forward), stale,
    not sent (no Apiframe id yet); and `more`, whether some were left over the limit. An upstream failure
    raises the client's ApiframeError after the batches before it have landed."""
    oldest_first = (F("last_heard_at").asc(nulls_first=True), "pk")
    rows = list(tasks.order_by(*oldest_first).values_list("pk", "apiframe_task_id", "team_id")[: limit + 1])
    rows, more = rows[:limit], len(rows) > limit
    sent = [(pk, upstream, team) for pk, upstream, team in rows if upstream]
    counts = {"asked": len(sent), "answered": 0, "applied": 0, "stale": 0, "not_sent": len(rows) - len(sent)}
    counts["more"] = more
    team_of = {upstream: team for _, upstream, team in sent}
    with apiframe_client(client) as api:
        for start in range(0, len(sent), FETCH_MANY_MAX):
            batch = [upstream for _, upstream, _ in sent[start : start + FETCH_MANY_MAX]]
            for state in api.fetch_many(batch):
                with transaction.atomic():  # the answer and its audit row land together
                    outcome, task = task_apply_state(state=state)
                    audit_record(
                        actor=actor,
                        act=AuditEntry.Act.TASK_REFRESH,
                        team=team_of[state.task_id],
                        target=task,
                        outcome=outcome,
                        upstream_status=state.status[:20],
                    )
                counts["answered"] += 1
                counts["applied" if outcome == WebhookDelivery.Outcome.APPLIED else "stale"] += 1
    return counts


def images_mirror_retry(*, actor: AbstractBaseUser, tasks: QuerySet[Task]) -> int:
    """Give the images whose mirror gave up a fresh set of attempts and queue their task's mirror job.
    Returns how many tasks were queued."""
    gave_up = Image.objects.mirror_gave_up().filter(task__in=tasks.values("pk"))
    queued = 0
    fields = ("pk", "team_id", "action", "option", "parent_index")  # what the audit row's description reads
    for task in Task.objects.filter(pk__in=gave_up.values("task_id")).only(*fields):
        with transaction.atomic():
            images = Image.objects.mirror_gave_up().filter(task=task).select_for_update()
            errors = list(images.values_list("index", "mirror_error"))
            # Checked again in the update: a worker may have stored one meanwhile.
            reset = images.update(mirror_attempts=0, mirror_error="", mirror_next_at=None, mirror_job_id="")
            if not reset:
                continue
            Task.objects.filter(pk=task.pk).update_visibly()  # the card shows "Saving…" again
            audit_record(
                actor=actor,
                act=AuditEntry.Act.MIRROR_RETRY,
                team=task.team_id,
                target=task,
                images=reset,
                errors={str(index): error for index, error in errors},
            )
            transaction.on_commit(lambda task_id=task.pk: mirroring.task_mirror_enqueue(task_id=task_id))
        queued += 1
    return queued


def tasks_fail(*, actor: AbstractBaseUser, tasks: QuerySet[Task], reason: str) -> int:
    """End these tasks as failed, with the reason as the error their cards show. A finished or failed task is
    left as it is (monotonic). One waiting in the fair queue leaves it, and the slots it held or waited for go
    to the next in line. Returns how many were failed."""
    reason = reason_clean(reason)
    failed = 0
    fields = ("pk", "team_id", "status", "action", "option", "parent_index")  # what the audit row reads
    for task in tasks.filter(status__in=FAILABLE).only(*fields):
        with transaction.atomic():
            now = timezone.now()
            # Conditional: Apiframe's answer may have finished it since it was listed.
            changed = Task.objects.filter(pk=task.pk, status__in=FAILABLE).update_visibly(
                at=now, status=Task.Status.FAILED, error=reason[:500], finished_at=now, queue_position=None
            )
            if not changed:
                continue
            audit_record(
                actor=actor,
                act=AuditEntry.Act.TASK_FAIL,
                team=task.team_id,
                target=task,
                reason=reason,
                was=task.status,
            )
        failed += 1
    if failed:
        queue.queue_dispatch_after_commit()  # the line moves up
    return failed


def webhook_replay(*, actor: AbstractBaseUser, delivery: WebhookDelivery) -> str:
    """Apply a logged delivery's body again through `task_apply_state`, as the webhook did: idempotent (an
    applied delivery comes back "stale" and changes nothing). A delivery that found no task is linked to it
    once it does. Returns the outcome; the replay is audited against the delivery."""
    try:
        state = TaskState.from_payload(delivery.body)
    except InvalidPayload as exc:
        raise OperationError(f"Delivery {delivery.pk} holds no task object to replay ({exc}).") from None
    with transaction.atomic():
        outcome, task = task_apply_state(state=state)
        if task is not None and delivery.task_id is None:
            WebhookDelivery.objects.filter(pk=delivery.pk, task=None).update(task=task)
        audit_record(
            actor=actor,
            act=AuditEntry.Act.WEBHOOK_REPLAY,
            team=task.team_id if task is not None else None,
            target=delivery,
            outcome=outcome,
            task_id=task.pk if task is not None else None,
        )
    return outcome
