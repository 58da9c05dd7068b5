"""The usage page: its numbers (per day in the site's time zone, member, action, lineage), the charts drawn from
them, the Apiframe account's credits (cached, and never a slow page or a 500), its query count, and isolation."""

from __future__ import annotations

import random
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations import charts
from generations.models import Membership, Prompt, Task
from generations.services import usage
from tests.support.teams import join

SVG = "{http://www.w3.org/2000/svg}"
PLOT_HEIGHT = charts.HEIGHT - charts.TOP - charts.BOTTOM


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The account's credits are cached: every test starts without them."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: connecting is refused


@pytest.fixture(autouse=True)
def _apiframe_unreachable(settings, closed_port):
    """Page tests need no Apiframe: the account's credits are "unknown" unless a test points at a sandbox."""
    settings.APIFRAME_FETCH_URL = f"http://127.0.0.1:{closed_port}"


@pytest.fixture
def silent_apiframe(settings):
    """An "Apiframe" that accepts connections and never answers; counts the connections it got."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    settings.APIFRAME_FETCH_URL = f"http://127.0.0.1:{server.getsockname()[1]}"
    yield accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _task(user, *, at, action="imagine", status="finished", credits=None, root=None, team=None, text="a quiet harbour"):
    """A task sent by `user` at `at`: finished ones cost 4 credits unless told, others nothing."""
    team = team or Membership.objects.filter(user=user).first().team
    prompt = root.prompt if root else Prompt.objects.create(team=team, author=user, text=text, created_at=at)
    task = Task.objects.create(
        team=team,
        prompt=prompt,
        created_by=user,
        action=action,
        status=status,
        credits=credits if credits is not None else (4 if status == "finished" else 0),
        parent=root,
        root=root,
        created_at=at,
        deadline=at + timedelta(minutes=5),
    )
    if root is None:
        Task.objects.filter(pk=task.pk).update(root=task)
        task.root = task
    return task


def _svgs(html: str) -> dict[str, ET.Element]:
    """The page's charts, parsed as XML (so they are well-formed), by the id of their title."""
    found = {}
    for markup in re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" class="chart".*?</svg>', html, re.S):
        svg = ET.fromstring(markup)  # noqa: S314 (our own page)
        found[svg.find(f"{SVG}title").get("id").removesuffix("-title")] = svg
    return found


def _bars(svg: ET.Element) -> dict[str, list[tuple[str, int, float]]]:
    """Each day's bar as (series, value, height to a tenth) segments, bottom to top, read from the tooltips."""
    bars = {}
    for bar in svg.iter(f"{SVG}g"):
        if bar.get("class") == "chart__bar":
            segments = []
            for rect in bar.iter(f"{SVG}rect"):
                series, value = re.fullmatch(
                    r"(.+) · \w+ \w+ \d+: ([\d,]+) \w+", rect.find(f"{SVG}title").text
                ).groups()
                segments.append((series, int(value.replace(",", "")), round(float(rect.get("height")), 1)))
            bars[bar.get("data-day")] = segments
    return bars


def _bar_x(svg: ET.Element, day: str) -> float:
    bar = next(g for g in svg.iter(f"{SVG}g") if g.get("data-day") == day)
    return float(re.fullmatch(r"translate\(([\d.]+) 0\)", bar.get("transform")).group(1))


def _axis_top(svg: ET.Element) -> int:
    axis = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "chart__axis")
    return max(int(text.text) for text in axis.iter(f"{SVG}text"))


# --- The numbers -----------------------------------------------------------------------------------------------

# 13:00 in Paris on Tuesday, November 10, 2026; summer time ended on October 25, inside the 30 days.
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def paris(settings):
    settings.TIME_ZONE = "Europe/Paris"


