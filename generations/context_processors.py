"""What every full page's top bar needs, whichever view drew it."""

from __future__ import annotations

from django.http import HttpRequest

from generations.models import Invitation, Team


def header(request: HttpRequest) -> dict[str, object]:
    """The current team, the user's teams for the team menu, and the invitations waiting for their answer. Lazy:
    both are asked for only when the top bar is drawn (a full page, not an htmx fragment), one query each (the
    invitations' a count on the partial index `invitation_waiting`)."""
    if not request.user.is_authenticated or not hasattr(request, "team"):
        return {}
    return {
        "team": request.team,
        "teams": Team.objects.filter(memberships__user=request.user),
        "invitations_waiting": Invitation.objects.waiting_for(request.user),
    }
