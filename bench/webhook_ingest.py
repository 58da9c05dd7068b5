"""Webhook ingest through gunicorn on loopback: deliveries per second, p50 and p99 latency, deliveries lost.

Starts the web process as production runs it (gunicorn with mjstudio/gunicorn.conf.py, DEBUG off, collected
static) on a free port with a throwaway SQLite database, and seeds 1,000 tasks of one team with Apiframe task
ids. Then concurrent clients on keep-alive connections send what Apiframe would: progress updates (processing,
rising percentage) and final results (finished, four image URLs), round after round, shuffled, with the headers
a TLS proxy forwards; meanwhile another client, logged in, loads the studio page again and again.

Lost: a delivery answered 2xx that is missing from the webhook log, or a task whose row does not show the most
advanced update it was sent (status, percentage, images). It must be 0. No worker runs: the mirror jobs that
finished results queue just wait in the database. The load generator runs on the same machine.
Usage: .venv/bin/python bench/webhook_ingest.py [--tasks 1000] [--runs 3] [--clients 8] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import runpy
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import ROOT, free_port, median, percentile

SECRET = "bench-webhook-secret-0123456789abcdef"
PROGRESS = (15, 35, 60, 85)  # percentages of the progress updates, in the order Apiframe sends them
NO_FINAL_EVERY = 5  # every 5th task is still processing at the end: its last percentage must stick
BROWSE_EVERY = 0.5  # seconds between two loads of the studio page
PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


def production_env(tmp: str, port: int, database_url: str = "") -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APIFRAME_", "DATABASE_URL"))},
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-" + "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_STATIC_ROOT": f"{tmp}/static",
        "DATABASE_URL": database_url or f"sqlite:///{tmp}/db.sqlite3",
        "MEDIA_ROOT": f"{tmp}/media",
        # Apiframe itself is never called here (no worker, no poller): a closed port on loopback.
        "APIFRAME_BASE_URL": f"http://127.0.0.1:{free_port()}/pro",
        "APIFRAME_FETCH_URL": "http://127.0.0.1:9",
        "APIFRAME_API_KEY": "bench-key",
        "APIFRAME_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
    }


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def deliveries_for(run: int, tasks: int) -> tuple[list[dict], dict[str, dict]]:
    """Every task's updates, round by round (each round shuffled), and the last update each task is sent."""
    rng = random.Random(run)
    ids = [f"bench-{run}-{i:05d}" for i in range(tasks)]
    rounds: list[list[dict]] = []
    for percentage in PROGRESS:
        rounds.append(
            [{"task_id": t, "task_type": "imagine", "status": "processing", "percentage": str(percentage)} for t in ids]
        )
    finals = [
        {
            "task_id": t,
            "task_type": "imagine",
            "status": "finished",
            "percentage": "100",
            "original_image_url": f"https://cdn.apiframe.pro/images/{t}-grid.png",
            "image_urls": [f"https://cdn.apiframe.pro/images/{t}-{n}.png" for n in range(1, 5)],
        }
        for n, t in enumerate(ids)
        if n % NO_FINAL_EVERY != NO_FINAL_EVERY - 1
    ]
    rounds.append(finals)
    last = {}
    for updates in rounds:
        rng.shuffle(updates)
        last.update({u["task_id"]: u for u in updates})
    return [u for updates in rounds for u in updates], last


class KeepAliveConnection:
    """HTTP/1.1 POSTs on one keep-alive connection, the way a load generator written in C (wrk, hey) sends them:
    the request's head is built once and a response is read by its Content-Length. http.client parses each
    response's headers with the email package, about 0.1 ms of CPU per request, which the 2 shared cores would
    charge against the server's figure."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port = port
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
        self.head = "\r\n".join(lines).encode() + b"\r\nContent-Length: "
        self.sock: socket.socket | None = None
        self.buffer = b""

    def post(self, body: bytes) -> int:
        """The response's status (its body read and dropped); OSError if the connection fails."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.buffer = b""
        self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines)
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._receive()
        self.buffer = self.buffer[length:]
        if headers.get("connection") == "close":
            self.close()
        return int(status_line.split()[1])

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def send_all(port: int, deliveries: list[dict], clients: int, results: Results) -> float:
    bodies = iter([json.dumps(d).encode() for d in deliveries])
    take = threading.Lock()
    headers = {"Content-Type": "application/json", "x-webhook-secret": SECRET, **PROXY_HEADERS}

    def client() -> None:
        connection = KeepAliveConnection(port, "/webhooks/apiframe/", headers)
        latencies, acked = [], 0
        while True:
            with take:
                body = next(bodies, None)
            if body is None:
                break
            started = time.perf_counter()
            try:
                status = connection.post(body)
            except (OSError, KeyError, ValueError) as exc:
                connection.close()  # the next request opens a new connection
                with results.lock:
                    results.errors.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - started)
            if 200 <= status < 300:
                acked += 1
            else:
                with results.lock:
                    results.errors.append(f"HTTP {status}")
        connection.close()
        with results.lock:
            results.latencies += latencies
            results.acked += acked

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def browse(port: int, session_cookie: str, stop: threading.Event, results: Results) -> None:
    """A team member loading the whole studio page twice a second (the open page itself only asks the much
    cheaper /studio/pulse/)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"sessionid={session_cookie}", **PROXY_HEADERS}
    while not stop.wait(BROWSE_EVERY):
        started = time.perf_counter()
        try:
            connection.request("GET", "/", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            results.page_errors.append(repr(exc))
            continue
        results.pages.append(time.perf_counter() - started)
        if response.status != 200 or b'id="cards"' not in body:
            results.page_errors.append(f"HTTP {response.status}")
    connection.close()


def seed(run: int, tasks: int) -> str:
    """A team, a member with a session (the browsing client), and the run's tasks, accepted by Apiframe."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db.models import F
    from django.test import Client
    from django.utils import timezone

    from generations.models import Membership, Prompt, Task, Team

    user = get_user_model().objects.create_user(f"bench{run}", password="bench-password-1234")
    team = Team.objects.create(name=f"Bench {run}")
    Membership.objects.create(team=team, user=user)
    prompt = Prompt.objects.create(team=team, author=user, text="a lighthouse in fog")
    deadline = timezone.now() + timedelta(hours=1)
    Task.objects.bulk_create(
        Task(
            team=team,
            prompt=prompt,
            created_by=user,
            action="imagine",
            status="pending",
            apiframe_task_id=f"bench-{run}-{i:05d}",
            deadline=deadline,
        )
        for i in range(tasks)
    )
    Task.objects.filter(team=team).update(root=F("pk"))
    browser = Client()
    browser.force_login(user)
    return browser.cookies["sessionid"].value