def test_it_counts_days_in_the_sites_time_zone(paris, alice, bob, charlie):
    _task(alice, at=datetime(2026, 11, 10, 10, 0, tzinfo=UTC))  # today
    _task(bob, at=datetime(2026, 11, 9, 23, 30, tzinfo=UTC), action="vary")  # 00:30 in Paris: today too
    _task(alice, at=datetime(2026, 11, 9, 22, 59, tzinfo=UTC), action="upscale", status="failed")  # 23:59: yesterday
    _task(alice, at=datetime(2026, 10, 25, 22, 30, tzinfo=UTC))  # 23:30 on the day summer time ended
    _task(alice, at=datetime(2026, 10, 11, 22, 0, tzinfo=UTC))  # midnight starting the first day (summer time)
    _task(alice, at=datetime(2026, 10, 11, 21, 59, tzinfo=UTC))  # a minute before: 31 days ago, not counted
    _task(alice, at=NOW - timedelta(days=40))
    _task(charlie, at=NOW - timedelta(hours=1), credits=40)  # another team's

    summary = usage.usage_summarize(team=alice.memberships.first().team, now=NOW)

    assert summary.days[0] == date(2026, 10, 12)
    assert summary.days[-1] == date(2026, 11, 10)
    assert len(summary.days) == 30
    assert {(day, pk): (c.tasks, c.credits) for (day, pk), c in summary.by_member.items()} == {
        (date(2026, 11, 10), alice.pk): (1, 4),
        (date(2026, 11, 10), bob.pk): (1, 4),
        (date(2026, 11, 9), alice.pk): (1, 0),
        (date(2026, 10, 25), alice.pk): (1, 4),
        (date(2026, 10, 12), alice.pk): (1, 4),
    }
    assert {(day, a): c.tasks for (day, a), c in summary.by_action.items()} == {
        (date(2026, 11, 10), "imagine"): 1,
        (date(2026, 11, 10), "vary"): 1,
        (date(2026, 11, 9), "upscale"): 1,
        (date(2026, 10, 25), "imagine"): 1,
        (date(2026, 10, 12), "imagine"): 1,
    }
    assert (summary.total.tasks, summary.total.credits, summary.total.finished, summary.total.failed) == (5, 16, 4, 1)
    assert {pk: (c.tasks, c.credits) for pk, c in summary.member_totals.items()} == {alice.pk: (4, 12), bob.pk: (1, 4)}
    assert {a: (c.tasks, c.credits) for a, c in summary.action_totals.items()} == {
        "imagine": (3, 12),
        "vary": (1, 4),
        "upscale": (1, 0),
    }


def test_it_counts_a_utc_day_when_the_site_is_on_utc(settings, alice):
    settings.TIME_ZONE = "UTC"
    _task(alice, at=datetime(2026, 11, 9, 23, 30, tzinfo=UTC))

    summary = usage.usage_summarize(team=alice.memberships.first().team, now=NOW)

    assert list(summary.by_member) == [(date(2026, 11, 9), alice.pk)]


def test_it_counts_tasks_sent_and_credits_spent_whatever_their_status(alice):
    now = timezone.now()
    for status in ("queued", "pending", "processing", "finished", "failed", "timed_out"):
        _task(alice, at=now - timedelta(minutes=5), status=status)

    total = usage.usage_summarize(team=alice.memberships.first().team).total

    assert (total.tasks, total.credits, total.finished, total.failed) == (6, 4, 1, 2)


def test_it_ranks_lineages_by_credits_spent_in_the_window(alice, bob, charlie):
    now = timezone.now()
    small = _task(alice, at=now - timedelta(days=2), text="small")
    big = _task(bob, at=now - timedelta(days=3), text="big")
    for _ in range(3):
        _task(alice, at=now - timedelta(days=1), action="vary", root=big)
    middle = _task(alice, at=now - timedelta(days=45), text="old root, recent children")
    _task(alice, at=now - timedelta(days=1), action="upscale", root=middle)
    _task(alice, at=now - timedelta(days=1), action="pan", root=middle)
    _task(alice, at=now - timedelta(days=40), action="vary", root=middle)  # outside the window
    _task(charlie, at=now - timedelta(days=1), credits=400, text="theirs")

    lineages = usage.usage_summarize(team=alice.memberships.first().team).lineages

    assert [(line.root, line.tasks, line.credits) for line in lineages] == [(big, 4, 16), (middle, 2, 8), (small, 1, 4)]
    assert lineages[0].root.prompt.text == "big"
    assert lineages[0].root.created_by == bob


