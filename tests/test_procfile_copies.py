"""Two copies of every Procfile process side by side, as an operator scales them (README.md, Deploy): two web
processes behind one database, two workers, two mirror workers and two pollers, against a sandbox started apart
that drops and duplicates webhooks; once with the database's job queues, once with RQ on a real redis-server.
Every prompt goes upstream exactly once, every task finishes, every image is saved once, and no process logs a
traceback."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid

import pytest
import requests
import trustme

from bench.stack import free_port, redis_server
from tests.test_production import MANAGE, ROOT, production_database, started, tls_proxy, wait_until

PROMPTS = 8
PASSWORD = "a-long-operator-password"


def procfile() -> dict[str, list[str]]:
    """The Procfile's commands, with this interpreter in place of `python` and gunicorn run as a module."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            words = shlex.split(command)
            if words[0] == "python":
                words[0] = sys.executable
            elif words[0] == "gunicorn":
                words[:1] = [sys.executable, "-m", "gunicorn"]
            commands[name.strip()] = words
    return commands


def studio_state(env: dict[str, str]) -> dict:
    script = (
        "import json; from generations.models import Task, Image; "
        "print(json.dumps({'statuses': sorted(Task.objects.values_list('status', flat=True)), "
        "'mirrored': Image.objects.exclude(mirrored_at=None).count(), 'images': Image.objects.count()}))"
    )
    out = subprocess.run([*MANAGE, "shell", "-c", script], env=env, capture_output=True, text=True, check=True)  # noqa: S603
    return json.loads(out.stdout.strip().splitlines()[-1])


def prompt_form(prompt: str, session: requests.Session) -> dict[str, str]:
    """The studio's prompt form as a browser sends it, with an idempotency key of its own."""
    return {
        "prompt": prompt,
        "mode": "fast",
        "aspect_ratio": "1:1",
        "idempotency_key": str(uuid.uuid4()),
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    }


def wait_all_saved(env: dict[str, str], prompts: int, seconds: float) -> None:
    def all_saved() -> bool:
        state = studio_state(env)
        return state["statuses"] == ["finished"] * prompts and state["mirrored"] == 4 * prompts

    wait_until(all_saved, "every task finished and every image saved", seconds=seconds)


@pytest.mark.parametrize("backend", ["database", "rq"])
def test_two_copies_of_every_process_send_each_prompt_once_and_save_every_image(tmp_path, backend):
    web_ports, sandbox_port = [free_port(), free_port()], free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APIFRAME_", "SANDBOX_", "WEB_"))}
    commands = procfile()
    assert set(commands) == {"web", "worker", "mirror", "poller"}

    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))

    # Production redirects plain http to https: each web sits behind a TLS proxy, as README.md's Deploy says.
    with (
        production_database(tmp_path) as database_url,
        tls_proxy(web_ports[0], cert) as public_1,
        tls_proxy(web_ports[1], cert) as public_2,
        contextlib.ExitStack() as engines,
    ):
        publics = [public_1, public_2]
        if backend == "rq":  # the same Procfile: `runworker` runs RQ workers, and the pollers share a Redis lease
            base |= {
                "TASKS_BACKEND": "django_tasks_rq.RQBackend",
                "REDIS_URL": engines.enter_context(redis_server()),
            }
        env = {
            **base,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "copies-test-" + "k" * 50,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(tmp_path / "media"),
            "APIFRAME_BASE_URL": f"{sandbox}/pro",
            "APIFRAME_FETCH_URL": sandbox,
            "APIFRAME_API_KEY": "staging-key",
            "APIFRAME_WEBHOOK_SECRET": "copies-test-webhook-secret-0123456789abcd",
            "APIFRAME_WEBHOOK_URL": f"{public_1}/webhooks/apiframe/",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "1",  # two copies of one process each, not two of the machine-sized default
            "WEB_THREADS": "2",
        }
        sandbox_env = {
            **base,
            "SANDBOX_API_KEY": "staging-key",
            "SANDBOX_TASK_SECONDS": "1",
            "SANDBOX_CONCURRENCY": "4",
            "SANDBOX_FAULTS": "webhook_drop=0.3,webhook_duplicate=0.3",
            "SANDBOX_SEED": "7",
            "REQUESTS_CA_BUNDLE": str(ca_file),
        }
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        subprocess.run([*MANAGE, "collectstatic", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [*MANAGE, "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"],
            env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            check=True,
        )
        logs = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                started([*MANAGE, "runsandbox", f"127.0.0.1:{sandbox_port}"], sandbox_env, tmp_path / "sandbox.log")
            )
            for name, command in commands.items():
                for copy in (1, 2):
                    log = tmp_path / f"{name}-{copy}.log"
                    logs.append(log)
                    copy_env = {**env, "PORT": str(web_ports[copy - 1])} if name == "web" else env
                    stack.enter_context(started(command, copy_env, log))
            wait_until(lambda: requests.get(f"{sandbox}/_sandbox/stats", timeout=1).ok, "the sandbox")
            for public in publics:
                wait_until(lambda public=public: requests.get(f"{public}/health/", verify=ca_file, timeout=2).ok, "web")

            session = requests.Session()
            session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over `verify`
            session.verify = str(ca_file)
            login = f"{public_1}/accounts/login/"
            session.get(login, timeout=10)
            response = session.post(
                login,
                data={"username": "ops", "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                headers={"Referer": login},
                timeout=10,
            )
            assert response.ok and "/accounts/login/" not in response.url
            for n in range(PROMPTS):
                web = publics[n % 2]  # the session lives in the database: either web serves it
                body = prompt_form(f"a lighthouse in fog, copy test {n}", session)
                for _ in range(2):  # a double click, on both webs: still one task
                    answer = session.post(f"{web}/tasks/", data=body, headers={"Referer": f"{web}/"}, timeout=10)
                    assert answer.status_code in (200, 302), answer.text[:500]
            wait_all_saved(env, PROMPTS, seconds=120)
            time.sleep(1)  # a late duplicate job or webhook would show up now
            state = studio_state(env)
            stats = requests.get(f"{sandbox}/_sandbox/stats", timeout=5).json()

    assert state == {"statuses": ["finished"] * PROMPTS, "mirrored": 4 * PROMPTS, "images": 4 * PROMPTS}
    assert stats["requests"].get("/pro/imagine") == PROMPTS, stats["requests"]  # each prompt sent once
    assert len(list((tmp_path / "media" / "images").iterdir())) == 4 * PROMPTS  # each image stored once
    for log in logs:
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()[-3000:]}"
