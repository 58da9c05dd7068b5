from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse
from django_htmx.http import HttpResponseClientRedirect


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Login required everywhere; an htmx request whose session expired sends the whole page to log in
    (a plain redirect would be followed inside the request and swapped nowhere, every half second)."""

    def handle_no_permission(self, request: HttpRequest, view_func: object) -> HttpResponse:
        response = super().handle_no_permission(request, view_func)
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(response["Location"])
        return response
