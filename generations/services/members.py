"""A team's members and their roles, as its owners manage them from the site: each change audited, and never a
team left without an owner."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from generations.models import AuditEntry, Membership, Team
from generations.services.audit import audit_record


class MembershipError(ValueError):
    """A change that cannot be made: the message says why, for the user."""


LAST_OWNER = "A team needs an owner: make someone else an owner first."


def _other_owners(membership: Membership) -> bool:
    # Locks the team's owner rows (PostgreSQL) so two owners demoting each other at once cannot both pass.
    owners = Membership.objects.select_for_update().filter(team_id=membership.team_id, role=Membership.Role.OWNER)
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


def member_add(*, actor: AbstractBaseUser, team: Team, username: str, role: str = Membership.Role.MEMBER) -> Membership:
    """Add an existing, active user to the team by username."""
    username = (username or "").strip()
    if not username:
        raise MembershipError("Write the username of the person to add.")
    if role not in Membership.Role.values:
        raise MembershipError("Choose a role: member or owner.")
    user = get_user_model().objects.filter(username__iexact=username, is_active=True).first()
    if user is None:
        raise MembershipError(f"No user is called “{username}”: they need an account first.")
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
        if not created:
            raise MembershipError(f"{user.get_username()} is already in {team.name}.")
        membership_audit(actor=actor, act=AuditEntry.Act.MEMBER_ADD, membership=membership, role=role)
    return membership


def member_role_change(*, actor: AbstractBaseUser, membership: Membership, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise MembershipError("Choose a role: member or owner.")
    if membership.role == role:
        return membership
    with transaction.atomic():
        if role != Membership.Role.OWNER and not _other_owners(membership):
            raise MembershipError(LAST_OWNER)
        before = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
        membership_audit(actor=actor, act=AuditEntry.Act.ROLE_CHANGE, membership=membership, before=before, after=role)
    return membership


def member_remove(*, actor: AbstractBaseUser, membership: Membership) -> None:
    team = membership.team
    if team.personal_for_id == membership.user_id:
        raise MembershipError(f"This is {membership.user.get_username()}'s personal team: they stay in it.")
    with transaction.atomic():
        if membership.role == Membership.Role.OWNER and not _other_owners(membership):
            raise MembershipError(LAST_OWNER)
        membership_audit(actor=actor, act=AuditEntry.Act.MEMBER_REMOVE, membership=membership, role=membership.role)
        membership.delete()
