"""The studio with a big library: seed one team with 100,000 tasks (about 380,000 images) in a fresh SQLite
database, then measure the studio home as a logged-in member through Django's test client.

Prints the median server time and query count of the studio home, its HTML bytes per 24 cards, the live
refresh when nothing changed (a 204), and the "anything in flight?" check alone, idle and busy.

The seeded library: one big team (6 members) whose roots are imagined grids and whose children vary, upscale,
pan, zoom and reroll earlier grids of the same session; about 1 % failed or timed out; a few images whose
download gave up; every other image mirrored (file names only: no file is needed to render a page). The
team is idle (nothing in flight: the common case, and the one where a scan is slowest); a small second team
has a few tasks in flight. The 24 newest cards are finished 4-image grids, so the page is at its heaviest.

Usage: .venv/bin/python bench/library.py [--tasks 100000] [--db PATH | --database-url URL] [--runs 30]
  --db PATH seeds PATH if it is new or empty and reuses it otherwise (seeding 100,000 tasks takes a minute).
  --database-url postgres://... does the same in an existing PostgreSQL database (to compare plans and times).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import seeded_database_arguments, seeded_database_setup

MAIN_TEAM, OTHER_TEAM = "Moonlight Agency", "Other Studio"
MEMBER = "demo"
BATCH = 5_000
WORDS = (
    "a quiet coffee shop at dawn, warm tones, film grain",
    "lanterns over a river",
    "a paper crane on a desk",
    "a kite over the dunes",
    "lighthouse in fog",
    "neon alley in the rain, reflections",
    "portrait of an old fisherman, studio light",
    "brutalist library covered in moss",
    "cinematic wide shot",
    "isometric city at night",
    "watercolor botanical plate",
    "soft pastel glass greenhouse",
    "snowy mountains at golden hour",
    "macro, dew on a leaf",
    "retro 1970s poster typography",
    "an orbiting station",
    "ceramic vase",
)


class Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.shown = label, max(total, 1), 0, -1
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        percent = min(100, self.done * 100 // self.total)
        if percent == self.shown or (not self.tty and percent % 10 and percent != 100):
            return
        self.shown = percent
        bar = "#" * (percent // 4) + "·" * (25 - percent // 4)
        elapsed = time.monotonic() - self.started
        line = f"{self.label:<8} [{bar}] {percent:3d}%  {self.done:,}/{self.total:,}  {elapsed:5.1f} s"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and percent == 100:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _prompt_text(rng: random.Random) -> str:
    return ", ".join(rng.sample(WORDS, k=rng.randint(2, 5)))


def _size(aspect_ratio: str) -> tuple[int, int]:
    w, h = (int(x) for x in aspect_ratio.split(":"))
    scale = 1024 / max(w, h)
    return round(w * scale), round(h * scale)


def seed_library(*, tasks: int, seed: int = 7, on_progress: Callable[[str, int], Progress] = Progress) -> dict:
    """Seed the current database with one big team of `tasks` tasks and a small busy one.

    Returns {"team": Team, "member": User, "tasks": int, "images": int}. Ids are given explicitly (the database
    must be freshly migrated), so that parents and roots can be named before their rows exist.
    """
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from generations.models import Image, Membership, Prompt, Task, Team

    rng = random.Random(seed)
    User = get_user_model()
    main, other = Team.objects.create(name=MAIN_TEAM), Team.objects.create(name=OTHER_TEAM)
    users = [User.objects.create_user(MEMBER, password="mjstudio-bench")]
    users += [User(username=f"member{i}") for i in range(1, 6)]
    User.objects.bulk_create(users[1:])
    users = list(User.objects.order_by("pk"))
    Membership.objects.bulk_create([Membership(team=main, user=u) for u in users])
    Membership.objects.create(team=other, user=users[-1])

    now = timezone.now()
    other_count = max(20, tasks // 100)
    total = tasks + other_count
    # Oldest first, a task every ~5 minutes (100,000 tasks span about a year), the newest a quarter hour ago.
    start = now - timedelta(minutes=5) * (total + 3)
    newest_grids = 24  # the studio's first page: finished grids only, the heaviest page there is
    every_other = total // other_count  # one task in this many is the other team's
    prompts: list[Prompt] = []
    task_rows: list[Task] = []
    image_rows: list[Image] = []
    grids: dict[int, list[int]] = {main.pk: [], other.pk: []}  # recent finished grids, per team, to act on
    info: dict[int, tuple[int, int, str]] = {}  # task id -> (prompt id, root id, aspect ratio)
    bar = on_progress("seeding", total)

    def flush(final: bool = False) -> None:
        if len(task_rows) < BATCH and not final:
            return
        with transaction.atomic():
            Prompt.objects.bulk_create(prompts)
            Task.objects.bulk_create(task_rows)
            Image.objects.bulk_create(image_rows)
        bar.advance(len(task_rows))
        prompts.clear(), task_rows.clear(), image_rows.clear()

    prompt_id = 0
    for task_id in range(1, total + 1):
        is_other = task_id % every_other == 0 and task_id <= total - 30
        team = other if is_other else main
        created = start + timedelta(minutes=5) * task_id + timedelta(seconds=rng.randint(0, 200))
        user = users[-1] if is_other else rng.choice(users)
        recent = grids[team.pk][-40:]
        roll = rng.random()
        heaviest = not is_other and task_id > total - newest_grids - 3
        if heaviest or not recent or roll < 0.55:
            action, option, parent, index = "imagine", "", None, None
        elif roll < 0.80:
            action, option = "vary", rng.choice(("strong", "subtle"))
        elif roll < 0.86:
            action, option = "upscale", rng.choice(("subtle", "creative"))
        elif roll < 0.92:
            action, option = "pan", rng.choice(("left", "right", "up", "down"))
        elif roll < 0.97:
            action, option = "zoom", rng.choice(("1.5", "2", "1", "1.25"))
        else:
            action, option = "reroll", ""
        if action != "imagine":
            parent = rng.choice(recent)
            index = None if action == "reroll" else rng.randint(1, 4)
            prompt_pk, root_pk, ratio = info[parent]
        else:
            prompt_id += 1
            ratio = rng.choice(("1:1", "1:1", "16:9", "3:2", "2:3", "9:16"))
            text = _prompt_text(rng)
            prompts.append(
                Prompt(
                    id=prompt_id,
                    team=team,
                    author=user,
                    text=text,
                    search_text=text.casefold(),
                    mode=rng.choice(("fast", "fast", "turbo")),
                    aspect_ratio=ratio,
                    created_at=created,
                )
            )
            prompt_pk, root_pk = prompt_id, task_id
        fate = rng.random()
        if is_other and task_id > total - 30 - 6 * every_other:
            status = rng.choice(("queued", "pending", "processing"))  # the other team is busy right now
        elif heaviest or fate > 0.013:
            status = "finished"
        else:
            status = "failed" if fate < 0.01 else "timed_out"
        finished = status == "finished"
        task_rows.append(
            Task(
                id=task_id,
                team=team,
                prompt_id=prompt_pk,
                created_by=user,
                action=action,
                option=option,
                parent_id=parent,
                parent_index=index,
                root_id=root_pk,
                apiframe_task_id=f"bench-{task_id}",
                status=status,
                upstream_status={"finished": "finished", "failed": "failed"}.get(status, "processing"),
                percentage=100 if finished else rng.choice((0, 40, 70)),
                error="" if finished or status in Task.IN_FLIGHT else "Midjourney refused the prompt.",
                credits=4 if finished else 0,
                created_at=created,
                submitted_at=created + timedelta(seconds=1),
                started_at=created + timedelta(seconds=5),
                finished_at=created + timedelta(seconds=60) if finished else None,
                deadline=created + timedelta(seconds=300),
                updated_at=created + timedelta(seconds=62),
                last_heard_at=created + timedelta(seconds=60),
            )
        )
        info[task_id] = (prompt_pk, root_pk, ratio)
        if finished:
            width, height = _size(ratio)
            if action == "upscale":
                width, height, indexes = width * 2, height * 2, (1,)
            else:
                indexes = (1, 2, 3, 4)
                grids[team.pk].append(task_id)
            for i in indexes:
                gave_up = not heaviest and rng.random() < 0.0005  # a download that failed 8 times
                name = f"{rng.getrandbits(128):032x}"
                image_rows.append(
                    Image(
                        task_id=task_id,
                        index=i,
                        source_url=f"https://cdn.apiframe.pro/images/{task_id}-{i}.png",
                        file="" if gave_up else f"images/{name}.png",
                        thumbnail="" if gave_up else f"thumbs/{name}.webp",
                        width=width,
                        height=height,
                        content_hash="" if gave_up else f"{rng.getrandbits(256):064x}",
                        size_bytes=None if gave_up else rng.randint(400_000, 2_000_000),
                        mirror_attempts=8 if gave_up else 1,
                        mirror_error="CDN answered 500" if gave_up else "",
                        mirrored_at=None if gave_up else created + timedelta(seconds=63),
                    )
                )
        flush()
    flush(final=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # ids were given: move the sequences past them; and fresh statistics
            for sql in connection.ops.sequence_reset_sql(no_style(), [Prompt, Task, Image]):
                cursor.execute(sql)
            cursor.execute("ANALYZE")
    main_tasks, main_images = Task.objects.filter(team=main).count(), Image.objects.filter(task__team=main).count()
    return {"team": main, "member": users[0], "tasks": main_tasks, "images": main_images}


def _timed(call: Callable[[], object], runs: int) -> tuple[float, float, object]:
    """Median wall and CPU time of `call` in ms over `runs` runs (after two warm-ups), and its last result.

    The CPU time (this thread's, SQLite included: it runs in-process) is what the page costs; the wall time adds
    whatever else the machine is doing, which on a shared 2-core box can double it."""
    for _ in range(2):
        result = call()
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        result = call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu), result


def _queries(call: Callable[[], object]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


def measure_studio(*, member: object, team: object, runs: int) -> list[tuple[str, ...]]:
    """Rows of (what, median wall ms, median CPU ms, queries, other) for the studio home, the pulse and the
    in-flight check."""
    from django.db import transaction
    from django.test import Client
    from django.utils import timezone

    from generations.models import Task
    from generations.views.studio import team_is_busy

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(member)
    rows = []

    def home() -> object:
        response = client.get("/")
        assert response.status_code == 200, response.status_code
        return response

    wall, cpu, response = _timed(home, runs)
    body = response.content
    cards = body.count(b'<article id="task-')
    per_24 = len(body) * 24 / max(cards, 1) / 1024
    other = f"{per_24:.0f} KB per 24 cards ({cards} cards)"
    rows.append(("studio home", f"{wall:.1f}", f"{cpu:.1f}", str(_queries(home)), other))

    since = timezone.now().isoformat()

    def pulse() -> object:
        response = client.get("/studio/pulse/", {"since": since}, headers={"HX-Request": "true"})
        assert response.status_code == 204, response.status_code
        return response

    wall, cpu, _ = _timed(pulse, runs)
    rows.append(("pulse, nothing changed (204)", f"{wall:.1f}", f"{cpu:.1f}", str(_queries(pulse)), ""))

    def check() -> bool:
        return team_is_busy(team)

    wall, cpu, busy = _timed(check, runs)
    rows.append(("in-flight check, team idle", f"{wall:.2f}", f"{cpu:.2f}", str(_queries(check)), f"busy={busy}"))
    with transaction.atomic():  # three tasks in flight for the measurement, rolled back after
        newest = Task.objects.filter(team=team).order_by("-created_at").values_list("pk", flat=True)[:100:40]
        Task.objects.filter(pk__in=list(newest)).update(status=Task.Status.PROCESSING)
        wall, cpu, busy = _timed(check, runs)
        rows.append(("in-flight check, 3 in flight", f"{wall:.2f}", f"{cpu:.2f}", str(_queries(check)), f"busy={busy}"))
        transaction.set_rollback(True)
    return rows


def explain_in_flight(team: object) -> list[str]:
    """The database's plan for the two queries of the in-flight check."""
    from django.db import connection

    from generations.models import Image, Task

    queries = (
        Task.objects.for_team(team).in_flight(),
        Image.objects.filter(task__team=team, mirrored_at=None, mirror_attempts__lt=Image.MIRROR_MAX_ATTEMPTS),
    )
    lines = []
    for query in queries:
        # The very SQL .exists() sends, parameters bound as they are then.
        sql, params = query.query.exists().get_compiler(connection=connection).as_sql()
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                lines.append(" / ".join(row[-1] for row in cursor.fetchall()))
            else:
                cursor.execute(f"EXPLAIN {sql}", params)
                lines.append(" / ".join(row[0].strip() for row in cursor.fetchall()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    seeded_database_arguments(parser)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    db, tmp = seeded_database_setup(args, prefix="mjstudio-library-")
    from django.core.management import call_command

    from generations.models import Image, Task, Team

    call_command("migrate", verbosity=0)
    if Task.objects.exists():
        team = Team.objects.get(name=MAIN_TEAM)
        member = team.members.get(username=MEMBER)
        seeded = {"tasks": team.tasks.count(), "images": Image.objects.filter(task__team=team).count()}
        print(f"reusing {db}: {seeded['tasks']:,} tasks, {seeded['images']:,} images in {MAIN_TEAM}")
    else:
        started = time.monotonic()
        seeded = seed_library(tasks=args.tasks)
        team, member = seeded["team"], seeded["member"]
        elapsed = time.monotonic() - started
        print(f"seeded {db}: {seeded['tasks']:,} tasks, {seeded['images']:,} images in {MAIN_TEAM} in {elapsed:.0f} s")

    rows = measure_studio(member=member, team=team, runs=args.runs)
    from django.db import connection

    database = {"sqlite": "SQLite", "postgresql": "PostgreSQL (CPU: this process only, not the server's)"}
    vendor = database.get(connection.vendor, connection.vendor)
    print(f"\n{seeded['tasks']:,} tasks, {vendor}, median of {args.runs} runs")
    print(f"{'what':<30} {'wall ms':>8} {'CPU ms':>7} {'queries':>8}  other")
    for what, wall, cpu, queries, other in rows:
        print(f"{what:<30} {wall:>8} {cpu:>7} {queries:>8}  {other}")
    print("\nplans of the in-flight check:")
    for line in explain_in_flight(team):
        print(f"  {line}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
