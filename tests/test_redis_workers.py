"""Workers on RQ (TASKS_BACKEND=django_tasks_rq.RQBackend) against a real redis-server: several copies of
`manage.py runworker default` share one queue, each job runs on one worker, and a worker SIGKILLed mid-job takes
its job with it, and the job runs again on another worker (StudioQueue's retry): none lost, and
every job's effect happens exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.tasks import task

from bench.stack import free_port, redis_server
from tests.test_production import MANAGE, started, wait_until

JOBS = 6  # two rounds of three workers: the queue is empty long before the killed job is found
JOB_SECONDS = 2.0


@task()
def note_run(n: int) -> None:
    """The job under test: notes each start (with the pid running it) and, after a while, that it ended."""
    from redis import Redis

    client = Redis.from_url(settings.REDIS_URL)
    client.rpush(f"test:runs:{n}", os.getpid())
    time.sleep(JOB_SECONDS)
    client.rpush("test:done", n)


def rq_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MJSTUDIO_", "TASKS_"))}
    return {
        **base,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TASKS_BACKEND": "django_tasks_rq.RQBackend",
        "REDIS_URL": redis_url,
        "MJSTUDIO_RQ_HEARTBEAT_SECONDS": "1",  # a dead worker's job is found within about 11 s
        "MJSTUDIO_RQ_MAINTENANCE_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_it_runs_each_job_once_across_workers_and_again_when_its_worker_is_sigkilled(tmp_path):
    from redis import Redis
    from rq import Worker

    with redis_server() as redis_url:
        env = rq_env(tmp_path, redis_url)
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        client = Redis.from_url(redis_url)
        with contextlib.ExitStack() as stack:
            workers = [
                stack.enter_context(started([*MANAGE, "runworker", "default"], env, tmp_path / f"worker-{n}.log"))
                for n in range(3)
            ]
            wait_until(lambda: len(Worker.all(connection=client)) == 3, "three RQ workers")
            enqueue = f"from tests.test_redis_workers import note_run\nfor n in range({JOBS}): note_run.enqueue(n)"
            subprocess.run([*MANAGE, "shell", "-c", enqueue], env=env, check=True, capture_output=True)  # noqa: S603

            # Mid-job: a worker whose horse has noted its start, and is sleeping before it notes the end.
            def busy() -> Worker | None:
                for worker in Worker.all(connection=client):
                    job_id = worker.get_current_job_id()
                    if worker.get_state() == "busy" and job_id:
                        return worker
                return None

            wait_until(lambda: busy() is not None and client.exists("test:runs:0"), "a busy worker")
            victim = busy()
            job = victim.get_current_job()
            n = job.args[0]
            wait_until(lambda: client.llen(f"test:runs:{n}") == 1, "the job to start")
            assert int(client.lindex(f"test:runs:{n}", 0)) == victim.pid  # in the worker's own process
            killed = next(process for process in workers if process.pid == victim.pid)
            forked = _children(victim.pid)  # RQ's scheduler, if this worker runs it
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            assert str(n).encode() not in client.lrange("test:done", 0, -1), "killed too late: the job had ended"
            killed.wait(timeout=10)
            gone = lambda: not any(map(_alive, [victim.pid, *forked]))  # noqa: E731
            wait_until(gone, "the worker and its children gone", seconds=10)

            wait_until(lambda: client.llen("test:done") == JOBS, "every job done", seconds=90)
            recovered_in = time.monotonic() - killed_at
            time.sleep(JOB_SECONDS + 1)  # a second run of any job would show up now
            done = sorted(int(x) for x in client.lrange("test:done", 0, -1))
            runs = {i: client.llen(f"test:runs:{i}") for i in range(JOBS)}

    assert done == list(range(JOBS))  # every job's effect, once: none lost, none doubled
    assert runs == {i: 2 if i == n else 1 for i in range(JOBS)}  # only the killed job started twice
    # Found once its heartbeat ran out (11 s here), by idle workers (they wake every second here), then run again.
    assert recovered_in < 11 + JOB_SECONDS + 10, recovered_in
    for log in tmp_path.glob("worker-*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_a_worker_without_redis_says_so_and_stops(tmp_path):
    env = rq_env(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
    out = subprocess.run([*MANAGE, "runworker", "default"], env=env, capture_output=True, text=True, timeout=60)  # noqa: S603
    assert out.returncode == 1
    assert "Redis is not reachable at REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_it_refuses_a_queue_the_studio_does_not_have(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    out = subprocess.run([*MANAGE, "runworker", "fast"], env=env, capture_output=True, text=True)  # noqa: S603
    assert out.returncode != 0
    assert "invalid choice: 'fast'" in out.stderr


HELD_CHECK = """
from datetime import timedelta
from django.utils import timezone
import django_rq
from generations import jobs
from generations.services.mirroring import job_waits

queued = jobs.mirror_task_images.enqueue(1).id
later = jobs.mirror_task_images.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(2).id
print("queued", job_waits(queued), "scheduled", job_waits(later))
queue = django_rq.get_queue("mirror")
queue.connection.lrem(queue.key, 0, queued)  # what a worker SIGKILLed between taking the job and starting it leaves
print("popped", job_waits(queued))
"""


def test_a_job_popped_by_a_killed_worker_is_not_taken_for_waiting(tmp_path):
    """RQ still calls such a job "queued", though it is in no queue: the poller's sweep must queue the mirror again
    (the chaos run with a worker SIGKILLed every 30 s left an image "Saving..." for good before this)."""
    with redis_server() as url:
        env = rq_env(tmp_path, url)
        done = subprocess.run(  # noqa: S603
            [*MANAGE, "shell", "-c", HELD_CHECK], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2:] == ["queued True scheduled True", "popped False"], done.stdout