def test_it_shows_the_ten_most_expensive_lineages_only(alice):
    now = timezone.now()
    roots = [_task(alice, at=now - timedelta(hours=1), credits=10 + i) for i in range(12)]

    lineages = usage.usage_summarize(team=alice.memberships.first().team).lineages

    assert [line.root for line in lineages] == roots[::-1][:10]


def test_it_lists_every_member_and_those_who_left_since(alice, bob, team, django_user_model):
    dave = django_user_model.objects.create_user(username="dave", password="pw")
    join(team, dave)
    _task(dave, at=timezone.now() - timedelta(days=3))
    Membership.objects.filter(user=dave).delete()

    summary = usage.usage_summarize(team=team)

    assert [(m.name, m.is_member) for m in summary.members] == [("alice", True), ("bob", True), ("dave", False)]
    assert summary.member_totals[dave.pk].tasks == 1


# --- Settled days: counted once, cached ----------------------------------------------------------------------------


def _summary_queries(team, now) -> tuple[usage.TeamUsage, int]:
    with CaptureQueriesContext(connection) as queries:
        summary = usage.usage_summarize(team=team, now=now)
    return summary, len(queries)


def test_it_counts_settled_days_once_and_the_recent_ones_on_every_view(paris, alice, team):
    _task(alice, at=NOW - timedelta(days=3))
    _task(alice, at=NOW - timedelta(hours=2))

    first, cold = _summary_queries(team, NOW)
    _task(alice, at=NOW - timedelta(hours=1), credits=9)  # sent since: counted at once
    second, warm = _summary_queries(team, NOW)

    # the settled days' three GROUP BYs only when they are not in the cache (the third: their waits in the fair
    # queue, like the recent days' on every view)
    assert (cold, warm) == (9, 6)
    assert (first.total.tasks, first.total.credits) == (2, 8)
    assert (second.total.tasks, second.total.credits) == (3, 17)
    assert second.by_member[(date(2026, 11, 10), alice.pk)].tasks == 2


def test_yesterday_is_recounted_until_eight_hours_after_it_ended(paris, alice, team):
    late_evening = datetime(2026, 11, 9, 22, 0, tzinfo=UTC)  # 23:00 in Paris, on the 9th
    task = _task(alice, at=late_evening, status="timed_out")
    seven_am, nine_am = datetime(2026, 11, 10, 6, 0, tzinfo=UTC), datetime(2026, 11, 10, 8, 0, tzinfo=UTC)

    usage.usage_summarize(team=team, now=seven_am)
    Task.objects.filter(pk=task.pk).update(status="finished", credits=4)  # the late result lands
    at_seven = usage.usage_summarize(team=team, now=seven_am)
    at_nine = usage.usage_summarize(team=team, now=nine_am)

    assert at_seven.by_member[(date(2026, 11, 9), alice.pk)].credits == 4  # still recounted
    assert at_nine.by_member[(date(2026, 11, 9), alice.pk)].credits == 4  # settled, counted with the late result
    assert usage._settled_days(usage.usage_days(now=seven_am)[1], seven_am) == 28
    assert usage._settled_days(usage.usage_days(now=nine_am)[1], nine_am) == 29


