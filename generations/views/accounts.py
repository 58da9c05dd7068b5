"""Logging in and choosing the team to work in."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from generations import params
from generations.models import Membership
from generations.services import teams


@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team_id = params.positive_int(request.POST.get("team"))
    if team_id is None:
        raise Http404("No such team.")
    membership = get_object_or_404(Membership, team_id=team_id, user=request.user)
    request.session["team_id"] = membership.team_id
    return redirect("generations:studio")


@login_not_required
def login(request: HttpRequest) -> HttpResponse:
    """Django's login page; in sandbox mode it also says which demo login `make run` created."""
    sandbox = settings.APIFRAME_IS_SANDBOX and settings.DEBUG
    demo = {"user": teams.DEMO_USERS[0], "password": teams.DEMO_PASSWORD} if sandbox else None
    return auth_views.LoginView.as_view(extra_context={"demo_login": demo})(request)
