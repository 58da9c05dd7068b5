"""The fair queue: three members send 40, 5 and 5 tasks at once (the 40 first) to an account that runs 3 at a time.
Prints each member's median wait (sent -> let go to Apiframe) with the fair queue and, for comparison, first come
first served; then what one dispatch costs with 200 tasks waiting.

    .venv/bin/python bench/fair_queue.py
    DATABASE_URL=postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_bench .venv/bin/python bench/fair_queue.py

The real dispatcher (services/queue.py: queue_dispatch) runs on a throwaway database (Django's test database for
DATABASE_URL) on a simulated clock: Apiframe takes 45-75 s per task (seeded), and the dispatcher runs whenever a
task ends, as the apply function does. First come first served is the same dispatcher with the line sorted by age.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (("ana", 40), ("ben", 5), ("cleo", 5))
CONCURRENCY = 3


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _fifo(waiters: list, upstream: dict[int, int]) -> list:
    return sorted(waiters, key=lambda w: (w.created_at, w.pk))


def simulate(*, fair: bool, seed: int) -> dict[str, list[float]]:
    """Waits in seconds per member, in the order their tasks were let go; the database is emptied first."""
    from django.contrib.auth import get_user_model

    from generations.models import Membership, Prompt, Task, Team
    from generations.services import queue

    Task.objects.update(root=None, parent=None)  # protected links: a clean slate for each run
    Task.objects.all().delete()
    rng = random.Random(seed)
    start = datetime(2026, 11, 29, 9, 0, tzinfo=datetime.now().astimezone().tzinfo)
    team = Team.objects.get_or_create(name="Bench Agency")[0]
    users = {}
    for name, _ in BATCHES:
        users[name] = get_user_model().objects.get_or_create(username=name)[0]
        Membership.objects.get_or_create(team=team, user=users[name])
    prompt = Prompt.objects.create(team=team, author=users["ana"], text="a lighthouse in fog")
    names = {user.pk: name for name, user in users.items()}
    running: dict[int, datetime] = {}

    def dispatch(now: datetime) -> None:
        for pk in queue.queue_dispatch(now=now, order=None if fair else _fifo):
            Task.objects.filter(pk=pk).update(status="pending", submitted_at=now)
            running[pk] = now + timedelta(seconds=rng.uniform(45, 75))

    tick = 0
    for name, count in BATCHES:  # the 40 first: the worst case for the others
        for _ in range(count):
            tick += 1
            created = start + timedelta(milliseconds=tick)
            task = Task.objects.create(
                team=team,
                prompt=prompt,
                created_by=users[name],
                action="imagine",
                created_at=created,
                updated_at=created,
                deadline=created + timedelta(seconds=300),
            )
            Task.objects.filter(pk=task.pk).update(root=task)
            dispatch(created)  # as _task_create does: the first three of the 40 go at once
    while running:
        now = min(running.values())
        for pk in [pk for pk, ends in running.items() if ends == now]:
            del running[pk]
            Task.objects.filter(pk=pk).update(status="finished", finished_at=now)
        dispatch(now)  # as the apply function does when a task ends
    waits: dict[str, list[float]] = {name: [] for name, _ in BATCHES}
    for member, created, dispatched in Task.objects.order_by("dispatched_at", "pk").values_list(
        "created_by", "created_at", "dispatched_at"
    ):
        waits[names[member]].append((dispatched - created).total_seconds())
    return waits


def dispatch_cost(*, waiting: int, members: int, repeats: int) -> tuple[float, int]:
    """Median ms of one dispatch that lets one task go and moves every other waiting task up a place."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generations.models import Membership, Prompt, Task, Team
    from generations.services import queue

    Task.objects.update(root=None, parent=None)  # protected links: a clean slate for each run
    Task.objects.all().delete()
    team = Team.objects.create(name="Busy Agency")
    people = [get_user_model().objects.create_user(username=f"m{i}") for i in range(members)]
    Membership.objects.bulk_create([Membership(team=team, user=u) for u in people])
    prompt = Prompt.objects.create(team=team, author=people[0], text="a harbour at dusk")
    base = datetime(2026, 11, 29, 9, 0, tzinfo=datetime.now().astimezone().tzinfo)
    rows = [
        Task(
            team=team,
            prompt=prompt,
            created_by=people[i % members],
            action="imagine",
            created_at=base + timedelta(seconds=i),
            deadline=base + timedelta(hours=1),
            status="queued",
        )
        for i in range(waiting + CONCURRENCY)
    ]
    Task.objects.bulk_create(rows)
    queue.queue_dispatch()  # three go, the rest get their places
    times, queries = [], 0
    for _ in range(repeats):
        running = Task.objects.filter(status="queued", dispatched_at__isnull=False).order_by("pk").first()
        Task.objects.filter(pk=running.pk).update(status="finished")
        Task.objects.create(  # keep the line at its length: someone sends another
            team=team,
            prompt=prompt,
            created_by=people[0],
            action="imagine",
            deadline=base + timedelta(hours=1),
        )
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            queue.queue_dispatch()
            times.append((time.perf_counter() - began) * 1000)
        queries = len(captured)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False
    settings.APIFRAME_CONCURRENCY = CONCURRENCY
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        results = {label: simulate(fair=fair, seed=args.seed) for label, fair in (("fair", True), ("FIFO", False))}
        cost_ms, cost_queries = dispatch_cost(waiting=200, members=20, repeats=30)
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)

    print(f"database: {connection.vendor}; {CONCURRENCY} at once; Apiframe takes 45-75 s a task (seed {args.seed})")
    print(f"{'member':<8}{'tasks':>6}  {'median wait, fair':>18}  {'FIFO':>8}  {'first sent, fair':>17}  {'FIFO':>8}")
    for name, count in BATCHES:
        fair, fifo = results["fair"][name], results["FIFO"][name]
        print(
            f"{name:<8}{count:>6}  {statistics.median(fair):>16.0f} s  {statistics.median(fifo):>6.0f} s"
            f"  {min(fair):>15.0f} s  {min(fifo):>6.0f} s"
        )
    print(
        f"one dispatch with 200 waiting (20 members), one let go and the others moved up a place: "
        f"median {cost_ms:.1f} ms, {cost_queries} queries"
    )
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