def test_it_ranks_lineages_exactly_across_settled_and_recent_days(paris, alice, bob, team):
    rng = random.Random(5)
    roots = [_task(rng.choice([alice, bob]), at=NOW - timedelta(days=rng.randint(2, 29)), credits=0) for _ in range(25)]
    for _ in range(120):
        root = rng.choice(roots)
        _task(alice, at=NOW - timedelta(days=rng.randint(2, 29)), action="vary", root=root, credits=rng.randint(0, 6))
    usage.usage_summarize(team=team, now=NOW)  # the settled days cached, as an hour's earlier views leave them
    for _ in range(30):  # today, some lineages pull ahead
        root = rng.choice(roots)
        _task(bob, at=NOW - timedelta(hours=1), action="upscale", root=root, credits=rng.randint(0, 9))

    lineages = usage.usage_summarize(team=team, now=NOW).lineages

    window = Task.objects.filter(team=team, created_at__gte=usage.usage_days(now=NOW)[1][0])
    spent = {}
    for task in window:
        tasks, credits = spent.get(task.root_id, (0, 0))
        spent[task.root_id] = (tasks + 1, credits + task.credits)
    expected = sorted(spent.items(), key=lambda item: (item[1][1], item[1][0], item[0]), reverse=True)[:10]
    assert [(line.root.pk, (line.tasks, line.credits)) for line in lineages] == expected


# --- The page and its charts -----------------------------------------------------------------------------------


def test_it_draws_a_bar_per_day_stacked_by_member(alice_client, alice, bob):
    today, now = timezone.localdate(), timezone.now()
    for _ in range(3):
        _task(alice, at=now)
    _task(bob, at=now, status="failed")
    _task(bob, at=now - timedelta(days=2), action="upscale")

    response = alice_client.get("/usage/")

    assert response.status_code == 200
    svg = _svgs(response.content.decode())["chart-members"]
    bars = _bars(svg)
    two_days_ago = (today - timedelta(days=2)).isoformat()
    assert list(bars) == [two_days_ago, today.isoformat()]  # the days with tasks, and no others
    assert _axis_top(svg) == 4  # 4 tasks on the busiest day: the axis ends there
    assert bars[today.isoformat()] == [("alice", 3, PLOT_HEIGHT * 3 / 4), ("bob", 1, PLOT_HEIGHT * 1 / 4)]
    assert bars[two_days_ago] == [("bob", 1, PLOT_HEIGHT / 4)]
    slot = (charts.WIDTH - charts.LEFT - charts.RIGHT) / 30  # today's is the 30th slot, two days before the 28th
    assert _bar_x(svg, today.isoformat()) - _bar_x(svg, two_days_ago) == pytest.approx(2 * slot, abs=0.02)
    assert _bar_x(svg, today.isoformat()) == pytest.approx(
        charts.LEFT + 29.5 * slot - slot * charts.BAR_FILL / 2, abs=0.01
    )
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert f"alice · {today:%a %b} {today.day}: 3 tasks" in titles
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}desc").text.startswith("5 tasks in 30 days: alice 3, bob 2.")


def test_it_draws_credits_when_asked(alice_client, alice, bob):
    now = timezone.now()
    _task(alice, at=now, credits=8)
    _task(bob, at=now, status="failed")  # sent, but cost nothing
    _task(alice, at=now, action="upscale", credits=2)

    response = alice_client.get("/usage/?metric=credits")

    charts_ = _svgs(response.content.decode())
    day = timezone.localdate().isoformat()
    assert _axis_top(charts_["chart-members"]) == 12
    assert _bars(charts_["chart-members"])[day] == [("alice", 10, round(PLOT_HEIGHT * 10 / 12, 1))]
    assert _bars(charts_["chart-actions"])[day] == [
        ("Imagine", 8, round(PLOT_HEIGHT * 8 / 12, 1)),
        ("Upscale", 2, round(PLOT_HEIGHT * 2 / 12, 1)),
    ]
    assert 'href="?metric=credits" aria-current="page"' in response.content.decode()


