"""Applying Apiframe's answers: `task_apply_state` is the one function that does it, for webhooks, polls and
fetches alike; and the webhook log."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from generations import actions
from generations.apiframe import InvalidPayload, TaskState
from generations.live import stream
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
    task = _task_find(apiframe_task_id=state.task_id)
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

    with _one_writer(), transaction.atomic():  # a webhook's log line stands or falls with its change
        # Stamped once the write lock is ours, so that live refresh (which asks "changed since?") sees
        # changes in about the order they commit.
        now = timezone.now()
        changes["status"] = status
        changes["last_heard_at"] = changes["updated_at"] = now  # updated_at: a visible change (update_visibly)
        if status in (Task.Status.FINISHED, Task.Status.FAILED):
            changes["finished_at"] = now
        if _task_move_forward(task_id=task.pk, status=status, changes=changes, now=now):
            outcome = WebhookDelivery.Outcome.APPLIED
            task.status = status
            stream.task_changed(task_id=task.pk, team_id=task.team_id)  # a visible change outside update_visibly
            if urls:
                # Queued first, so that the images carry the job's id (when the queue takes it in this transaction).
                job_id = mirroring.task_mirror_enqueue_with_commit(task_id=task.pk)
                _images_insert(task_id=task.pk, urls=urls, mirror_job_id=job_id)
                if task.collection_id:  # the collection the composer chose
                    collection_add_task_images(task_id=task.pk)
        else:
            outcome = WebhookDelivery.Outcome.STALE
            _task_heard(task_id=task.pk, now=now)  # it is alive: no need to poll it
        delivery = None
        if log_body is not None:
            delivery = webhook_record(body=log_body, state=state, outcome=outcome, task=task)
    if outcome == WebhookDelivery.Outcome.APPLIED and status in (Task.Status.FINISHED, Task.Status.FAILED):
        # A slot is free: the next task in line goes. Asked for here, not inside the block above, so that the
        # dispatch runs once the write turn is given back (or when an outer transaction commits).
        queue.queue_dispatch_after_commit()
    return outcome, task, delivery


# SQLite lets one transaction write at a time, and one that finds the database busy sleeps (1, 2, 5, 10... ms)
# before it looks again, however soon the lock was freed: with a dozen web threads applying webhooks, deliveries
# lost their turn again and again (p99 188 ms for 4 ms of work). So on SQLite the apply function's transactions
# take their turn here instead: a lock for the threads of a process, then a lock file (flock) for the processes,
# which the kernel hands to the next waiter the moment it is released (and frees if its holder dies). Inside an
# outer transaction the write lock is ours already (IMMEDIATE transactions): no turn to take, and none to wait for
# while holding it. bench/webhook_ingest.py: p99 109 ms without the turns, 49 ms with them.
_THREADS_WRITING = threading.Lock()
_lock_files: dict[str, int] = {}


@contextlib.contextmanager
def _one_writer() -> Iterator[None]:
    name = str(connection.settings_dict["NAME"])
    if connection.vendor != "sqlite" or connection.in_atomic_block or "memory" in name:
        yield
        return
    with _THREADS_WRITING:
        if name not in _lock_files:
            _lock_files[name] = os.open(f"{name}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(_lock_files[name], fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(_lock_files[name], fcntl.LOCK_UN)


# The statements every delivery runs, written out once: the ORM spends about 0.2 ms of CPU building each one,
# four times what the database takes to run it, and webhook ingest must take 1,000 deliveries a second on two
# cores (bench/webhook_ingest.py). Table and column names come from the models and every value is bound and
# prepared by its model field, so the statements suit SQLite and PostgreSQL alike. Built once per shape.


def _quoted(model: type[models.Model], *names: str) -> list[str]:
    return [connection.ops.quote_name(model._meta.get_field(name).column) for name in names]


# What applying reads of a task, in the model's field order: Model.from_db takes the values in that order.
_FOUND = tuple(
    f.name for f in Task._meta.concrete_fields if f.name in {"id", "team", "action", "status", "collection"}
)  # team: live push names it


@functools.cache
def _find_sql(vendor: str) -> str:
    columns = ", ".join(_quoted(Task, *_FOUND))
    table, [by_id] = connection.ops.quote_name(Task._meta.db_table), _quoted(Task, "apiframe_task_id")
    return f"SELECT {columns} FROM {table} WHERE {by_id} = %s"  # noqa: S608 -- names from the model, values bound


@functools.cache
def _move_forward_sql(vendor: str, names: tuple[str, ...], status: str) -> str:
    table, [pk, current, percentage, started_at] = (
        connection.ops.quote_name(Task._meta.db_table),
        _quoted(Task, "id", "status", "percentage", "started_at"),
    )
    assignments = [f"{column} = %s" for column in _quoted(Task, *names)]
    if status in (Task.Status.FINISHED, Task.Status.PROCESSING):
        assignments.append(f"{started_at} = COALESCE({started_at}, %s)")  # when it first showed progress
    behind = ", ".join(["%s"] * len(_statuses_behind(status)))
    forward = f"{current} IN ({behind})"
    if status == Task.Status.PROCESSING:
        forward = f"({forward} OR ({current} = %s AND {percentage} < %s))"
    return f"UPDATE {table} SET {', '.join(assignments)} WHERE {pk} = %s AND {forward}"  # noqa: S608 -- as above


def _statuses_behind(status: str) -> list[str]:
    return [s for s, rank in Task.RANK.items() if rank < Task.RANK[status]]


@functools.cache
def _record_sql(vendor: str, names: tuple[str, ...]) -> str:
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    returning = (
        f" RETURNING {_quoted(WebhookDelivery, 'id')[0]}" if connection.features.can_return_columns_from_insert else ""
    )
    placeholders = ", ".join(["%s"] * len(names))
    columns = ", ".join(_quoted(WebhookDelivery, *names))
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders}){returning}"  # noqa: S608 -- as above


def _prepared(model: type[models.Model], values: dict[str, object]) -> list[object]:
    return [model._meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]


_IMAGE_FIELDS = [field for field in Image._meta.concrete_fields if not field.primary_key]


@functools.cache
def _images_insert_sql(vendor: str, rows: int) -> str:
    table = connection.ops.quote_name(Image._meta.db_table)
    columns = ", ".join(_quoted(Image, *(field.name for field in _IMAGE_FIELDS)))
    row = f"({', '.join(['%s'] * len(_IMAGE_FIELDS))})"
    insert = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE)
    conflicts = connection.ops.on_conflict_suffix_sql(_IMAGE_FIELDS, OnConflict.IGNORE, None, None)
    return f"{insert} {table} ({columns}) VALUES {', '.join([row] * rows)} {conflicts}"


@functools.cache
def _image_defaults(vendor: str) -> tuple[object, ...]:
    """A new image's row as the model prepares it: every field but the four _images_insert gives starts at a
    constant default (tests/test_webhook.py compares a row written here with one the ORM writes)."""
    blank = Image()
    return tuple(field.get_db_prep_save(field.pre_save(blank, add=True), connection) for field in _IMAGE_FIELDS)


def _images_insert(*, task_id: int, urls: dict[int, str], mirror_job_id: str) -> None:
    """A finished task's images (by Apiframe's index); one that exists stays (a repeated "finished", the poller
    and a webhook both applying it)."""
    defaults = _image_defaults(connection.vendor)
    values: list[object] = []
    for index, url in urls.items():
        given = {"task": task_id, "index": index, "source_url": url, "mirror_job_id": mirror_job_id}
        values += [
            field.get_db_prep_save(given[field.name], connection) if field.name in given else default
            for field, default in zip(_IMAGE_FIELDS, defaults, strict=True)
        ]
    with connection.cursor() as cursor:
        cursor.execute(_images_insert_sql(connection.vendor, len(urls)), values)


def _task_find(*, apiframe_task_id: str) -> Task | None:
    """The task Apiframe calls by this id, with what applying needs of it."""
    with connection.cursor() as cursor:
        cursor.execute(_find_sql(connection.vendor), [apiframe_task_id])
        row = cursor.fetchone()
    # As `.only()` would give it: other fields load when first read.
    if row is None:
        return None
    return Task.from_db(connection.alias, [Task._meta.get_field(name).attname for name in _FOUND], row)


def _task_move_forward(*, task_id: int, status: str, changes: dict[str, object], now: datetime) -> bool:
    """Apply `changes` if they move the task forward (Task.RANK): a higher status, or a higher percentage while
    processing. Sets started_at once, when the task first shows progress or its result."""
    values = _prepared(Task, changes)
    if status in (Task.Status.FINISHED, Task.Status.PROCESSING):
        values += _prepared(Task, {"started_at": now})
    condition: list[object] = [task_id, *_statuses_behind(status)]
    if status == Task.Status.PROCESSING:
        condition += [Task.Status.PROCESSING, changes["percentage"]]
    with connection.cursor() as cursor:
        cursor.execute(_move_forward_sql(connection.vendor, tuple(changes), status), [*values, *condition])
        return cursor.rowcount == 1


def _task_heard(*, task_id: int, now: datetime) -> None:
    Task.objects.filter(pk=task_id).update(last_heard_at=now)  # a duplicate or stale delivery: rarer


def webhook_receive(*, body: dict, task_reference: int | None = None) -> tuple[str, WebhookDelivery]:
    """One webhook delivery: applied and logged in one transaction, so that a log line that fails takes the
    change back with it. A body that is not a task object is logged as invalid, and InvalidPayload raised.
    `task_reference` is our task's id from the webhook URL we gave Apiframe for it (upstream.webhook_kwargs)."""
    try:
        state = TaskState.from_payload(body)
    except InvalidPayload:
        webhook_record(body=body, state=None, outcome=WebhookDelivery.Outcome.INVALID, task=None)
        raise
    outcome, _, delivery = _apply(state, log_body=body)
    if outcome == WebhookDelivery.Outcome.UNKNOWN_TASK:
        if task_reference is not None:
            task_adopt_upstream_id(task_id=task_reference, apiframe_task_id=state.task_id)
        # The submit may have stored this task's id between our lookup and our log line: look once more.
        outcome = webhook_apply_again(delivery=delivery)
    return outcome, delivery


