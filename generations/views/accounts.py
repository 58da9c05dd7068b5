"""Logging in and choosing the team to work in."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from generations.models import Membership
from generations.services import teams


@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team_id = request.POST.get("team", "")
    membership = get_object_or_404(Membership, team_id=int(team_id) if team_id.isdigit() else 0, user=request.user)
    request.session["team_id"] = membership.team_id
    return redirect("generations:studio")


@login_not_required
def login(request: HttpRequest) -> HttpResponse:
    """Django's login page; in sandbox mode it also says which demo login `make run` created."""
    sandbox = settings.APIFRAME_IS_SANDBOX and settings.DEBUG
    demo = {"user": teams.DEMO_USERS[0], "password": teams.DEMO_PASSWORD} if sandbox else None
    return auth_views.LoginView.as_view(extra_context={"demo_login": demo})(request)
