from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.functional import SimpleLazyObject
from django_htmx.http import HttpResponseClientRedirect

from generations import params
from generations.models import Team
from generations.services import teams


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Login required everywhere; an htmx request whose session expired sends the whole page to log in
    (a plain redirect would be followed inside the request and swapped nowhere, every half second)."""

    def handle_no_permission(self, request: HttpRequest, view_func: object) -> HttpResponse:
        htmx = getattr(request, "htmx", None)
        if not htmx:
            return super().handle_no_permission(request, view_func)
        # After logging in, back to the page the user was on, not to the fragment it was asking for.
        page = params.current_path(request) or "/"
        return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")


def _current_team(request: HttpRequest) -> Team | None:
    """The team the user acts in: the one chosen in this session (switched to, or joined by accepting an
    invitation), else where a session starts (teams.team_for_session, which also makes their personal team)."""
    if not request.user.is_authenticated:
        return None
    team_id = request.session.get("team_id")
    if team_id:
        # With the user's role in it, so that `request.is_team_owner` (the header asks on every page) costs no query.
        mine = Team.objects.filter(pk=team_id, memberships__user=request.user)
        team = mine.annotate(viewer_role=F("memberships__role")).first()
        if team:
            return team
    team = teams.team_for_session(user=request.user)
    request.session["team_id"] = team.pk
    return team


def _is_team_owner(request: HttpRequest) -> bool:
    team = request.team
    if not team:
        return False
    # The user's role came with the team (_current_team): no query.
    return teams.is_team_owner(user=request.user, team=team, role=getattr(team, "viewer_role", None))


class TeamMiddleware:
    """Sets `request.team` (and `request.is_team_owner`) for every view: lazily, so the webhook and static files
    never look them up."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.team = SimpleLazyObject(lambda: _current_team(request))
        request.is_team_owner = SimpleLazyObject(lambda: _is_team_owner(request))
        return self.get_response(request)


MACHINE_ENDPOINTS = ("apiframe_webhook", "health")  # names in generations/urls.py


@functools.cache
def _machine_views() -> dict[str, Callable[[HttpRequest], HttpResponse]]:
    """Their paths (as generations/urls.py is included, at the root) and views."""
    from generations import urls

    return {f"/{entry.pattern}": entry.callback for entry in urls.urlpatterns if entry.name in MACHINE_ENDPOINTS}


class MachineEndpointsMiddleware:
    """Apiframe's webhook and the health check, answered ahead of the rest of the stack (right after
    SecurityMiddleware): neither has a session, a user, a team, a CSRF token (the webhook is exempt) or a page
    to frame, and the webhook takes a thousand deliveries a second at peak, where the layers it skips cost
    about 0.1 ms of CPU per request (bench/webhook_ingest.py). What CommonMiddleware would do still happens: the
    host is checked against ALLOWED_HOSTS and the response gets its Content-Length. Every other path goes on
    through the whole stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = _machine_views().get(request.path_info)
        if view is None:
            return self.get_response(request)
        request.get_host()  # DisallowedHost (400) for a host not in ALLOWED_HOSTS
        response = view(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))  # else the server sends it chunked
        return response
