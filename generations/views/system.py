"""Endpoints for machines, not people (no login): Apiframe's webhook and the health check."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from generations.apiframe import InvalidPayload, TaskState
from generations.models import WebhookDelivery
from generations.services import applying, limits


@csrf_exempt
@login_not_required
@require_POST
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
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return JsonResponse({"error": "body is not JSON"}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"error": "body is not a JSON object"}, status=400)
    try:
        state = TaskState.from_payload(payload)
        outcome, task = applying.task_apply_state(state=state)
        delivery = applying.webhook_record(body=payload, state=state, outcome=outcome, task=task)
    except InvalidPayload as exc:
        applying.webhook_record(body=payload, state=None, outcome=WebhookDelivery.Outcome.INVALID, task=None)
        return JsonResponse({"error": str(exc)}, status=400)
    except RecursionError:
        return JsonResponse({"error": "body nested too deeply"}, status=400)
    if outcome == WebhookDelivery.Outcome.UNKNOWN_TASK:
        # The submit may have stored this task's id between our lookup and our log line: look once more.
        applying.webhook_apply_again(delivery=delivery)
    # Unknown tasks get a 2xx too: the sender should stop retrying something we will never recognise.
    return JsonResponse({"ok": True, "outcome": str(outcome)})


@login_not_required
@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
