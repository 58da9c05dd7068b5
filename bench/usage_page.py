"""The usage page at 100,000 tasks: seeds a throwaway database (bulk_create) and prints the page's median server
time and its query count.

    .venv/bin/python bench/usage_page.py                 # 100,000 tasks of one team, all in the last 30 days
    .venv/bin/python bench/usage_page.py --days 365      # the same tasks spread over a year (about 8,200 counted)
    DATABASE_URL=postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_bench .venv/bin/python bench/usage_page.py

The database is Django's test database for DATABASE_URL (SQLite: a temporary file; PostgreSQL: test_<name>),
created, migrated and dropped by the run. Server time is a whole request through Django's test client: middleware,
session, queries, charts and template. The Apiframe account's credits are put in the cache first, as a view within
a minute of another one finds them; the settled days are cached by the first view, as they are for an hour in use.
The first view in an hour, which counts the settled days too, is measured on its own.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = ("ana", "ben", "chloe", "dev", "eli")
CHILD_ACTIONS = ("vary", "upscale", "pan", "zoom", "reroll")
BATCH = 5_000


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed(*, tasks: int, days: int, seed: int) -> tuple:
    """One team of five sending `tasks` tasks over `days` days, in lineages of one to nine tasks; another team's
    tasks (a tenth as many) that must not count."""
    from django.contrib.auth import get_user_model
    from django.db.models import F
    from django.utils import timezone

    from generations.models import Membership, Prompt, Task, Team

    rng = random.Random(seed)
    now = timezone.now()
    team, other = Team.objects.create(name="Bench Agency"), Team.objects.create(name="Other Studio")
    users = [get_user_model().objects.create_user(username=name, password="bench-pw") for name in MEMBERS]
    outsider = get_user_model().objects.create_user(username="zed", password="bench-pw")
    memberships = [Membership(team=team, user=u) for u in users] + [Membership(team=other, user=outsider)]
    Membership.objects.bulk_create(memberships)
    statuses = ["finished"] * 16 + ["failed", "timed_out", "pending", "processing"]

    def plan(count: int, owner: Team, people: list) -> Iterator[tuple[Team, list, datetime]]:
        made = 0
        while made < count:
            size = min(rng.randint(1, 9), count - made)  # a root and what was made from it
            made += size
            at = now - timedelta(seconds=rng.uniform(0, days * 86400))
            yield owner, [rng.choice(people) for _ in range(size)], at

    lineages = list(plan(tasks, team, users)) + list(plan(tasks // 10, other, [outsider]))
    for start in range(0, len(lineages), BATCH):
        chunk = lineages[start : start + BATCH]
        prompts = Prompt.objects.bulk_create(
            Prompt(team=owner, author=people[0], text=f"bench prompt {start + i}", created_at=at)
            for i, (owner, people, at) in enumerate(chunk)
        )
        roots = Task.objects.bulk_create(
            _task(owner, prompt, people[0], "imagine", at, rng, statuses)
            for prompt, (owner, people, at) in zip(prompts, chunk, strict=True)
        )
        Task.objects.filter(pk__in=[r.pk for r in roots]).update(root=F("pk"))
        children = []
        for root, (owner, people, at) in zip(roots, chunk, strict=True):
            for k, person in enumerate(people[1:], start=1):
                child_at = min(now, at + timedelta(minutes=3 * k))
                child = _task(owner, root.prompt, person, rng.choice(CHILD_ACTIONS), child_at, rng, statuses)
                child.parent, child.root, child.parent_index = root, root, rng.randint(1, 4)
                children.append(child)
        Task.objects.bulk_create(children, batch_size=BATCH)
    return team, users[0]


def _task(team, prompt, user, action, at, rng, statuses):
    from django.conf import settings

    from generations.models import Task

    status = rng.choice(statuses)
    credits = settings.MJSTUDIO_CREDIT_PRICES[action] if status == "finished" else 0
    return Task(
        team=team,
        prompt=prompt,
        created_by=user,
        action=action,
        status=status,
        credits=credits,
        created_at=at,
        updated_at=at,
        deadline=at + timedelta(minutes=5),
        dispatched_at=at + timedelta(seconds=rng.uniform(0, 120)),  # its wait in the fair queue (median waits)
    )


def _timed(client, urls: list[str], requests: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of `requests` page views, cycling through `urls`."""
    for url in urls:  # the session's team, connections, templates: settled before measuring
        assert client.get(url).status_code == 200
    wall, cpu = [], []
    for i in range(requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.get(urls[i % len(urls)])
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        assert response.status_code == 200
    return wall, cpu


def measure(*, team, user, requests: int) -> dict:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from generations.models import Task
    from generations.services import usage

    cache.set(usage.ACCOUNT_CACHE_KEY, usage.AccountCredits(credits=1234, checked_at=timezone.now()), 3600)
    client = Client()
    client.force_login(user)
    wall, cpu = _timed(client, ["/usage/", "/usage/?metric=credits"], requests)
    cold = []  # the first view in an hour: the settled days are counted too (then cached)
    for _ in range(5):
        cache.clear()
        cache.set(usage.ACCOUNT_CACHE_KEY, usage.AccountCredits(credits=1234, checked_at=timezone.now()), 3600)
        started = time.perf_counter()
        assert client.get("/usage/").status_code == 200
        cold.append((time.perf_counter() - started) * 1000)
    # For scale on a shared machine: the studio page, which reads 24 cards through an index, on the same data.
    studio_wall, studio_cpu = _timed(client, ["/"], requests)
    service = []  # the settled days are in the cache again after the cold views
    for _ in range(requests):
        started = time.perf_counter()
        usage.usage_summarize(team=team)
        service.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get("/usage/")
    _, midnights = usage.usage_days()
    return {
        "median_ms": statistics.median(wall),
        "p95_ms": sorted(wall)[int(0.95 * (len(wall) - 1))],
        "cpu_median_ms": statistics.median(cpu),
        "cold_median_ms": statistics.median(cold),
        "studio_median_ms": statistics.median(studio_wall),
        "studio_cpu_median_ms": statistics.median(studio_cpu),
        "service_median_ms": statistics.median(service),
        "queries": len(queries),
        "counted": Task.objects.filter(team=team, created_at__gte=midnights[0]).count(),
        "sql": [q["sql"] for q in queries.captured_queries],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="the measured team's tasks (default 100,000)")
    parser.add_argument("--days", type=int, default=30, help="spread over this many days back (default 30)")
    parser.add_argument("--requests", type=int, default=30, help="page views measured (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sql", action="store_true", help="print the page's queries")
    args = parser.parse_args()

    _setup()
    from django.conf import settings
    from django.db import connection

    # As in production: DEBUG off (no query log). Not setup_test_environment(): its template instrumentation
    # copies every template's context for the test client, which is no part of serving a page.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]

    from generations.models import Task

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        team, user = seed(tasks=args.tasks, days=args.days, seed=args.seed)
        seeded = time.perf_counter() - started
        if connection.vendor == "postgresql":  # as autovacuum would have, long before (SQLite: Django never does)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE generations_task")
        result = measure(team=team, user=user, requests=args.requests)
        total = Task.objects.count()
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)

    print(f"database: {connection.vendor}; {total:,} tasks seeded in {seeded:.0f} s")
    print(f"the team's tasks in the last 30 days: {result['counted']:,} ({args.tasks:,} over {args.days} days)")
    print(
        f"/usage/: median {result['median_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms over {args.requests} views; "
        f"the numbers alone (usage_summarize): median {result['service_median_ms']:.1f} ms"
    )
    print(f"queries per view: {result['queries']}; the first view in an hour: median {result['cold_median_ms']:.1f} ms")
    print(f"CPU time per view (SQLite's share included): median {result['cpu_median_ms']:.1f} ms")
    print(
        f"for scale, the studio page on the same data: median {result['studio_median_ms']:.1f} ms, "
        f"CPU {result['studio_cpu_median_ms']:.1f} ms"
    )
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.sql:
        print("\n".join(result["sql"]))


if __name__ == "__main__":
    main()
