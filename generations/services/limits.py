"""Limits on abuse, each rule in one place: submissions (a per-user rate, a per-team cap on tasks in flight),
login attempts (django-axes, per account and per address) and webhook deliveries with a bad secret."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Max, Min, Sum
from django.http import HttpRequest
from django.utils import timezone

from generations.models import AuditEntry, Task, Team

logger = logging.getLogger(__name__)

# Webhook refusals are counted per window of this many seconds (this one and the last are kept).
WEBHOOK_REFUSAL_WINDOW = 3600
# While the team is at its cap, a client is told to come back this soon at the latest: a task may end any moment.
TEAM_CAP_RETRY_AFTER = 30


class SubmissionRefused(Exception):
    """A submit over a limit: nothing was created. `retry_after` is in seconds (the Retry-After header)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def duration_words(seconds: float) -> str:
    """A span in words (45 seconds, 3 minutes, 2 hours), rounded up so that "try again in" is never too early."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        amount, unit = seconds, "second"
    elif seconds < 2 * 3600:
        amount, unit = math.ceil(seconds / 60), "minute"
    else:
        amount, unit = math.ceil(seconds / 3600), "hour"
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def submission_refusal(*, user: AbstractBaseUser, team: Team, now: datetime | None = None) -> SubmissionRefused | None:
    """Why a new task may not be created now, with when to try again; None if it may.

    Counted from the database, so it holds across processes (refused prompts by their audit rows, written anyway:
    no cache to share between processes, no extra write). Two submits at the same moment may both pass
    (a count, not a lock): one task over is acceptable for a rate limit, and the cap is a guard, not an invariant.
    """
    now = now or timezone.now()
    limit, window = settings.MJSTUDIO_SUBMIT_MAX, settings.MJSTUDIO_SUBMIT_WINDOW
    if limit > 0:
        since = now - timedelta(seconds=window)
        # The user's newest `limit` tasks (index task_user_recent) and prompts the blocklist refused at submit
        # (their audit rows, index audit_actor_act_recent; a refusal at send time is a task's, counted already):
        # a refusal costs a check and a row, so it counts like a task. The oldest of the newest `limit` leaving
        # the window frees a slot.
        tasks = Task.objects.filter(created_by=user, created_at__gt=since)
        refusals = AuditEntry.objects.filter(
            actor=user, act=AuditEntry.Act.PROMPT_BLOCKED, created_at__gt=since, target_id=None
        )
        newest = [
            (moment, refused)
            for rows, refused in ((tasks, False), (refusals, True))
            for moment in rows.order_by("-created_at").values_list("created_at", flat=True)[:limit]
        ]
        recent = sorted(newest, reverse=True)[:limit]
        if len(recent) >= limit:
            wait = (recent[-1][0] + timedelta(seconds=window) - now).total_seconds()
            counting = ", counting prompts the blocklist refused" if any(refused for _, refused in recent) else ""
            return SubmissionRefused(
                f"You have sent {limit} tasks in the last {duration_words(window)}{counting}: "
                f"try again in {duration_words(wait)}.",
                retry_after=max(1, math.ceil(wait)),
            )
    cap = settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT
    if cap > 0:
        # One query, answered from the index task_team_status.
        in_flight = Task.objects.for_team(team).in_flight().aggregate(count=Count("pk"), first_deadline=Min("deadline"))
        if in_flight["count"] >= cap:
            # A slot frees when a task ends: any moment, and at the latest at the first deadline.
            until_deadline = (in_flight["first_deadline"] - now).total_seconds()
            return SubmissionRefused(
                f"Your team has {in_flight['count']} tasks in flight (the limit): try again when one finishes.",
                retry_after=max(1, min(TEAM_CAP_RETRY_AFTER, math.ceil(until_deadline))),
            )
    return None


# --- Login attempts (django-axes) ---------------------------------------------------------------------------


class LoginAttemptHandler(AxesDatabaseHandler):
    """django-axes' database handler with two limits: MJSTUDIO_LOGIN_FAILURE_LIMIT failures for one account
    (AXES_FAILURE_LIMIT), MJSTUDIO_LOGIN_IP_FAILURE_LIMIT from one address (a whole office may share it)."""

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        # AXES_LOCKOUT_PARAMETERS is ["username", "ip_address"]: the account's attempts, then the address's.
        account, address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if address >= settings.MJSTUDIO_LOGIN_IP_FAILURE_LIMIT:
            return max(account, get_failure_limit(request, credentials))  # axes compares with the account limit
        return account

    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """A success forgets the account's own failures only (AXES_RESET_ON_SUCCESS): axes would also forget the
        address's, so anyone with a login could clear the failures against another account from the same place."""
        count, _ = AccessAttempt.objects.filter(username=get_client_username(request, credentials)).delete()
        return count

    def lockout_ends(self, request: HttpRequest, credentials: dict | None = None) -> datetime:
        """When a lockout lifts at the latest: the newest failure counted against the account or the address
        leaves the cool-off (tries refused during a lockout are not counted: AXES_RESET_COOL_OFF_ON_FAILURE...)."""
        newest = [
            attempts.aggregate(newest=Max("attempt_time"))["newest"]
            for attempts in self.get_user_attempts(request, credentials)
        ]
        latest = max((moment for moment in newest if moment), default=None) or timezone.now()
        return latest + get_cool_off(request)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind MJSTUDIO_TRUSTED_PROXIES proxies the address the outermost
    one saw (each appends to X-Forwarded-For; whatever the client wrote there itself is further left)."""
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.MJSTUDIO_TRUSTED_PROXIES
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-hops]))
    except ValueError:
        return remote


# --- Webhook deliveries with a wrong or missing secret ------------------------------------------------------


def _refusal_key(window: int) -> str:
    return f"mjstudio:webhook-refused:{window}"


def webhook_refusal_count(*, source: str | None) -> int:
    """Count one refused delivery in the cache (never the database) and log the 1st, 10th, 100th... of each
    window, so that a flood costs neither a write nor a log line per request."""
    key = _refusal_key(int(time.time()) // WEBHOOK_REFUSAL_WINDOW)
    cache.add(key, 0, timeout=2 * WEBHOOK_REFUSAL_WINDOW)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=2 * WEBHOOK_REFUSAL_WINDOW)
        count = 1
    if str(count).rstrip("0") == "1":
        logger.warning(
            "webhook refusals this hour (wrong or missing secret): %d, the latest from %s",
            count,
            source or "an unknown address",
        )
    return count


def webhook_refusals() -> tuple[int, int]:
    """Deliveries refused for their secret this hour and the hour before (per process with the local cache)."""
    window = int(time.time()) // WEBHOOK_REFUSAL_WINDOW
    counts = cache.get_many([_refusal_key(window), _refusal_key(window - 1)])
    return counts.get(_refusal_key(window), 0), counts.get(_refusal_key(window - 1), 0)
