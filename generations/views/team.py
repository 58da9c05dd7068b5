"""A team's settings, for its owners: the team's blocklist and its members with their roles. Members get 403
(the page is not theirs to read); another team's term or membership is 404."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generations.models import BlockedTerm, Membership
from generations.services import blocklist, members
from generations.views.roles import owner_required


def _settings_context(request: HttpRequest, **extra: object) -> dict:
    team = request.team
    owners_first = Case(When(role=Membership.Role.OWNER, then=Value(0)), default=Value(1), output_field=IntegerField())
    return {
        "team": team,
        "terms": list(BlockedTerm.objects.filter(team=team).order_by("text", "pk")),
        "site_term_count": BlockedTerm.objects.filter(team=None).count(),
        "memberships": list(
            Membership.objects.filter(team=team).select_related("user").order_by(owners_first, "user__username")
        ),
        "roles": Membership.Role.choices,
        "term_max_length": BlockedTerm.MAX_LENGTH,
        **extra,
    }


def _page(request: HttpRequest, *, status: int = 200, **extra: object) -> HttpResponse:
    return render(request, "generations/team_settings.html", _settings_context(request, **extra), status=status)


def _done(request: HttpRequest, message: str, anchor: str = "") -> HttpResponse:
    """Back to the page, saying what was done; after an edit, scrolled to the row (lit by :target)."""
    messages.success(request, message)
    response = redirect("generations:team_settings")
    if anchor:
        response["Location"] += f"#{anchor}"
    return response


@require_GET
@owner_required
def team_settings(request: HttpRequest) -> HttpResponse:
    return _page(request)


# --- The team's blocklist -------------------------------------------------------------------------------------


def _get_term(request: HttpRequest, pk: int) -> BlockedTerm:
    """One of the team's own terms, or 404: the site's terms and other teams' are not editable here."""
    return get_object_or_404(BlockedTerm.objects.select_related("team"), pk=pk, team=request.team)


@require_POST
@owner_required
def blocklist_add(request: HttpRequest) -> HttpResponse:
    text, is_regex = request.POST.get("text", ""), request.POST.get("is_regex") == "on"
    try:
        term = blocklist.term_add(actor=request.user, team=request.team, text=text, is_regex=is_regex)
    except blocklist.BlocklistError as exc:
        return _page(request, status=422, add_term={"text": text, "is_regex": is_regex, "error": str(exc)})
    return _done(request, f"Blocked “{term.text}”.")


@require_POST
@owner_required
def blocklist_change(request: HttpRequest, pk: int) -> HttpResponse:
    term = _get_term(request, pk)
    text, is_regex = request.POST.get("text", ""), request.POST.get("is_regex") == "on"
    try:
        blocklist.term_change(actor=request.user, term=term, text=text, is_regex=is_regex)
    except blocklist.BlocklistError as exc:
        return _page(
            request, status=422, edit_term={"pk": term.pk, "text": text, "is_regex": is_regex, "error": str(exc)}
        )
    return _done(request, f"Saved “{term.text}”.", f"term-{term.pk}")


@require_POST
@owner_required
def blocklist_remove(request: HttpRequest, pk: int) -> HttpResponse:
    term = _get_term(request, pk)
    blocklist.term_remove(actor=request.user, term=term)
    return _done(request, f"Removed “{term.text}” from the blocklist.")


# --- Members and roles ------------------------------------------------------------------------------------------


def _get_membership(request: HttpRequest, pk: int) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user", "team"), pk=pk, team=request.team)


@require_POST
@owner_required
def member_add(request: HttpRequest) -> HttpResponse:
    username, role = request.POST.get("username", ""), request.POST.get("role", Membership.Role.MEMBER)
    try:
        membership = members.member_add(actor=request.user, team=request.team, username=username, role=role)
    except members.MembershipError as exc:
        return _page(request, status=422, add_member={"username": username, "role": role, "error": str(exc)})
    return _done(
        request, f"Added {membership.user.get_username()} as {membership.get_role_display().lower()}.", "members"
    )


@require_POST
@owner_required
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _get_membership(request, pk)
    try:
        members.member_role_change(actor=request.user, membership=membership, role=request.POST.get("role", ""))
    except members.MembershipError as exc:
        return _page(request, status=422, member_error={"pk": membership.pk, "error": str(exc)})
    name = membership.user.get_username()
    return _done(request, f"{name} is now {membership.get_role_display().lower()}.", f"member-{membership.pk}")


@require_POST
@owner_required
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _get_membership(request, pk)
    try:
        members.member_remove(actor=request.user, membership=membership)
    except members.MembershipError as exc:
        return _page(request, status=422, member_error={"pk": membership.pk, "error": str(exc)})
    if membership.user_id == request.user.pk and not request.user.is_staff:
        messages.success(request, f"You left {membership.team.name}.")
        return redirect("generations:studio")  # no longer an owner here: the settings page is not theirs
    return _done(request, f"Removed {membership.user.get_username()} from the team.")
