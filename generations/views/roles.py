"""Role checks on the server: a button hidden from members is not enough."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def owner_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Only the current team's owners (and staff) get past; members get 403 with the reason."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.is_team_owner:
            raise PermissionDenied("Only the team's owners can do this.")
        return view(request, *args, **kwargs)

    return wrapped