def test_it_draws_a_bar_per_day_stacked_by_action(alice_client, alice):
    now = timezone.now()
    _task(alice, at=now, action="vary")
    _task(alice, at=now, action="imagine")
    _task(alice, at=now, action="vary", status="timed_out")

    response = alice_client.get("/usage/")

    bars = _bars(_svgs(response.content.decode())["chart-actions"])
    assert bars[timezone.localdate().isoformat()] == [("Imagine", 1, PLOT_HEIGHT / 4), ("Vary", 2, PLOT_HEIGHT / 2)]


def test_it_keeps_each_members_colour_whatever_the_metric(alice_client, alice, bob):
    _task(bob, at=timezone.now(), credits=4)

    colours = set()
    for metric in ("tasks", "credits"):
        svg = _svgs(alice_client.get(f"/usage/?metric={metric}").content.decode())["chart-members"]
        colours |= {rect.get("fill") for rect in svg.iter(f"{SVG}rect")}

    assert colours == {charts.PALETTE[1]}  # bob joined second: the second colour, even with alice absent


def test_it_treats_an_unknown_metric_as_tasks(alice_client, alice):
    _task(alice, at=timezone.now(), credits=30)

    response = alice_client.get("/usage/?metric=<script>")

    assert response.status_code == 200
    assert _axis_top(_svgs(response.content.decode())["chart-members"]) == 4
    assert "&lt;script&gt;" not in response.content.decode()


def test_it_shows_totals_tables_and_lineages_with_links(alice_client, alice, bob):
    now = timezone.now()
    root = _task(bob, at=now - timedelta(days=1), text="a lighthouse & the fog")
    _task(alice, at=now, action="upscale", root=root)
    _task(alice, at=now, status="failed")

    html = alice_client.get("/usage/").content.decode()

    members = re.search(r'<table class="totals" id="member-totals">.*?</table>', html, re.S).group(0)
    assert re.search(r"<th scope=\"row\">alice</th><td>2</td><td>1</td><td>1</td><td>4</td>", members)
    assert re.search(r"<th scope=\"row\">bob</th><td>1</td><td>1</td><td>0</td><td>4</td>", members)
    assert re.search(r"<th scope=\"row\">Team</th><td>3</td><td>2</td><td>1</td><td>8</td>", members)
    lineages = re.search(r'id="top-lineages">.*?</table>', html, re.S).group(0)
    assert f'href="/tasks/{root.pk}/"' in lineages
    assert "a lighthouse &amp; the fog" in lineages
    assert re.search(r"bob · <time[^>]*>[^<]+</time></span></th>\s*<td>2</td>\s*<td>8</td>", lineages)
    assert 'id="total-credits">8<' in html


def test_it_shows_an_empty_team_plainly(alice_client, alice):
    response = alice_client.get("/usage/")

    assert response.status_code == 200
    svg = _svgs(response.content.decode())["chart-members"]
    assert not list(svg.iter(f"{SVG}rect"))
    assert "No tasks in the last 30 days." in response.content.decode()


def test_it_links_the_page_from_the_header(alice_client, alice):
    html = alice_client.get("/").content.decode()

    assert '<a href="/usage/">Usage</a>' in html
    assert '<a href="/usage/" aria-current="page">Usage</a>' in alice_client.get("/usage/").content.decode()


def test_the_scale_reaches_the_busiest_day_in_round_steps():
    assert [charts.nice_scale(n) for n in (0, 1, 3, 4, 5, 7, 9, 40, 41, 99, 1234)] == [
        4, 4, 4, 4, 8, 8, 12, 40, 60, 100, 1600,
    ]  # fmt: skip


# --- The Apiframe account ----------------------------------------------------------------------------------------


def test_it_shows_the_accounts_credits_and_asks_apiframe_once_a_minute(alice_client, studio_upstream):
    first = alice_client.get("/usage/")
    second = alice_client.get("/usage/?metric=credits")

    assert first.status_code == second.status_code == 200
    assert studio_upstream.engine.request_counts["/account"] == 1
    left = studio_upstream.engine.account()["credits"]
    assert f'id="account-credits">{left:,}<' in second.content.decode()
    cache.delete(usage.ACCOUNT_CACHE_KEY)  # what a minute does
    alice_client.get("/usage/")
    assert studio_upstream.engine.request_counts["/account"] == 2


