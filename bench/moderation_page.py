"""The owners' moderation page at 100,000 tasks: seeds a throwaway database (the usage bench's team of five, four
images per finished task), flags and hides a few hundred of its images and tasks, and prints the page's median
server time, its query count and how the database finds the page's rows.

    .venv/bin/python bench/moderation_page.py
    DATABASE_URL=postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_bench .venv/bin/python bench/moderation_page.py

The database is Django's test database for DATABASE_URL (SQLite: a temporary file; PostgreSQL: test_<name>),
created, migrated and dropped by the run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from usage_page import _setup, _timed, seed  # the same team, seeded the same way

BATCH = 5_000


def moderate(*, team, rng: random.Random, flagged: int, hidden: int) -> None:
    """Four images per finished task; `flagged` images and tasks flagged by one to three members, `hidden` hidden."""
    from django.utils import timezone

    from generations.models import Flag, Image, Membership, Task

    finished = list(Task.objects.filter(team=team, status="finished").values_list("pk", "created_at"))
    for start in range(0, len(finished), BATCH):
        Image.objects.bulk_create(
            Image(
                task_id=pk,
                index=index,
                source_url=f"https://cdn.apiframe.pro/{pk}-{index}.png",
                thumbnail=f"thumbs/{pk}-{index}.webp",
                width=1024,
                height=1024,
                mirrored_at=at,
            )
            for pk, at in finished[start : start + BATCH]
            for index in range(1, 5)
        )
    members = [m.user for m in Membership.objects.filter(team=team).select_related("user")]
    images = rng.sample(list(Image.objects.filter(task__team=team).values_list("pk", flat=True)), flagged + hidden)
    tasks = rng.sample([pk for pk, _ in finished], flagged + hidden)
    now = timezone.now()
    flags = []
    for n, (image, task) in enumerate(zip(images[:flagged], tasks[:flagged], strict=True)):
        at = now - timedelta(minutes=n)
        for person in rng.sample(members, rng.randint(1, 3)):
            flags.append(
                Flag(team=team, image_id=image, reason="violence", note="bench", created_by=person, created_at=at)
            )
            flags.append(Flag(team=team, task_id=task, reason="off_brief", created_by=person, created_at=at))
        Image.objects.filter(pk=image).update(flagged_at=at)
        Task.objects.filter(pk=task).update(flagged_at=at)
    Flag.objects.bulk_create(flags)
    owner = members[0]
    Image.objects.filter(pk__in=images[flagged:]).update(hidden_at=now, hidden_by=owner, hidden_reason="bench")
    Task.objects.filter(pk__in=tasks[flagged:]).update(hidden_at=now, hidden_by=owner, hidden_reason="bench")


def plans(team) -> list[str]:
    """How the database finds a page of the queue and of the hidden tab."""
    from django.db import connection

    from generations.views.moderation import FLAGGED, HIDDEN, QUEUE_PAGE_SIZE, _queue_rows

    lines = []
    for show in (FLAGGED, HIDDEN):
        sql, params = _queue_rows(team, show=show)[:QUEUE_PAGE_SIZE].query.sql_with_params()
        explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        with connection.cursor() as cursor:
            cursor.execute(explain + sql, params)
            lines += [f"{show}: {' '.join(str(c) for c in row)}" for row in cursor.fetchall()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="the team's tasks (default 100,000)")
    parser.add_argument("--flagged", type=int, default=300, help="images and tasks flagged, each (default 300)")
    parser.add_argument("--hidden", type=int, default=200, help="images and tasks hidden, each (default 200)")
    parser.add_argument("--requests", type=int, default=30, help="page views measured (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    _setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from generations.models import Image, Membership, Task

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        team, owner = seed(tasks=args.tasks, days=30, seed=args.seed)
        Membership.objects.filter(team=team, user=owner).update(role=Membership.Role.OWNER)
        moderate(team=team, rng=random.Random(args.seed), flagged=args.flagged, hidden=args.hidden)
        seeded = time.perf_counter() - started
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        client = Client()
        client.force_login(owner)
        urls = ["/moderation/", "/moderation/?page=7", "/moderation/?show=hidden"]
        wall, cpu = _timed(client, urls, args.requests)
        with CaptureQueriesContext(connection) as queries:
            client.get("/moderation/")
        print(f"database: {connection.vendor}; seeded in {seeded:.0f} s")
        print(f"tasks: {Task.objects.count():,}; images: {Image.objects.count():,}")
        print(f"flagged: {args.flagged} images + {args.flagged} tasks; hidden: {args.hidden} + {args.hidden}")
        print(f"moderation page ({', '.join(urls)}): median {statistics.median(wall):.1f} ms wall, ", end="")
        print(f"{statistics.median(cpu):.1f} ms CPU, p95 {sorted(wall)[int(0.95 * (len(wall) - 1))]:.1f} ms")
        print(f"queries per page: {len(queries)}")
        print(*plans(team), sep="\n")
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
