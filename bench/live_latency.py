"""Time from the sandbox finishing a task to its image showing in a real browser (median and p95), with the
pulse (SQLite on one box, gthread workers) and with live push (Redis + server-sent events, uvicorn web workers,
RQ job workers).

Runs the real studio (runstudio: web, worker, poller, sandbox with webhooks on), logs into it with Chromium,
and submits prompts one at a time. For each task it takes:
  - when the sandbox finished it: the first moment its /fetch says "finished" (this script asks every 10 ms);
  - when the page showed it: the moment every image of the card had loaded (a MutationObserver in the page;
    a card whose images are still being saved is not shown yet).
Live push starts its own redis-server (Debian's) on a free port. Each mode also times the studio page itself
(a plain GET, sequentially), to compare the two web servers on ordinary pages.
Usage: .venv/bin/python bench/live_latency.py [--tasks 20] [--task-seconds 1.5] [--mode both|pulse|push]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import (
    DEMO_PASSWORD,
    DEMO_USER,
    Stack,
    django_setup,
    median,
    percentile,
    redis_server,
    running_stack,
)

RQ_BACKEND = "django_tasks_rq.RQBackend"  # live push runs as deployed on Redis: the Procfile's workers on RQ
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records, per card, when all of its images had loaded (Date.now(), milliseconds since the epoch).
SHOWN_AT_SCRIPT = """
window.__shownAt = {};
const look = () => document.querySelectorAll("article.card").forEach((card) => {
  if (window.__shownAt[card.id]) return;
  const slots = card.querySelectorAll("figure.shot").length;  // every image of the card, saved or not yet
  const images = card.querySelectorAll(".shot__link img");
  const loaded = [...images].every((i) => i.complete && i.naturalWidth > 0);
  if (slots && images.length === slots && loaded) window.__shownAt[card.id] = Date.now();
});
new MutationObserver(look).observe(document, {subtree: true, childList: true, attributes: true});
document.addEventListener("load", look, true);
"""


def sandbox_finished_at(sandbox_url: str, task_id: str, api_key: str, out: dict, timeout: float = 60) -> None:
    headers = {"Authorization": api_key}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = requests.post(f"{sandbox_url}/fetch", json={"task_id": task_id}, headers=headers, timeout=5).json()
        if data.get("status") == "finished":
            out["at"] = time.time()
            return
        time.sleep(0.01)


def measure(pw: object, stack: Stack, *, tasks: int, live_push: bool) -> tuple[list[float], list[float]]:
    """Latencies (seconds) for `tasks` prompts, and of `GET /` for the studio page itself."""
    django_setup(stack.env)
    from django.conf import settings

    from generations.models import Task

    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.add_init_script(SHOWN_AT_SCRIPT)
    pulses: list[str] = []
    page.on("request", lambda request: pulses.append(request.url) if "/studio/pulse/" in request.url else None)
    page.goto(f"{stack.url}/accounts/login/")
    page.get_by_label("Username").fill(DEMO_USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Imagine").wait_for()
    if live_push != bool(page.locator("#live[sse-connect]").count()):
        raise RuntimeError(f"live push {'off' if live_push else 'on'} in the page: not the mode asked for")

    latencies, steps = [], []
    for i in range(tasks):
        probe = f"latency probe {'push' if live_push else 'pulse'} {i}:"
        page.get_by_role("textbox", name="Prompt").fill(f"{probe} lanterns over a night river")
        page.get_by_role("button", name="Imagine").click()
        task = None
        while task is None or not task.apiframe_task_id:
            time.sleep(0.01)
            task = Task.objects.filter(prompt__text__startswith=probe).first()
        finished: dict = {}
        watcher = threading.Thread(
            target=sandbox_finished_at,
            args=(stack.sandbox_url, task.apiframe_task_id, settings.APIFRAME_API_KEY, finished),
        )
        watcher.start()
        page.wait_for_function(f"() => window.__shownAt['task-{task.pk}']", timeout=60_000)
        watcher.join()
        shown_at = page.evaluate(f"window.__shownAt['task-{task.pk}']") / 1000
        latencies.append(shown_at - finished["at"])
        task = Task.objects.get(pk=task.pk)
        mirrored = max((i.mirrored_at for i in task.images.all() if i.mirrored_at), default=None)  # None: not yet
        stored = (mirrored.timestamp() if mirrored else time.time()) - finished["at"]
        steps.append((task.finished_at.timestamp() - finished["at"], stored))
    browser.close()
    # Where the time goes: the webhook applied, the images stored (the mirror job; the page may show an image
    # before, from its source), then the page.
    applied, stored = (sorted(step[i] * 1000 for step in steps) for i in (0, 1))
    delivered = [(shown - step[1]) * 1000 for shown, step in zip(latencies, steps, strict=True)]
    print(
        f"    (medians from the sandbox's finish: applied {median(applied):.0f} ms, images stored "
        f"{median(stored):.0f} ms; from stored to shown: median {median(delivered):.0f} ms, "
        f"p95 {percentile(delivered, 0.95):.0f} ms)"
    )
    if live_push and pulses:
        raise RuntimeError(f"live push, yet the page asked the pulse {len(pulses)} times")

    session, pages = stack.logged_in_session(), []
    for _ in range(60):
        started = time.perf_counter()
        session.get(f"{stack.url}/", timeout=10).raise_for_status()
        pages.append(time.perf_counter() - started)
    return latencies, pages


def report(name: str, latencies: list[float], pages: list[float], target: str) -> None:
    ms = [x * 1000 for x in latencies]
    page_ms = [x * 1000 for x in pages]
    print(
        f"  {name}: median {median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, min {min(ms):.0f} ms, "
        f"max {max(ms):.0f} ms ({target}); studio page GET median {median(page_ms):.0f} ms, "
        f"p95 {percentile(page_ms, 0.95):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--task-seconds", type=float, default=1.5)
    parser.add_argument("--mode", choices=("both", "pulse", "push"), default="both")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "both":  # each mode in a process of its own: Django reads its database settings once
        print(f"sandbox finished -> image shown in Chromium, {args.tasks} tasks per mode (webhooks on, real worker):")
        for mode in ("pulse", "push"):
            again = [sys.executable, __file__, "--tasks", str(args.tasks), "--task-seconds", str(args.task_seconds)]
            subprocess.run([*again, "--mode", mode, "--quiet"], check=True)  # noqa: S603
        return
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM reads beside Playwright's event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        if args.mode == "pulse":
            os.environ.pop("REDIS_URL", None)
            with running_stack(SANDBOX_TASK_SECONDS=str(args.task_seconds)) as stack:
                result = measure(pw, stack, tasks=args.tasks, live_push=False)
        else:
            with (
                redis_server() as url,
                running_stack(
                    SANDBOX_TASK_SECONDS=str(args.task_seconds), REDIS_URL=url, TASKS_BACKEND=RQ_BACKEND
                ) as stack,
            ):
                result = measure(pw, stack, tasks=args.tasks, live_push=True)
    if not args.quiet:
        print(f"sandbox finished -> image shown in Chromium, {args.tasks} tasks (webhooks on, real worker):")
    if args.mode == "pulse":
        report("pulse (gthread, 0.5 s pulse)", *result, target="target p95 <= 1000 ms")
    else:
        report("live push (Redis + SSE, uvicorn workers)", *result, target="target p95 <= 250 ms")


if __name__ == "__main__":
    main()
