"""Teams for tests: members put in as if they had said yes."""

from __future__ import annotations

from django.utils import timezone

from generations.models import Membership, Team


def join(team: Team, user: object, role: str = Membership.Role.MEMBER) -> Membership:
    """`user` in `team` as if they had accepted its invitation: a new session of theirs starts there
    (services.teams.team_for_session: the team chosen last, else the personal team). A membership made with
    `Membership.objects.create` instead is one staff made in the admin: a session never starts there unasked."""
    return Membership.objects.create(team=team, user=user, role=role, chosen_at=timezone.now())
