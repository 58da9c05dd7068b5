from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Login required everywhere; an htmx request whose session expired sends the whole page to log in
    (a plain redirect would be followed inside the request and swapped nowhere, every half second)."""

    def handle_no_permission(self, request: HttpRequest, view_func: object) -> HttpResponse:
        htmx = getattr(request, "htmx", None)
        if not htmx:
            return super().handle_no_permission(request, view_func)
        # After logging in, back to the page the user was on, not to the fragment it was asking for.
        page = htmx.current_url_abs_path or "/"
        return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
