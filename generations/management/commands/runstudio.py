from __future__ import annotations

import ctypes
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.services import teams

MAX_RESTARTS_PER_MINUTE = 3
STOP_SECONDS = 35  # gunicorn's graceful timeout (30 s), and a little more
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")  # the format honcho and foreman read


def _die_with_parent() -> None:
    """In a child, before it runs: on Linux, get SIGTERM if runstudio itself dies, even of a SIGKILL."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def procfile_read(path: Path) -> dict[str, list[str]]:
    """The Procfile's processes, name -> argv; `python` is the Python running this command (the venv's)."""
    processes = {}
    for line in path.read_text().splitlines():
        if match := PROCFILE_LINE.match(line.strip()):
            argv = shlex.split(match.group(2))
            processes[match.group(1)] = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    if "web" not in processes:
        raise CommandError(f"{path} has no web process")
    return processes


class Command(BaseCommand):
    help = (
        "Run every process of the Procfile on this box (web through gunicorn, workers, poller) and, in sandbox "
        "mode with DEBUG on, the sandbox. With DEBUG off it collects static files first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument(
            "--dev", action="store_true", help="Serve with Django's development server instead of gunicorn."
        )

    def handle(self, *args: object, port: int, dev: bool, **options: object) -> None:
        base_dir = Path(settings.BASE_DIR)
        manage = [sys.executable, str(base_dir / "manage.py")]
        # The venv's scripts (gunicorn) first on PATH, so the Procfile's bare names are the project's.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PORT": str(port), "PATH": path}
        processes: dict[str, list[str]] = {}
        sandbox = settings.APIFRAME_IS_SANDBOX and settings.DEBUG
        if sandbox:
            env.setdefault("SANDBOX_TASK_SECONDS", "6")
            env.setdefault("SANDBOX_DATA_DIR", str(base_dir / ".sandbox"))
            env.setdefault("APIFRAME_WEBHOOK_URL", f"http://127.0.0.1:{port}/webhooks/apiframe/")
            processes["sandbox"] = [*manage, "runsandbox", settings.SANDBOX_ADDR]
            teams.demo_logins_ensure()
        if not settings.DEBUG:
            # Hashed, compressed copies for whitenoise: without them every page would answer 500.
            call_command("collectstatic", interactive=False, verbosity=0)
        processes.update(procfile_read(base_dir / "Procfile"))  # `runworker` follows TASKS_BACKEND itself
        if dev:
            processes["web"] = [*manage, "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]

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
                children[name] = self._start(command, env, base_dir)
            # Announce once the studio (and the sandbox) answer, so the URL and login are the last lines shown.
            self._wait_for(f"http://127.0.0.1:{port}/health/", children["web"])
            if "sandbox" in children:
                self._wait_for(f"http://{settings.SANDBOX_ADDR}/_sandbox/stats", children["sandbox"])
            if not self.stopping:
                self._announce(port, sandbox=sandbox)
            exit_code = self._supervise(children, processes, env, base_dir)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for child in children.values():
                try:
                    child.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    child.kill()
        sys.exit(exit_code)

    def _start(self, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        # A process group of its own: Ctrl-C reaches runstudio alone, which stops each child once, gracefully.
        return subprocess.Popen(command, env=env, cwd=cwd, process_group=0, preexec_fn=_die_with_parent)  # noqa: S603

    def _supervise(self, children: dict, processes: dict[str, list[str]], env: dict[str, str], cwd: Path) -> int:
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
                children[name] = self._start(processes[name], env, cwd)
            time.sleep(0.3)
        return 0

    def _wait_for(self, url: str, child: subprocess.Popen, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and child.poll() is None and not self.stopping:
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own http:// addresses
                    return
            except urllib.error.HTTPError:
                return  # it answers (a production Host check may refuse 127.0.0.1): it is up
            except OSError:
                time.sleep(0.2)

    def _announce(self, port: int, *, sandbox: bool) -> None:
        lines = ["", f"mjstudio is running at http://127.0.0.1:{port}/"]
        if not settings.DEBUG:
            lines[1] += " (production: serve it through a TLS proxy that sets X-Forwarded-Proto)"
        if sandbox:
            first, second = teams.DEMO_USERS
            lines.append(f"Log in as {first} / {teams.DEMO_PASSWORD} (or {second}, same password).")
            lines.append(f"Apiframe is the local sandbox at http://{settings.SANDBOX_ADDR}/ (no key needed).")
        else:
            lines.append(f"Apiframe: {settings.APIFRAME_BASE_URL}")
        lines.append("Press Ctrl-C to stop.")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
