"""The fair queue in real Chromium: waiting cards show their place in line and move up live as slots free; an
owner pauses the queue and a teammate's open studio says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from generations.models import Membership, Prompt, Task, Team
from generations.services import queue
from tests.support.teams import join
from tests.test_browser_studio import log_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 10_000  # ms: a change must reach an open page within a few pulses


@pytest.fixture
def line(live_server, settings, django_user_model):
    """One slot, held by bob's task; alice's three tasks wait behind it."""
    settings.APIFRAME_CONCURRENCY = 1
    settings.MJSTUDIO_SUBMIT_MAX = settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT = 0
    team = Team.objects.create(name="Moonlight Agency")
    users = {}
    for name, role in (("alice", Membership.Role.MEMBER), ("bob", Membership.Role.OWNER)):
        users[name] = django_user_model.objects.create_user(name, password="a-long-test-password")
        join(team, users[name], role=role)
    now = timezone.now()

    def task(user, text: str, **fields) -> Task:
        prompt = Prompt.objects.create(team=team, author=user, text=text)
        made = Task.objects.create(
            team=team, prompt=prompt, created_by=user, action="imagine", deadline=now + timedelta(minutes=5), **fields
        )
        Task.objects.filter(pk=made.pk).update(root=made)
        return made

    running = task(users["bob"], "a harbour at dusk", status="pending", dispatched_at=now, apiframe_task_id="up-1")
    waiting = [task(users["alice"], f"a red kite {i}") for i in range(3)]
    queue.queue_dispatch()
    return {"url": live_server.url, "team": team, "running": running, "waiting": waiting, **users}


def label(page: Page, task: Task):
    return page.locator(f"#task-{task.pk} .progress__label")


def test_positions_on_waiting_cards_move_up_live(page: Page, line, artifacts):
    errors = watch_errors(page, [])
    log_in(page, line["url"], "alice")
    first, second, third = line["waiting"]
    expect(label(page, first)).to_have_text("1st in line")
    expect(label(page, second)).to_have_text("2nd in line")
    expect(label(page, third)).to_have_text("3rd in line")
    page.screenshot(path=artifacts / "queue-positions-desktop.png", full_page=True)

    # bob's task ends: alice's first is let go, the others move up, and the open page shows it without a reload
    Task.objects.filter(pk=line["running"].pk).update_visibly(status="finished", finished_at=timezone.now())
    queue.queue_dispatch()
    expect(label(page, first)).to_have_text("Queued…", timeout=LIVE)
    expect(label(page, second)).to_have_text("1st in line", timeout=LIVE)
    expect(label(page, third)).to_have_text("2nd in line", timeout=LIVE)
    assert not errors, errors


def test_a_pause_shows_on_a_teammates_open_studio(page: Page, chromium, line, artifacts):
    errors = watch_errors(page, [])
    log_in(page, line["url"], "alice")
    _, second, _ = line["waiting"]
    expect(label(page, second)).to_have_text("2nd in line")
    expect(page.get_by_role("button", name="Pause queue")).to_have_count(0)  # alice is no owner

    owner = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
    try:
        log_in(owner, line["url"], "bob")
        owner.screenshot(path=artifacts / "queue-owner-phone.png")
        owner.get_by_role("button", name="Pause queue").click()
        expect(owner.get_by_text("Queue paused by bob")).to_be_visible()
        owner.screenshot(path=artifacts / "queue-paused-phone.png", full_page=True)
        expect(label(page, second)).to_have_text("Queue paused", timeout=LIVE)
        expect(page.get_by_text("Queue paused by bob")).to_be_visible(timeout=LIVE)
        page.screenshot(path=artifacts / "queue-paused-desktop.png", full_page=True)

        owner.get_by_role("button", name="Resume queue").click()
        expect(owner.get_by_role("button", name="Pause queue")).to_be_visible()
        expect(label(page, second)).to_have_text("2nd in line", timeout=LIVE)
        expect(page.get_by_text("Queue paused by bob")).to_have_count(0, timeout=LIVE)
    finally:
        owner.context.close()
    line["team"].refresh_from_db()
    assert line["team"].queue_paused_at is None
    assert not errors, errors
