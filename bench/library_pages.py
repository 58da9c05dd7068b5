"""The library at 100,000 tasks: seed one team (bench/library.py's, and more) into a fresh database, then measure.

Prints, for the library's first page (stacked, and every image), a deep page (a cursor 80 % down), a rare-term
search, a common-term search, a filtered page, favourites and a window restored on Back: the median server
time (Django's test client, in process, 30 runs; wall clock, and CPU time, which a busy machine disturbs less)
and the query count; the HTML bytes per 24 tiles; then library pages per second at 16 concurrent clients
through gunicorn (DEBUG off, static collected; workers and threads as the production config sizes them).

Usage: .venv/bin/python bench/library_pages.py [--tasks 100000] [--db PATH | --database-url URL] [--runs 30]
                                              [--no-http] [--only term]
  --db PATH seeds PATH if it is new and reuses it otherwise (seeding 100,000 tasks takes a few minutes).
  --database-url postgres://... does the same in an existing PostgreSQL database (seeded if it has no team).
  --only term measures only the pages whose label holds "term" (the searches).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEMBER = "demo"  # bench/library.py's member
# Shared by this process (which signs the session) and gunicorn (which reads it).
SECRET_KEY = "bench-only-secret-key-" + "x" * 40
RARE_TERM = "zephyrine"  # in a handful of prompts only
# Images given each review state after seeding (the rest are not reviewed).
REVIEWED = {"approved": 300, "shortlisted": 1_500, "rejected": 4_000}
# Written into some prompts after seeding: Vietnamese (a common search) and a rare term.
VIETNAMESE = ("cà phê sữa đá on a tiled table", "Đăng quang, golden crown", "phố cổ Hà Nội in the rain")


def seed(n_tasks: int, *, rng_seed: int = 7) -> dict:
    """The studio bench's library (bench/library.py: one team of `n_tasks` tasks, about 3.7 images each, 1 %
    failed, a few in flight in another team), plus what the library's pages need: one prompt in ten in
    Vietnamese, RARE_TERM in three prompts, 2,000 images the member starred, and images in each review state
    (REVIEWED).
    Returns {"team", "member", "tasks", "images"}."""
    from django.db import transaction

    from bench.library import seed_library
    from generations.models import Favourite, Image, Prompt
    from generations.services.submitting import normalize_for_search

    rng = random.Random(rng_seed)
    seeded = seed_library(tasks=n_tasks, seed=rng_seed)
    team, member = seeded["team"], seeded["member"]
    prompts = list(Prompt.objects.filter(team=team).only("pk", "text").order_by("pk"))
    rare = {prompts[len(prompts) // k].pk for k in (7, 3, 2)}
    changed = []
    for n, prompt in enumerate(prompts):
        if n % 10 == 0 or prompt.pk in rare:
            extra = f"{RARE_TERM} light" if prompt.pk in rare else VIETNAMESE[n % len(VIETNAMESE)]
            prompt.text = f"{prompt.text}, {extra}"
            prompt.search_text = normalize_for_search(prompt.text)
            changed.append(prompt)
    with transaction.atomic():  # on SQLite the FTS triggers follow the new search text
        Prompt.objects.bulk_update(changed, ["text", "search_text"], batch_size=500)
    images = list(Image.objects.filter(task__team=team).values_list("pk", flat=True))
    Favourite.objects.bulk_create([Favourite(user=member, image_id=pk) for pk in rng.sample(images, k=2_000)])
    # Reviews: a few approved (the list leads), more shortlisted and rejected (the walk finds them).
    reviewed = iter(rng.sample(images, k=sum(REVIEWED.values())))
    for state, count in REVIEWED.items():
        picked = [next(reviewed) for _ in range(count)]
        for start in range(0, count, 500):
            Image.objects.filter(pk__in=picked[start : start + 500]).update(review_state=state)
    return seeded


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    import django

    django.setup()


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def measure_in_process(runs: int, *, only: str = "") -> tuple[list[tuple[str, float, float, int, int]], dict]:
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
        "accented term ?q=Đăng": "/library/?q=%C4%90%C4%83ng",
        "term inside a word ?q=ghthou": "/library/?q=ghthou",
        "term found nowhere ?q=qwzx": "/library/?q=qwzx",
        "two-letter term found nowhere ?q=zq": "/library/?q=zq",
        "author + action": f"/library/?author={MEMBER}&action=vary",
        "my favourites": "/library/?fav=1",
        "approved (300)": "/library/?review=approved",
        "shortlisted (1,500)": "/library/?review=shortlisted",
        "rejected (4,000)": "/library/?review=rejected",
        "not reviewed": "/library/?review=none",
        "Back after 10 pages (240 tiles)": f"/library/?stacks=0&until={until}",
    }
    rows = []
    sizes = {}
    for label, url in pages.items():
        if only not in label:
            continue
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
    from bench.webhook_ingest import PROXY_HEADERS, production_env

    member = get_user_model().objects.get(username=MEMBER)
    session = SessionStore()
    session["_auth_user_id"] = str(member.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = member.get_session_auth_hash()
    session.create()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="mjstudio-library-http-")
    # Production settings as bench/webhook_ingest.py sets them (behind a TLS proxy: hence the proxy headers),
    # with this process's secret key (it signed the session) and database.
    env = {**production_env(tmp, port, database_url), "DJANGO_SECRET_KEY": SECRET_KEY, "GUNICORN_LOG_LEVEL": "warning"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
    # The production server and its settings (mjstudio/gunicorn.conf.py: workers and threads sized to the machine).
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "mjstudio" / "gunicorn.conf.py")]
    server = subprocess.Popen(gunicorn, env=env, cwd=ROOT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    headers = {"Cookie": f"sessionid={session.session_key}", "Host": "127.0.0.1", **PROXY_HEADERS}
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
                    assert response.status == 200 and "/library/" in response.url, response.url
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
        shutil.rmtree(tmp, ignore_errors=True)


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
    parser.add_argument("--only", default="", help="measure only the pages whose label holds this (e.g. 'term')")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mjstudio-library-") as tmp:
        database_url = args.database_url or f"sqlite:///{args.db or f'{tmp}/library.sqlite3'}"
        _setup(database_url)
        from django.core.management import call_command

        from generations.models import Team

        call_command("migrate", verbosity=0)
        if not Team.objects.exists():
            started = time.monotonic()
            seeded = seed(args.tasks)
            took = time.monotonic() - started
            print(f"seeded {seeded['tasks']:,} tasks, {seeded['images']:,} images in {took:.0f} s")
        rows, sizes = measure_in_process(args.runs, only=args.only)
        print(f"\n{'page':<36} {'median ms':>10} {'cpu ms':>7} {'queries':>8} {'tiles':>6}")
        for label, ms, cpu, queries, tiles in rows:
            print(f"{label:<36} {ms:>10.1f} {cpu:>7.1f} {queries:>8} {tiles:>6}")
        print()
        for label in ("first page (all images)", "first page (stacks)"):
            if label not in sizes:
                continue
            size, tiles = sizes[label]
            print(f"HTML per 24 tiles, {label}: {size / tiles * 24 / 1024:.1f} KB ({size:,} bytes, {tiles} tiles)")
        if not args.no_http:
            rate, p50 = measure_http(database_url, clients=args.clients, seconds=args.seconds)
            clients = f"{args.clients} concurrent clients"
            print(f"\nthrough gunicorn, {clients}: {rate:.0f} library pages/s (median {p50:.0f} ms)")


if __name__ == "__main__":
    main()
