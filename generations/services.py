"""Every write to the studio's records goes through these functions (keyword-only, typed).

The one function that applies an Apiframe task object is `task_apply_state`: the webhook, the poller and
on-demand fetches all call it, and it is idempotent and monotonic.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Concat, Left
from django.utils import timezone
from PIL import Image as PILImage

from generations import jobs
from generations.apiframe import (
    ApiframeClient,
    ApiframeError,
    RateLimited,
    TaskState,
    UpstreamUnavailable,
)
from generations.models import Image, Membership, Prompt, RejectedWebhookCount, Task, Team, WebhookDelivery

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (640, 640)
DOWNLOAD_SECONDS = 60  # for one image, however slowly the host drips it


# --- Teams ------------------------------------------------------------------------------------------------


def team_ensure_for_user(*, user: AbstractBaseUser) -> Team:
    """The user's first team, or a new personal team for a user who belongs to none yet."""
    membership = Membership.objects.filter(user=user).select_related("team").order_by("joined_at").first()
    if membership:
        return membership.team
    with transaction.atomic():
        team = Team.objects.create(name=f"{user.get_username()}'s team")
        Membership.objects.create(team=team, user=user)
    return team


# Sandbox mode only (`make run` with the sandbox): a demo team and two logins, printed on purpose.
DEMO_TEAM = "Demo studio"
DEMO_USERS = ("demo", "alex")
DEMO_PASSWORD = "mjstudio-demo"  # noqa: S105


def demo_logins_ensure() -> None:
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    for username in DEMO_USERS:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        Membership.objects.get_or_create(team=team, user=user)


# --- Creating tasks ---------------------------------------------------------------------------------------


def normalize_for_search(text: str) -> str:
    """Lower case without diacritics, so "ca phe" finds "cà phê" (đ has no decomposition: mapped by hand)."""
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


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
    prompt_for: Callable[[], Prompt],
    **fields: object,
) -> tuple[Task, bool]:
    """Save a task and queue its upstream call; a repeated idempotency key returns the first task instead.

    `prompt_for` gives the task's prompt inside the transaction, so a duplicate never leaves a stray prompt.
    """
    existing = Task.objects.filter(created_by=created_by, idempotency_key=idempotency_key).first()
    if existing:
        return existing, False
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
            transaction.on_commit(lambda: jobs.submit_task.enqueue(task.pk))
    except IntegrityError:
        # Two requests with one key raced past the lookup above: the first one's task stands.
        return Task.objects.get(created_by=created_by, idempotency_key=idempotency_key), False
    return task, True


def task_create_imagine(
    *,
    team: Team,
    user: AbstractBaseUser,
    text: str,
    mode: str,
    aspect_ratio: str,
    idempotency_key: uuid.UUID,
) -> tuple[Task, bool]:
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        prompt_for=lambda: prompt_create(team=team, author=user, text=text, mode=mode, aspect_ratio=aspect_ratio),
        action=Task.Action.IMAGINE,
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
    """A Vary/Upscale/Pan/Zoom (or Reroll) of a finished parent. Validation is the form's job."""
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        prompt_for=lambda: parent.prompt,
        action=action,
        option=option,
        parent=parent,
        parent_index=index,
        root_id=parent.root_id or parent.pk,
    )


def task_retry(*, task: Task, user: AbstractBaseUser, idempotency_key: uuid.UUID) -> tuple[Task, bool]:
    """Send a failed or timed-out task again, as a new task beside it (the failed one stays in history)."""
    return _task_create(
        idempotency_key=idempotency_key,
        created_by=user,
        prompt_for=lambda: task.prompt,
        action=task.action,
        option=task.option,
        parent=task.parent,
        parent_index=task.parent_index,
        root_id=task.root_id if task.parent_id else None,
    )


# --- Talking to Apiframe ----------------------------------------------------------------------------------


def _apiframe(client: ApiframeClient | None) -> contextlib.AbstractContextManager[ApiframeClient]:
    """The given client (tests pass one), or a new one from the settings, closed after use."""
    return contextlib.nullcontext(client) if client else ApiframeClient.from_settings()


def _webhook_kwargs() -> dict[str, str]:
    if not settings.APIFRAME_WEBHOOK_URL:
        return {}
    return {"webhook_url": settings.APIFRAME_WEBHOOK_URL, "webhook_secret": settings.APIFRAME_WEBHOOK_SECRET}


