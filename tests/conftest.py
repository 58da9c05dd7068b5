"""Shared fixtures: a real sandbox over HTTP on a free port, and a client pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sandbox(**options): SandboxConfig fields for the `sandbox` fixture (task_seconds, faults, ...)",
    )


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator:
    """A fresh sandbox (a local Apiframe) served over real HTTP in a background thread.

    Tune it per test with `@pytest.mark.sandbox(task_seconds=0.2, faults={"submit_429": 1.0})`.
    Tests may import the sandbox; studio code never does.
    """
    from sandbox.server import SandboxConfig, SandboxServer

    marker = request.node.get_closest_marker("sandbox")
    options = {"task_seconds": 0.3, "seed": 1234, **(marker.kwargs if marker else {})}
    server = SandboxServer(config=SandboxConfig(**options))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- Studio actors: alice and bob share a team, charlie works in another one. ----------------------------


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path) -> None:
    """Jobs are recorded, not run, unless a test asks for a real queue; files go to a temporary folder."""
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def team(db):
    from generations.models import Team

    return Team.objects.create(name="Moonlight Agency")


def _member(username: str, team):
    from django.contrib.auth import get_user_model

    from tests.support.teams import join

    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    join(team, user)
    return user


@pytest.fixture
def alice(team):
    return _member("alice", team)


@pytest.fixture
def bob(team):
    return _member("bob", team)


@pytest.fixture
def charlie(db):
    from generations.models import Team

    return _member("charlie", Team.objects.create(name="Other Studio"))


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def make_task(alice):
    """A task of alice's team, in any state; `upstream_id` marks it as accepted by Apiframe."""
    from datetime import timedelta

    from django.utils import timezone

    from generations.models import Prompt, Task

    def make(*, user=None, status="pending", action="imagine", upstream_id=None, parent=None, **fields):
        user = user or alice
        team = user.memberships.first().team
        prompt = parent.prompt if parent else Prompt.objects.create(team=team, author=user, text="a quiet harbour")
        task = Task.objects.create(
            team=team,
            prompt=prompt,
            created_by=user,
            action=action,
            status=status,
            apiframe_task_id=upstream_id,
            parent=parent,
            root=parent.root if parent else None,
            **{"deadline": timezone.now() + timedelta(minutes=5), **fields},
        )
        if task.root_id is None:
            task.root = task
            task.save(update_fields=["root"])
        return task

    return make


@pytest.fixture
def payload():
    """A recorded Apiframe payload from tests/test_data/, as bytes."""
    from pathlib import Path

    def load(name: str) -> bytes:
        return (Path(__file__).parent / "test_data" / name).read_bytes()

    return load


# --- The studio against a real sandbox, and a real browser ----------------------------------------------

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def studio_upstream(sandbox, settings):
    """Point the studio at the test's sandbox, with background jobs run at once (no separate worker)."""
    settings.APIFRAME_BASE_URL = f"{sandbox.url}/pro"
    settings.APIFRAME_FETCH_URL = sandbox.url
    settings.APIFRAME_API_KEY = sandbox.engine.config.api_key
    settings.APIFRAME_IMAGE_HOSTS = [urlsplit(sandbox.url).netloc]
    settings.APIFRAME_WEBHOOK_URL = ""
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend", "QUEUES": settings.TASK_QUEUES}
    }
    return sandbox


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through Playwright. Missing Chromium is a failure, never a skip. One per module, not per
    session: Playwright's sync API keeps an event loop running in this thread while it lives, and later tests that
    call an async view through the test client (which needs no running loop) would fail after any browser test."""
    if not Path(CHROMIUM_PATH).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM_PATH}: apt-get install chromium (or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop; Django must still let the test thread use the database.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    """Screenshots land here (not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
