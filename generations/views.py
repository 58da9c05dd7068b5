from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Q
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from generations import services
from generations.apiframe import InvalidPayload, TaskState
from generations.forms import ActionForm, ImagineForm
from generations.models import Image, Membership, Task, Team, WebhookDelivery

logger = logging.getLogger(__name__)

STUDIO_PAGE_SIZE = 24
# While anything is in flight the page asks for changes this often; otherwise only now and then,
# so a teammate's new card still shows up.
PULSE_BUSY_SECONDS = 0.5
PULSE_IDLE_SECONDS = 5
# A change committed a moment after a later one was read must not be missed: look back this far.
# (Cards sent twice cost nothing: the page skips a card whose version it already shows.)
PULSE_LOOKBACK = timedelta(seconds=2)
PULSE_MAX_CARDS = 50


def _current_team(request: HttpRequest) -> Team:
    """The team the user acts in: the one chosen in this session, else their first (a personal one if none)."""
    team_id = request.session.get("team_id")
    if team_id:
        team = Team.objects.filter(pk=team_id, memberships__user=request.user).first()
        if team:
            return team
    team = services.team_ensure_for_user(user=request.user)
    request.session["team_id"] = team.pk
    return team


def _get_task_for_user(request: HttpRequest, pk: int) -> Task:
    """A task of the user's current team, or 404: another team's task does not exist for them."""
    return get_object_or_404(Task.objects.for_cards(), pk=pk, team=_current_team(request))


def _mine_only(request: HttpRequest) -> bool:
    """The "mine only" toggle, from this URL or, for an htmx request, from the page that sent it."""
    if "mine" in request.GET:
        return request.GET["mine"] == "1"
    current = request.htmx.current_url if request.htmx else None
    return bool(current) and "mine=1" in urlsplit(current).query.split("&")


def _cards(team: Team, *, mine_only: bool, user: object) -> list[Task]:
    tasks = Task.objects.for_team(team).for_cards()
    if mine_only:
        tasks = tasks.filter(created_by=user)
    return list(tasks.order_by("-created_at")[:STUDIO_PAGE_SIZE])


def _pulse_context(team: Team, *, cursor: datetime, mine_only: bool) -> dict:
    busy = (
        Task.objects.for_team(team).in_flight().exists()
        or Image.objects.filter(
            task__team=team, mirrored_at=None, mirror_attempts__lt=Image.MIRROR_MAX_ATTEMPTS
        ).exists()
    )
    return {
        "pulse_cursor": cursor.isoformat(),
        "pulse_seconds": PULSE_BUSY_SECONDS if busy else PULSE_IDLE_SECONDS,
        "mine_only": mine_only,
    }


def _studio_context(request: HttpRequest, **extra: object) -> dict:
    team = _current_team(request)
    mine_only = _mine_only(request)
    return {
        "team": team,
        "teams": Team.objects.filter(memberships__user=request.user),
        "cards": _cards(team, mine_only=mine_only, user=request.user),
        "page_size": STUDIO_PAGE_SIZE,
        "form": ImagineForm(initial={"idempotency_key": uuid.uuid4()}),
        **_pulse_context(team, cursor=timezone.now(), mine_only=mine_only),
        **extra,
    }


@require_GET
@never_cache  # never shown from the back/forward cache: its forms' keys and cards would be stale
def studio(request: HttpRequest) -> HttpResponse:
    return render(request, "generations/studio.html", _studio_context(request))


@require_POST
def task_create(request: HttpRequest) -> HttpResponse:
    form = ImagineForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            return render(request, "generations/studio.html#composer", {"form": form}, status=422)
        return render(request, "generations/studio.html", _studio_context(request, form=form), status=422)
    text, mode, aspect_ratio = (form.cleaned_data[k] for k in ("prompt", "mode", "aspect_ratio"))
    task, _ = services.task_create_imagine(
        team=_current_team(request),
        user=request.user,
        text=text,
        mode=mode,
        aspect_ratio=aspect_ratio,
        # The same form sent twice makes one task; a stale key (a page restored by Back) with a new prompt
        # still makes a new one.
        idempotency_key=uuid.uuid5(form.cleaned_data["idempotency_key"], f"{mode}:{aspect_ratio}:{text}"),
    )
    if not request.htmx:
        return redirect("generations:studio")
    # A fresh key; mode and ratio stay as chosen.
    fresh = ImagineForm(initial={"idempotency_key": uuid.uuid4(), "mode": mode, "aspect_ratio": aspect_ratio})
    return _render_new_card(request, task, {"form": fresh})