def _send_upstream(client: ApiframeClient, task: Task) -> str:
    hooks = _webhook_kwargs()
    if task.action in (Task.Action.IMAGINE, Task.Action.REROLL):
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
    """Send a queued task to Apiframe once. Called by the `submit_task` job."""
    now = timezone.now()
    claimed = Task.objects.filter(pk=task_id, status=Task.Status.QUEUED).update(
        status=Task.Status.SUBMITTING, submit_attempts=F("submit_attempts") + 1, updated_at=now
    )
    if claimed != 1:
        return  # already sent, timed out, or taken by another worker
    task = Task.objects.select_related("prompt", "parent").get(pk=task_id)
    try:
        with _apiframe(client) as api:
            upstream_id = _send_upstream(api, task)
    except (RateLimited, UpstreamUnavailable) as exc:
        if exc.maybe_created:
            _submit_failed(task_id, exc)
            return
        # Surely not created (a full queue, a 503, no connection): try again until the task's deadline,
        # never sooner than Apiframe asked.
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        delay = max(retry_after or 0, min(2 ** min(task.submit_attempts, 6), 60))
        busy = f"Apiframe is busy ({exc.message or exc.__class__.__name__}); trying again in {delay:.0f} s."
        with transaction.atomic():
            Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update(
                status=Task.Status.QUEUED, error=busy[:500], updated_at=timezone.now()
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
    Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update(
        status=Task.Status.PENDING, error="", updated_at=now
    )
    _apply_early_webhooks(upstream_id)


def _apply_early_webhooks(upstream_id: str) -> None:
    """Webhooks can beat Apiframe's answer to us: apply the ones logged as "unknown task" for this id."""
    early = WebhookDelivery.objects.filter(
        apiframe_task_id=upstream_id, outcome=WebhookDelivery.Outcome.UNKNOWN_TASK
    ).order_by("received_at")
    for delivery in early:
        webhook_apply_again(delivery=delivery)


def webhook_apply_again(*, delivery: WebhookDelivery) -> None:
    """Apply a delivery logged as "unknown task" once its task is known; the log then says what it did."""
    outcome, task = task_apply_state(state=TaskState.from_payload(delivery.body))
    if task is not None:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(outcome=outcome, task=task)


def _submit_failed(task_id: int, exc: ApiframeError) -> None:
    """End a task that Apiframe refused, or that may exist there already: sending again could pay twice,
    so the user decides with Retry."""
    if exc.maybe_created:
        reason = "Apiframe did not confirm this task; it may still run upstream. Retry to send it again."
    else:
        reason = f"Apiframe refused the request: {exc.message}" if exc.message else "Apiframe refused the request."
    now = timezone.now()
    Task.objects.filter(pk=task_id, status=Task.Status.SUBMITTING).update(
        status=Task.Status.FAILED, error=reason[:500], finished_at=now, updated_at=now
    )


# --- Applying Apiframe's answers --------------------------------------------------------------------------


def _status_for(state: TaskState) -> str:
    if state.is_finished:
        return Task.Status.FINISHED
    if state.is_failed:
        return Task.Status.FAILED
    if state.status == "processing":
        return Task.Status.PROCESSING
    return Task.Status.PENDING  # pending, staged, starting, retrying and anything unknown: still working


def _usable_urls(state: TaskState, *, limit: int) -> dict[int, str]:
    """Image URLs by Apiframe's index (1-4): a bad one is left out, the others keep their numbers."""
    max_length = Image._meta.get_field("source_url").max_length
    return {
        index: url
        for index, url in enumerate(state.result_urls[:limit], start=1)
        if len(url) <= max_length and urlsplit(url).scheme in ("http", "https")
    }


def without_secrets(value: object) -> object:
    """A copy of an Apiframe object with every "*secret*" key removed, however deep: never stored."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if "secret" not in str(k).lower()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def task_apply_state(*, state: TaskState) -> tuple[str, Task | None]:
    """Apply one Apiframe task object (from a webhook, a poll or a fetch). Idempotent and monotonic.

    An update lands only if it moves the task forward (Task.RANK): a higher status, or a higher percentage
    while processing. Finished and failed never change again. Our own "timed out" gives way to Apiframe's
    final word: a late finished keeps the paid-for images, a late failure gives the real reason.
    """
    task = Task.objects.filter(apiframe_task_id=state.task_id).only("pk", "action", "status").first()
    if task is None:
        return WebhookDelivery.Outcome.UNKNOWN_TASK, None
    status = _status_for(state)
    changes: dict[str, object] = {"upstream_status": state.status[:20]}
    urls: dict[int, str] = {}
    if status == Task.Status.FINISHED:
        urls = _usable_urls(state, limit=4 if task.is_grid else 1)
        if not urls:
            # "Finished" without images is not a result: keep waiting, the poller asks again.
            logger.warning("task %s: finished without usable image URLs", task.pk)
            status = Task.Status.PROCESSING
    if status == Task.Status.FINISHED:
        changes.update(percentage=100, error="", credits=credits_for(task.action), result=without_secrets(state.raw))
    elif status == Task.Status.FAILED:
        error = state.error or "Midjourney could not complete this task."
        changes.update(error=error[:500], result=without_secrets(state.raw))
    elif status == Task.Status.PROCESSING:
        changes["percentage"] = min(state.percentage or 0, 99)
    moves_forward = Q(status__in=[s for s, rank in Task.RANK.items() if rank < Task.RANK[status]])
    if status == Task.Status.PROCESSING:
        moves_forward |= Q(status=Task.Status.PROCESSING, percentage__lt=changes["percentage"])

    with transaction.atomic():
        # Stamped once the write lock is ours, so that live refresh (which asks "changed since?") sees
        # changes in about the order they commit.
        now = timezone.now()
        changes.update(updated_at=now, last_heard_at=now)
        if status in (Task.Status.FINISHED, Task.Status.FAILED):
            changes["finished_at"] = now
        if status in (Task.Status.FINISHED, Task.Status.PROCESSING):
            changes["started_at"] = Coalesce("started_at", now)
        if not Task.objects.filter(moves_forward, pk=task.pk).update(status=status, **changes):
            Task.objects.filter(pk=task.pk).update(last_heard_at=now)  # it is alive: no need to poll it
            return WebhookDelivery.Outcome.STALE, task
        if urls:
            Image.objects.bulk_create(
                [Image(task_id=task.pk, index=index, source_url=url) for index, url in urls.items()],
                ignore_conflicts=True,
            )
            transaction.on_commit(lambda: jobs.mirror_task_images.enqueue(task.pk))
    task.status = status
    return WebhookDelivery.Outcome.APPLIED, task


def credits_for(action: str) -> int:
    return settings.MJSTUDIO_CREDIT_PRICES.get(action, 0)


def webhook_record(*, body: dict, state: TaskState | None, outcome: str, task: Task | None) -> WebhookDelivery:
    body = without_secrets(body)  # never keep a secret, even echoed back
    return WebhookDelivery.objects.create(
        apiframe_task_id=(state.task_id if state else str(body.get("task_id", "")))[:64],
        reported_status=(state.status if state else str(body.get("status", "")))[:20],
        outcome=outcome,
        task=task,
        body=body,
    )


def webhook_count_rejection() -> None:
    today = timezone.localdate()
    counter, _ = RejectedWebhookCount.objects.get_or_create(day=today)
    RejectedWebhookCount.objects.filter(pk=counter.pk).update(count=F("count") + 1)


# --- The poller's rounds ----------------------------------------------------------------------------------


def tasks_expire_overdue(*, now: datetime | None = None) -> int:
    """End every task past its deadline as timed out, with the reason the user will read."""
    now = now or timezone.now()
    overdue = Task.objects.in_flight().filter(deadline__lt=now)
    reasons = [
        (
            Q(status=Task.Status.QUEUED) & ~Q(error=""),  # Apiframe kept saying it was busy
            Concat(Value("Never reached Apiframe before the deadline. Last answer: "), F("error")),
        ),
        (
            Q(status=Task.Status.QUEUED),
            "Never reached Apiframe before the deadline (the queue or the worker is down). Retry to send it.",
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
        expired += overdue.filter(which).update(
            status=Task.Status.TIMED_OUT, error=error, finished_at=now, updated_at=now
        )
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
    with _apiframe(client) as api:
        states = api.fetch_many(ids)
    for state in states:
        try:
            task_apply_state(state=state)
        except Exception:  # one odd answer must not stop the others from landing
            logger.exception("could not apply Apiframe's state for %s", state.task_id)
    return len(states)


def images_requeue_unmirrored(*, now: datetime | None = None, grace: float = 60.0) -> int:
    """Queue the mirror again where its own retry is overdue (a worker died mid-job, a job was lost)."""
    now = now or timezone.now()
    lost = now - timedelta(seconds=grace)
    task_ids = set(
        Image.objects.filter(mirrored_at=None, mirror_attempts__lt=Image.MIRROR_MAX_ATTEMPTS)
        .filter(Q(mirror_next_at__lt=lost) | Q(mirror_next_at=None, task__finished_at__lt=lost))
        .values_list("task_id", flat=True)
    )
    for task_id in task_ids:
        jobs.mirror_task_images.enqueue(task_id)
    return len(task_ids)


# --- Mirroring images -------------------------------------------------------------------------------------


class MirrorError(Exception):
    pass


@dataclass(frozen=True)
class _Downloaded:
    data: bytes
    extension: str
    width: int
    height: int
    thumbnail: bytes


def task_mirror_images(*, task_id: int) -> None:
    """Download, verify and store each image of a finished task once, with a WebP thumbnail."""
    pending = list(Image.objects.filter(task_id=task_id, mirrored_at=None))
    if not pending:
        return
    retry_in = None
    with requests.Session() as session:
        for image in pending:
            try:
                image_mirror(image=image, session=session)
            except Exception as exc:  # a CDN error, a bad file, a full disk: each counts as one attempt
                logger.warning("image %s of task %s not mirrored: %s", image.index, task_id, exc)
                attempts = image.mirror_attempts + 1
                delay = timedelta(seconds=min(2**attempts, 300))
                Image.objects.filter(pk=image.pk).update(
                    mirror_attempts=attempts,
                    mirror_error=(str(exc) if isinstance(exc, MirrorError) else exc.__class__.__name__)[:300],
                    mirror_next_at=timezone.now() + delay if attempts < Image.MIRROR_MAX_ATTEMPTS else None,
                )
                if attempts < Image.MIRROR_MAX_ATTEMPTS:
                    retry_in = min(retry_in or delay, delay)
    # Tell live refresh the card changed (images arrived, or an error to show).
    Task.objects.filter(pk=task_id).update(updated_at=timezone.now())
    if retry_in:
        jobs.mirror_task_images.using(run_after=timezone.now() + retry_in).enqueue(task_id)


def image_mirror(*, image: Image, session: requests.Session) -> None:
    downloaded = _download_image(image.source_url, session=session)
    stem = uuid.uuid4().hex  # unguessable: files are only ever served through permission-checking views
    file_name = default_storage.save(f"images/{stem}.{downloaded.extension}", ContentFile(downloaded.data))
    try:
        thumb_name = default_storage.save(f"thumbs/{stem}.webp", ContentFile(downloaded.thumbnail))
    except Exception:
        default_storage.delete(file_name)
        raise
    stored = Image.objects.filter(pk=image.pk, mirrored_at=None).update(
        file=file_name,
        thumbnail=thumb_name,
        width=downloaded.width,
        height=downloaded.height,
        content_hash=hashlib.sha256(downloaded.data).hexdigest(),
        size_bytes=len(downloaded.data),
        mirror_error="",
        mirrored_at=timezone.now(),
    )
    if not stored:  # another worker stored it first: drop our copy
        default_storage.delete(file_name)
        default_storage.delete(thumb_name)


def _is_image_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = hostname if parts.port is None else f"{hostname}:{parts.port}"
    return host in settings.APIFRAME_IMAGE_HOSTS


def _download_image(url: str, *, session: requests.Session) -> _Downloaded:
    if not _is_image_host(url):
        raise MirrorError(f"refusing to download from {urlsplit(url).netloc or url!r}: not an Apiframe image host")
    limit = settings.MJSTUDIO_MAX_IMAGE_BYTES
    deadline = time.monotonic() + DOWNLOAD_SECONDS
    try:
        # No redirects: a redirect could lead past the host check to anywhere (our own network included).
        with session.get(url, stream=True, timeout=(5, 15), allow_redirects=False) as response:
            if response.status_code != 200:
                raise MirrorError(f"image host answered {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise MirrorError(f"image larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise MirrorError(f"download took longer than {DOWNLOAD_SECONDS} s")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise MirrorError(f"download failed: {exc.__class__.__name__}") from exc
    return _verify_image(b"".join(chunks))


def _verify_image(data: bytes) -> _Downloaded:
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > settings.MJSTUDIO_MAX_IMAGE_PIXELS:
                raise MirrorError(f"image of {probe.width}×{probe.height} pixels is too large")
            if probe.format not in ("PNG", "JPEG", "WEBP"):
                raise MirrorError(f"unexpected image format {probe.format}")
            probe.verify()
        with PILImage.open(io.BytesIO(data)) as picture:
            picture.load()
            width, height, extension = picture.width, picture.height, picture.format.lower().replace("jpeg", "jpg")
            thumb = picture.convert("RGB")
            thumb.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            thumb.save(out, "WEBP", quality=82, method=4)
    except MirrorError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise MirrorError(f"not a valid image: {exc.__class__.__name__}") from exc
    return _Downloaded(data=data, extension=extension, width=width, height=height, thumbnail=out.getvalue())
