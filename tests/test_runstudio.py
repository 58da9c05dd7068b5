"""`make run` (manage.py runstudio): every Procfile process up (web through gunicorn), a crashed one started again,
Ctrl-C stops them all; with DEBUG off, collected static, no demo login, and a warning when Apiframe is a sandbox."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.stack import free_port
from generations.management.commands.runstudio import procfile_read

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
        for part in ("runsandbox", "gunicorn", "runworker default", "runworker mirror", "pollapiframe"):
            assert part in names
        assert "runserver" not in names
        wait_for(lambda: requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats", timeout=1).ok)

        worker = next(pid for pid, args in children_of(studio.pid).items() if "runworker default" in args)
        os.kill(worker, signal.SIGKILL)
        wait_for(
            lambda: any("runworker default" in args and pid != worker for pid, args in children_of(studio.pid).items())
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


@pytest.mark.parametrize("mode", [[], ["--dev"]], ids=["gunicorn", "dev-server"])
def test_children_do_not_outlive_a_killed_runstudio(tmp_path, mode):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "SANDBOX_ADDR": f"127.0.0.1:{free_port()}",
        "SANDBOX_DATA_DIR": str(tmp_path / "sandbox"),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)  # noqa: S603
    studio = subprocess.Popen([*manage, "runstudio", "--port", str(port), *mode], env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    wait_for(lambda: len(children_of(studio.pid)) == 5)
    web = "runserver" if mode else "gunicorn"
    assert any(web in args for args in children_of(studio.pid).values())
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health/", timeout=1).ok)
    everyone = list(children_of(studio.pid))
    studio.kill()  # SIGKILL: runstudio cannot clean up itself
    studio.wait(timeout=10)
    for pid in everyone:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), seconds=15)
    wait_for(lambda: not _answers(f"http://127.0.0.1:{port}/health/"), seconds=15)  # gunicorn's workers too


def test_runstudio_runs_the_procfile(tmp_path):
    processes = procfile_read(ROOT / "Procfile")
    assert list(processes) == ["web", "worker", "mirror", "poller"]
    assert processes["web"][0] == "gunicorn"
    assert processes["worker"][0] == processes["poller"][0] == sys.executable  # `python` is this venv's
    (tmp_path / "Procfile").write_text("# a comment\n\nweb: python -c 'print(1)'\n")
    assert procfile_read(tmp_path / "Procfile") == {"web": [sys.executable, "-c", "print(1)"]}


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "studio.example.com,127.0.0.1",
    "APIFRAME_API_KEY": "sandbox-key",
    "APIFRAME_WEBHOOK_SECRET": "w" * 32,
}


def test_production_mode_serves_collected_static_through_gunicorn_without_a_demo_login(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APIFRAME_"))},
        **PRODUCTION,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "APIFRAME_BASE_URL": f"http://127.0.0.1:{sandbox_port}/pro",  # a sandbox started apart (here: none)
        "APIFRAME_FETCH_URL": f"http://127.0.0.1:{sandbox_port}",
        "SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}",
        "PORT": str(port),  # as a platform sets it
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)  # noqa: S603
    studio = subprocess.Popen(  # noqa: S603
        [*manage, "runstudio"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proxied = {"X-Forwarded-Proto": "https"}  # as the TLS proxy in front of it sends
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health/", timeout=1).ok)
        names = sorted(children_of(studio.pid).values())
        assert len(names) == 4  # web, worker, mirror, poller: no sandbox of its own
        assert [n for n in names if "gunicorn" in n] and not [n for n in names if "runsandbox" in n]

        login = requests.get(f"http://127.0.0.1:{port}/accounts/login/", headers=proxied, timeout=5)
        assert login.status_code == 200
        assert "mjstudio-demo" not in login.text
        favicon = re.search(r'href="(/static/favicon\.[0-9a-f]{12}\.svg)"', login.text).group(1)
        static = requests.get(f"http://127.0.0.1:{port}{favicon}", headers=proxied, timeout=5)
        assert static.status_code == 200
        assert static.headers["Cache-Control"] == "max-age=315360000, public, immutable"
        assert (tmp_path / "static" / "staticfiles.json").exists()
        plain = requests.get(f"http://127.0.0.1:{port}/accounts/login/", allow_redirects=False, timeout=5)
        assert plain.status_code == 301  # plain http is sent to https
        assert plain.headers["Location"].startswith("https://")
    finally:
        studio.send_signal(signal.SIGINT)
        assert studio.wait(timeout=40) == 0
    output = studio.stdout.read()
    assert "WARNING" in output and "Production mode pointed at a sandbox" in output
    assert "Log in as" not in output
    users = subprocess.run(  # noqa: S603
        [*manage, "shell", "-c", "from django.contrib.auth.models import User; print(User.objects.count())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert users.stdout.strip().splitlines()[-1] == "0"


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
