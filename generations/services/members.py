"""A team's members and their roles, as its owners manage them from the site, and the invitations by which anyone
joins: each change audited, and never a team left without an owner."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from generations.models import AuditEntry, Invitation, Membership, Team
from generations.services import teams
from generations.services.audit import audit_record


class MembershipError(ValueError):
    """A change that cannot be made: the message says why, for the user."""


LAST_OWNER = "A team needs an owner: make someone else an owner first."
NO_LONGER_OPEN = "This invitation is no longer open: it was withdrawn, has lapsed or was answered already."


def _locked(membership: Membership) -> Membership:
    """The membership as it is now, locked after its team's row. Every change to a team's owners takes the team
    row first, so two owners demoting (or removing) each other at once wait in line instead of deadlocking (each
    locking its own row, then the other's), and the second sees the first's change."""
    Team.objects.select_for_update().filter(pk=membership.team_id).first()
    current = Membership.objects.select_for_update(of=("self",)).select_related("user", "team")
    current = current.filter(pk=membership.pk).first()
    if current is None:  # removed (or left) a moment ago
        raise MembershipError(f"{membership.user.get_username()} is no longer in {membership.team.name}.")
    return current


def _other_owners(membership: Membership) -> bool:
    owners = Membership.objects.filter(team_id=membership.team_id, role=Membership.Role.OWNER)
    return owners.exclude(pk=membership.pk).exists()


def membership_audit(*, actor: AbstractBaseUser, act: str, membership: Membership, **details: object) -> None:
    """The audit row of a change to a membership (here, or in the admin's Team page): who, whose, and the role."""
    audit_record(
        actor=actor,
        act=act,
        team=membership.team_id,
        target=membership,
        user=membership.user.get_username(),
        **details,
    )


def member_role_change(*, actor: AbstractBaseUser, membership: Membership, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise MembershipError("Choose a role: member or owner.")
    with transaction.atomic():
        membership = _locked(membership)
        if membership.role == role:
            return membership
        if role != Membership.Role.OWNER and membership.team.personal_for_id == membership.user_id:
            raise MembershipError(f"This is {membership.user.get_username()}'s personal team: they stay its owner.")
        if role != Membership.Role.OWNER and not _other_owners(membership):
            raise MembershipError(LAST_OWNER)
        before = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
        membership_audit(actor=actor, act=AuditEntry.Act.ROLE_CHANGE, membership=membership, before=before, after=role)
        if before == Membership.Role.OWNER:
            _withdraw_offers(actor=actor, membership=membership)
    return membership


def member_remove(*, actor: AbstractBaseUser, membership: Membership) -> None:
    """An owner takes someone out of the team (themselves included)."""
    _leave(actor=actor, membership=membership, act=AuditEntry.Act.MEMBER_REMOVE)


def member_leave(*, user: AbstractBaseUser, team: Team) -> None:
    """A member leaves a team of their own accord: any team but their personal one, and never its last owner."""
    membership = Membership.objects.select_related("user", "team").filter(team=team, user=user).first()
    if membership is None:
        raise MembershipError(f"You are not in {team.name}.")
    _leave(actor=user, membership=membership, act=AuditEntry.Act.MEMBER_LEAVE)


def _leave(*, actor: AbstractBaseUser, membership: Membership, act: str) -> None:
    """Out of the team, audited as `act`: never out of one's personal team, nor the team's last owner."""
    if membership.team.personal_for_id == membership.user_id:
        raise MembershipError(f"This is {membership.user.get_username()}'s personal team: they stay in it.")
    with transaction.atomic():
        membership = _locked(membership)
        if membership.role == Membership.Role.OWNER and not _other_owners(membership):
            raise MembershipError(LAST_OWNER)
        membership_audit(actor=actor, act=act, membership=membership, role=membership.role)
        if membership.role == Membership.Role.OWNER:
            _withdraw_offers(actor=actor, membership=membership)
        membership.delete()


def _withdraw_offers(*, actor: AbstractBaseUser, membership: Membership) -> None:
    """An owner no more (demoted, removed, left): the invitations they made and nobody answered are withdrawn, as
    they may no longer offer a place. Inside the caller's transaction, each audited."""
    offers = Invitation.objects.open().filter(team_id=membership.team_id, invited_by_id=membership.user_id)
    for invitation in offers.select_for_update():
        if _answer(invitation, Invitation.State.WITHDRAWN):
            _withdrawal_audit(actor=actor, invitation=invitation, because="the owner who made it is one no more")


def _withdrawal_audit(*, actor: AbstractBaseUser, invitation: Invitation, **details: object) -> None:
    audit_record(
        actor=actor,
        act=AuditEntry.Act.INVITE_WITHDRAW,
        team=invitation.team_id,
        target=invitation,
        user=invitation.username,
        **details,
    )


# --- Invitations: nobody joins a team without saying yes --------------------------------------------------------

INVITATION_LIFETIME = timedelta(days=14)  # an unanswered invitation lapses then (the integrator may make it a setting)


def invitation_create(*, actor: AbstractBaseUser, team: Team, username: str, role: str) -> Invitation:
    """Invite whoever has this username. What the owner sees afterwards is the same whether or not an account has
    the name (or is active): the name as typed, pending. Inviting the same name again renews the pending one.

    The one thing refused is a name already in the team's member list, which the owner sees on the page anyway."""
    key = username.casefold()
    if Membership.objects.filter(team=team, user__username__iexact=username).exists():
        raise MembershipError(f"{username} is already in {team.name}.")
    # The same query for every name, found or not, and nothing of its answer reaches the owner. Usernames are
    # case-sensitive: "dora" goes to dora where both dora and Dora have accounts, to Dora where only she has.
    found = get_user_model().objects.filter(username__iexact=username, is_active=True).order_by("pk")[:10]
    user = min(found, key=lambda candidate: candidate.get_username() != username, default=None)
    now = timezone.now()
    fields = {
        "username": username,
        "user": user,
        "role": role,
        "invited_by": actor,
        "expires_at": now + INVITATION_LIFETIME,
    }
    with transaction.atomic():
        pending = Invitation.objects.filter(team=team, username_key=key, state=Invitation.State.PENDING)
        if pending.update(created_at=now, **fields) == 0:
            try:
                with transaction.atomic():
                    Invitation.objects.create(team=team, username_key=key, created_at=now, **fields)
            except IntegrityError:  # the same invitation, made a moment ago by a double click or another owner
                pass
        invitation = pending.get()
        audit_record(actor=actor, act=AuditEntry.Act.INVITE, team=team, target=invitation, user=username, role=role)
    return invitation


def invitation_withdraw(*, actor: AbstractBaseUser, invitation: Invitation) -> None:
    with transaction.atomic():
        if not _answer(invitation, Invitation.State.WITHDRAWN):
            raise MembershipError(f"The invitation to {invitation.username} was answered or has lapsed already.")
        _withdrawal_audit(actor=actor, invitation=invitation)


def invitation_accept(*, user: AbstractBaseUser, invitation: Invitation) -> Membership:
    """The invitee (the caller checks it is theirs) says yes: a member of the team with the role offered, or the
    role they have if staff put them in meanwhile."""
    inviter = invitation.invited_by
    if inviter is None or not teams.is_team_owner(user=inviter, team=invitation.team):
        # Offered by someone who may no longer offer it. The site withdraws an owner's offers when they stop being
        # one (_withdraw_offers); this catches the rest (an account deleted, a role changed in the admin).
        raise MembershipError(NO_LONGER_OPEN)
    with transaction.atomic():
        if not _answer(invitation, Invitation.State.ACCEPTED):
            raise MembershipError(NO_LONGER_OPEN)
        membership, created = Membership.objects.get_or_create(
            team_id=invitation.team_id, user=user, defaults={"role": invitation.role, "chosen_at": timezone.now()}
        )
        if not created:  # staff put them in meanwhile: accepting is still their choice of it
            Membership.objects.filter(pk=membership.pk).update(chosen_at=timezone.now())
        membership_audit(actor=user, act=AuditEntry.Act.INVITE_ACCEPT, membership=membership, role=membership.role)
    return membership


def invitation_decline(*, user: AbstractBaseUser, invitation: Invitation) -> None:
    with transaction.atomic():
        if not _answer(invitation, Invitation.State.DECLINED):
            raise MembershipError(NO_LONGER_OPEN)
        audit_record(
            actor=user,
            act=AuditEntry.Act.INVITE_DECLINE,
            team=invitation.team_id,
            target=invitation,
            user=user.get_username(),
        )


def _answer(invitation: Invitation, state: str) -> bool:
    """Close a pending invitation; False if it was not open any more (answered, withdrawn or lapsed meanwhile)."""
    now = timezone.now()
    if Invitation.objects.open().filter(pk=invitation.pk).update(state=state, answered_at=now) != 1:
        return False  # someone (or the clock) got there first
    invitation.state, invitation.answered_at = state, now
    return True
