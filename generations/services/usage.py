"""The usage page's numbers: what a team sent and spent over the last 30 days, per day, member and action, its
most expensive lineages, and the credits left on the Apiframe account.

Read-only. The task numbers are aggregated in the database in a fixed number of queries, however many tasks
there are; the account's credits come from Apiframe's GET /account, cached briefly (failures too), so a page
view rarely waits for Apiframe and never for long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Case, Count, F, Func, IntegerField, Max, Q, Sum, Value, When
from django.utils import timezone

from generations.apiframe import ApiframeClient, ApiframeError, AuthenticationFailed
from generations.models import Task, TaskQuerySet, Team
from generations.services import upstream

logger = logging.getLogger(__name__)

USAGE_DAYS = 30
TOP_LINEAGES = 10

# A day's numbers stop changing once its tasks have ended: finished, failed, or timed out and past the 6 hours in
# which the poller still asks about a late result. Days over for this long are counted once and cached, so a view
# counts only the last day or two, however many tasks the month holds.
SETTLED_AFTER = timedelta(hours=8)
# A result that lands later still (a webhook after those 6 hours) shows within this time.
SETTLED_CACHE_SECONDS = 3600

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
    members: list[Member]  # in a fixed order (current members as they joined, then former ones)
    by_member: dict[tuple[date, int], Counts]  # (day, user pk)
    by_action: dict[tuple[date, str], Counts]  # (day, Task.Action value)
    member_totals: dict[int, Counts]
    action_totals: dict[str, Counts]
    total: Counts
    lineages: list[Lineage]
    # Each member's median wait in the fair queue (created -> given a slot), over the tasks that left it.
    median_waits: dict[int, timedelta] = field(default_factory=dict)


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


def _day_index(midnights: list[datetime], first: int, last: int | None = None) -> Case | Value:
    """Which day (0 = the oldest) a task was created on, as a binary search over the days' midnights: five
    comparisons a task. The local midnights are worked out here, so the database only compares timestamps: no
    time-zone conversion per row (TruncDate's, on SQLite, is a Python call for every task)."""
    last = len(midnights) - 2 if last is None else last
    if first == last:
        return Value(first)
    middle = (first + last + 1) // 2
    return Case(
        When(created_at__gte=midnights[middle], then=_day_index(midnights, middle, last)),
        default=_day_index(midnights, first, middle - 1),
        output_field=IntegerField(),
    )


@dataclass(slots=True)
class _Tally:
    """Counts added up from grouped rows; what is cached for the settled days."""

    by_member: dict[tuple[date, int], Counts] = field(default_factory=dict)
    by_action: dict[tuple[date, str], Counts] = field(default_factory=dict)
    member_totals: dict[int, Counts] = field(default_factory=dict)
    action_totals: dict[str, Counts] = field(default_factory=dict)
    total: Counts = field(default_factory=Counts)
    # The most expensive lineages, root pk -> (tasks, credits): of these days alone, best first.
    top: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Waits in the fair queue: member -> {whole seconds: tasks}.
    waits: dict[int, dict[int, int]] = field(default_factory=dict)

    def add_waits(self, tasks: TaskQuerySet) -> None:
        for member, by_seconds in wait_counts(tasks=tasks).items():
            mine = self.waits.setdefault(member, {})
            for seconds, count in by_seconds.items():
                mine[seconds] = mine.get(seconds, 0) + count

    def add_rows(self, tasks: TaskQuerySet, calendar: list[date], midnights: list[datetime], first: int) -> None:
        """Count `tasks` (created from day `first` on) per day, member and action: one GROUP BY."""
        rows = (
            tasks.annotate(day=_day_index(midnights, first))
            .values_list("day", "created_by_id", "action")
            .annotate(
                tasks=Count("pk"),
                credits=Sum("credits"),
                finished=Count("pk", filter=Q(status=Task.Status.FINISHED)),
                failed=Count("pk", filter=Q(status__in=Task.FAILED_STATUSES)),
            )
            .order_by()
        )
        for day_index, member, action, tasks_sent, credits, finished, failed in rows:
            day, counts = calendar[day_index], Counts(tasks_sent, credits or 0, finished, failed)
            self.by_member.setdefault((day, member), Counts()).add(counts)
            self.by_action.setdefault((day, action), Counts()).add(counts)
            self.member_totals.setdefault(member, Counts()).add(counts)
            self.action_totals.setdefault(action, Counts()).add(counts)
            self.total.add(counts)


def _top_lineages(tasks: TaskQuerySet) -> dict[int, tuple[int, int]]:
    """The lineages among `tasks` that spent the most, root pk -> (tasks, credits): one GROUP BY root."""
    rows = (
        tasks.values_list("root_id")
        .annotate(tasks=Count("pk"), credits=Sum("credits"))
        .order_by("-credits", "-tasks", "-root_id")[:TOP_LINEAGES]
    )
    return {root: (count, credits or 0) for root, count, credits in rows if root is not None}


def _settled_days(midnights: list[datetime], now: datetime) -> int:
    """How many of the oldest days are over for long enough that their numbers no longer change."""
    return sum(1 for end in midnights[1:-1] if end <= now - SETTLED_AFTER)


def _settled_tally(*, team: Team, calendar: list[date], midnights: list[datetime], settled: int) -> _Tally:
    """The settled days' counts and top lineages: from the cache, or two queries once an hour."""
    if not settled:
        return _Tally()
    key = f"usage:settled:v2:{team.pk}:{settings.TIME_ZONE}:{calendar[0]}:{settled}"
    tally = cache.get(key)
    if not isinstance(tally, _Tally):
        tally = _Tally()
        tasks = Task.objects.filter(team=team, created_at__gte=midnights[0], created_at__lt=midnights[settled])
        tally.add_rows(tasks, calendar, midnights[: settled + 1], 0)
        tally.top = _top_lineages(tasks)
        tally.add_waits(tasks)
        cache.set(key, tally, SETTLED_CACHE_SECONDS)
    return tally


def usage_summarize(*, team: Team, now: datetime | None = None, days: int = USAGE_DAYS) -> TeamUsage:
    """The team's tasks and credits over the last `days` days (today included), and each member's median wait in the
    fair queue, in six queries (eight when the settled days are not in the cache)."""
    now = now or timezone.now()
    calendar, midnights = usage_days(now=now, days=days)
    settled = _settled_days(midnights, now)
    tally = _settled_tally(team=team, calendar=calendar, midnights=midnights, settled=settled)

    # 1. The days still changing (yesterday, today), counted per (day, member, action) on every view; and their waits.
    # (One range per filter: SQLite plans `a >= x AND a >= y` far worse than one bound.)
    recent = Task.objects.filter(team=team, created_at__gte=midnights[settled], created_at__lt=midnights[-1])
    tally.add_rows(recent, calendar, midnights, settled)
    tally.add_waits(recent)

    # 2, 3. The most expensive lineages. Those with tasks in the recent days are summed over the whole window; the
    # others cost what they did in the settled days. The ten best of the two lists are the ten best overall: a
    # lineage in neither is behind ten others in its own list, and those cost at least as much in the window.
    # The active roots are a list, not a subquery: PostgreSQL misjudges the join and reads the whole month.
    active = list(recent.order_by().values_list("root_id", flat=True).distinct())
    window = Task.objects.filter(team=team, created_at__gte=midnights[0], created_at__lt=midnights[-1])
    candidates = {**tally.top, **_top_lineages(window.filter(root_id__in=active))}
    top = sorted(candidates.items(), key=lambda item: (item[1][1], item[1][0], item[0]), reverse=True)
    top = top[:TOP_LINEAGES]
    # 4. Their roots, with the prompt and who started them.
    roots = Task.objects.filter(team=team, pk__in=[pk for pk, _ in top]).select_related("prompt", "created_by")
    root_by_pk = {root.pk: root for root in roots}
    lineages = [
        Lineage(root=root_by_pk[pk], tasks=count, credits=credits) for pk, (count, credits) in top if pk in root_by_pk
    ]

    # 5. Everyone to show: the team's members (even those who sent nothing), and anyone who sent tasks in the
    # window and has left since. Ordered by when they joined, so each keeps their colour as the team grows.
    joined = Max("memberships__joined_at", filter=Q(memberships__team=team))
    people = (
        get_user_model()
        .objects.filter(Q(memberships__team=team) | Q(pk__in=list(tally.member_totals)))
        .annotate(joined=joined)
        .order_by("joined", "pk")
    )
    members = [Member(pk=u.pk, name=u.get_username(), is_member=u.joined is not None) for u in people]
    members.sort(key=lambda m: not m.is_member)  # former members last (the sort is stable)

    return TeamUsage(
        median_waits=median_waits(tally.waits),  # is the fair queue fair?
        days=calendar,
        members=members,
        by_member=tally.by_member,
        by_action=tally.by_action,
        member_totals=tally.member_totals,
        action_totals=tally.action_totals,
        total=tally.total,
        lineages=lineages,
    )


class WaitSeconds(Func):
    """Whole seconds from created to let go by the fair queue, in the database's own date functions (on SQLite,
    Django's datetime subtraction would be a Python call for every row)."""

    output_field = IntegerField()
    template = "CAST(ROUND(EXTRACT(EPOCH FROM (%(expressions)s))) AS integer)"
    arg_joiner = " - "

    def __init__(self) -> None:
        super().__init__(F("dispatched_at"), F("created_at"))

    def as_sqlite(self, compiler: object, connection: object, **extra: object) -> tuple[str, list]:
        return self.as_sql(
            compiler,
            connection,
            template="CAST(ROUND((julianday(%(expressions)s)) * 86400) AS integer)",
            arg_joiner=") - julianday(",
            **extra,
        )


def wait_counts(*, tasks: TaskQuerySet) -> dict[int, dict[int, int]]:
    """How many of `tasks` waited how many whole seconds in the fair queue, per member: one GROUP BY, read from the
    index task_team_waits. Counts add up across days (unlike medians), so settled days are cached as counts."""
    rows = (
        tasks.filter(dispatched_at__isnull=False)
        .annotate(waited=WaitSeconds())
        .values_list("created_by_id", "waited")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts: dict[int, dict[int, int]] = {}
    for member, waited, count in rows:
        member_counts = counts.setdefault(member, {})
        member_counts[waited] = member_counts.get(waited, 0) + count
    return counts


def median_waits(counts: dict[int, dict[int, int]]) -> dict[int, timedelta]:
    """Each member's median wait, to the second, from their counts of waits."""

    def nth(by_seconds: dict[int, int], rank: int) -> int:
        seen = 0
        for seconds in sorted(by_seconds):
            seen += by_seconds[seconds]
            if seen >= rank:
                return seconds
        raise ValueError(rank)

    medians = {}
    for member, by_seconds in counts.items():
        total = sum(by_seconds.values())
        # The middle wait, or the two middle ones averaged.
        middle = nth(by_seconds, (total + 1) // 2) + nth(by_seconds, (total + 2) // 2)
        medians[member] = timedelta(seconds=middle / 2)
    return medians


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
    except ApiframeError as exc:
        logger.warning("apiframe /account did not answer: %s", exc)
        result = AccountCredits(credits=None, checked_at=checked_at, problem="Apiframe did not answer")
    except ValueError as exc:  # the client refuses the settings themselves: no key, a key with control characters
        logger.error("apiframe /account not asked: %s", exc)
        result = AccountCredits(credits=None, checked_at=checked_at, problem="no usable APIFRAME_API_KEY is set")
    else:
        problem = "" if account.credits is not None else "Apiframe did not say"
        result = AccountCredits(credits=account.credits, plan=account.plan, checked_at=checked_at, problem=problem)
    seconds = ACCOUNT_CACHE_SECONDS if result.credits is not None else ACCOUNT_FAILURE_CACHE_SECONDS
    cache.set(ACCOUNT_CACHE_KEY, result, seconds)
    return result
