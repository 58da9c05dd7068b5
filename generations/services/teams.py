"""Teams and memberships: everyone's personal team, and the sandbox's demo logins."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from generations.models import Membership, Team


def team_ensure_for_user(*, user: AbstractBaseUser) -> Team:
    """The team a session starts in: the user's oldest membership's, which is their personal team unless staff put
    them in a team before they first came (an owner cannot: people join by accepting an invitation).

    Every user gets a personal team here, those already in another team too: somewhere of their own to work,
    and to go back to after leaving a team. Race-safe: a user has at most one personal team (a unique column), so
    of several simultaneous first requests one creates it and the others find it.
    """
    personal_team_ensure(user=user)
    return Membership.objects.filter(user=user).select_related("team").order_by("joined_at", "pk").first().team


def personal_team_ensure(*, user: AbstractBaseUser) -> Team:
    """The user's personal team, with them in it as its owner: made if missing, and rejoined if they were taken
    out of it (in the admin: the site refuses)."""
    team = Team.objects.filter(personal_for=user).first()
    if team is None:
        try:
            with transaction.atomic():
                team = Team.objects.create(name=f"{user.get_username()}'s team", personal_for=user)
        except IntegrityError:  # another request made it first
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
        Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
