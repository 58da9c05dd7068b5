"""The library at 100,000 tasks: seed one team into a fresh SQLite database, then measure its pages.

Prints, for the library's first page (stacked, and every image), a deep page (a cursor 80 % down), a rare-term
search, a common-term search, a filtered page, favourites and a window restored on Back: the median server
time (Django's test client, in process, 30 runs; wall clock, and CPU time, which a busy machine disturbs less)
and the query count; the HTML bytes per 24 tiles; then library pages per second at 16 concurrent clients
through gunicorn (DEBUG off, static collected; workers and threads as the production config sizes them).

Usage: .venv/bin/python bench/library_pages.py [--tasks 100000] [--db PATH | --database-url URL] [--runs 30]
                                              [--no-http]
  --db PATH seeds PATH if it is new and reuses it otherwise (seeding 100,000 tasks takes a few minutes).
  --database-url postgres://... does the same in an existing PostgreSQL database (seeded if it has no team).
  gunicorn must be installed in the venv (pip install gunicorn) unless --no-http.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEMBER, PASSWORD = "demo", "mjstudio-bench"
# Shared by this process (which signs the session) and gunicorn (which reads it).
SECRET_KEY = "bench-only-secret-key-" + "x" * 40
RARE_TERM = "zephyrine"  # in a handful of prompts only
BATCH = 5_000
PHRASES = (
    "a quiet coffee shop at dawn, warm tones, film grain",
    "cà phê sữa đá on a tiled table",
    "Đăng quang, golden crown, studio light",
    "phố cổ Hà Nội in the rain",
    "áo dài in a field of lotus",
    "lanterns over a river",
    "a paper crane on a desk",
    "lighthouse in fog",
    "neon alley in the rain, reflections",
    "portrait of an old fisherman",
    "brutalist library covered in moss",
    "cinematic wide shot",
    "isometric city at night",
    "watercolor botanical plate",
    "snowy mountains at golden hour",
    "retro 1970s poster typography",
)
RATIOS = ("1:1", "1:1", "1:1", "4:3", "3:2", "16:9", "9:16", "2:3")


def _size(aspect_ratio: str, scale: int = 1024) -> tuple[int, int]:
    w, h = (int(x) for x in aspect_ratio.split(":"))
    return round(scale * w / max(w, h)), round(scale * h / max(w, h))


def seed(n_tasks: int, *, rng_seed: int = 7) -> dict:
    """Seed the (freshly migrated) database with one team of `n_tasks` tasks and their images.

    A lineage per imagined grid: about 45 % of tasks imagine, the rest vary, upscale, pan, zoom or reroll one
    of the 40 most recent grids; 1 % failed (no images); every image mirrored (names only: no file is read
    to render a page). The demo member starred 2,000 images. Returns {"team", "member", "tasks", "images"}.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from generations.models import Favourite, Image, Membership, Prompt, Task, Team
    from generations.services.submitting import normalize_for_search

    rng = random.Random(rng_seed)
    User = get_user_model()
    team, other = Team.objects.create(name="Moonlight Agency"), Team.objects.create(name="Other Studio")
    member = User.objects.create_user(MEMBER, password=PASSWORD)
    users = [member] + [User.objects.create_user(f"member{i}") for i in range(1, 6)]
    Membership.objects.bulk_create([Membership(team=team, user=u) for u in users])
    Membership.objects.create(team=other, user=users[-1])

    now = timezone.now()
    start = now - timedelta(minutes=5) * (n_tasks + 3)
    rare_at = {n_tasks // 7, n_tasks // 3, n_tasks // 2 + 11}
    prompts, tasks, images = [], [], []
    grids: list[tuple[int, int, str]] = []  # (task id, root id, ratio) of recent finished grids
    root_prompt: dict[int, int] = {}  # root task id -> its prompt id
    image_id = 0
    mirrored = now - timedelta(days=1)

    def flush() -> None:
        with transaction.atomic():
            Prompt.objects.bulk_create(prompts)
            Task.objects.bulk_create(tasks)
            Image.objects.bulk_create(images)
        prompts.clear(), tasks.clear(), images.clear()

    for task_id in range(1, n_tasks + 1):
        created = start + timedelta(minutes=5) * task_id + timedelta(seconds=rng.randint(0, 200))
        user = rng.choice(users)
        roll = rng.random()
        if not grids or roll < 0.45:
            text = ", ".join(rng.sample(PHRASES, k=rng.randint(1, 3)))
            if task_id in rare_at:
                text += f", {RARE_TERM} light"
            ratio = rng.choice(RATIOS)
            prompts.append(
                Prompt(
                    id=task_id,
                    team=team,
                    author=user,
                    text=text,
                    search_text=normalize_for_search(text),
                    mode=rng.choice(("fast", "fast", "turbo")),
                    aspect_ratio=ratio,
                    created_at=created,
                )
            )
            action, option, parent, root, prompt_id, index = "imagine", "", None, task_id, task_id, None
        else:
            parent, root, ratio = rng.choice(grids[-40:])
            prompt_id = root_prompt[root]
            action, option = rng.choices(
                [
                    ("vary", "strong"),
                    ("vary", "subtle"),
                    ("upscale", "subtle"),
                    ("pan", "right"),
                    ("zoom", "2"),
                    ("reroll", ""),
                ],
                weights=[25, 20, 18, 15, 12, 10],
            )[0]
            index = None if action == "reroll" else rng.randint(1, 4)
        if action == "imagine":
            root_prompt[task_id] = task_id
        status = "failed" if rng.random() < 0.01 else "finished"
        tasks.append(
            Task(
                id=task_id,
                team=team,
                prompt_id=prompt_id,
                created_by=user,
                action=action,
                option=option,
                parent_id=parent,
                parent_index=index,
                root_id=root,
                status=status,
                error="Midjourney could not complete this task." if status == "failed" else "",
                percentage=100,
                created_at=created,
                updated_at=created,
                finished_at=created + timedelta(seconds=40),
                deadline=created + timedelta(minutes=5),
            )
        )
        if status == "finished":
            count = 1 if action == "upscale" else 4
            w, h = _size(ratio, 2048 if action == "upscale" else 1024)
            for i in range(1, count + 1):
                image_id += 1
                images.append(
                    Image(
                        id=image_id,
                        task_id=task_id,
                        index=i,
                        source_url=f"https://cdn.apiframe.pro/{task_id}-{i}.png",
                        file=f"images/{task_id}-{i}.png",
                        thumbnail=f"thumbs/{task_id}-{i}.webp",
                        width=w,
                        height=h,
                        mirrored_at=mirrored,
                    )
                )
            if action != "upscale":
                grids.append((task_id, root, ratio))
        if len(tasks) >= BATCH:
            flush()
    flush()
    starred = rng.sample(range(1, image_id + 1), k=min(2_000, image_id))
    Favourite.objects.bulk_create([Favourite(user=member, image_id=i) for i in starred])
    return {"team": team, "member": member, "tasks": n_tasks, "images": image_id}


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    import django

    django.setup()


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def measure_in_process(runs: int) -> tuple[list[tuple[str, float, float, int, int]], dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from generations.library.queries import PAGE_SIZE, Filters, Library, Position
    from generations.models import Task, Team

    member = get_user_model().objects.get(username=MEMBER)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(member)
    deep = Task.objects.order_by("-created_at").values("created_at", "pk")[int(Task.objects.count() * 0.8)]
    deep_cursor = Position(created_at=deep["created_at"], task_id=deep["pk"], index=1).encode()
    # Where ten pages of every image end: Back after a long scroll asks for that whole window.
    team = Team.objects.get(name="Moonlight Agency")
    library = Library(team_id=team.pk, user_id=member.pk, filters=Filters(stacked=False))
    until = library.page(until=None, limit=10 * PAGE_SIZE).last.encode()
    pages = {
        "first page (stacks)": "/library/",
        "first page (all images)": "/library/?stacks=0",
        "deep page, 80 % down (stacks)": f"/library/?cursor={deep_cursor}",
        "deep page, 80 % down (all images)": f"/library/?stacks=0&cursor={deep_cursor}",
        f"rare term ?q={RARE_TERM}": f"/library/?q={RARE_TERM}",
        "common term ?q=ca phe": "/library/?q=ca+phe",
        "author + action": f"/library/?author={MEMBER}&action=vary",
        "my favourites": "/library/?fav=1",
        "Back after 10 pages (240 tiles)": f"/library/?stacks=0&until={until}",
    }
    rows = []
    sizes = {}
    for label, url in pages.items():
        times, cpu = [], []
        for _ in range(runs):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        html = response.content.decode()
        tiles = html.count('<figure class="tile')
        rows.append((label, _median_ms(times), _median_ms(cpu), len(queries), tiles))
        sizes[label] = (len(response.content), tiles)
    return rows, sizes


def measure_http(database_url: str, *, clients: int, seconds: float) -> tuple[float, float]:
    """Library pages per second through gunicorn at `clients` concurrent clients; returns (pages/s, p50 ms)."""
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from bench.stack import free_port

    member = get_user_model().objects.get(username=MEMBER)
    session = SessionStore()
    session["_auth_user_id"] = str(member.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = member.get_session_auth_hash()
    session.create()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "APIFRAME_WEBHOOK_SECRET": "bench-only-webhook-secret",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
    workers = str((os.cpu_count() or 1) + 1)
    gunicorn = [sys.executable, "-m", "gunicorn", "mjstudio.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    gunicorn += ["--workers", workers, "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"]
    server = subprocess.Popen(gunicorn, env=env, cwd=ROOT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    headers = {"Cookie": f"sessionid={session.session_key}", "Host": "127.0.0.1"}
    try:
        _wait_for(base)
        urls = ["/library/", "/library/?stacks=0", f"/library/?q={RARE_TERM}", "/library/?q=ca+phe"]
        done: list[float] = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client(n: int) -> None:
            i = n
            while time.monotonic() < stop:
                request = urllib.request.Request(base + urls[i % len(urls)], headers=headers)  # noqa: S310
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    response.read()
                    assert response.status == 200 and response.url.startswith(base + "/library/"), response.url
                with lock:
                    done.append(time.perf_counter() - started)
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        return len(done) / elapsed, _median_ms(done)
    finally:
        server.terminate()
        server.wait(timeout=20)


def _wait_for(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health/", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--db", default="")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mjstudio-library-") as tmp:
        database_url = args.database_url or f"sqlite:///{args.db or f'{tmp}/library.sqlite3'}"
        _setup(database_url)
        from django.core.management import call_command
        from django.core.management.color import no_style
        from django.db import connection

        from generations.models import Image, Prompt, Task, Team

        call_command("migrate", verbosity=0)
        if not Team.objects.exists():
            started = time.monotonic()
            seeded = seed(args.tasks)
            # The seed names its ids: move PostgreSQL's sequences past them.
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), [Prompt, Task, Image]):
                    cursor.execute(sql)
            took = time.monotonic() - started
            print(f"seeded {seeded['tasks']:,} tasks, {seeded['images']:,} images in {took:.0f} s")
        rows, sizes = measure_in_process(args.runs)
        print(f"\n{'page':<36} {'median ms':>10} {'cpu ms':>7} {'queries':>8} {'tiles':>6}")
        for label, ms, cpu, queries, tiles in rows:
            print(f"{label:<36} {ms:>10.1f} {cpu:>7.1f} {queries:>8} {tiles:>6}")
        print()
        for label in ("first page (all images)", "first page (stacks)"):
            size, tiles = sizes[label]
            print(f"HTML per 24 tiles, {label}: {size / tiles * 24 / 1024:.1f} KB ({size:,} bytes, {tiles} tiles)")
        if not args.no_http:
            rate, p50 = measure_http(database_url, clients=args.clients, seconds=args.seconds)
            clients = f"{args.clients} concurrent clients"
            print(f"\nthrough gunicorn, {clients}: {rate:.0f} library pages/s (median {p50:.0f} ms)")


if __name__ == "__main__":
    main()
