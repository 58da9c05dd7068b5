"""The chaos run: N prompts through the real stack while the sandbox misbehaves, then a tally against its record.

Starts, on free ports with a fresh database and media folder: the sandbox (`runsandbox`, injecting webhook_drop=0.3,
webhook_duplicate=0.1, webhook_reorder=0.1, submit_5xx=0.05, submit_429=0.05, task_fail=0.05, cdn_error=0.1), W web
processes (gunicorn, mjstudio/gunicorn.conf.py, each with its own access log), K workers (database workers, or RQ
workers with --redis) and the poller. The limits on abuse and the fair queue are lifted by their settings. A few users
in a few teams log in as a browser does (login form, CSRF cookie) and submit the prompts through the composer, spread
over the web processes; a few finished grids get an upscale or a vary. With --kill-worker-every S, a random worker is
SIGKILLed every S seconds and started again.

When every task has ended (or --wait runs out), each task is compared with the sandbox's own record
(/_sandbox/tasks) and one table is printed:
- submitted, finished, failed, timed out (by the studio): the studio's tasks;
- lost: the sandbox finished it, and the studio does not show it finished (or has no task for it);
- images missing: an image of a finished task that the team-checked image view does not serve (200, the bytes whose
  hash the database holds);
- duplicates: two studio tasks for one sandbox task, two sandbox tasks for one submit (a prompt or an action sent
  upstream twice), two studio tasks for one prompt, or two images for one place in a grid;
- 5xx: answers >= 500 in the web processes' access logs (the load generator, the pages and the webhooks) or seen
  by the load generator, and web workers killed for their timeout; requests that got no answer at all (a keep-alive
  connection closed under them) are listed beside it, and sent again with the same idempotency key;
- seconds: from the first submit until everything ended.
Exits 1 unless lost, images missing, duplicates and 5xx are all 0. The last line is the table as JSON.

Usage (from the repo root or bench/):
  .venv/bin/python bench/chaos.py --tasks 100
  .venv/bin/python bench/chaos.py --tasks 5000 --database postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_chaos \
      --redis --web 2 --workers 3 [--kill-worker-every 30]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import ROOT, free_port, redis_server

FAULTS = (
    "webhook_drop=0.3,webhook_duplicate=0.1,webhook_reorder=0.1,submit_5xx=0.05,submit_429=0.05,"
    "task_fail=0.05,cdn_error=0.1"
)
SECRET = "chaos-webhook-secret-0123456789abcdef"
PASSWORD = "chaos-password-2718"
TEAMS = 3
USERS_PER_TEAM = 2
ACTION_SHARE = 0.05  # of finished grids get an upscale or a vary
ACTIONS = (("upscale:subtle", 1), ("vary:subtle", 2), ("upscale:creative", 3), ("vary:strong", 4))
ZERO_COLUMNS = ("lost", "images missing", "duplicates", "5xx")
TERMINAL = ("finished", "failed", "timed_out")
OWN_VARIABLES = ("DJANGO_", "APIFRAME_", "MJSTUDIO_", "SANDBOX_", "DATABASE_", "TASKS_", "REDIS_", "AWS_", "WEB_")
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
STATUS = re.compile(r'" (\d{3}) ')  # gunicorn's access log: ... "GET /path HTTP/1.1" 200 1234 ...


@dataclass
class Client:
    """One logged-in browser: a session with its cookies and CSRF token, bound to one web process."""

    username: str
    url: str
    session: requests.Session


@dataclass
class Tally:
    answers: Counter[int] = field(default_factory=Counter)  # HTTP status -> count, of the load generator
    # Requests that got no answer, by exception (a keep-alive connection the server had just closed, mostly): sent
    # again with the same idempotency key. A web worker killed for its timeout is counted as a 5xx instead.
    no_answer: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status: int | None, error: str = "") -> None:
        with self.lock:
            if status is None:
                self.no_answer[error] += 1
            else:
                self.answers[status] += 1


# --- the processes ---------------------------------------------------------------------------------------------


def worker_command(n: int) -> list[str]:
    """The n-th background worker: both queues, in turns of first choice (a worker always taking submits first
    would leave the images of thousands of finished grids unsaved until the last prompt is sent). What the
    Procfile's worker lines run (`runworker`: db_worker, or an RQ worker when TASKS_BACKEND names RQ)."""
    queues = ["default", "mirror"] if n % 2 == 0 else ["mirror", "default"]
    return [sys.executable, str(ROOT / "manage.py"), "runworker", *queues]