def _render_new_card(request: HttpRequest, task: Task, context: dict) -> HttpResponse:
    """The htmx answer to a new task: the form again, the new card on top, and a busy pulse."""
    team = task.team
    context = {
        **context,
        "new_task": Task.objects.for_cards().get(pk=task.pk),
        **_pulse_context(team, cursor=timezone.now(), mine_only=_mine_only(request)),
    }
    return render(request, "generations/new_task_response.html", context)


def _refused(request: HttpRequest, task: Task, message: str, *, index: str | None = None) -> HttpResponse:
    """An action that sends nothing: its message on the card (and in the image's menu), or as a flash."""
    if request.htmx:
        context = {"task": task, "message": message, "index": index}
        return render(request, "generations/studio.html#action-error", context, status=422)
    messages.error(request, message)
    return redirect("generations:studio")


@require_POST
def task_act(request: HttpRequest, pk: int) -> HttpResponse:
    parent = _get_task_for_user(request, pk)
    form = ActionForm(request.POST, parent=parent)
    if not form.is_valid():
        message = " ".join(e for errors in form.errors.values() for e in errors)
        index = request.POST.get("index", "")  # to show the message in that image's menu, if it is one
        return _refused(request, parent, message, index=index if index in ("1", "2", "3", "4") else None)
    action, option, index = (form.cleaned_data[k] for k in ("task_action", "task_option", "index"))
    task, _ = services.task_create_child(
        parent=parent,
        user=request.user,
        action=action,
        option=option,
        index=index,
        # One key per menu: each distinct button makes its own task, a repeated click (or POST) does not.
        idempotency_key=uuid.uuid5(form.cleaned_data["idempotency_key"], f"{action}:{option}:{index}"),
    )
    if not request.htmx:
        return redirect("generations:studio")
    return _render_new_card(request, task, {"key_task": parent, "key_for": index or "reroll"})


@require_POST
def task_retry(request: HttpRequest, pk: int) -> HttpResponse:
    failed = _get_task_for_user(request, pk)
    try:
        key = uuid.UUID(request.POST.get("idempotency_key", ""))
    except ValueError:
        key = None
    if key is None:
        return _refused(request, failed, "This page is out of date: reload it and try again.")
    if not failed.can_retry:
        return _refused(request, failed, "Only a failed or timed-out task can be retried.")
    task, _ = services.task_retry(task=failed, user=request.user, idempotency_key=key)
    if not request.htmx:
        return redirect("generations:studio")
    return _render_new_card(request, task, {"key_task": failed, "key_for": "retry"})


