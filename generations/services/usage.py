"""The usage page's numbers: what a team sent and spent over the last 30 days, per day, member and action, its
most expensive lineages, and the credits left on the Apiframe account.

Read-only. The task numbers are aggregated in the database in a fixed number of queries, however many tasks
there are; the account's credits come from Apiframe's GET /account, cached briefly (failures too), so a page
view rarely waits for Apiframe and never for long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Case, Count, IntegerField, Max, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from generations.apiframe import ApiframeClient, ApiframeError, AuthenticationFailed
from generations.models import Task, Team
from generations.services import upstream

logger = logging.getLogger(__name__)

USAGE_DAYS = 30
TOP_LINEAGES = 10
FAILED_STATUSES = (Task.Status.FAILED, Task.Status.TIMED_OUT)

# The account's credits: fresh enough for a glance, and Apiframe is asked at most once a minute.
ACCOUNT_CACHE_KEY = "usage:apiframe-account"
ACCOUNT_CACHE_SECONDS = 60
# A failure is remembered too, so that a down Apiframe slows one page view now and then, not every one.
ACCOUNT_FAILURE_CACHE_SECONDS = 30
# One try, a short wait: the page shows "unknown" rather than make anyone wait for a slow Apiframe.
ACCOUNT_TIMEOUT_SECONDS = 2.0


@dataclass(slots=True)
class Counts:
    tasks: int = 0  # tasks sent: every task created, whatever became of it
    credits: int = 0  # credits spent: charged for finished tasks only
    finished: int = 0
    failed: int = 0  # failed or timed out

    def add(self, other: Counts) -> None:
        self.tasks += other.tasks
        self.credits += other.credits
        self.finished += other.finished
        self.failed += other.failed


@dataclass(frozen=True, slots=True)
class Member:
    pk: int
    name: str
    is_member: bool  # False for someone who has left the team since sending tasks


@dataclass(frozen=True, slots=True)
class Lineage:
    root: Task  # with its prompt and author
    tasks: int
    credits: int


@dataclass(slots=True)
class TeamUsage:
    days: list[date]  # oldest first; the last one is today in the site's time zone
    start: datetime  # the first day's midnight: tasks created since then count
    members: list[Member]  # in a fixed order (current members as they joined, then former ones)
    by_member: dict[tuple[date, int], Counts]  # (day, user pk)
    by_action: dict[tuple[date, str], Counts]  # (day, Task.Action value)
    member_totals: dict[int, Counts]
    action_totals: dict[str, Counts]
    total: Counts
    lineages: list[Lineage]


@dataclass(frozen=True, slots=True)
class AccountCredits:
    credits: float | None  # None: unknown, `problem` says why
    checked_at: datetime
    plan: str | None = None
    problem: str = ""


def usage_days(*, now: datetime | None = None, days: int = USAGE_DAYS) -> tuple[list[date], list[datetime]]:
    """The last `days` calendar days in the site's time zone, and the midnight each one starts at (plus the
    midnight after the last): aware datetimes, right across daylight-saving changes."""
    zone = ZoneInfo(settings.TIME_ZONE)
    today = timezone.localtime(now or timezone.now(), zone).date()
    calendar = [today - timedelta(days=days - 1 - i) for i in range(days + 1)]
    midnights = [datetime.combine(day, time.min, tzinfo=zone) for day in calendar]
    return calendar[:-1], midnights


def _day_index(midnights: list[datetime]) -> Case:
    """Which day (0 = the oldest) a task was created on. The local midnights are worked out here, so the database
    only compares timestamps: no time-zone conversion per row (on SQLite that would be a Python call per task)."""
    newest_first = [When(created_at__gte=midnights[i], then=Value(i)) for i in range(len(midnights) - 2, -1, -1)]
    return Case(*newest_first, output_field=IntegerField())


def _counts(row: dict) -> Counts:
    return Counts(tasks=row["tasks"], credits=row["credits"] or 0, finished=row["finished"], failed=row["failed"])


def usage_summarize(*, team: Team, now: datetime | None = None, days: int = USAGE_DAYS) -> TeamUsage:
    """The team's tasks and credits over the last `days` days (today included), in four queries."""
    calendar, midnights = usage_days(now=now, days=days)
    window = Task.objects.filter(team=team, created_at__gte=midnights[0], created_at__lt=midnights[-1])

    # 1. Tasks and credits per (day, member, action): both charts and every total come from these few rows.
    rows = list(
        window.annotate(day=_day_index(midnights))
        .values("day", "created_by_id", "action")
        .annotate(
            tasks=Count("pk"),
            credits=Sum("credits"),
            finished=Count("pk", filter=Q(status=Task.Status.FINISHED)),
            failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
        )
        .order_by()
    )
    by_member: dict[tuple[date, int], Counts] = {}
    by_action: dict[tuple[date, str], Counts] = {}
    member_totals: dict[int, Counts] = {}
    action_totals: dict[str, Counts] = {}
    total = Counts()
    for row in rows:
        day, counts = calendar[row["day"]], _counts(row)
        by_member.setdefault((day, row["created_by_id"]), Counts()).add(counts)
        by_action.setdefault((day, row["action"]), Counts()).add(counts)
        member_totals.setdefault(row["created_by_id"], Counts()).add(counts)
        action_totals.setdefault(row["action"], Counts()).add(counts)
        total.add(counts)

    # 2. The lineages that spent the most in the window. A root is its own root; Coalesce covers the instant
    # between a root's insert and the update that sets it.
    top = list(
        window.annotate(lineage=Coalesce("root_id", "pk"))
        .values("lineage")
        .annotate(tasks=Count("pk"), credits=Sum("credits"))
        .order_by("-credits", "-tasks", "-lineage")[:TOP_LINEAGES]
    )
    # 3. Their roots, with the prompt and who started them.
    roots = Task.objects.filter(team=team, pk__in=[r["lineage"] for r in top]).select_related("prompt", "created_by")
    root_by_pk = {root.pk: root for root in roots}
    lineages = [
        Lineage(root=root_by_pk[r["lineage"]], tasks=r["tasks"], credits=r["credits"] or 0)
        for r in top
        if r["lineage"] in root_by_pk
    ]

    # 4. Everyone to show: the team's members (even those who sent nothing), and anyone who sent tasks in the
    # window and has left since. Ordered by when they joined, so each keeps their colour as the team grows.
    joined = Max("memberships__joined_at", filter=Q(memberships__team=team))
    people = (
        get_user_model()
        .objects.filter(Q(memberships__team=team) | Q(pk__in=list(member_totals)))
        .annotate(joined=joined)
        .order_by("joined", "pk")
    )
    members = [Member(pk=u.pk, name=u.get_username(), is_member=u.joined is not None) for u in people]
    members.sort(key=lambda m: not m.is_member)  # former members last (the sort is stable)

    return TeamUsage(
        days=calendar,
        start=midnights[0],
        members=members,
        by_member=by_member,
        by_action=by_action,
        member_totals=member_totals,
        action_totals=action_totals,
        total=total,
        lineages=lineages,
    )


