"""The poller's rounds: deadlines, fetch-many for quiet tasks, and mirrors a dead worker left behind."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Left
from django.utils import timezone

from generations import jobs
from generations.apiframe import ApiframeClient
from generations.models import Image, Task, WebhookDelivery
from generations.services import mirroring, queue
from generations.services.applying import task_apply_state
from generations.services.upstream import apiframe_client

logger = logging.getLogger(__name__)


def tasks_expire_overdue(*, now: datetime | None = None) -> int:
    """End every task past its deadline as timed out, with the reason the user will read. A task still waiting its
    turn in the fair queue has no deadline yet: its clock starts when it is let go (services/queue.py)."""
    now = now or timezone.now()
    overdue = Task.objects.in_flight().filter(deadline__lt=now).exclude(status=Task.Status.QUEUED, dispatched_at=None)
    reasons = [
        (
            Q(status=Task.Status.QUEUED) & ~Q(error=""),  # Apiframe kept saying it was busy
            Concat(Value("Never reached Apiframe before the deadline. Last answer: "), F("error")),
        ),
        (
            Q(status=Task.Status.QUEUED),
            "Never reached Apiframe before the deadline (the worker is down). Retry to send it.",
        ),
        (
            Q(apiframe_task_id=None),  # a worker was still sending it, or died doing so
            "Sending to Apiframe did not complete before the deadline; it may still run there. Retry to send it again.",
        ),
        (Q(), "Apiframe sent no result before the deadline. A late result still lands here, or Retry."),
    ]
    expired = 0
    for which, reason in reasons:
        error = Left(Value(reason) if isinstance(reason, str) else reason, 500)
        expired += overdue.filter(which).update_visibly(
            at=now, status=Task.Status.TIMED_OUT, error=error, finished_at=now
        )
    if expired:
        queue.queue_dispatch_after_commit()  # their slots are free
    return expired


WEBHOOKS_ALIVE_WINDOW = timedelta(minutes=1)


def _poll_quiet_period(now: datetime) -> float:
    """Seconds of silence before a task is fetched: long while webhooks arrive, short when none do."""
    webhooks_alive = (
        settings.APIFRAME_WEBHOOK_URL
        and WebhookDelivery.objects.filter(received_at__gt=now - WEBHOOKS_ALIVE_WINDOW).exists()
    )
    return settings.MJSTUDIO_POLL_AFTER if webhooks_alive else settings.MJSTUDIO_POLL_AFTER_NO_WEBHOOKS


# A timed-out task is still asked about now and then, so that a late result lands even without webhooks.
LATE_RESULT_WINDOW = timedelta(hours=6)
LATE_RESULT_POLL_EVERY = timedelta(minutes=5)


def tasks_poll(*, client: ApiframeClient | None = None, now: datetime | None = None, limit: int = 200) -> int:
    """Fetch tasks that have been quiet too long (lost webhooks, or none at all behind NAT) via fetch-many."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=_poll_quiet_period(now))
    in_flight = Q(status__in=(Task.Status.PENDING, Task.Status.PROCESSING)) & (
        Q(last_heard_at__lt=quiet_since) | Q(last_heard_at=None)
    )
    late = Q(status=Task.Status.TIMED_OUT, finished_at__gt=now - LATE_RESULT_WINDOW) & (
        Q(last_heard_at__lt=now - LATE_RESULT_POLL_EVERY) | Q(last_heard_at=None)
    )
    ids = list(
        Task.objects.filter(in_flight | late)
        .exclude(apiframe_task_id=None)
        .order_by("last_heard_at")
        .values_list("apiframe_task_id", flat=True)[:limit]
    )
    if not ids:
        return 0
    # Asked now: whatever the answer, leave these alone for another quiet period.
    Task.objects.filter(apiframe_task_id__in=ids).update(last_heard_at=now)
    with apiframe_client(client) as api:
        states = api.fetch_many(ids)
    for state in states:
        try:
            task_apply_state(state=state)
        except Exception:  # one odd answer must not stop the others from landing
            logger.exception("could not apply Apiframe's state for %s", state.task_id)
    return len(states)


def images_requeue_unmirrored(*, now: datetime | None = None, grace: float = 60.0, limit: int = 200) -> int:
    """Queue the mirror again where its own retry is overdue (a worker died mid-job, a job was lost).

    Once per task: while the job queued here (or the task's own retry) still waits, for a worker that is down
    perhaps, later sweeps leave the task alone instead of queueing copies.
    """
    now = now or timezone.now()
    lost = now - timedelta(seconds=grace)
    overdue = (
        Image.objects.mirror_pending()
        .filter(Q(mirror_next_at__lt=lost) | Q(mirror_next_at=None, task__finished_at__lt=lost))
        .order_by("task_id")
        .values_list("task_id", "mirror_job_id")
    )
    queued_jobs: dict[int, set[str]] = {}
    for task_id, job_id in overdue[:limit]:
        queued_jobs.setdefault(task_id, set()).add(job_id)
    requeued = 0
    for task_id, job_ids in queued_jobs.items():
        if not any(mirroring.job_waits(job_id) for job_id in job_ids):
            mirroring.task_mirror_enqueue(task_id=task_id)
            requeued += 1
    return requeued


# Longer than the longest wait a busy Apiframe asks for (60 s, services/submitting.py) plus a busy queue's backlog.
UNSENT_GRACE = timedelta(seconds=120)


def tasks_requeue_unsent(*, now: datetime | None = None, limit: int = 200) -> int:
    """Queue the submit job again for tasks the fair queue let go long ago that no job has picked up: a worker
    killed after taking the job and before claiming the task, or a process that died between granting the slot
    and queueing the job. Without this they would sit in their slot until the deadline times them out.

    Harmless if the first job still waits: task_submit claims a task once, and a second job sends nothing.
    Each task is queued again at most once per UNSENT_GRACE (its updated_at moves).
    """
    now = now or timezone.now()
    unsent = Task.objects.filter(
        status=Task.Status.QUEUED, dispatched_at__lt=now - UNSENT_GRACE, updated_at__lt=now - UNSENT_GRACE
    )
    requeued = 0
    for pk in unsent.order_by("dispatched_at").values_list("pk", flat=True)[:limit]:
        if unsent.filter(pk=pk).update_visibly(at=now):  # a second poller finds it moved, and leaves it
            jobs.submit_task.enqueue(pk)
            requeued += 1
    if requeued:
        logger.warning("queued the submit of %s tasks again: their jobs were lost", requeued)
    return requeued