def lost_count(run: int, last: dict[str, dict], acked: int) -> int:
    """Deliveries acknowledged but not logged, plus tasks whose row lags behind their last update."""
    from django.db.models import Count

    from generations.models import Task, WebhookDelivery

    logged = WebhookDelivery.objects.filter(apiframe_task_id__startswith=f"bench-{run}-").count()
    lost = max(acked - logged, 0)
    rows = Task.objects.filter(apiframe_task_id__startswith=f"bench-{run}-").annotate(images_count=Count("images"))
    for task in rows.values("apiframe_task_id", "status", "percentage", "images_count"):
        update = last[task["apiframe_task_id"]]
        if update["status"] == "finished":
            expected = ("finished", 100, 4)
        else:
            expected = ("processing", int(update["percentage"]), 0)
        lost += (task["status"], task["percentage"], task["images_count"]) != expected
    return lost


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children still running, from /proc (Linux)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = 0
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn stopped while starting")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health/", timeout=1).ok:
                return
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not start within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="concurrent webhook senders (default 8)")
    parser.add_argument("--database-url", default="", help="an empty database to use instead of a new SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mjstudio-ingest-") as tmp:
        port = free_port()
        env = production_env(tmp, port, args.database_url)
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        log = open(Path(tmp) / "gunicorn.log", "w")  # noqa: SIM115
        gunicorn = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "mjstudio" / "gunicorn.conf.py")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        conf = runpy.run_path(str(ROOT / "mjstudio" / "gunicorn.conf.py"))
        try:
            wait_until_up(port, gunicorn)
            print(
                f"Webhook ingest through gunicorn ({os.cpu_count()} cores, load generator included): {args.tasks} "
                f"tasks, {len(PROGRESS)} progress updates each and a final result for "
                f"{NO_FINAL_EVERY - 1} in {NO_FINAL_EVERY}, {args.clients} senders, one client browsing the studio"
            )
            rates, p50s, p99s, losses, cpus = [], [], [], [], []
            for run in range(1, args.runs + 1):
                session_cookie = seed(run, args.tasks)
                deliveries, last = deliveries_for(run, args.tasks)
                results = Results()
                stop = threading.Event()
                browser = threading.Thread(target=browse, args=(port, session_cookie, stop, results))
                browser.start()
                cpu_before = cpu_seconds(gunicorn.pid), time.process_time()
                elapsed = send_all(port, deliveries, args.clients, results)
                server_cpu = cpu_seconds(gunicorn.pid) - cpu_before[0]
                client_cpu = time.process_time() - cpu_before[1]
                stop.set()
                browser.join()
                lost = lost_count(run, last, results.acked) + len(results.errors)
                rate = len(deliveries) / elapsed
                p50, p99 = percentile(results.latencies, 0.5) * 1000, percentile(results.latencies, 0.99) * 1000
                rates.append(rate)
                p50s.append(p50)
                p99s.append(p99)
                losses.append(lost)
                pages = results.pages or [0.0]
                cpu = (server_cpu + client_cpu) / len(deliveries) * 1000
                cpus.append(cpu)
                print(
                    f"run {run}: {len(deliveries)} deliveries in {elapsed:5.2f} s = {rate:6.0f}/s  "
                    f"p50 {p50:5.1f} ms  p99 {p99:5.1f} ms  lost {lost}  "
                    f"(errors {len(results.errors)}; studio page {len(results.pages)}x, "
                    f"median {median(pages) * 1000:.0f} ms, errors {len(results.page_errors)}; CPU per delivery "
                    f"{server_cpu / len(deliveries) * 1000:.2f} ms gunicorn, "
                    f"{client_cpu / len(deliveries) * 1000:.2f} ms load generator; load {os.getloadavg()[0]:.1f})"
                )
            print(
                f"median of {args.runs} runs: {median(rates):.0f} deliveries/s (target >= 1000), "
                f"p50 {median(p50s):.1f} ms, p99 {median(p99s):.1f} ms (target <= 50), "
                f"lost {max(losses)} in the worst run (must be 0); "
                f"gunicorn {conf['workers']} workers x {conf['threads']} threads, DEBUG {settings.DEBUG}"
            )
            print(
                f"CPU per delivery, all processes: {median(cpus):.2f} ms, so at most {2000 / median(cpus):.0f} "
                "deliveries/s on 2 otherwise idle cores"
            )
        finally:
            gunicorn.terminate()
            gunicorn.wait(timeout=40)
            log.close()


if __name__ == "__main__":
    main()
