"""Applying Apiframe's answers: `task_apply_state` is the one function that does it, for webhooks, polls and
fetches alike; and the webhook log."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from generations import actions
from generations.apiframe import InvalidPayload, TaskState
from generations.models import Image, Task, WebhookDelivery
from generations.services import mirroring, queue
from generations.services.collections import collection_add_task_images

logger = logging.getLogger(__name__)


def _status_for(state: TaskState) -> str:
    if state.is_finished:
        return Task.Status.FINISHED
    if state.is_failed:
        return Task.Status.FAILED
    if state.status == "processing":
        return Task.Status.PROCESSING
    return Task.Status.PENDING  # pending, staged, starting, retrying and anything unknown: still working


def _is_image_url(url: str, *, max_length: int) -> bool:
    """An absolute http(s) URL that parses and fits the column; `http://[x/a.png` does not parse."""
    if len(url) > max_length or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- reading it checks it: a port that is not a number raises
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _usable_urls(state: TaskState, *, limit: int) -> dict[int, str]:
    """Image URLs by Apiframe's index (1-4): a bad one is left out, the others keep their numbers."""
    max_length = Image._meta.get_field("source_url").max_length
    return {
        index: url
        for index, url in enumerate(state.result_urls[:limit], start=1)
        if _is_image_url(url, max_length=max_length)
    }


REDACTED = "[redacted]"


def storable_text(text: str) -> str:
    """Text any column takes: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8), no webhook secret."""
    text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    secret = settings.APIFRAME_WEBHOOK_SECRET
    return text.replace(secret, REDACTED) if secret else text


def without_secrets(value: object) -> object:
    """A copy of an Apiframe object fit to store, however deep: no "*secret*" key, no value holding the webhook
    secret whatever its key, and only what a JSON column takes (no NUL, no NaN or Infinity)."""
    if isinstance(value, dict):
        return {storable_text(str(k)): without_secrets(v) for k, v in value.items() if "secret" not in str(k).lower()}
    if isinstance(value, list | tuple):
        return [without_secrets(v) for v in value]
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        secret = settings.APIFRAME_WEBHOOK_SECRET
        return REDACTED if secret and secret in str(value) else value
    return value


def task_apply_state(*, state: TaskState) -> tuple[str, Task | None]:
    """Apply one Apiframe task object (from a webhook, a poll or a fetch). Idempotent and monotonic.

    An update lands only if it moves the task forward (Task.RANK): a higher status, or a higher percentage
    while processing. Finished and failed never change again. Our own "timed out" gives way to Apiframe's
    final word: a late finished keeps the paid-for images, a late failure gives the real reason.
    """
    outcome, task, _ = _apply(state, log_body=None)
    return outcome, task