def _depth_first(tasks: list[Task]) -> list[tuple[Task, int]]:
    """A lineage as (task, depth) pairs: each task followed by everything made from it, oldest first."""
    children: dict[int | None, list[Task]] = {}
    for node in tasks:
        children.setdefault(node.parent_id, []).append(node)
    ordered: list[tuple[Task, int]] = []

    def visit(node: Task, depth: int) -> None:
        ordered.append((node, min(depth, 5)))
        for child in children.get(node.pk, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return ordered


@require_GET
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    task = _get_task_for_user(request, pk)
    tree = Task.objects.for_team(task.team).filter(root_id=task.root_id).select_related("created_by")
    tree = tree.order_by("created_at")
    context = {"task": task, "lineage": _depth_first(list(tree)), "team": task.team}
    return render(request, "generations/task_detail.html", context)


@require_GET
@never_cache
def studio_pulse(request: HttpRequest) -> HttpResponse:
    """The live refresh: cards changed since the cursor, as out-of-band swaps; 204 when nothing changed."""
    team = _current_team(request)
    mine_only = _mine_only(request)
    now = timezone.now()
    try:
        since = parse_datetime(request.GET.get("since", "")) or now
        looked_back = since - PULSE_LOOKBACK
    except (ValueError, OverflowError):  # a mangled cursor: start from now
        since, looked_back = now, now - PULSE_LOOKBACK
    after = request.GET.get("after", "")
    changed = Task.objects.for_team(team)
    if after.isdigit():
        # Draining a burst: exactly after the last card sent, (updated_at, pk) breaking ties.
        changed = changed.filter(Q(updated_at__gt=since) | Q(updated_at=since, pk__gt=int(after)))
    else:
        changed = changed.filter(updated_at__gt=looked_back)
    if mine_only:
        changed = changed.filter(created_by=request.user)
    if not changed.exists():
        return HttpResponse(status=204)
    batch = list(changed.for_cards().order_by("updated_at", "pk")[: PULSE_MAX_CARDS + 1])
    pulse = _pulse_context(team, cursor=now, mine_only=mine_only)
    if len(batch) > PULSE_MAX_CARDS:  # a burst: the oldest changes now, the rest on the next pulse, soon
        batch = batch[:PULSE_MAX_CARDS]
        pulse.update(
            pulse_cursor=batch[-1].updated_at.isoformat(), pulse_after=batch[-1].pk, pulse_seconds=PULSE_BUSY_SECONDS
        )
    # Oldest first, so that cards new to the page, each put on top, end up newest on top.
    cards = sorted(batch, key=lambda task: task.created_at)
    context = {"cards": cards, **pulse}
    return render(request, "generations/pulse_response.html", context)


@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team_id = request.POST.get("team", "")
    membership = get_object_or_404(Membership, team_id=int(team_id) if team_id.isdigit() else 0, user=request.user)
    request.session["team_id"] = membership.team_id
    return redirect("generations:studio")


@require_GET
def image_file(request: HttpRequest, pk: int, variant: str) -> FileResponse:
    """Serve a mirrored image to members of its team only (files are never public)."""
    if variant not in ("thumb", "full"):
        raise Http404("No such image variant.")
    image = get_object_or_404(Image.objects.select_related("task"), pk=pk, task__team=_current_team(request))
    field = image.thumbnail if variant == "thumb" else image.file
    if not field:
        raise Http404("This image has not been saved yet.")
    try:
        opened = field.open("rb")
    except OSError as exc:
        logger.error("image %s: stored file %s is missing: %s", image.pk, field.name, exc)
        raise Http404("This image file is missing.") from exc
    if request.GET.get("download") == "1":
        name = f"mjstudio-{image.task_id}-{image.index}.{field.name.rsplit('.', 1)[-1]}"
        response = FileResponse(opened, as_attachment=True, filename=name)
    else:
        response = FileResponse(opened)
    # Private: only team members may see it. Short-lived, so that hiding an image takes effect soon.
    response["Cache-Control"] = "private, max-age=3600"
    return response


@csrf_exempt
@login_not_required
@require_POST
def apiframe_webhook(request: HttpRequest) -> HttpResponse:
    """Apiframe's status updates and results. Only the shared secret proves who sent them."""
    provided = request.headers.get("x-webhook-secret", "")
    if not provided or not constant_time_compare(provided, settings.APIFRAME_WEBHOOK_SECRET):
        services.webhook_count_rejection()
        return JsonResponse({"error": "bad secret"}, status=401)
    limit = settings.MJSTUDIO_WEBHOOK_MAX_BYTES
    body = request.read(limit + 1)  # never more than the limit in memory, whatever Content-Length claims
    if len(body) > limit:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return JsonResponse({"error": "body is not JSON"}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"error": "body is not a JSON object"}, status=400)
    try:
        state = TaskState.from_payload(payload)
        outcome, task = services.task_apply_state(state=state)
        delivery = services.webhook_record(body=payload, state=state, outcome=outcome, task=task)
    except InvalidPayload as exc:
        services.webhook_record(body=payload, state=None, outcome=WebhookDelivery.Outcome.INVALID, task=None)
        return JsonResponse({"error": str(exc)}, status=400)
    except RecursionError:
        return JsonResponse({"error": "body nested too deeply"}, status=400)
    if outcome == WebhookDelivery.Outcome.UNKNOWN_TASK:
        # The submit may have stored this task's id between our lookup and our log line: look once more.
        services.webhook_apply_again(delivery=delivery)
    # Unknown tasks get a 2xx too: the sender should stop retrying something we will never recognise.
    return JsonResponse({"ok": True, "outcome": str(outcome)})


@login_not_required
def login(request: HttpRequest) -> HttpResponse:
    """Django's login page; in sandbox mode it also says which demo login `make run` created."""
    sandbox = settings.APIFRAME_IS_SANDBOX and settings.DEBUG
    demo = {"user": services.DEMO_USERS[0], "password": services.DEMO_PASSWORD} if sandbox else None
    return auth_views.LoginView.as_view(extra_context={"demo_login": demo})(request)


@login_not_required
@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
