"""Logging in and choosing the team to work in."""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from generations.forms import TeamSwitchForm
from generations.services import limits, teams


@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    form = TeamSwitchForm(request.POST)
    team = teams.team_choose(user=request.user, team_id=form.cleaned_data["team"]) if form.is_valid() else None
    if team is None:
        raise Http404("No such team.")
    request.session["team_id"] = team.pk
    return redirect("generations:studio")


def _demo_login() -> dict | None:
    sandbox = settings.APIFRAME_IS_SANDBOX and settings.DEBUG
    return {"user": teams.DEMO_USERS[0], "password": teams.DEMO_PASSWORD} if sandbox else None


@login_not_required
def login(request: HttpRequest) -> HttpResponse:
    """Django's login page; in sandbox mode it also says which demo login `make run` created."""
    return auth_views.LoginView.as_view(extra_context={"demo_login": _demo_login()})(request)


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """django-axes' answer (AXES_LOCKOUT_CALLABLE) to a login while the account or the address is locked: the
    login page again, saying when to try again."""
    wait = (limits.LoginAttemptHandler().lockout_ends(request, credentials) - timezone.now()).total_seconds()
    message = (
        "Too many failed logins for this account or from this address. "
        f"Try again in {limits.duration_words(wait)}, or ask an admin to unlock it."
    )
    context = {
        "form": AuthenticationForm(request, initial={"username": request.POST.get("username", "")}),
        "lockout": message,
        "next": request.POST.get("next", ""),
        "demo_login": _demo_login(),
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(max(1, math.ceil(wait)))
    return response