def test_it_says_unknown_when_apiframe_is_down(alice_client, alice):
    response = alice_client.get("/usage/")

    assert response.status_code == 200
    assert "unknown <span>(Apiframe did not answer)</span>" in response.content.decode()


def test_it_waits_briefly_for_a_silent_apiframe_and_remembers_it_failed(alice_client, silent_apiframe, monkeypatch):
    monkeypatch.setattr(usage, "ACCOUNT_TIMEOUT_SECONDS", 0.5)

    started = time.monotonic()
    first = alice_client.get("/usage/")
    waited = time.monotonic() - started
    second = alice_client.get("/usage/")

    assert first.status_code == second.status_code == 200
    assert "Apiframe did not answer" in second.content.decode()
    assert waited < 3  # one try, half a second's wait; never the client's usual 20 s and four tries
    assert len(silent_apiframe) == 1  # the failure was cached: the second view did not ask


def test_it_says_when_apiframe_refuses_the_key(alice_client, studio_upstream, settings):
    settings.APIFRAME_API_KEY = "not-the-key"

    response = alice_client.get("/usage/")

    assert response.status_code == 200
    assert "unknown <span>(Apiframe refused the API key)</span>" in response.content.decode()


def test_it_says_when_no_api_key_is_set(alice_client, settings):
    settings.APIFRAME_API_KEY = ""

    response = alice_client.get("/usage/")

    assert response.status_code == 200
    assert "unknown <span>(no usable APIFRAME_API_KEY is set)</span>" in response.content.decode()


# --- Cost ----------------------------------------------------------------------------------------------------------


def _seed(users, *, lineages: int, children: int) -> None:
    now = timezone.now()
    for i in range(lineages):
        user = users[i % len(users)]
        root = _task(user, at=now - timedelta(days=i % 30, hours=1))
        for j in range(children):
            _task(users[j % len(users)], at=now - timedelta(days=i % 30), action="vary", root=root)


def _queries(client) -> tuple[int, int]:
    """Queries of a page view with nothing cached, then of the next one."""
    cache.clear()
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/usage/").status_code == 200
        counts.append(len(queries))
    return counts[0], counts[1]


def test_it_makes_the_same_number_of_queries_however_many_tasks(alice_client, alice, bob, team, django_user_model):
    _seed([alice], lineages=2, children=1)
    alice_client.get("/usage/")  # the session's team settles on the first view
    small = _queries(alice_client)

    carol = django_user_model.objects.create_user(username="carol", password="pw")
    join(team, carol)
    _seed([alice, bob, carol], lineages=40, children=3)
    large = _queries(alice_client)

    assert small == large
    assert small[0] == small[1] + 3  # the settled days' three queries (counts, lineages, waits), once an hour


