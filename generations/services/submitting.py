"""Creating tasks (imagine, an action on an image, a retry) and sending them to Apiframe once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from generations import jobs
from generations.apiframe import ApiframeClient, ApiframeError, RateLimited, UpstreamUnavailable
from generations.live import stream
from generations.models import Collection, Image, Prompt, Task, Team
from generations.services import blocklist, limits, queue
from generations.services.applying import webhooks_apply_early
from generations.services.upstream import apiframe_client, webhook_kwargs
from generations.text import normalize_for_search

logger = logging.getLogger(__name__)

# The actions whose prompt goes upstream (the others send a parent's id): the blocklist checks these.
SENDS_PROMPT = (Task.Action.IMAGINE, Task.Action.REROLL)
# How a failed task's error starts when Apiframe said no to the submit (a banned prompt, mostly): the admin counts
# these per member.
UPSTREAM_REFUSED = "Apiframe refused the request"


class ParentHidden(Exception):
    """An action on a hidden image, or on an image or prompt of a hidden task: nothing was created."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _refuse_hidden(*, tasks: list[Task | None], parent: Task | None, index: int | None) -> None:
    """Raise ParentHidden if a moderator hid any of `tasks`, or the parent's image `index` (a hidden image can
    be no parent, for staff either: new work would send it upstream again)."""
    if any(task is not None and task.hidden_at is not None for task in tasks):
        raise ParentHidden("A moderator hid this task: it can't be used for new work.")
    hidden_images = Image.objects.filter(task=parent, index=index, hidden_at__isnull=False)
    if parent is not None and index is not None and hidden_images.exists():
        raise ParentHidden(f"A moderator hid image {index}: it can't be used for new work.")


def prompt_create(*, team: Team, author: AbstractBaseUser, text: str, mode: str, aspect_ratio: str) -> Prompt:
    return Prompt.objects.create(
        team=team,
        author=author,
        text=text,
        search_text=normalize_for_search(text),
        mode=mode,
        aspect_ratio=aspect_ratio,
    )


def _task_create(
    *,
    idempotency_key: uuid.UUID,
    created_by: AbstractBaseUser,
    team: Team,
    prompt_for: Callable[[], Prompt],
    prompt_text: str,
    **fields: object,
) -> tuple[Task, bool]:
    """Save a task and put it in the fair queue (services/queue.py), which sends it when its turn comes; a repeated
    idempotency key returns the first task instead.

    A key counts within one team and on one parent (the constraints on Task say the same): reused on another
    parent, or after switching teams, it makes a new task, never answers with a different one.
    `prompt_for` gives the task's prompt inside the transaction, so a duplicate never leaves a stray prompt.
    Raises limits.SubmissionRefused, having created nothing, when the user or the team is over a limit (refused
    prompts count in the user's rate), and blocklist.PromptBlocked (audited, nothing else created) when
    `prompt_text`, to be sent, holds a blocked term.
    """
    same_request = Task.objects.filter(
        created_by=created_by, team=team, parent=fields.get("parent"), idempotency_key=idempotency_key
    )
    existing = same_request.first()
    if existing:
        return existing, False  # a replay of an accepted submit is no new call: never refused
    if refused := limits.submission_refusal(user=created_by, team=team):
        raise refused
    # After the limits, which cost two or three indexed queries: a refused submit pays no check; a blocked prompt
    # counts in the user's rate by its audit row.
    if fields["action"] in SENDS_PROMPT:
        blocklist.prompt_check(team=team, user=created_by, text=prompt_text, action=str(fields["action"]))
    now = timezone.now()
    try:
        with transaction.atomic():
            prompt = prompt_for()
            task = Task.objects.create(
                prompt=prompt,
                team=prompt.team,
                created_by=created_by,
                idempotency_key=idempotency_key,
                created_at=now,
                updated_at=now,
                deadline=now + timedelta(seconds=settings.MJSTUDIO_TASK_TIMEOUT),
                **fields,
            )
            if task.root_id is None:
                Task.objects.filter(pk=task.pk).update(root=task)
                task.root = task
            queue.queue_dispatch_after_commit()  # its turn may be now; either way its card shows its place
            stream.task_changed(task_id=task.pk, team_id=task.team_id)  # teammates' open studios get the card
    except IntegrityError:
        # Two requests with one key raced past the lookup above: the first one's task stands.
        existing = same_request.first()
        if existing is None:
            raise
        return existing, False
    return task, True


def task_create_imagine(
    *,
    team: Team,
    user: AbstractBaseUser,
    text: str,
    mode: str,
    aspect_ratio: str,
    idempotency_key: uuid.UUID,
    collection: Collection | None = None,
) -> tuple[Task, bool]:
    """A new prompt's grid; its images join `collection` (one of the team's) when they arrive."""
    if collection is not None and collection.team_id != team.pk:
        raise ValueError(f"collection {collection.pk} is not team {team.pk}'s")
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        team=team,
        prompt_for=lambda: prompt_create(team=team, author=user, text=text, mode=mode, aspect_ratio=aspect_ratio),
        prompt_text=text,
        action=Task.Action.IMAGINE,
        collection=collection,
    )


def task_create_child(
    *,
    parent: Task,
    user: AbstractBaseUser,
    action: str,
    option: str,
    index: int | None,
    idempotency_key: uuid.UUID,
) -> tuple[Task, bool]:
    """A Vary/Upscale/Pan/Zoom (or Reroll) of a finished parent. Validation is the form's job.
    Raises ParentHidden, having created nothing, when the parent or its image is hidden."""
    _refuse_hidden(tasks=[parent], parent=parent, index=index)
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        team=parent.team,
        prompt_for=lambda: parent.prompt,
        prompt_text=parent.prompt.text,
        action=action,
        option=option,
        parent=parent,
        parent_index=index,
        root_id=parent.root_id or parent.pk,
    )


