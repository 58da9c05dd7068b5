"""Start the whole studio as `make run` does (runstudio: web, worker, poller, sandbox) on free ports, with a
throwaway SQLite database and media folder, for benchmarks that measure the real thing."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DEMO_USER, DEMO_PASSWORD = "demo", "mjstudio-demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    url: str
    sandbox_url: str
    env: dict[str, str]

    def sandbox_stats(self) -> dict:
        return requests.get(f"{self.sandbox_url}/_sandbox/stats", timeout=5).json()

    def logged_in_session(self) -> requests.Session:
        session = requests.Session()
        page = session.get(f"{self.url}/accounts/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        session.post(
            f"{self.url}/accounts/login/",
            data={"username": DEMO_USER, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.url}/accounts/login/"},
            timeout=10,
        )
        session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
        session.headers["Referer"] = f"{self.url}/"
        return session


@contextlib.contextmanager
def running_stack(**env_overrides: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="mjstudio-bench-") as tmp:
        port, sandbox_port = free_port(), free_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "MEDIA_ROOT": f"{tmp}/media",
            "SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}",
            "LOG_LEVEL": "WARNING",
            # The benches send tens of tasks at once on purpose: the limits on abuse would refuse them.
            "MJSTUDIO_SUBMIT_MAX": "0",
            "MJSTUDIO_TEAM_MAX_IN_FLIGHT": "0",
            **env_overrides,
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        log = open(Path(tmp) / "stack.log", "w")  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603
            [*manage, "runstudio", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        stack = Stack(url=f"http://127.0.0.1:{port}", sandbox_url=f"http://127.0.0.1:{sandbox_port}", env=env)
        try:
            _wait_until_up(stack, process)
            yield stack
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            log.close()


def _wait_until_up(stack: Stack, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the studio stopped while starting")
        with contextlib.suppress(requests.RequestException):
            if (
                requests.get(f"{stack.url}/health/", timeout=1).ok
                and requests.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=1).ok
            ):
                return
        time.sleep(0.2)
    raise RuntimeError("the studio did not start within 30 s")


def django_setup(env: dict[str, str]) -> None:
    """Let a benchmark read the stack's database through the ORM."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MEDIA_ROOT", "SANDBOX_ADDR")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seeded_database_arguments(parser: argparse.ArgumentParser) -> None:
    """--db PATH (a SQLite file seeded once and reused) or --database-url URL, for the benchmarks that seed a
    database of realistic size and ask it through the ORM."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, help="seed this SQLite file if new, reuse it if already seeded")
    where.add_argument("--database-url", help="the same in an existing database, e.g. postgres://user:pw@host/db")


def seeded_database_setup(args: argparse.Namespace, *, prefix: str) -> tuple[str, tempfile.TemporaryDirectory]:
    """Point Django at the chosen database (a throwaway SQLite file if none) and set it up. Returns the database's
    name for messages and the folder of the throwaway files (media included), to clean up at the end."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    db = args.database_url or args.db or Path(tmp.name) / "db.sqlite3"
    url = args.database_url or f"sqlite:///{Path(db).resolve()}"
    os.environ.update(DATABASE_URL=url, MEDIA_ROOT=f"{tmp.name}/media", LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    import django

    django.setup()
    return str(db), tmp


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


REDIS_SERVER = "/usr/bin/redis-server"  # Debian's package; `.ci/run` installs it


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of our own on a free port, memory only, stopped at the end: its URL. Benches and tests share
    it; a missing binary or a server that does not start raises RuntimeError (a test's failure, never a skip), and
    one that stopped before the end fails with its log."""
    import shutil

    import redis

    binary = shutil.which("redis-server") or REDIS_SERVER
    if not Path(binary).exists():
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=log
        )
        try:
            client, deadline = redis.Redis(port=port), time.monotonic() + 10
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.info("server")["process_id"] == process.pid:  # ours, not another on that port meanwhile
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            client.close()
            try:
                yield f"redis://127.0.0.1:{port}/0"
            finally:
                log.seek(0)
                assert process.poll() is None, log.read().decode()[-2000:]  # it stopped under the run
        finally:
            process.terminate()
            process.wait(timeout=10)
