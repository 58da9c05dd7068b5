"""What every full page's top bar needs, whichever view drew it."""

from __future__ import annotations

from django.http import HttpRequest

from generations.models import Team


def header(request: HttpRequest) -> dict[str, object]:
    """The current team and the user's teams for the team menu. Lazy: the teams are asked for only when the top
    bar is drawn (a full page, not an htmx fragment), in one query."""
    if not request.user.is_authenticated or not hasattr(request, "team"):
        return {}
    return {"team": request.team, "teams": Team.objects.filter(memberships__user=request.user)}
