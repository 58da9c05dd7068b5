"""A team's settings, for its owners: the team's blocklist, its members with their roles, and the invitations
waiting for an answer. Members get 403 (the page is not theirs to read); another team's term, membership or
invitation is 404. Every POST goes through a form (generations/forms.py)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generations import blockmatch
from generations.forms import BlockedTermForm, InvitationForm, RoleForm
from generations.models import BlockedTerm, Invitation, Membership
from generations.services import blocklist, members, teams
from generations.views.roles import owner_required


def _settings_context(request: HttpRequest, **extra: object) -> dict:
    team = request.team
    owners_first = Case(When(role=Membership.Role.OWNER, then=Value(0)), default=Value(1), output_field=IntegerField())
    terms = list(BlockedTerm.objects.filter(team=team).order_by("text", "pk"))
    return {
        "team": team,
        "terms": terms,
        # How full the list is, against the caps that bound what a check costs (services/blocklist.py).
        "term_cap": settings.MJSTUDIO_BLOCKLIST_MAX_TERMS,
        "pattern_weight": sum(blockmatch.pattern_size(term.text) for term in terms if term.is_regex),
        "pattern_weight_cap": settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE,
        "site_term_count": BlockedTerm.objects.filter(team=None).count(),
        "memberships": list(
            Membership.objects.filter(team=team).select_related("user").order_by(owners_first, "user__username")
        ),
        # Listed by the name typed: nothing on the page says whether an account has it.
        "invitations": list(
            Invitation.objects.open().filter(team=team).select_related("invited_by").order_by("username_key")
        ),
        "invitation_days": members.INVITATION_LIFETIME.days,
        "roles": Membership.Role.choices,
        "term_max_length": BlockedTerm.MAX_LENGTH,
        **extra,
    }


def _page(request: HttpRequest, *, status: int = 200, **extra: object) -> HttpResponse:
    return render(request, "generations/team_settings.html", _settings_context(request, **extra), status=status)


def _first_error(form: forms.Form) -> str:
    return next(iter(form.errors.values()))[0]


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
    form = BlockedTermForm(request.POST)
    if form.is_valid():
        text, is_regex = form.cleaned_data["text"], form.cleaned_data["is_regex"]
        try:
            term = blocklist.term_add(actor=request.user, team=request.team, text=text, is_regex=is_regex)
        except blocklist.BlocklistError as exc:
            error = str(exc)
        else:
            return _done(request, f"Blocked “{term.text}”.")
    else:
        error = _first_error(form)
    add_term = {"text": form.data.get("text", ""), "is_regex": form.data.get("is_regex") == "on", "error": error}
    return _page(request, status=422, add_term=add_term)


@require_POST
@owner_required
def blocklist_change(request: HttpRequest, pk: int) -> HttpResponse:
    term = _get_term(request, pk)
    form = BlockedTermForm(request.POST)
    if form.is_valid():
        text, is_regex = form.cleaned_data["text"], form.cleaned_data["is_regex"]
        try:
            blocklist.term_change(actor=request.user, term=term, text=text, is_regex=is_regex)
        except blocklist.BlocklistError as exc:
            error = str(exc)
        else:
            return _done(request, f"Saved “{term.text}”.", f"term-{term.pk}")
    else:
        error = _first_error(form)
    edit_term = {"pk": term.pk, "text": form.data.get("text", ""), "is_regex": form.data.get("is_regex") == "on"}
    return _page(request, status=422, edit_term={**edit_term, "error": error})


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
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _get_membership(request, pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            membership = members.member_role_change(
                actor=request.user, membership=membership, role=form.cleaned_data["role"]
            )
        except members.MembershipError as exc:
            error = str(exc)
        else:
            name, role = membership.user.get_username(), membership.get_role_display().lower()
            return _done(request, f"{name} is now {role}.", f"member-{membership.pk}")
    else:
        error = _first_error(form)
    return _page(request, status=422, member_error={"pk": membership.pk, "error": error})


@require_POST
@owner_required
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _get_membership(request, pk)
    try:
        members.member_remove(actor=request.user, membership=membership)
    except members.MembershipError as exc:
        return _page(request, status=422, member_error={"pk": membership.pk, "error": str(exc)})
    if membership.user_id == request.user.pk:
        # They left: back in their own team (staff too, who could stay on this page but not in this team).
        request.session["team_id"] = teams.personal_team_ensure(user=request.user).pk
        messages.success(request, f"You left {membership.team.name}.")
        return redirect("generations:studio")
    return _done(request, f"Removed {membership.user.get_username()} from the team.")


# --- Invitations ------------------------------------------------------------------------------------------------


@require_POST
@owner_required
def invitation_create(request: HttpRequest) -> HttpResponse:
    """The same answer whether or not anyone has the name: it names nobody but what was typed."""
    form = InvitationForm(request.POST)
    if form.is_valid():
        username, role = form.cleaned_data["username"], form.cleaned_data["role"]
        try:
            invitation = members.invitation_create(actor=request.user, team=request.team, username=username, role=role)
        except members.MembershipError as exc:
            error = str(exc)
        else:
            role = invitation.get_role_display().lower()
            message = f"Invited {invitation.username} as {role}: they will see it when they sign in."
            return _done(request, message, "invitations")
    else:
        error = _first_error(form)
    add_invite = {"username": form.data.get("username", ""), "role": form.data.get("role", ""), "error": error}
    return _page(request, status=422, add_invite=add_invite)


@require_POST
@owner_required
def invitation_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation.objects.open(), pk=pk, team=request.team)
    try:
        members.invitation_withdraw(actor=request.user, invitation=invitation)
    except members.MembershipError as exc:  # answered or lapsed since the page was drawn
        return _page(request, status=409, invitation_error=str(exc))
    return _done(request, f"Withdrew the invitation to {invitation.username}.", "invitations")
