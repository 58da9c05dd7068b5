"""Teams and memberships: everyone's personal team, and the sandbox's demo logins."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from generations.models import Membership, Team


def team_for_session(*, user: AbstractBaseUser) -> Team:
    """The team a new session starts in: the one the user chose last (Membership.chosen_at), else their personal
    team. Never one they were put in without choosing it (by staff in the admin, or before invitations existed).

    Every user gets a personal team here, those already in another team too: somewhere of their own to work,
    and to go back to after leaving a team.
    """
    personal = personal_team_ensure(user=user)
    chosen = Membership.objects.filter(user=user, chosen_at__isnull=False).select_related("team").order_by("-chosen_at")
    return membership.team if (membership := chosen.first()) else personal


def team_choose(*, user: AbstractBaseUser, team_id: int) -> Team | None:
    """The user chooses to work in one of their teams (None if they are not in it): remembered for new sessions."""
    membership = Membership.objects.filter(user=user, team_id=team_id).select_related("team").first()
    if membership is None:
        return None
    Membership.objects.filter(pk=membership.pk).update(chosen_at=timezone.now())
    return membership.team


def personal_team_ensure(*, user: AbstractBaseUser) -> Team:
    """The user's personal team, with them in it as its owner: made if missing, and rejoined if they were taken
    out of it (in the admin: the site refuses)."""
    team = Team.objects.filter(personal_for=user).first()
    if team is None:
        try:
            with transaction.atomic():
                team = Team.objects.create(name=f"{user.get_username()}'s team", personal_for=user)
        except IntegrityError:  # another request made it first (Team.personal_for is unique)
            team = Team.objects.get(personal_for=user)
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Membership.Role.OWNER})
    return team


def is_team_owner(*, user: AbstractBaseUser, team: Team, role: str | None = None) -> bool:
    """Whether the user may moderate, approve and manage members in this team: its owners, and staff.
    `role`: the user's role in the team when the caller has it already (no query then)."""
    if getattr(user, "is_staff", False):
        return True
    if role is not None:
        return role == Membership.Role.OWNER
    return Membership.objects.filter(team=team, user=user, role=Membership.Role.OWNER).exists()


# Sandbox mode only (`make run` with the sandbox): a demo team and two logins, printed on purpose.
DEMO_TEAM = "Demo studio"
DEMO_USERS = ("demo", "alex")  # the first owns the demo team; the second is a member
DEMO_PASSWORD = "mjstudio-demo"  # noqa: S105


def demo_logins_ensure() -> None:
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    for username in DEMO_USERS:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        role = Membership.Role.OWNER if username == DEMO_USERS[0] else Membership.Role.MEMBER
        membership, _ = Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
        if membership.chosen_at is None:  # chosen for them on purpose: `make run`'s demo logins start there
            Membership.objects.filter(pk=membership.pk).update(chosen_at=timezone.now())