# --- Isolation: every method, every actor ------------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@pytest.mark.parametrize("method", METHODS)
def test_it_sends_anonymous_visitors_to_log_in(client, db, method):
    response = getattr(client, method)("/usage/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/usage/"


@pytest.mark.parametrize("actor", ["alice", "charlie"])
@pytest.mark.parametrize("method", [m for m in METHODS if m != "get"])
def test_it_answers_only_get(client, request, method, actor):
    client.force_login(request.getfixturevalue(actor))

    response = getattr(client, method)("/usage/")

    assert response.status_code == 405
    assert response["Allow"] == "GET"


@pytest.mark.parametrize("actor", ["alice", "charlie"])
def test_each_team_sees_its_own_numbers_only(client, request, alice, charlie, actor):
    now = timezone.now()
    _task(alice, at=now, credits=7, text="alice's harbour")
    _task(charlie, at=now, credits=30, text="charlie's canyon")
    _task(charlie, at=now, credits=30, text="charlie's canyon again")
    client.force_login(request.getfixturevalue(actor))

    html = client.get("/usage/").content.decode()

    mine, theirs = ("alice", "charlie") if actor == "alice" else ("charlie", "alice")
    assert f"{mine}&#x27;s" in html
    assert f"{theirs}&#x27;s" not in html
    assert f">{theirs}<" not in html
    expected = {"alice": (1, 7), "charlie": (2, 60)}[actor]
    assert f'id="total-tasks">{expected[0]}<' in html
    assert f'id="total-credits">{expected[1]}<' in html


def test_a_session_pointing_at_another_team_shows_the_users_own(alice_client, alice, charlie):
    _task(charlie, at=timezone.now(), credits=30, text="charlie's canyon")
    session = alice_client.session
    session["team_id"] = charlie.memberships.first().team_id
    session.save()

    html = alice_client.get("/usage/").content.decode()

    assert "canyon" not in html
    assert 'id="total-credits">0<' in html


def test_a_member_of_two_teams_sees_the_team_they_work_in(alice_client, alice, charlie):
    Membership.objects.create(team=charlie.memberships.first().team, user=alice)
    _task(charlie, at=timezone.now(), credits=30)
    _task(alice, at=timezone.now(), credits=5)

    before = alice_client.get("/usage/").content.decode()
    alice_client.post("/team/", {"team": charlie.memberships.first().team_id})
    after = alice_client.get("/usage/").content.decode()

    assert 'id="total-credits">5<' in before
    assert 'id="total-credits">30<' in after


# --- In a real browser ----------------------------------------------------------------------------------------------

PROMPTS = (
    "a lighthouse in fog at dawn, film grain",
    "isometric coffee shop, warm tones",
    "portrait of an astronaut in a sunflower field",
    "brutalist library interior, soft light",
    "paper-cut fox in a snowy forest",
)


def _a_busy_month(users, rng: random.Random) -> None:
    now = timezone.now()
    for days_ago in range(30):
        for user in users:
            for _ in range(rng.choice((0, 0, 1, 2, 3, 5))):
                at = now - timedelta(days=days_ago, minutes=rng.randint(0, 600))
                root = _task(user, at=at, text=rng.choice(PROMPTS), status=rng.choice(("finished",) * 5 + ("failed",)))
                for action in rng.sample(("vary", "upscale", "pan", "zoom", "reroll"), rng.randint(0, 3)):
                    _task(rng.choice(users), at=min(now, at + timedelta(minutes=5)), action=action, root=root)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("width", "name"), [(1280, "desktop"), (390, "phone")])
def test_the_page_fits_a_desktop_and_a_phone(live_server, studio_upstream, chromium, artifacts, team, width, name):
    from django.contrib.auth import get_user_model

    users = []
    for username in ("alice", "bob", "carol", "dan"):
        user = get_user_model().objects.create_user(username, password="a-long-test-password")
        join(team, user)
        users.append(user)
    _a_busy_month(users, random.Random(3))
    context = chromium.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        page.goto(f"{live_server.url}/accounts/login/?next=/usage/")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("a-long-test-password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live_server.url}/usage/")

        charts_ = page.locator("svg.chart")
        assert charts_.count() == 2
        box = charts_.first.bounding_box()
        assert box["width"] >= 450 and box["height"] >= 190  # drawn at a readable size, scrolled on a phone
        assert page.locator("svg.chart rect").count() > 60
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= width  # the page itself never scrolls sideways
        page.screenshot(path=artifacts / f"usage-{name}.png", full_page=True)
        page.get_by_text("The numbers, day by day").first.click()  # the chart's table, for those who cannot see it
        table = page.locator(".usage__table table").first
        assert table.is_visible()
        assert table.locator("tbody tr").count() == 30
        page.get_by_role("link", name="Credits").click()
        page.wait_for_url(f"{live_server.url}/usage/?metric=credits")
        page.screenshot(path=artifacts / f"usage-{name}-credits.png", full_page=True)
        assert errors == []
    finally:
        context.close()
