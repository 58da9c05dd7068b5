"""Apiframe's HTTP contract, answered from the sandbox's engine (request.sandbox_engine).

No database, no session, no login: every view is csrf_exempt and login_not_required.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from sandbox.engine import Engine
from sandbox.validation import Invalid

View = Callable[..., HttpResponseBase]
FETCH_MANY_LIMITS = (2, 20)
CDN_SLOW_SECONDS = 2.0


def _errors(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"errors": [{"msg": message}]}, status=status)


def _engine(request: HttpRequest) -> Engine:
    return request.sandbox_engine  # type: ignore[attr-defined]


def _api(view: View) -> View:
    """The API key check every Apiframe endpoint makes: 401 with an empty object when it's wrong."""

    @wraps(view)
    def checked(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if not _engine(request).authorized(request.headers.get("Authorization", "")):
            return JsonResponse({}, status=401)
        return view(request, *args, **kwargs)

    return checked


def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object")
    return body


@csrf_exempt
@login_not_required
@require_POST
@_api
def create(request: HttpRequest, action: str) -> HttpResponseBase:
    engine = _engine(request)
    fault = engine.submit_fault()
    if fault == "submit_429":
        response = _errors("Too many requests: your plan's queue is full, retry in a moment", status=429)
        response["Retry-After"] = "1"
        return response
    if fault == "submit_5xx":
        return JsonResponse({}, status=500)
    try:
        task_id = engine.create(action, _body(request))
    except Invalid as invalid:
        return _errors(str(invalid))
    return JsonResponse({"task_id": task_id})


@csrf_exempt
@login_not_required
@require_POST
@_api
def fetch(request: HttpRequest) -> HttpResponseBase:
    try:
        task_id = _body(request).get("task_id")
    except Invalid as invalid:
        return _errors(str(invalid))
    if not isinstance(task_id, str) or not task_id:
        return _errors("task_id is required")
    task = _engine(request).fetch(task_id)
    # An unknown id is a validation error (400 with errors[].msg, Apiframe's shape for bad input) rather than
    # a 404: Apiframe answers from express-validator-style checks. Clients should treat both the same.
    return JsonResponse(task) if task is not None else _errors("Task not found")


@csrf_exempt
@login_not_required
@require_POST
@_api
def fetch_many(request: HttpRequest) -> HttpResponseBase:
    try:
        task_ids = _body(request).get("task_ids")
    except Invalid as invalid:
        return _errors(str(invalid))
    low, high = FETCH_MANY_LIMITS
    if not isinstance(task_ids, list) or not all(isinstance(i, str) for i in task_ids):
        return _errors("task_ids must be a list of task ids")
    if not low <= len(task_ids) <= high:
        return _errors(f"task_ids must hold between {low} and {high} ids")
    # Unknown ids are left out, not reported.
    return JsonResponse({"tasks": _engine(request).fetch_many(task_ids)})


@csrf_exempt
@login_not_required
@require_GET
@_api
def account(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse(_engine(request).account())


@csrf_exempt
@login_not_required
@require_GET
def image(request: HttpRequest, task_id: object, name: str) -> HttpResponseBase:
    """The sandbox's CDN: public URLs, like Apiframe's (no key needed to download a result)."""
    engine = _engine(request)
    if engine.dice.roll("cdn_slow"):
        time.sleep(CDN_SLOW_SECONDS)
    if engine.dice.roll("cdn_error"):
        return HttpResponse("CDN error (sandbox fault: cdn_error)", status=500, content_type="text/plain")
    png = engine.image(str(task_id), name)
    if png is None:
        return _errors("Image not found", status=404)
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@csrf_exempt
@login_not_required
@require_GET
def stats(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse(_engine(request).stats())


@csrf_exempt
@login_not_required
@require_GET
def tasks(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse({"tasks": _engine(request).record()})


@csrf_exempt
@login_not_required
def not_found(request: HttpRequest) -> HttpResponseBase:
    return _errors(f"Not found: {request.path}", status=404)