def _apply(state: TaskState, *, log_body: dict | None) -> tuple[str, Task | None, WebhookDelivery | None]:
    """task_apply_state, and with `log_body` the webhook log row written in the same transaction."""
    # Read and worked out before the write transaction: on SQLite it holds the database's one write lock.
    task = Task.objects.filter(apiframe_task_id=state.task_id).only("pk", "action", "status", "collection_id").first()
    if task is None:
        delivery = None
        if log_body is not None:
            delivery = webhook_record(
                body=log_body, state=state, outcome=WebhookDelivery.Outcome.UNKNOWN_TASK, task=None
            )
        return WebhookDelivery.Outcome.UNKNOWN_TASK, None, delivery
    status = _status_for(state)
    changes: dict[str, object] = {"upstream_status": storable_text(state.status)[:20]}
    urls: dict[int, str] = {}
    if status == Task.Status.FINISHED:
        urls = _usable_urls(state, limit=4 if task.is_grid else 1)
        if not urls:
            # "Finished" without images is not a result: keep waiting, the poller asks again.
            logger.warning("task %s: finished without usable image URLs", task.pk)
            status = Task.Status.PROCESSING
    if status == Task.Status.FINISHED:
        changes.update(percentage=100, error="", credits=actions.price(task.action), result=without_secrets(state.raw))
    elif status == Task.Status.FAILED:
        error = state.error or "Midjourney could not complete this task."
        changes.update(error=storable_text(error)[:500], result=without_secrets(state.raw))
    elif status == Task.Status.PROCESSING:
        changes["percentage"] = min(state.percentage or 0, 99)
    moves_forward = Q(status__in=[s for s, rank in Task.RANK.items() if rank < Task.RANK[status]])
    if status == Task.Status.PROCESSING:
        moves_forward |= Q(status=Task.Status.PROCESSING, percentage__lt=changes["percentage"])

    with transaction.atomic():  # a webhook's log line stands or falls with its change
        # Stamped once the write lock is ours, so that live refresh (which asks "changed since?") sees
        # changes in about the order they commit.
        now = timezone.now()
        changes["last_heard_at"] = now
        if status in (Task.Status.FINISHED, Task.Status.FAILED):
            changes["finished_at"] = now
        if status in (Task.Status.FINISHED, Task.Status.PROCESSING):
            changes["started_at"] = Coalesce("started_at", now)
        if Task.objects.filter(moves_forward, pk=task.pk).update_visibly(at=now, status=status, **changes):
            outcome = WebhookDelivery.Outcome.APPLIED
            task.status = status
            if status in (Task.Status.FINISHED, Task.Status.FAILED):
                queue.queue_dispatch_after_commit()  # a slot is free: the next task in line goes
            if urls:
                Image.objects.bulk_create(
                    [Image(task_id=task.pk, index=index, source_url=url) for index, url in urls.items()],
                    ignore_conflicts=True,
                )
                if task.collection_id:  # the collection the composer chose
                    collection_add_task_images(task_id=task.pk)
                transaction.on_commit(lambda: mirroring.task_mirror_enqueue(task_id=task.pk))
        else:
            outcome = WebhookDelivery.Outcome.STALE
            Task.objects.filter(pk=task.pk).update(last_heard_at=now)  # it is alive: no need to poll it
        delivery = None
        if log_body is not None:
            delivery = webhook_record(body=log_body, state=state, outcome=outcome, task=task)
    return outcome, task, delivery


def webhook_receive(*, body: dict) -> tuple[str, WebhookDelivery]:
    """One webhook delivery: applied and logged in one transaction, so that a log line that fails takes the
    change back with it. A body that is not a task object is logged as invalid, and InvalidPayload raised."""
    try:
        state = TaskState.from_payload(body)
    except InvalidPayload:
        webhook_record(body=body, state=None, outcome=WebhookDelivery.Outcome.INVALID, task=None)
        raise
    outcome, _, delivery = _apply(state, log_body=body)
    if outcome == WebhookDelivery.Outcome.UNKNOWN_TASK:
        # The submit may have stored this task's id between our lookup and our log line: look once more.
        webhook_apply_again(delivery=delivery)
    return outcome, delivery


def webhook_record(*, body: dict, state: TaskState | None, outcome: str, task: Task | None) -> WebhookDelivery:
    body = without_secrets(body)  # never keep a secret, even echoed back under another key
    return WebhookDelivery.objects.create(
        apiframe_task_id=storable_text(state.task_id if state else str(body.get("task_id", "")))[:64],
        reported_status=storable_text(state.status if state else str(body.get("status", "")))[:20],
        outcome=outcome,
        task=task,
        body=body,
    )


def webhooks_apply_early(*, apiframe_task_id: str) -> None:
    """Webhooks can beat Apiframe's answer to us: apply the ones logged as "unknown task" for this id."""
    early = WebhookDelivery.objects.filter(
        apiframe_task_id=apiframe_task_id, outcome=WebhookDelivery.Outcome.UNKNOWN_TASK
    ).order_by("received_at")
    for delivery in early:
        webhook_apply_again(delivery=delivery)


def webhook_apply_again(*, delivery: WebhookDelivery) -> None:
    """Apply a delivery logged as "unknown task" once its task is known; the log then says what it did."""
    with transaction.atomic():
        outcome, task = task_apply_state(state=TaskState.from_payload(delivery.body))
        if task is not None:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(outcome=outcome, task=task)
