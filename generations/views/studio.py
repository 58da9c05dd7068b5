"""The studio page: the composer, the newest cards, and the live refresh that keeps them current."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from generations import params
from generations.forms import ImagineForm
from generations.live import views as live
from generations.models import Image, Prompt, Task, Team
from generations.services import blocklist, limits, submitting
from generations.views.queue import queue_context

STUDIO_PAGE_SIZE = 24
# While anything is in flight the page asks for changes this often; otherwise only now and then,
# so a teammate's new card still shows up.
PULSE_BUSY_SECONDS = 0.5
PULSE_IDLE_SECONDS = 5
# A change committed a moment after a later one was read must not be missed: look back this far.
# (Cards sent twice cost nothing: the page skips a card whose version it already shows.)
PULSE_LOOKBACK = timedelta(seconds=2)
PULSE_MAX_CARDS = 50
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # all but tab and line breaks


def _mine_only(request: HttpRequest) -> bool:
    """The "mine only" toggle, from this URL or, for an htmx request, from the page that sent it."""
    if "mine" in request.GET:
        return request.GET["mine"] == "1"
    current = params.current_url(request)
    return current is not None and "mine=1" in current.query.split("&")


def _cards(team: Team, *, mine_only: bool, user: object) -> list[Task]:
    # Hidden tasks and images are gone for non-staff; staff see them, marked.
    tasks = Task.objects.for_team(team).visible_to(user).for_cards(user=user)
    if mine_only:
        tasks = tasks.filter(created_by=user)
    return list(tasks.order_by("-created_at")[:STUDIO_PAGE_SIZE])


def team_is_busy(team: Team) -> bool:
    """Anything of the team in flight, or an image still being saved: then the page asks for news often."""
    return (
        Task.objects.for_team(team).in_flight().exists()
        or Image.objects.mirror_pending().filter(task__team=team).exists()
    )


def _pulse_context(request: HttpRequest, team: Team, *, cursor: datetime, mine_only: bool, page: bool = False) -> dict:
    if live.live_for(request):  # changes come as server-sent events: no pulse, no busy check
        return {
            "live": True,
            # Only a whole page opens a stream (a fragment's answer leaves the page's stream alone).
            "live_url": live.events_url(team_id=team.pk, mine_only=mine_only) if page else "",
            "mine_only": mine_only,
            "queue_paused": team.queue_paused_at is not None,
        }
    return {
        "pulse_cursor": cursor.isoformat(),
        "pulse_seconds": PULSE_BUSY_SECONDS if team_is_busy(team) else PULSE_IDLE_SECONDS,
        "mine_only": mine_only,
        "queue_paused": team.queue_paused_at is not None,  # waiting cards say so instead of their place in line
    }


def _studio_context(request: HttpRequest, *, form: ImagineForm, **extra: object) -> dict:
    team = request.team
    mine_only = _mine_only(request)
    pulse = _pulse_context(request, team, cursor=timezone.now(), mine_only=mine_only, page=True)  # before the cards
    return {
        "team": team,
        "cards": _cards(team, mine_only=mine_only, user=request.user),
        "page_size": STUDIO_PAGE_SIZE,
        "form": form,
        **pulse,
        **queue_context(request),
        **extra,
    }


def _composer_initial(request: HttpRequest) -> dict:
    """The composer prefilled from a task page ("Reuse prompt", "Remix"): the prompt cut to the longest allowed and
    without control characters; a mode or aspect ratio we do not offer is left at its default."""
    initial: dict = {"idempotency_key": uuid.uuid4()}
    text = _CONTROL.sub("", request.GET.get("prompt", ""))[: Prompt.MAX_LENGTH]
    if text.strip():
        initial["prompt"] = text
    if request.GET.get("mode") in Prompt.Mode.values:
        initial["mode"] = request.GET["mode"]
    if request.GET.get("aspect_ratio") in Prompt.ASPECT_RATIOS:
        initial["aspect_ratio"] = request.GET["aspect_ratio"]
    return initial


@require_GET
@never_cache  # never shown from the back/forward cache: its forms' keys and cards would be stale
def studio(request: HttpRequest) -> HttpResponse:
    form = ImagineForm(initial=_composer_initial(request), team=request.team)
    context = _studio_context(request, form=form, remix=request.GET.get("remix") == "1")
    return render(request, "generations/studio.html", context)


@require_POST
def task_create(request: HttpRequest) -> HttpResponse:
    form = ImagineForm(request.POST, team=request.team)
    if not form.is_valid():
        if request.htmx:
            return render(request, "generations/studio.html#composer", {"form": form}, status=422)
        return render(request, "generations/studio.html", _studio_context(request, form=form), status=422)
    text, mode, aspect_ratio, collection = (
        form.cleaned_data[k] for k in ("prompt", "mode", "aspect_ratio", "collection")
    )
    try:
        task, _ = submitting.task_create_imagine(
            team=request.team,
            user=request.user,
            text=text,
            mode=mode,
            aspect_ratio=aspect_ratio,
            collection=collection,
            # The same form sent twice makes one task; a stale key (a page restored by Back) with a new prompt
            # still makes a new one.
            idempotency_key=uuid.uuid5(form.cleaned_data["idempotency_key"], f"{mode}:{aspect_ratio}:{text}"),
        )
    except limits.SubmissionRefused as refused:
        return _composer_refused(request, form, refused)
    except blocklist.PromptBlocked as blocked:
        return _composer_blocked(request, form, blocked)
    if not request.htmx:
        return redirect("generations:studio")
    # A fresh key; mode, ratio and collection stay as chosen.
    initial = {"idempotency_key": uuid.uuid4(), "mode": mode, "aspect_ratio": aspect_ratio, "collection": collection}
    fresh = ImagineForm(initial=initial, team=request.team)
    return render_new_card(request, task, {"form": fresh})


def _composer_refused(request: HttpRequest, form: ImagineForm, refused: limits.SubmissionRefused) -> HttpResponse:
    """The composer again, prompt and key kept, saying when to try again (htmx swaps 422s only)."""
    form.add_error(None, refused.message)
    if request.htmx:
        response = render(request, "generations/studio.html#composer", {"form": form}, status=422)
    else:
        response = render(request, "generations/studio.html", _studio_context(request, form=form), status=429)
    response["Retry-After"] = str(refused.retry_after)
    return response


def _composer_blocked(request: HttpRequest, form: ImagineForm, blocked: blocklist.PromptBlocked) -> HttpResponse:
    """The composer again, prompt kept so it can be reworded, naming the blocked term on the prompt itself."""
    form.add_error("prompt", blocked.message)
    if request.htmx:
        return render(request, "generations/studio.html#composer", {"form": form}, status=422)
    return render(request, "generations/studio.html", _studio_context(request, form=form), status=422)


def render_new_card(request: HttpRequest, task: Task, context: dict) -> HttpResponse:
    """The htmx answer to a new task: the form again, the new card on top, and a busy pulse."""
    team = task.team
    context = {
        **context,
        "new_task": Task.objects.for_cards().get(pk=task.pk),
        **_pulse_context(request, team, cursor=timezone.now(), mine_only=_mine_only(request)),
    }
    return render(request, "generations/new_task_response.html", context)


@require_GET
@never_cache
def studio_pulse(request: HttpRequest) -> HttpResponse:
    """The live refresh: cards changed since the cursor, as out-of-band swaps; 204 when nothing changed. Hidden
    tasks are among the changes (hiding bumps `updated_at`): for non-staff, their cards are deleted."""
    team = request.team
    mine_only = _mine_only(request)
    now = timezone.now()
    since = params.aware_datetime(request.GET.get("since")) or now  # a mangled cursor: start from now
    after = params.positive_int(request.GET.get("after"))
    changed = Task.objects.for_team(team)
    if after is not None:
        # Draining a burst: exactly after the last card sent, (updated_at, pk) breaking ties.
        changed = changed.filter(Q(updated_at__gt=since) | Q(updated_at=since, pk__gt=after))
    else:
        changed = changed.filter(updated_at__gt=since - PULSE_LOOKBACK)
    if mine_only:
        changed = changed.filter(created_by=request.user)
    if not changed.exists():
        return HttpResponse(status=204)
    # The cards' images as the user may see them: a hidden image leaves its card (staff keep it, marked).
    batch = list(changed.for_cards(user=request.user).order_by("updated_at", "pk")[: PULSE_MAX_CARDS + 1])
    pulse = _pulse_context(request, team, cursor=now, mine_only=mine_only)
    if len(batch) > PULSE_MAX_CARDS:  # a burst: the oldest changes now, the rest on the next pulse, soon
        batch = batch[:PULSE_MAX_CARDS]
        pulse.update(
            pulse_cursor=batch[-1].updated_at.isoformat(), pulse_after=batch[-1].pk, pulse_seconds=PULSE_BUSY_SECONDS
        )
    context = {**pulse, **changed_cards_context(request, batch, mine_only=mine_only)}
    return render(request, "generations/pulse_response.html", context)


def changed_cards_context(request: HttpRequest, batch: list[Task], *, mine_only: bool) -> dict:
    """Changed cards as the pulse and the live stream send them (pulse_response.html), from tasks read with
    `for_cards(user=)`: a hidden image has left its card already (staff keep it, marked)."""
    # A task hidden by a moderator leaves open studios: its card is deleted there (staff keep it, marked).
    staff = request.user.is_staff
    removed = [task.pk for task in batch if task.hidden_at is not None and not staff]
    # Oldest first, so that cards new to the page, each put on top, end up newest on top.
    cards = sorted((t for t in batch if staff or t.hidden_at is None), key=lambda task: task.created_at)
    # The queue line too: paused or resumed meanwhile.
    return {"cards": cards, "removed": removed, "mine_only": mine_only, **queue_context(request)}