def account_credits_check(*, client: ApiframeClient | None = None) -> AccountCredits:
    """The credits left on the Apiframe account, from the cache or, at most once a minute, from GET /account."""
    cached = cache.get(ACCOUNT_CACHE_KEY)
    if isinstance(cached, AccountCredits):
        return cached
    checked_at = timezone.now()
    try:
        with upstream.apiframe_client(client, timeout=ACCOUNT_TIMEOUT_SECONDS, fetch_attempts=1) as api:
            account = api.account()
    except AuthenticationFailed as exc:
        logger.warning("apiframe /account refused the API key: %s", exc)
        result = AccountCredits(credits=None, checked_at=checked_at, problem="Apiframe refused the API key")
    except (ApiframeError, ValueError) as exc:  # ValueError: no usable key or URL in the settings
        logger.warning("apiframe /account did not answer: %s", exc)
        result = AccountCredits(credits=None, checked_at=checked_at, problem="Apiframe did not answer")
    else:
        problem = "" if account.credits is not None else "Apiframe did not say"
        result = AccountCredits(credits=account.credits, plan=account.plan, checked_at=checked_at, problem=problem)
    seconds = ACCOUNT_CACHE_SECONDS if result.credits is not None else ACCOUNT_FAILURE_CACHE_SECONDS
    cache.set(ACCOUNT_CACHE_KEY, result, seconds)
    return result
