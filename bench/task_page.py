"""How fast the task page draws a big family: server time (the whole request through Django, middleware and
template included) and queries, for families of 20, 200 and 1,000 tasks, bushy and as one long chain.

Target: a family of 200 renders in <= 50 ms (median), in as many queries as a family of 20.
Usage: .venv/bin/python bench/task_page.py [--requests 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from provenance_data import family_create, logged_in_client


def measure(client, task, requests: int) -> dict:
    url = f"/tasks/{task.pk}/"
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "median_ms": statistics.median(timings),
        "p95_ms": timings[int(len(timings) * 0.95) - 1],
        "queries": len(queries),
        "kb": len(response.content) / 1024,
        "nodes": response.content.count(b'class="tree__item'),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    client, team = logged_in_client()
    print(f"{'family':<22}{'nodes drawn':>12}{'median ms':>11}{'p95 ms':>9}{'queries':>9}{'HTML KB':>9}")
    results = {}
    for size, shape in ((20, "bushy"), (200, "bushy"), (200, "chain"), (1000, "bushy"), (1000, "chain")):
        tasks = family_create(team=team, size=size, shape=shape, seed=size)
        where = tasks[len(tasks) // 2] if shape == "bushy" else tasks[-1]
        result = results[size, shape] = measure(client, where, args.requests)
        print(
            f"{f'{size} tasks, {shape}':<22}{result['nodes']:>12}{result['median_ms']:>11.1f}{result['p95_ms']:>9.1f}"
            f"{result['queries']:>9}{result['kb']:>9.0f}"
        )
    big = results[200, "bushy"]
    met = "met" if big["median_ms"] <= 50 else "NOT met"
    print(
        f"\n200 nodes: median {big['median_ms']:.1f} ms (target <= 50: {met}); "
        f"queries {big['queries']} for 200 vs {results[20, 'bushy']['queries']} for 20 "
        f"({'constant' if big['queries'] == results[20, 'bushy']['queries'] else 'NOT constant'})"
    )


if __name__ == "__main__":
    main()
