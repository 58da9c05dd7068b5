"""The usage page: what the team sent and spent in the last 30 days, and what is left on the Apiframe account."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from generations import charts
from generations.models import Task
from generations.services import usage as usage_service

# ?metric= values: what the charts count, and its unit.
METRICS = {"tasks": "task", "credits": "credit"}
# Each action keeps its colour, whatever the team used.
ACTION_COLOURS = dict(zip(Task.Action.values, charts.PALETTE, strict=False))


def _metric(request: HttpRequest) -> str:
    """The charts' metric: tasks unless ?metric=credits (anything else is the default, not an error)."""
    metric = request.GET.get("metric", "")
    return metric if metric in METRICS else "tasks"


def _charts(summary: usage_service.TeamUsage, metric: str) -> tuple[charts.StackedBarChart, charts.StackedBarChart]:
    unit = METRICS[metric]
    noun = "Credits spent" if metric == "credits" else "Tasks sent"
    # Colours by each member's place in the team (as they joined), so they hold across pages and metrics.
    people = [
        charts.Series(
            key=m.pk,
            label=m.name if m.is_member else f"{m.name} (left)",
            colour=charts.PALETTE[i % len(charts.PALETTE)],
        )
        for i, m in enumerate(summary.members)
    ]
    actions = [charts.Series(key=a.value, label=a.label, colour=ACTION_COLOURS[a.value]) for a in Task.Action]
    by_member = charts.stacked_bars(
        slug="chart-members",
        title=f"{noun} per day, by member",
        unit=unit,
        days=summary.days,
        series=people,
        values={key: getattr(counts, metric) for key, counts in summary.by_member.items()},
    )
    by_action = charts.stacked_bars(
        slug="chart-actions",
        title=f"{noun} per day, by action",
        unit=unit,
        days=summary.days,
        series=actions,
        values={key: getattr(counts, metric) for key, counts in summary.by_action.items()},
    )
    return by_member, by_action


def wait_words(wait: timedelta | None) -> str:
    """A wait as read at a glance: "under a second", "42 s", "3 min 5 s", "2 h 10 min"; a dash for none."""
    if wait is None:
        return "–"
    seconds = round(wait.total_seconds())
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds % 60 else f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    team = request.team
    metric = _metric(request)
    summary = usage_service.usage_summarize(team=team)
    by_member, by_action = _charts(summary, metric)
    empty = usage_service.Counts()
    context = {
        "team": team,
        "metric": metric,
        "summary": summary,
        "first_day": summary.days[0],
        "last_day": summary.days[-1],
        "time_zone": settings.TIME_ZONE,
        "member_chart": by_member,
        "action_chart": by_action,
        "member_rows": [
            (m, summary.member_totals.get(m.pk, empty), wait_words(summary.median_waits.get(m.pk)))
            for m in summary.members
        ],
        "action_rows": [(a.label, summary.action_totals[a]) for a in Task.Action if a in summary.action_totals],
        "account": usage_service.account_credits_check(),
        "concurrency": settings.APIFRAME_CONCURRENCY,
    }
    return render(request, "generations/usage.html", context)
