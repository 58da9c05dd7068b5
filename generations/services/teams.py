"""Teams and memberships: a personal team on first login, and the sandbox's demo logins."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from generations.models import Membership, Team


def team_ensure_for_user(*, user: AbstractBaseUser) -> Team:
    """The user's first team, or a new personal team for a user who belongs to none yet."""
    membership = Membership.objects.filter(user=user).select_related("team").order_by("joined_at").first()
    if membership:
        return membership.team
    with transaction.atomic():
        team = Team.objects.create(name=f"{user.get_username()}'s team")
        Membership.objects.create(team=team, user=user)
    return team


# Sandbox mode only (`make run` with the sandbox): a demo team and two logins, printed on purpose.
DEMO_TEAM = "Demo studio"
DEMO_USERS = ("demo", "alex")
DEMO_PASSWORD = "mjstudio-demo"  # noqa: S105


def demo_logins_ensure() -> None:
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    for username in DEMO_USERS:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        Membership.objects.get_or_create(team=team, user=user)
