"""Endpoints for machines, not people (no login): Apiframe's webhook and the health check."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from generations import apiframe, params
from generations.apiframe import InvalidPayload
from generations.services import applying, limits

logger = logging.getLogger(__name__)

# How long Apiframe should wait before delivering again when our database is busy or down.
WEBHOOK_RETRY_AFTER_SECONDS = 30


@csrf_exempt
@login_not_required
@require_POST
@sensitive_variables()  # the secret and the body: kept out of error reports (right above the function, or it misses)
def apiframe_webhook(request: HttpRequest) -> HttpResponse:
    """Apiframe's status updates and results. Only the shared secret proves who sent them."""
    provided = request.headers.get("x-webhook-secret", "")
    if not provided or not constant_time_compare(provided, settings.APIFRAME_WEBHOOK_SECRET):
        limits.webhook_refusal_count(source=limits.client_ip(request))  # the cache, never the database
        refused = JsonResponse({"error": "bad secret"}, status=401)
        refused._has_been_logged = True  # the count's sampled line stands for Django's line per 4xx (a flood)
        return refused
    limit = settings.MJSTUDIO_WEBHOOK_MAX_BYTES
    body = request.read(limit + 1)  # never more than the limit in memory, whatever Content-Length claims
    if len(body) > limit:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        payload = apiframe.json_object(body)  # not JSON, NaN, too deep: refused before anything is stored
    except InvalidPayload as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        # ?task= is our task's id, put in the webhook URL we gave Apiframe for it: it finds a task whose sender died.
        reference = params.positive_int(request.GET.get("task"))
        outcome, _ = applying.webhook_receive(body=payload, task_reference=reference)
    except InvalidPayload as exc:  # logged as invalid; sending it again would not make it valid
        return JsonResponse({"error": str(exc)}, status=400)
    except OperationalError:
        # Ours and passing (a locked or unreachable database): nothing was applied, so ask for it again.
        logger.exception("webhook delivery not applied: the database is unavailable")
        response = JsonResponse({"error": "try again later"}, status=503)
        response["Retry-After"] = str(WEBHOOK_RETRY_AFTER_SECONDS)
        return response
    except DatabaseError:
        # A value the database refused that the parser let through: nothing was applied (one transaction), and
        # the same body would be refused again, so the sender hears a 4xx; we hear an error in the log.
        logger.exception("webhook delivery refused by the database; nothing was applied")
        return JsonResponse({"error": "this delivery could not be stored; nothing was applied"}, status=422)
    # Unknown tasks get a 2xx too: the sender should stop retrying something we will never recognise.
    return JsonResponse({"ok": True, "outcome": str(outcome)})


@login_not_required
@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