def task_adopt_upstream_id(*, task_id: int, apiframe_task_id: str) -> bool:
    """Give a task the Apiframe id its own worker never saved (killed between Apiframe's answer and the save), once
    a delivery for that id names the task in its URL. Only a task that was being sent, or timed out sending, and
    has no id yet: a known task is never re-pointed, and no later step can tell an adopted id from a saved one."""
    now = timezone.now()
    adopted = Task.objects.filter(
        pk=task_id, apiframe_task_id=None, status__in=[Task.Status.SUBMITTING, Task.Status.TIMED_OUT]
    ).update(apiframe_task_id=apiframe_task_id, submitted_at=now, last_heard_at=now)
    if adopted:
        logger.warning(
            "task %s: adopted Apiframe id %s from a webhook (its sender never saved it)", task_id, apiframe_task_id
        )
    return bool(adopted)


def webhook_record(*, body: dict, state: TaskState | None, outcome: str, task: Task | None) -> WebhookDelivery:
    """The webhook log's row for a delivery (one per delivery: written out like the statements above)."""
    body = without_secrets(body)  # never keep a secret, even echoed back under another key
    delivery = WebhookDelivery(
        received_at=timezone.now(),
        apiframe_task_id=storable_text(state.task_id if state else str(body.get("task_id", "")))[:64],
        reported_status=storable_text(state.status if state else str(body.get("status", "")))[:20],
        outcome=outcome,
        task=task,
        body=body,
    )
    values = {
        "received_at": delivery.received_at,
        "apiframe_task_id": delivery.apiframe_task_id,
        "task": task.pk if task else None,
        "reported_status": delivery.reported_status,
        "outcome": outcome,
        "body": body,
    }
    with connection.cursor() as cursor:
        cursor.execute(_record_sql(connection.vendor, tuple(values)), _prepared(WebhookDelivery, values))
        if connection.features.can_return_columns_from_insert:
            delivery.pk = cursor.fetchone()[0]
        else:
            delivery.pk = connection.ops.last_insert_id(cursor, WebhookDelivery._meta.db_table, "id")
    delivery._state.adding = False
    return delivery


def webhooks_apply_early(*, apiframe_task_id: str) -> None:
    """Webhooks can beat Apiframe's answer to us: apply the ones logged as "unknown task" for this id."""
    early = WebhookDelivery.objects.filter(
        apiframe_task_id=apiframe_task_id, outcome=WebhookDelivery.Outcome.UNKNOWN_TASK
    ).order_by("received_at")
    for delivery in early:
        webhook_apply_again(delivery=delivery)


def webhook_apply_again(*, delivery: WebhookDelivery) -> str:
    """Apply a delivery logged as "unknown task" once its task is known; the log then says what it did. Returns
    the outcome the log now shows (still "unknown task" if the task is not known yet)."""
    with transaction.atomic():
        outcome, task = task_apply_state(state=TaskState.from_payload(delivery.body))
        if task is not None:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(outcome=outcome, task=task)
    return outcome
