"""The admin's lists at 100,000 tasks: seed bench/library.py's library (about 380,000 images), plus a webhook
log of one delivery per task, 20,000 audit rows, 2,000 flags and some hidden items, then time each changelist
as a superuser through Django's test client.

Prints, per list and query (filters, search), the median server time (wall and CPU) and the query count; then
what the choices left out would have cost: date_hierarchy's date lists, and an icontains scan for the prompt
search that the admin answers from the library's index instead.

Usage: .venv/bin/python bench/admin_lists.py [--tasks 100000] [--db PATH | --database-url URL] [--runs 15]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from library import MAIN_TEAM, _queries, _timed, seed_library

from bench.stack import seeded_database_arguments, seeded_database_setup

BATCH = 5_000


def seed_operations(*, seed: int = 11) -> None:
    """The admin's own rows on top of the library: deliveries, audit rows, flags, hidden and overdue items."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from generations.models import AuditEntry, Flag, Image, Task, WebhookDelivery

    rng = random.Random(seed)
    User = get_user_model()
    admin = User.objects.create_superuser("ada", "ada@example.com", "mjstudio-bench")
    tasks = list(Task.objects.values_list("pk", "apiframe_task_id", "team_id", "finished_at", "created_by_id"))
    deliveries = [
        WebhookDelivery(
            received_at=(finished or timezone.now()) - timedelta(seconds=1),
            apiframe_task_id=upstream,
            task_id=pk,
            reported_status="finished",
            outcome="applied",
            body={"task_id": upstream, "status": "finished", "percentage": "100"},
        )
        for pk, upstream, _, finished, _ in tasks
    ]
    for start in range(0, len(deliveries), BATCH):
        WebhookDelivery.objects.bulk_create(deliveries[start : start + BATCH])
    acts = [a for a in AuditEntry.Act.values]
    now = timezone.now()
    audit = [
        AuditEntry(
            created_at=now - timedelta(minutes=25 * i),
            actor=admin,
            actor_name="ada",
            team_id=rng.choice(tasks)[2],
            act=rng.choice(acts),
            target_type="task",
            target_id=rng.choice(tasks)[0],
            target_repr=f"#{i} Imagine",
            reason=rng.choice(("gore", "spam", "off brief", "a mistake", "")),
        )
        for i in range(20_000)
    ]
    AuditEntry.objects.bulk_create(audit, batch_size=BATCH)
    images = list(Image.objects.order_by("?").values_list("pk", "task__team_id", "task__created_by_id")[:2_000])
    with transaction.atomic():
        Flag.objects.bulk_create(
            Flag(team_id=team, image_id=pk, reason="violence", created_by_id=user) for pk, team, user in images
        )
        Image.objects.filter(pk__in=[pk for pk, _, _ in images[:1_500]]).update(flagged_at=now)
        Image.objects.filter(pk__in=[pk for pk, _, _ in images[1_500:]]).update(hidden_at=now, hidden_reason="gore")
        Task.objects.filter(pk__in=[pk for pk, *_ in tasks[:: len(tasks) // 50]]).update(hidden_at=now)
        # Work stuck in flight: the poller was down for a while.
        overdue = [pk for pk, *_ in tasks[-200::10]]
        Task.objects.filter(pk__in=overdue).update(status="processing", deadline=now - timedelta(minutes=5))


LISTS = [
    ("task", ""),
    ("task", "?moderation=flagged"),
    ("task", "?moderation=hidden"),
    ("task", "?status__exact=failed"),
    ("task", "?action__exact=pan&team__id__exact=1"),
    ("task", "?created_by__id__exact=3"),
    ("task", "?created_at__gte={week}"),
    ("task", "?q=bench-4242"),
    ("task", "?q=lighthouse+fog"),
    ("task", "?p=150"),  # the last pages within the count cap
    ("image", ""),
    ("image", "?moderation=flagged"),
    ("image", "?moderation=hidden"),
    ("image", "?review_state__exact=approved"),
    ("image", "?mirror=gave_up"),
    ("image", "?q=lighthouse+fog"),
    ("stucktask", ""),
    ("prompt", ""),
    ("prompt", "?q=lighthouse+fog"),
    ("webhookdelivery", ""),
    ("webhookdelivery", "?q=bench-4242"),
    ("webhookdelivery", "?outcome__exact=unknown_task"),
    ("flag", ""),
    ("flag", "?open=yes"),
    ("auditentry", ""),
    ("auditentry", "?act__exact=hide"),
    ("auditentry", "?q=spam"),
]


def measure(*, runs: int) -> list[tuple[str, str, str, str, str]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="ada"))
    week = (timezone.now() - timedelta(days=7)).isoformat().replace("+", "%2B")
    rows = []
    for model, query in LISTS:
        url = f"/admin/generations/{model}/{query.format(week=week)}"

        def get(url: str = url) -> object:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        wall, cpu, response = _timed(get, runs)
        table = response.content.partition(b'id="result_list"')[2].partition(b"</table>")[0]
        shown = max(table.count(b"<tr") - 1, 0)  # less the header row
        rows.append(
            (
                f"{model}/{query.format(week='<a week ago>')}",
                f"{wall:.1f}",
                f"{cpu:.1f}",
                str(_queries(get)),
                str(shown),
            )
        )
    return rows


def measure_left_out(*, runs: int) -> list[tuple[str, str]]:
    """What the admin does not run: date_hierarchy's date lists, full counts, a LIKE scan for prompt words."""
    from generations.models import Image, Task

    def ms(call) -> str:
        wall, _, _ = _timed(call, runs)
        return f"{wall:.1f}"

    return [
        ("date_hierarchy years (tasks)", ms(lambda: list(Task.objects.dates("created_at", "year")))),
        (
            "date_hierarchy months of a year (tasks)",
            ms(lambda: list(Task.objects.filter(created_at__year=2026).dates("created_at", "month"))),
        ),
        ("date_hierarchy years (images, via task)", ms(lambda: list(Image.objects.dates("task__created_at", "year")))),
        ("full count (tasks)", ms(lambda: Task.objects.count())),
        ("full count (images)", ms(lambda: Image.objects.count())),
        (
            "prompt icontains scan, 100 newest tasks",
            ms(lambda: list(Task.objects.filter(prompt__text__icontains="lighthouse in fog").order_by("-pk")[:100])),
        ),
        (
            "prompt icontains scan, rare word, 100 tasks",
            ms(lambda: list(Task.objects.filter(prompt__text__icontains="zzqx").order_by("-pk")[:100])),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    seeded_database_arguments(parser)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    db, tmp = seeded_database_setup(args, prefix="mjstudio-admin-")
    from django.core.management import call_command
    from django.db import connection

    from generations.models import Image, Task, WebhookDelivery

    call_command("migrate", verbosity=0)
    if Task.objects.exists():
        print(f"reusing {db}")
    else:
        started = time.monotonic()
        seed_library(tasks=args.tasks)
        seed_operations()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        print(f"seeded {db} in {time.monotonic() - started:.0f} s")
    print(
        f"{Task.objects.count():,} tasks, {Image.objects.count():,} images, "
        f"{WebhookDelivery.objects.count():,} deliveries in {MAIN_TEAM} and one other team"
    )
    vendor = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(connection.vendor, connection.vendor)
    print(f"\n{vendor}, median of {args.runs} runs, as a superuser through the test client (50 rows a page)")
    print(f"{'list':<52} {'wall ms':>8} {'CPU ms':>7} {'queries':>8} {'rows':>5}")
    for what, wall, cpu, queries, shown in measure(runs=args.runs):
        print(f"{what:<52} {wall:>8} {cpu:>7} {queries:>8} {shown:>5}")
    print("\nleft out of the admin (wall ms):")
    for what, wall in measure_left_out(runs=max(3, args.runs // 3)):
        print(f"  {what:<50} {wall:>8}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
