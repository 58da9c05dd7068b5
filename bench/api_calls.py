"""Apiframe HTTP calls per finished task, counted at the sandbox, for 50 tasks.

Runs the real studio (runstudio: web, worker, poller, sandbox) three ways, then the seed's own polling loop
(1 submit + a fetch every 2 s) against a sandbox with the same settings:
  1. webhooks on;
  2. webhooks requested but every one dropped (SANDBOX_FAULTS=webhook_drop=1);
  3. no webhook URL at all (a laptop behind NAT): polling does everything.
Usage: .venv/bin/python bench/api_calls.py [--tasks 50] [--task-seconds 1.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import ROOT, running_stack

APIFRAME_PATHS = ("/pro/", "/fetch", "/account")


def apiframe_calls(request_counts: dict[str, int]) -> int:
    """Calls to Apiframe's API (image downloads from its CDN are not API calls)."""
    return sum(n for path, n in request_counts.items() if path.startswith(APIFRAME_PATHS))


def studio_run(label: str, *, tasks: int, task_seconds: float, **env: str) -> float:
    with running_stack(SANDBOX_TASK_SECONDS=str(task_seconds), **env) as stack:
        session = stack.logged_in_session()
        started = time.monotonic()
        for i in range(tasks):
            response = session.post(
                f"{stack.url}/tasks/",
                data={
                    "prompt": f"bench prompt {i}",
                    "mode": "fast",
                    "aspect_ratio": "1:1",
                    "idempotency_key": str(uuid.uuid4()),
                },
                headers={"HX-Request": "true"},
                timeout=10,
            )
            response.raise_for_status()
        finished = wait_all_finished(stack, tasks, timeout=tasks * task_seconds + 120)
        elapsed = time.monotonic() - started
        counts = stack.sandbox_stats()["requests"]
    calls = apiframe_calls(counts)
    per_task = calls / finished
    detail = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()) if p.startswith(APIFRAME_PATHS))
    print(
        f"{label:<34} {finished:>3} finished in {elapsed:5.1f} s  {calls:>4} calls  {per_task:.2f} per task  ({detail})"
    )
    return per_task


def wait_all_finished(stack, expected: int, *, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = stack.sandbox_stats()["tasks"]
        done = statuses.get("finished", 0) + statuses.get("failed", 0)
        if done >= expected and (finished := studio_finished(stack)) >= expected:
            return finished
        time.sleep(0.5)
    raise RuntimeError("tasks did not finish in time")


def studio_finished(stack) -> int:
    """Tasks the studio itself has finished with every image saved, read from its database."""
    query = (
        "from generations.models import Task;"
        "print(Task.objects.filter(status='finished').exclude(images__mirrored_at=None).count())"
    )
    out = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", query],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def seed_loop_run(*, tasks: int, task_seconds: float) -> float:
    """The seed's Python workflow, one thread per task: submit, then POST /fetch every 2 s until finished."""
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    import django

    django.setup()
    from sandbox.server import SandboxConfig, SandboxServer

    server = SandboxServer(config=SandboxConfig(task_seconds=task_seconds))
    server.start()
    headers = {"Content-Type": "application/json", "Authorization": server.engine.config.api_key}

    def one(i: int) -> None:
        task_id = requests.post(
            f"{server.url}/pro/imagine",
            headers=headers,
            json={"prompt": f"bench prompt {i}", "mode": "fast"},
            timeout=10,
        ).json()["task_id"]
        for _ in range(200):
            data = requests.post(f"{server.url}/fetch", headers=headers, json={"task_id": task_id}, timeout=10).json()
            if data.get("status") in ("finished", "failed"):
                return
            time.sleep(2)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(tasks)]
    for t in threads:
        t.start()
        time.sleep(0.02)  # a team clicking, not a burst of connections
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    counts = dict(server.engine.request_counts)
    server.stop()
    calls = apiframe_calls(counts)
    print(
        f"{'seed polling loop (2 s)':<34} {tasks:>3} finished in {elapsed:5.1f} s  {calls:>4} calls  "
        f"{calls / tasks:.2f} per task"
    )
    return calls / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--task-seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(
        f"Apiframe calls per finished task, {args.tasks} imagine tasks, sandbox task time {args.task_seconds} s, "
        "concurrency 3"
    )
    webhooks = studio_run("studio, webhooks on", tasks=args.tasks, task_seconds=args.task_seconds)
    dropped = studio_run(
        "studio, every webhook dropped",
        tasks=args.tasks,
        task_seconds=args.task_seconds,
        SANDBOX_FAULTS="webhook_drop=1",
    )
    nat = studio_run(
        "studio, no webhooks (behind NAT)", tasks=args.tasks, task_seconds=args.task_seconds, APIFRAME_WEBHOOK_URL=""
    )
    seed = seed_loop_run(tasks=args.tasks, task_seconds=args.task_seconds)
    print(
        f"targets: webhooks on <= 1.05 ({webhooks:.2f}), dropped <= 1.5 ({dropped:.2f}, no-webhook {nat:.2f}); "
        f"seed loop {seed:.2f} = {seed / max(nat, dropped):.1f}x the studio's worst case"
    )


if __name__ == "__main__":
    main()