def _die_with_parent() -> None:
    """In a child, before it runs: on Linux, get SIGTERM if the chaos run dies, even of a SIGKILL."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """The stack's processes, each in a process group of its own, logging to files in `folder`."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.running: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.kills = 0

    def start(self, name: str, command: list[str], **env: str) -> None:
        self.commands[name] = command
        log = open(self.folder / f"{name}.log", "a")  # noqa: SIM115 - kept open for the child's life
        self.running[name] = subprocess.Popen(  # noqa: S603 - our own commands
            command,
            env={**self.env, **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        log.close()  # the child holds its own copy

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost machine would, then start it again."""
        process = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group: an RQ worker's work horse dies with it
        process.wait()
        self.kills += 1
        self.start(name, self.commands[name])

    def stop_all(self) -> None:
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.running.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                tail = (self.folder / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} stopped (exit {process.returncode}):\n{tail}")


def wait_until_up(url: str, processes: Processes, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        processes.check_alive()
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def fresh_postgres(url: str) -> None:
    """Drop and create the database the URL names (the role needs CREATEDB)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SystemExit(f"refusing to recreate a database named {name!r}")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def stack_env(args: argparse.Namespace, tmp: Path, sandbox_port: int, web_port: int, redis_url: str) -> dict[str, str]:
    env = {
        # None of the caller's configuration leaks in (CI's DATABASE_URL, TASKS_BACKEND, a bucket).
        **{k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)},
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": args.database or f"sqlite:///{tmp}/db.sqlite3",
        "MEDIA_ROOT": str(tmp / "media"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # The sandbox, and where it sends updates (one web process: Apiframe posts to one address).
        "SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}",
        "SANDBOX_FAULTS": args.faults,
        "SANDBOX_TASK_SECONDS": str(args.task_seconds),
        "SANDBOX_CONCURRENCY": str(args.sandbox_concurrency),
        "SANDBOX_SEED": str(args.seed),
        "SANDBOX_IMAGE_SIDE": "128",  # small pictures: thousands of tasks stay light on memory and CPU
        "SANDBOX_BANNED_WORDS": "",
        "APIFRAME_WEBHOOK_URL": f"http://127.0.0.1:{web_port}/webhooks/apiframe/",
        "APIFRAME_WEBHOOK_SECRET": SECRET,
        # Limits lifted: no per-user rate, no team cap; the fair queue sends as many at once as the sandbox's plan
        # runs (its clock starts then: thousands of submits waiting for a worker would otherwise time out).
        "MJSTUDIO_SUBMIT_MAX": "0",
        "MJSTUDIO_TEAM_MAX_IN_FLIGHT": "0",
        "APIFRAME_CONCURRENCY": str(args.sandbox_concurrency),
        # A quiet task is polled after 5 s.
        "MJSTUDIO_TASK_TIMEOUT": str(args.task_timeout),
        "MJSTUDIO_POLL_AFTER": "5",
        # A killed worker's job shows as running until this long has passed; then the poller's sweeps redo it.
        "MJSTUDIO_JOB_TIMEOUT": "120",
        "WEB_CONCURRENCY": str(args.web_workers),
    }
    if redis_url:
        env |= {"TASKS_BACKEND": "django_tasks_rq.RQBackend", "REDIS_URL": redis_url}
    return env


# --- the users ---------------------------------------------------------------------------------------------------


def users_create() -> list[str]:
    """TEAMS teams of USERS_PER_TEAM members each (one owner); returns the usernames."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from generations.models import Membership, Team

    password = make_password(PASSWORD)  # hashed once: the same password for all
    names = []
    for t in range(TEAMS):
        team = Team.objects.create(name=f"Chaos team {t + 1}")
        for u in range(USERS_PER_TEAM):
            name = f"chaos{t + 1}{'abcdefgh'[u]}"
            user = get_user_model().objects.create(username=name, password=password)
            role = Membership.Role.OWNER if u == 0 else Membership.Role.MEMBER
            Membership.objects.create(team=team, user=user, role=role)
            names.append(name)
    return names


def log_in(url: str, username: str) -> Client:
    session = requests.Session()
    page = session.get(f"{url}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{url}/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=30,
    )
    if "sessionid" not in session.cookies:
        raise RuntimeError(f"{username} could not log in ({answer.status_code})")
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{url}/", "HX-Request": "true"})
    return Client(username, url, session)


def post(client: Client, path: str, data: dict, tally: Tally, *, tries: int = 3) -> int | None:
    """POST as the composer does; a request that got no answer is sent again with the same idempotency key."""
    for _ in range(tries):
        try:
            status = client.session.post(f"{client.url}{path}", data=data, timeout=60).status_code
        except requests.RequestException as exc:
            tally.note(None, exc.__class__.__name__)
            continue
        tally.note(status)
        return status
    return None


def prompts_submit(clients: list[Client], count: int, tally: Tally, *, threads: int) -> list[str]:
    """Submit `count` distinct prompts, members taking turns, `threads` at a time. Returns the prompts."""
    run = uuid.uuid4().hex[:6]
    subjects = ("lighthouse in fog", "fox in snow", "city at dusk", "garden of glass", "desert caravan", "koi pond")

    def submit(n: int) -> str:
        text = f"{subjects[n % len(subjects)]}, chaos {run} #{n}"
        data = {"prompt": text, "mode": "fast", "aspect_ratio": "1:1", "idempotency_key": str(uuid.uuid4())}
        post(clients[n % len(clients)], "/tasks/", data, tally)
        return text

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(submit, range(count)))


def actions_submit(clients: dict[str, Client], grids: list[tuple[int, str]], tally: Tally) -> int:
    """An upscale or a vary on each of these finished grids (task pk, its author's username)."""
    for n, (pk, username) in enumerate(grids):
        action, index = ACTIONS[n % len(ACTIONS)]
        data = {"action": action, "index": str(index), "idempotency_key": str(uuid.uuid4())}
        post(clients[username], f"/tasks/{pk}/act/", data, tally)
    return len(grids)


# --- watching and tallying -------------------------------------------------------------------------------------


def studio_counts() -> Counter[str]:
    from django.db.models import Count

    from generations.models import Task

    return Counter(dict(Task.objects.values_list("status").annotate(n=Count("pk")).order_by()))


def images_unsettled() -> int:
    from generations.models import Image

    return Image.objects.mirror_pending().count()


def finished_grids(limit: int) -> list[tuple[int, str]]:
    from generations.models import Task

    rows = Task.objects.filter(status="finished", action="imagine").order_by("pk")
    return list(rows.values_list("pk", "created_by__username")[:limit])


def wait_for_the_end(expected: int, *, until: float, progress_every: float = 15.0) -> bool:
    """Until the studio holds `expected` tasks, all ended, their images all saved or given up; False at `until`."""
    shown = 0.0
    while time.monotonic() < until:
        counts = studio_counts()
        ended, unsettled = sum(counts[s] for s in TERMINAL), images_unsettled()
        if time.monotonic() - shown > progress_every:
            shown = time.monotonic()
            print(f"  {dict(counts)}; images still saving: {unsettled}", flush=True)
        if sum(counts.values()) >= expected and ended == sum(counts.values()) and unsettled == 0:
            return True
        time.sleep(1)
    return False


def images_check(clients: dict[str, Client], *, threads: int) -> tuple[int, int, int]:
    """(images expected, missing, duplicate rows) for every finished task: each place of its grid (4, or 1 for an
    upscale) must be served by the team-checked view with the bytes whose hash the database holds."""
    from django.db.models import Count

    from generations.models import Image, Task

    finished = Task.objects.filter(status="finished")
    expected = sum(1 if action == "upscale" else 4 for action in finished.values_list("action", flat=True))
    places = Image.objects.filter(task__in=finished).values("task_id", "index").annotate(n=Count("pk")).order_by()
    duplicates = sum(row["n"] - 1 for row in places)
    rows = list(
        Image.objects.filter(task__in=finished, mirrored_at__isnull=False).values_list(
            "pk", "content_hash", "task__created_by__username"
        )
    )

    def served(row: tuple[int, str, str]) -> bool:
        pk, digest, username = row
        client = clients[username]
        try:
            answer = client.session.get(f"{client.url}/images/{pk}/full/", timeout=60)
        except requests.RequestException:
            return False
        ok = answer.status_code == 200 and answer.headers.get("Content-Type", "").startswith("image/")
        return ok and hashlib.sha256(answer.content).hexdigest() == digest

    with ThreadPoolExecutor(threads) as pool:
        served_count = sum(pool.map(served, rows))
    return expected, expected - served_count, duplicates


def _request(task: dict) -> tuple:
    """What one submit asked the sandbox for: a prompt, or an action on one picture of a parent."""
    if task["task_type"] == "imagine":
        return (task["prompt"],)
    return (task["parent_task_id"], task["task_type"], task["index"], task["option"])


def compare(sandbox_tasks: list[dict], prompts: list[str]) -> dict[str, int]:
    """lost, mismatched and duplicates, from the sandbox's record and the studio's tasks."""
    from django.db.models import Count

    from generations.models import Task

    studio = list(Task.objects.exclude(apiframe_task_id=None).values_list("apiframe_task_id", "status"))
    by_upstream: dict[str, list[str]] = {}
    for upstream_id, status in studio:
        by_upstream.setdefault(upstream_id, []).append(status)
    lost = mismatched = 0
    for task in sandbox_tasks:
        shown = by_upstream.get(task["task_id"], [])
        if task["status"] == "finished" and "finished" not in shown:
            lost += 1
        elif task["status"] != "finished" and "finished" in shown:
            mismatched += 1  # the studio shows a result the sandbox never made
    known = {task["task_id"] for task in sandbox_tasks}
    mismatched += sum(1 for upstream_id in by_upstream if upstream_id not in known)
    # One submit, one upstream task: the same prompt (or action on the same picture) twice is a duplicate.
    asked = Counter(_request(t) for t in sandbox_tasks)
    twice_upstream = sum(n - 1 for n in asked.values())
    twice_in_studio = sum(len(statuses) - 1 for statuses in by_upstream.values())
    per_prompt = (
        Task.objects.filter(action="imagine", prompt__text__in=prompts)
        .values("prompt__text")
        .annotate(n=Count("pk"))
        .order_by()
    )
    twice_per_prompt = sum(row["n"] - 1 for row in per_prompt)
    return {
        "lost": lost,
        "mismatched": mismatched,
        "duplicates": twice_upstream + twice_in_studio + twice_per_prompt,
    }


def server_errors(folder: Path) -> int:
    """5xx answers in the access logs, and requests whose gunicorn worker was killed for its timeout (no access
    log line; a proxy would have answered 502)."""
    count = sum(log.read_text().count("WORKER TIMEOUT") for log in folder.glob("web*.log"))
    for log in folder.glob("access-*.log"):
        for line in log.read_text().splitlines():
            match = STATUS.search(line)
            if match and match.group(1).startswith("5"):
                count += 1
    return count


def print_table(row: dict[str, object]) -> None:
    width = max(len(k) for k in row)
    print()
    for key, value in row.items():
        print(f"  {key:<{width}}  {value}")
    print(json.dumps(row))


# --- the run -----------------------------------------------------------------------------------------------------


def kill_workers(processes: Processes, names: list[str], every: float, stop: threading.Event) -> None:
    rng = random.Random(0)
    while not stop.wait(every):
        processes.kill_and_restart(rng.choice(names))


def run(args: argparse.Namespace) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mjstudio-chaos-")))
        redis_url = stack.enter_context(redis_server()) if args.redis else ""
        if args.database:
            fresh_postgres(args.database)
        sandbox_port, web_ports = free_port(), [free_port() for _ in range(args.web)]
        env = stack_env(args, tmp, sandbox_port, web_ports[0], redis_url)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)  # noqa: S603
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "MEDIA_ROOT", "SANDBOX_ADDR", "DJANGO_DEBUG")})
        os.environ.update({k: env[k] for k in ("TASKS_BACKEND", "REDIS_URL") if k in env})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
        import django

        django.setup()
        usernames = users_create()

        processes = Processes(tmp, env)
        stack.callback(processes.stop_all)
        stack.callback(lambda: args.keep_logs and shutil.copytree(tmp, args.keep_logs, dirs_exist_ok=True))
        processes.start("sandbox", [*manage, "runsandbox", env["SANDBOX_ADDR"]])
        for n, port in enumerate(web_ports):
            gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "--config", "mjstudio/gunicorn.conf.py"]
            processes.start(f"web{n}", [*gunicorn, "--access-logfile", str(tmp / f"access-{n}.log")], PORT=str(port))
        workers = [f"worker{n}" for n in range(args.workers)]
        for n, name in enumerate(workers):
            processes.start(name, worker_command(n))
        processes.start("poller", [*manage, "pollapiframe"])
        sandbox_url = f"http://{env['SANDBOX_ADDR']}"
        wait_until_up(f"{sandbox_url}/_sandbox/stats", processes)
        for port in web_ports:
            wait_until_up(f"http://127.0.0.1:{port}/health/", processes)

        clients = {
            name: log_in(f"http://127.0.0.1:{web_ports[n % len(web_ports)]}", name) for n, name in enumerate(usernames)
        }
        stop = threading.Event()
        if args.kill_worker_every:
            killer = threading.Thread(target=kill_workers, args=(processes, workers, args.kill_worker_every, stop))
            killer.start()
            stack.callback(killer.join)
        stack.callback(stop.set)

        tally = Tally()
        started = time.monotonic()
        print(f"submitting {args.tasks} prompts ...", flush=True)
        prompts = prompts_submit(list(clients.values()), args.tasks, tally, threads=args.clients)
        print(f"  submitted in {time.monotonic() - started:.0f} s", flush=True)
        until = started + args.wait
        actions = 0
        wanted = max(1, round(args.tasks * ACTION_SHARE)) if args.actions else 0
        while actions < wanted and time.monotonic() < until:
            processes.check_alive()
            grids = finished_grids(wanted)[actions:]
            actions += actions_submit(clients, grids, tally)
            time.sleep(1)
        submitted = len(prompts) + actions
        settled = wait_for_the_end(submitted, until=until)
        seconds = time.monotonic() - started
        stop.set()
        processes.check_alive()

        sandbox_tasks = requests.get(f"{sandbox_url}/_sandbox/tasks", timeout=120).json()["tasks"]
        webhooks = requests.get(f"{sandbox_url}/_sandbox/stats", timeout=30).json()["webhooks"]
        counts = studio_counts()
        expected_images, missing, duplicate_images = images_check(clients, threads=args.clients)
        found = compare(sandbox_tasks, prompts)
        errors = server_errors(tmp)
        return {
            "tasks asked": submitted,
            "submitted": sum(counts.values()),
            "finished": counts["finished"],
            "failed": counts["failed"],
            "timed out": counts["timed_out"],
            "still running": sum(n for s, n in counts.items() if s not in TERMINAL),
            "lost": found["lost"] + found["mismatched"],
            "images": expected_images,
            "images missing": missing,
            "duplicates": found["duplicates"] + duplicate_images,
            "5xx": errors + sum(status >= 500 for status in tally.answers.elements()),
            "no answer": ", ".join(f"{k} {v}" for k, v in sorted(tally.no_answer.items())) or "0",
            "seconds": round(seconds),
            "sandbox tasks": len(sandbox_tasks),
            "sandbox finished": sum(t["status"] == "finished" for t in sandbox_tasks),
            "webhooks": ", ".join(f"{k} {v}" for k, v in sorted(webhooks.items())),
            "answers": ", ".join(f"{k}: {v}" for k, v in sorted(tally.answers.items())),
            "worker kills": processes.kills,
            "settled": settled,
            "engines": f"{'postgresql' if args.database else 'sqlite'}{' + redis/rq' if args.redis else ''}, "
            f"{args.web} web, {args.workers} workers",
        }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--database", default="", help="a postgres:// URL, recreated empty (default: new SQLite)")
    parser.add_argument("--redis", action="store_true", help="start a redis-server and run the jobs on RQ")
    parser.add_argument("--web", type=int, default=1, help="web processes (gunicorn masters)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers in each web process")
    parser.add_argument("--workers", type=int, default=1, help="background worker processes")
    parser.add_argument("--kill-worker-every", type=float, default=0, help="SIGKILL a random worker every S seconds")
    parser.add_argument("--clients", type=int, default=6, help="requests the load generator sends at once")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="SANDBOX_TASK_SECONDS")
    parser.add_argument(
        "--sandbox-concurrency", type=int, default=50, help="SANDBOX_CONCURRENCY, and APIFRAME_CONCURRENCY to match"
    )
    parser.add_argument("--task-timeout", type=float, default=300, help="MJSTUDIO_TASK_TIMEOUT")
    parser.add_argument("--wait", type=float, default=0, help="give up after this many seconds (default: by size)")
    parser.add_argument("--no-actions", dest="actions", action="store_false", help="prompts only")
    parser.add_argument("--faults", default=FAULTS)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--keep-logs", default="", help="copy the processes' logs to this folder at the end")
    args = parser.parse_args(argv)
    args.wait = args.wait or 300 + args.tasks * 1.5
    return args


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds run(): every process it started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _stop)
    row = run(args)
    print_table(row)
    return 0 if all(row[column] == 0 for column in ZERO_COLUMNS) and row["settled"] else 1


if __name__ == "__main__":
    sys.exit(main())
