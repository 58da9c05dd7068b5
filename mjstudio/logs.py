"""Logging filters (settings.LOGGING)."""

from __future__ import annotations

import logging

from django.urls import reverse


class SkipRefusedWebhooks(logging.Filter):
    """Drop runserver's access line for a webhook refused for its secret (401): a flood would write one per
    request; generations.services.limits counts them and logs a sampled line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 401 or not record.args:
            return True
        request_line = str(record.args[0]).split()  # "POST /webhooks/apiframe/ HTTP/1.1"
        path = request_line[1].split("?")[0] if len(request_line) > 1 else ""
        return path != reverse("generations:apiframe_webhook")


class ForbiddenInOneLine(logging.Filter):
    """A 403 is a refusal working as meant, not a fault: log its one line without the traceback Django attaches
    (PermissionDenied carries one), so a member clicking around an owner's page writes one line per click."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = record.exc_text = None
        return True
