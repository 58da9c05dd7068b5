"""Live push in real Chromium: the whole studio (runstudio: gunicorn with uvicorn workers, workers, poller, sandbox)
on a real redis-server; a prompt's card updates to its images through server-sent events, with no pulse at all, and
a tab whose session logged out elsewhere goes to the login page by itself."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from bench.stack import DEMO_PASSWORD, DEMO_USER, Stack, running_stack
from tests.test_live import redis_url  # noqa: F401 (the fixture)

pytestmark = pytest.mark.browser


def log_in(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.url}/accounts/login/")
    page.get_by_label("Username").fill(DEMO_USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Imagine")).to_be_visible()


def test_a_card_updates_live_through_server_sent_events_without_the_pulse(redis_url: str, page: Page) -> None:  # noqa: F811
    with running_stack(REDIS_URL=redis_url, SANDBOX_TASK_SECONDS="1.0") as stack:
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        log_in(page, stack)
        expect(page.locator("#live[sse-connect]")).to_have_count(1)
        assert page.locator("#pulse").count() == 0

        # A teammate's tab would get the same events; this one also gets the card from its own submit.
        page.get_by_role("textbox", name="Prompt").fill("lanterns over a night river, live")
        page.get_by_role("button", name="Imagine").click()
        card = page.locator("#cards > article.card").first
        expect(card).to_have_attribute("data-status", "finished", timeout=30_000)
        expect(card).to_have_attribute("data-ready", "true", timeout=30_000)
        page.wait_for_function(
            "card => { const i = [...card.querySelectorAll('.shot__link img')];"
            " return i.length === 4 && i.every((x) => x.complete && x.naturalWidth > 0); }",
            arg=card.element_handle(),
            timeout=30_000,
        )
        # The stream's URL now resumes after the last change it received (for htmx's own reconnects).
        assert "after=" in page.locator("#live").get_attribute("sse-connect")
        assert [url for url in asked if "/studio/events/" in url], "the page never opened its event stream"
        assert not [url for url in asked if "/studio/pulse/" in url], "the page fell back to the pulse"


def test_a_tab_logged_out_elsewhere_goes_to_log_in_by_itself_without_errors(redis_url: str, page: Page) -> None:  # noqa: F811
    with running_stack(REDIS_URL=redis_url, MJSTUDIO_LIVE_HEARTBEAT_SECONDS="1") as stack:
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        with page.expect_response(lambda response: "/studio/events/" in response.url):
            log_in(page, stack)
        other_tab = page.context.new_page()
        other_tab.goto(f"{stack.url}/")
        other_tab.get_by_role("button", name="Log out").click()
        expect(other_tab).to_have_url(re.compile(r"/accounts/login/"))
        # Within a heartbeat, the quiet studio tab's stream ends and the page loads itself again: the login page.
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"), timeout=10_000)
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        assert errors == [], errors


def test_a_tab_over_the_cap_goes_live_once_another_tab_closes(redis_url: str, page: Page) -> None:  # noqa: F811
    def stream(response) -> bool:
        return "/studio/events/" in response.url

    with running_stack(REDIS_URL=redis_url, MJSTUDIO_LIVE_MAX_STREAMS_PER_USER="1") as stack:
        with page.expect_response(stream) as first:
            log_in(page, stack)
        assert first.value.status == 200
        second_tab = page.context.new_page()
        with second_tab.expect_response(stream) as refused:
            second_tab.goto(f"{stack.url}/")
        assert refused.value.status == 429
        expect(second_tab.get_by_role("button", name="Imagine")).to_be_visible()  # the page itself works
        # htmx's SSE extension asks again, waiting longer each time (0.5, 1, 2, 4 s...): once the first tab's stream
        # has given its slot back, the second tab's next try opens its own.
        with second_tab.expect_response(lambda response: stream(response) and response.status == 200, timeout=20_000):
            page.close()
