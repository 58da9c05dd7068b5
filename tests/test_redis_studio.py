"""The studio on RQ as a new user tries it: `make run` (manage.py runstudio) with TASKS_BACKEND set to
django_tasks_rq.RQBackend and REDIS_URL pointing at a real redis-server. runstudio starts RQ workers for both
queues (not database workers that would never read Redis), the sandbox and the poller; prompts submitted over HTTP
finish, and all their images are mirrored, each prompt sent upstream once."""

from __future__ import annotations

import subprocess

import requests
from redis import Redis
from rq import Worker

from bench.stack import free_port, redis_server
from tests.test_procfile_copies import prompt_form, studio_state, wait_all_saved
from tests.test_production import MANAGE, started, wait_until
from tests.test_redis_workers import rq_env
from tests.test_runstudio import children_of

PROMPTS = 4


def test_make_run_on_redis_runs_rq_workers_and_finishes_every_prompt(tmp_path):
    port, sandbox_port = free_port(), free_port()
    with redis_server() as redis_url:
        env = {
            **rq_env(tmp_path, redis_url),
            "DJANGO_DEBUG": "true",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}",
            "SANDBOX_DATA_DIR": str(tmp_path / "sandbox"),
            "SANDBOX_TASK_SECONDS": "1",
        }
        env = {k: v for k, v in env.items() if not k.startswith("APIFRAME_")}
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        log = tmp_path / "runstudio.log"
        with started([*MANAGE, "runstudio", "--port", str(port)], env, log) as studio:
            wait_until(lambda: len(children_of(studio.pid)) == 5, "runstudio's five processes")
            names = " ".join(children_of(studio.pid).values())
            assert "runworker default" in names and "runworker mirror" in names
            client = Redis.from_url(redis_url)
            wait_until(lambda: len(Worker.all(connection=client)) == 2, "two RQ workers")
            queues = sorted(name for worker in Worker.all(connection=client) for name in worker.queue_names())
            assert queues == ["default", "mirror"]
            studio_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: requests.get(f"{studio_url}/health/", timeout=1).ok, "the studio")
            wait_until(lambda: requests.get(f"http://{env['SANDBOX_ADDR']}/_sandbox/stats", timeout=1).ok, "sandbox")

            session = requests.Session()
            login = f"{studio_url}/accounts/login/"
            session.get(login, timeout=10)
            token = session.cookies["csrftoken"]
            answer = session.post(
                login, data={"username": "demo", "password": "mjstudio-demo", "csrfmiddlewaretoken": token}, timeout=10
            )
            assert answer.ok and "/accounts/login/" not in answer.url
            for n in range(PROMPTS):
                body = prompt_form(f"a lighthouse in fog, redis test {n}", session)
                answer = session.post(f"{studio_url}/tasks/", data=body, timeout=10)
                assert answer.status_code in (200, 302), answer.text[:500]
            wait_all_saved(env, PROMPTS, seconds=90)
            state = studio_state(env)
            stats = requests.get(f"http://{env['SANDBOX_ADDR']}/_sandbox/stats", timeout=5).json()
            ran = client.keys("rq:results:*")  # RQ keeps each finished job's result: the jobs ran on Redis
    assert state == {"statuses": ["finished"] * PROMPTS, "mirrored": 4 * PROMPTS, "images": 4 * PROMPTS}
    assert stats["requests"].get("/pro/imagine") == PROMPTS, stats["requests"]
    assert len(list((tmp_path / "media" / "images").iterdir())) == 4 * PROMPTS
    assert len(ran) >= 2 * PROMPTS  # a submit and a mirror job for each prompt at least
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert "stopped (exit" not in output, output[-3000:]  # no process died on the way
