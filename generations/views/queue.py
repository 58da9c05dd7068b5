"""Pausing and resuming the team's queue (owners only): its waiting tasks stay here, other teams' keep flowing."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from generations.services import queue
from generations.views.roles import owner_required


def _current_team_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The team in the URL must be the one the user works in: any other team is 404, before any role check."""

    @wraps(view)
    def wrapped(request: HttpRequest, pk: int) -> HttpResponse:
        if request.team is None or request.team.pk != pk:
            raise Http404("No such team.")
        return view(request, pk)

    return wrapped


def queue_context(request: HttpRequest) -> dict:
    """What the studio's queue line shows: paused or not, by whom, and a button for owners."""
    team = request.team
    return {
        "team": team,
        "queue_paused": team.queue_paused_at is not None,
        "queue_paused_by": queue.queue_paused_by(team=team),
        "is_owner": request.is_team_owner,
    }


def _answer(request: HttpRequest) -> HttpResponse:
    if not request.htmx:
        return redirect("generations:studio")
    return render(request, "generations/studio.html#queue-state", queue_context(request))


@require_POST
@_current_team_only
@owner_required
def queue_pause(request: HttpRequest, pk: int) -> HttpResponse:
    queue.team_queue_pause(team=request.team, actor=request.user)  # already paused: nothing changes
    return _answer(request)


@require_POST
@_current_team_only
@owner_required
def queue_resume(request: HttpRequest, pk: int) -> HttpResponse:
    queue.team_queue_resume(team=request.team, actor=request.user)
    return _answer(request)
