from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from generations.services import teams

MAX_RESTARTS_PER_MINUTE = 3
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _die_with_parent() -> None:
    """In a child, before it runs: on Linux, get SIGTERM if runstudio itself dies, even of a SIGKILL."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Run the whole studio for local use: web server, task worker, poller and (in sandbox mode) the sandbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))

    def handle(self, *args: object, port: int, **options: object) -> None:
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes: dict[str, list[str]] = {}
        if settings.APIFRAME_IS_SANDBOX and settings.DEBUG:
            env.setdefault("SANDBOX_TASK_SECONDS", "6")
            env.setdefault("SANDBOX_DATA_DIR", str(Path(settings.BASE_DIR) / ".sandbox"))
            env.setdefault("APIFRAME_WEBHOOK_URL", f"http://127.0.0.1:{port}/webhooks/apiframe/")
            processes["sandbox"] = [*manage, "runsandbox", settings.SANDBOX_ADDR]
            teams.demo_logins_ensure()
        processes["web"] = [*manage, "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]
        if settings.TASKS["default"]["BACKEND"] == "django_tasks_db.DatabaseBackend":  # RQ runs its own workers
            for queue in settings.TASK_QUEUES:
                processes[f"worker:{queue}"] = [
                    *manage,
                    "db_worker",
                    "--queue-name",
                    queue,
                    "--interval",
                    "0.2",
                    "--no-reload",
                    "--no-startup-delay",
                ]
        processes["poller"] = [*manage, "pollapiframe"]

        self.stopping = False

        def stop(*_: object) -> None:
            self.stopping = True

        # Before any child starts, so that Ctrl-C at any moment stops them all.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        children: dict[str, subprocess.Popen] = {}
        exit_code = 1
        try:  # whatever happens here, no child outlives this command
            for name, command in processes.items():
                children[name] = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)  # noqa: S603
            # Announce once the studio (and the sandbox) answer, so the URL and login are the last lines shown.
            self._wait_for(f"http://127.0.0.1:{port}/health/", children["web"])
            if "sandbox" in children:
                self._wait_for(f"http://{settings.SANDBOX_ADDR}/_sandbox/stats", children["sandbox"])
            if not self.stopping:
                self._announce(port, sandbox="sandbox" in processes)
            exit_code = self._supervise(children, processes, env)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        sys.exit(exit_code)

    def _supervise(self, children: dict, processes: dict[str, list[str]], env: dict[str, str]) -> int:
        """Restart a child that dies (a crashed worker must not take the site down), unless it keeps dying."""
        restarts: dict[str, list[float]] = {name: [] for name in children}
        while not self.stopping:
            for name, child in children.items():
                if child.poll() is None or self.stopping:
                    continue
                recent = [t for t in restarts[name] if time.monotonic() - t < 60] + [time.monotonic()]
                if len(recent) > MAX_RESTARTS_PER_MINUTE:
                    self.stderr.write(f"{name} keeps stopping (exit {child.returncode}); stopping everything.")
                    return 1
                self.stderr.write(f"{name} stopped (exit {child.returncode}); starting it again.")
                restarts[name] = recent
                children[name] = subprocess.Popen(processes[name], env=env, preexec_fn=_die_with_parent)  # noqa: S603
            time.sleep(0.3)
        return 0

    def _wait_for(self, url: str, child: subprocess.Popen, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and child.poll() is None and not self.stopping:
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own http:// addresses
                    return
            except OSError:
                time.sleep(0.2)

    def _announce(self, port: int, *, sandbox: bool) -> None:
        lines = ["", f"mjstudio is running at http://127.0.0.1:{port}/"]
        if sandbox:
            first, second = teams.DEMO_USERS
            lines.append(f"Log in as {first} / {teams.DEMO_PASSWORD} (or {second}, same password).")
            lines.append(f"Apiframe is the local sandbox at http://{settings.SANDBOX_ADDR}/ (no key needed).")
        else:
            lines.append(f"Apiframe: {settings.APIFRAME_BASE_URL}")
        lines.append("Press Ctrl-C to stop.")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
