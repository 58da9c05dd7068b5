"""`make run` (manage.py runstudio): every process up, a crashed one started again, Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.stack import free_port

ROOT = Path(__file__).resolve().parent.parent


def children_of(pid: int) -> dict[int, str]:
    command = ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)]
    out = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.stdout.splitlines() if line.strip()}


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except requests.RequestException:
            pass  # not listening yet
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.2)


def test_runstudio_runs_everything_restarts_a_crash_and_stops_cleanly(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}",
        "SANDBOX_DATA_DIR": str(tmp_path / "sandbox"),
        "DJANGO_DEBUG": "true",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)  # noqa: S603
    studio = subprocess.Popen(  # noqa: S603
        [*manage, "runstudio", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(children_of(studio.pid)) == 5)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health/", timeout=1).ok)
        names = " ".join(children_of(studio.pid).values())
        for part in ("runsandbox", "runserver", "--queue-name default", "--queue-name mirror", "pollapiframe"):
            assert part in names
        wait_for(lambda: requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats", timeout=1).ok)

        worker = next(pid for pid, args in children_of(studio.pid).items() if "--queue-name default" in args)
        os.kill(worker, signal.SIGKILL)
        wait_for(
            lambda: any(
                "--queue-name default" in args and pid != worker for pid, args in children_of(studio.pid).items()
            )
        )
        assert requests.get(f"http://127.0.0.1:{port}/health/", timeout=2).ok  # the site stayed up

        everyone = list(children_of(studio.pid))
        studio.send_signal(signal.SIGINT)
        assert studio.wait(timeout=20) == 0
        for pid in everyone:
            wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), seconds=10)
        output = studio.stdout.read()
        assert "Log in as demo / mjstudio-demo" in output
        assert "starting it again" in output
    finally:
        if studio.poll() is None:
            studio.send_signal(signal.SIGINT)
            try:
                studio.wait(timeout=20)
            except subprocess.TimeoutExpired:
                studio.kill()  # its children still get SIGTERM: they die with their parent


def test_children_do_not_outlive_a_killed_runstudio(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "SANDBOX_ADDR": f"127.0.0.1:{free_port()}",
        "SANDBOX_DATA_DIR": str(tmp_path / "sandbox"),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)  # noqa: S603
    studio = subprocess.Popen([*manage, "runstudio", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    wait_for(lambda: len(children_of(studio.pid)) == 5)
    everyone = list(children_of(studio.pid))
    studio.kill()  # SIGKILL: runstudio cannot clean up itself
    studio.wait(timeout=10)
    for pid in everyone:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), seconds=15)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
