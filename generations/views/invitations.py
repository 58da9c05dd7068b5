"""A user's own teams: the invitations waiting for their answer, and the teams they are in, to leave. Only the
invited user sees or answers an invitation (anyone else gets 404), and leaving puts the session back in the user's
personal team."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generations.models import Invitation, Membership, Team
from generations.services import members, teams


def _page(request: HttpRequest, *, status: int = 200, error: str = "") -> HttpResponse:
    # First: settling the session's team makes the personal team (on a first request) that the list must show.
    current = request.team.pk
    context = {
        "current": current,
        "invitations": list(
            Invitation.objects.waiting_for(request.user).select_related("team", "invited_by").order_by("created_at")
        ),
        "memberships": list(
            Membership.objects.filter(user=request.user).select_related("team").order_by("team__name", "pk")
        ),
        "error": error,
    }
    return render(request, "generations/teams.html", context, status=status)


@require_GET
def my_teams(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _get_invitation(request: HttpRequest, pk: int) -> Invitation:
    return get_object_or_404(Invitation.objects.select_related("team", "invited_by"), pk=pk, user=request.user)


@require_POST
def invitation_accept(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _get_invitation(request, pk)
    try:
        membership = members.invitation_accept(user=request.user, invitation=invitation)
    except members.MembershipError as exc:
        return _page(request, status=409, error=str(exc))
    request.session["team_id"] = membership.team_id  # they chose it: work there now
    role = membership.get_role_display().lower()
    messages.success(request, f"You joined {invitation.team.name} as {role}: you are working in it now.")
    return redirect("generations:studio")


@require_POST
def invitation_decline(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _get_invitation(request, pk)
    try:
        members.invitation_decline(user=request.user, invitation=invitation)
    except members.MembershipError as exc:
        return _page(request, status=409, error=str(exc))
    messages.success(request, f"You declined the invitation to {invitation.team.name}.")
    return redirect("generations:my_teams")


@require_POST
def team_leave(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk, memberships__user=request.user)
    working_there = request.team.pk == team.pk  # read before leaving: the session's team is settled lazily
    try:
        members.member_leave(user=request.user, team=team)
    except members.MembershipError as exc:
        return _page(request, status=422, error=str(exc))
    if not working_there:  # they stay in the team they work in
        messages.success(request, f"You left {team.name}.")
        return redirect("generations:my_teams")
    request.session["team_id"] = teams.personal_team_ensure(user=request.user).pk
    messages.success(request, f"You left {team.name}. You are working in your own team now.")
    return redirect("generations:my_teams")
