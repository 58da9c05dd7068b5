"""Time from the sandbox finishing a task to its image showing in a real browser (median and p95).

Runs the real studio (runstudio: web, worker, poller, sandbox with webhooks on), logs into it with Chromium,
and submits prompts one at a time. For each task it takes:
  - when the sandbox finished it: the first moment its /fetch says "finished" (this script asks every 10 ms);
  - when the page showed it: the moment every image of the card had loaded (a MutationObserver in the page).
Usage: .venv/bin/python bench/live_latency.py [--tasks 20] [--task-seconds 1.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import DEMO_PASSWORD, DEMO_USER, django_setup, median, percentile, running_stack

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
  const images = card.querySelectorAll(".shot__link img");
  const loaded = [...images].every((i) => i.complete && i.naturalWidth > 0);
  if (images.length && loaded) window.__shownAt[card.id] = Date.now();
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--task-seconds", type=float, default=1.5)
    args = parser.parse_args()
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM reads beside Playwright's event loop
    from playwright.sync_api import sync_playwright

    with running_stack(SANDBOX_TASK_SECONDS=str(args.task_seconds)) as stack, sync_playwright() as pw:
        django_setup(stack.env)
        from django.conf import settings

        from generations.models import Task

        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.add_init_script(SHOWN_AT_SCRIPT)
        page.goto(f"{stack.url}/accounts/login/")
        page.get_by_label("Username").fill(DEMO_USER)
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Imagine").wait_for()

        latencies = []
        for i in range(args.tasks):
            page.get_by_role("textbox", name="Prompt").fill(f"latency probe {i}: lanterns over a night river")
            page.get_by_role("button", name="Imagine").click()
            task = None
            while task is None or not task.apiframe_task_id:
                time.sleep(0.01)
                task = Task.objects.filter(prompt__text__startswith=f"latency probe {i}:").first()
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
        browser.close()

    print(f"sandbox finished -> image shown in Chromium, {args.tasks} tasks (webhooks on, real worker):")
    print(
        f"  median {median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
        f"min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (target p95 <= 1000 ms)"
    )


if __name__ == "__main__":
    main()
