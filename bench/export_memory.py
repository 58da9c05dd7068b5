"""A provenance bundle's memory: a lineage of 1,000 real PNG images (and of 100, to compare) streamed through the
export view, measuring the peak of Python allocations (tracemalloc) and the growth of the process's resident memory
while the zip is sent, against the zip's size. Flat means: the same few MB for 100 images as for 1,000.

Usage: .venv/bin/python bench/export_memory.py [--images 1000] [--side 256]
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time
import tracemalloc
import zipfile

from PIL import Image as PILImage
from provenance_data import TMP, family_create, logged_in_client  # sets Django up: before any model import

from generations.models import Image, Team

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def store_pngs(team: Team, side: int) -> int:
    """A real PNG of noise (so it does not compress) for every image row of the team; returns the bytes written."""
    media = TMP / "media"
    (media / "images").mkdir(parents=True, exist_ok=True)
    total = 0
    for image in Image.objects.filter(task__team=team).only("pk", "task_id", "index"):
        out = io.BytesIO()
        PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
        name = f"images/{image.task_id}-{image.index}.png"
        (media / name).write_bytes(out.getvalue())
        Image.objects.filter(pk=image.pk).update(file=name, size_bytes=out.tell())
        total += out.tell()
    return total


def stream(client, task) -> dict:
    """Read the export as a client would, keeping nothing but a running size."""
    peak_rss, done = [rss()], threading.Event()

    def sample() -> None:  # the resident set, every 5 ms while the zip streams
        while not done.is_set():
            peak_rss.append(rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    before = rss()
    tracemalloc.start()
    sampler.start()
    started = time.perf_counter()
    response = client.get(f"/tasks/{task.pk}/export/")
    size, chunks = 0, 0
    for chunk in response.streaming_content:
        size += len(chunk)
        chunks += 1
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    done.set()
    sampler.join()
    return {"size": size, "chunks": chunks, "seconds": seconds, "py_peak": peak, "rss_growth": max(peak_rss) - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--side", type=int, default=256, help="each PNG is side x side pixels of noise")
    args = parser.parse_args()
    client, team = logged_in_client()
    print(f"{'images':>7}{'zip MB':>9}{'seconds':>9}{'Python peak MB':>16}{'RSS growth MB':>15}{'peak / zip':>12}")
    for count in sorted({max(4, args.images // 10), args.images}):
        bench_team = Team.objects.create(name=f"Export {count}")
        bench_team.memberships.create(user=team.members.first())
        tasks = family_create(team=bench_team, size=count // 4, shape="bushy", images=4, seed=count)
        store_pngs(bench_team, args.side)
        session = client.session
        session["team_id"] = bench_team.pk
        session.save()
        result = stream(client, tasks[0])
        mb = 1024 * 1024
        print(
            f"{count:>7}{result['size'] / mb:>9.1f}{result['seconds']:>9.2f}{result['py_peak'] / mb:>16.2f}"
            f"{result['rss_growth'] / mb:>15.2f}{result['py_peak'] / result['size']:>12.4f}"
        )
    # The last zip is checked whole: every entry's CRC, and its count.
    response = client.get(f"/tasks/{tasks[0].pk}/export/")
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as bundle:
        assert bundle.testzip() is None
        assert len(bundle.namelist()) == len(tasks) * 4 + 2, len(bundle.namelist())
    print(f"checked: {len(tasks) * 4} images + metadata.json + index.html, every CRC good")


if __name__ == "__main__":
    main()