def task_retry(*, task: Task, user: AbstractBaseUser, idempotency_key: uuid.UUID) -> tuple[Task, bool]:
    """Send a failed or timed-out task again, as a new task beside it (the failed one stays in history).
    Raises ParentHidden, having created nothing, when it, its parent or the parent's image is hidden."""
    _refuse_hidden(tasks=[task, task.parent], parent=task.parent, index=task.parent_index)
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        team=task.team,
        prompt_for=lambda: task.prompt,
        prompt_text=task.prompt.text,
        action=task.action,
        option=task.option,
        parent=task.parent,
        parent_index=task.parent_index,
        root_id=task.root_id if task.parent_id else None,
        collection_id=task.collection_id,  # the same request again: its images go where the first's would have
    )


def _send_upstream(client: ApiframeClient, task: Task) -> str:
    hooks = webhook_kwargs(task_id=task.pk)
    if task.action in SENDS_PROMPT:
        prompt = task.prompt
        return client.imagine(prompt=prompt.text, mode=prompt.mode, aspect_ratio=prompt.aspect_ratio, **hooks)
    parent_id = task.parent.apiframe_task_id
    index = task.parent_index
    match task.action:
        case Task.Action.VARY:
            return client.vary(parent_task_id=parent_id, index=index, type=task.option, **hooks)
        case Task.Action.UPSCALE:
            return client.upscale(parent_task_id=parent_id, index=index, type=task.option, **hooks)
        case Task.Action.PAN:
            return client.pan(parent_task_id=parent_id, index=index, direction=task.option, **hooks)
        case Task.Action.ZOOM:
            return client.zoom(parent_task_id=parent_id, index=index, factor=float(task.option), **hooks)
    raise ValueError(f"unknown action {task.action!r}")


def task_submit(*, task_id: int, client: ApiframeClient | None = None) -> None:
    """Send a queued task to Apiframe once, when the fair queue has given it a slot. Called by the `submit_task` job."""
    now = timezone.now()
    # Only a task the dispatcher let go: a job left from before the queue, or queued twice, sends nothing.
    mine = Task.objects.filter(pk=task_id, status=Task.Status.QUEUED, dispatched_at__isnull=False)
    claimed = mine.update_visibly(at=now, status=Task.Status.SUBMITTING, submit_attempts=F("submit_attempts") + 1)
    if claimed != 1:
        return  # already sent, timed out, or taken by another worker
    task = Task.objects.select_related("prompt", "parent", "created_by").get(pk=task_id)
    if task.action in SENDS_PROMPT and _blocked_at_send(task):
        return
    try:
        with apiframe_client(client) as api:
            upstream_id = _send_upstream(api, task)
    except (RateLimited, UpstreamUnavailable) as exc:
        if exc.maybe_created:
            _submit_failed(task_id, exc)
            return
        # Surely not created (a full queue, a 503, no connection): try again until the task's deadline,
        # never sooner than Apiframe asked. It keeps its slot meanwhile: sending another would meet the same answer.
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        delay = max(retry_after or 0, min(2 ** min(task.submit_attempts, 6), 60))
        busy = f"Apiframe is busy ({exc.message or exc.__class__.__name__}); trying again in {delay:.0f} s."
        with transaction.atomic():
            Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update_visibly(
                status=Task.Status.QUEUED, error=busy[:500]
            )
            later = jobs.submit_task.using(run_after=timezone.now() + timedelta(seconds=delay))
            transaction.on_commit(lambda: later.enqueue(task_id))
        logger.info("task %s: %s", task_id, busy)
        return
    except ApiframeError as exc:
        _submit_failed(task_id, exc)
        return
    now = timezone.now()
    # Keep the upstream id even if the deadline passed meanwhile: a late result can still be applied.
    Task.objects.filter(pk=task_id).update(apiframe_task_id=upstream_id, submitted_at=now, last_heard_at=now)
    Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update_visibly(
        at=now, status=Task.Status.PENDING, error=""
    )
    webhooks_apply_early(apiframe_task_id=upstream_id)


def _blocked_at_send(task: Task) -> bool:
    """A term added while the task waited: it fails with the blocklist's message and is never sent. The check
    costs what the submit's did, within the bound the lists' caps keep (services/blocklist.py), so the tasks of
    other teams queued behind this one wait no longer for it."""
    try:  # not in a transaction: the audit row written on the way out must stay
        blocklist.prompt_check(
            team=task.team_id, user=task.created_by, text=task.prompt.text, action=task.action, task=task
        )
    except blocklist.PromptBlocked as blocked:
        now = timezone.now()
        if Task.objects.filter(pk=task.pk, status=Task.Status.SUBMITTING).update_visibly(
            at=now, status=Task.Status.FAILED, error=blocked.message[:500], finished_at=now
        ):
            queue.queue_dispatch_after_commit()  # its slot is free
        return True
    return False


def _submit_failed(task_id: int, exc: ApiframeError) -> None:
    """End a task that Apiframe refused, or that may exist there already: sending again could pay twice,
    so the user decides with Retry."""
    if exc.maybe_created:
        reason = "Apiframe did not confirm this task; it may still run upstream. Retry to send it again."
    else:
        reason = f"{UPSTREAM_REFUSED}: {exc.message}" if exc.message else f"{UPSTREAM_REFUSED}."
    now = timezone.now()
    if Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update_visibly(
        at=now, status=Task.Status.FAILED, error=reason[:500], finished_at=now
    ):
        queue.queue_dispatch_after_commit()  # its slot is free
