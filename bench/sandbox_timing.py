"""How fast the sandbox is: tasks end to end over HTTP, and picture rendering on its own.

End to end: submit an imagine, poll /fetch until finished, download its four images; N tasks, a few at a time
(within the sandbox's concurrency limit). Rendering: one 512 px grid image, and the 2x2 composite as PNG.
Usage: .venv/bin/python bench/sandbox_timing.py [--tasks 20] [--task-seconds 0.3] [--renders 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")

import django

django.setup()

from sandbox import images  # noqa: E402
from sandbox.painting import render_scene  # noqa: E402
from sandbox.palette import scene_for, seed_from  # noqa: E402
from sandbox.server import SandboxConfig, SandboxServer  # noqa: E402
from sandbox.world import View  # noqa: E402

PROMPTS = ("a quiet coffee shop at dawn, warm tones", "misty pine forest at sunrise", "a calm ocean at sunset")


def one_task(server: SandboxServer, n: int) -> float:
    headers = {"Authorization": server.engine.config.api_key}
    started = time.perf_counter()
    body = {"prompt": f"{PROMPTS[n % len(PROMPTS)]} {n}"}
    task_id = requests.post(f"{server.url}/pro/imagine", json=body, headers=headers, timeout=10).json()["task_id"]
    while (task := requests.post(f"{server.url}/fetch", json={"task_id": task_id}, headers=headers, timeout=10).json())[
        "status"
    ] != "finished":
        assert task["status"] != "failed", task
        time.sleep(0.02)
    for url in task["image_urls"]:
        requests.get(url, timeout=10).raise_for_status()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(round(0.95 * (len(ordered) - 1)), len(ordered) - 1)]


def timed_ms(work: Callable[[int], object], runs: int) -> list[float]:
    samples = []
    for n in range(runs):
        started = time.perf_counter()
        work(n)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--task-seconds", type=float, default=0.3)
    parser.add_argument("--renders", type=int, default=30)
    args = parser.parse_args()

    config = SandboxConfig(task_seconds=args.task_seconds, seed=1)
    server = SandboxServer(config=config)
    server.start()
    try:
        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            durations = list(pool.map(lambda n: one_task(server, n), range(args.tasks)))
        counts = server.engine.stats()["requests"]
    finally:
        server.stop()
    median, p95 = percentiles(durations)
    print(
        f"end to end ({args.tasks} imagine tasks, task_seconds={args.task_seconds}, concurrency {config.concurrency}):"
    )
    print(f"  median {median:.3f} s   p95 {p95:.3f} s   (submit -> finished -> 4 images downloaded)")
    print(f"  requests: {dict(sorted(counts.items()))}")

    size = images.size_for((1, 1))
    scenes = {prompt: scene_for(prompt) for prompt in PROMPTS}
    print(f"rendering ({args.renders} runs each):")
    for prompt, scene in scenes.items():
        samples = timed_ms(lambda n, s=scene: render_scene(s, View(seed_from(n), size, size)), args.renders)
        median, p95 = percentiles(samples)
        print(f"  one 512x512 image, {scene.kind:<8} median {median:5.1f} ms   p95 {p95:5.1f} ms   ({prompt!r})")
    grid = [p.image for p in images.imagine(scenes[PROMPTS[0]], size, 1)]
    median, p95 = percentiles(timed_ms(lambda n: images.to_png(images.composite(grid)), args.renders))
    print(f"  2x2 composite 1024x1024 as PNG median {median:5.1f} ms   p95 {p95:5.1f} ms")
    median, p95 = percentiles(timed_ms(lambda n: images.to_png(grid[n % 4]), args.renders))
    print(f"  one 512x512 image as PNG       median {median:5.1f} ms   p95 {p95:5.1f} ms")


if __name__ == "__main__":
    main()
