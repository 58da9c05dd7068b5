"""The studio in real Chromium: a prompt becomes a grid, then pan, upscale and vary, all without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from generations.models import Task
from tests.support.teams import join

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FINISHED_TIMEOUT = 20_000  # ms


@pytest.fixture
def studio(live_server, studio_upstream, settings, django_user_model):
    from generations.models import Team

    settings.APIFRAME_WEBHOOK_URL = f"{live_server.url}/webhooks/apiframe/"
    team = Team.objects.create(name="Moonlight Agency")
    for name in ("alice", "bob"):
        user = django_user_model.objects.create_user(name, password="a-long-test-password")
        join(team, user)
    return live_server.url


def watch_errors(page: Page, errors: list[str]) -> list[str]:
    """Collect the page's script errors and CSP violations: a test ends by asserting there were none."""

    def on_console(message) -> None:
        if message.type == "error" and ("Content Security Policy" in message.text or "TypeError" in message.text):
            errors.append(message.text)

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", on_console)
    return errors


@pytest.fixture
def browser_errors(page: Page) -> list[str]:
    return watch_errors(page, [])


def log_in(page: Page, studio: str, username: str = "alice") -> None:
    page.goto(f"{studio}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Imagine")).to_be_visible()
    page.wait_for_load_state("domcontentloaded")  # the deferred scripts have run: Ctrl+Enter and the menus work


def newest_card(page: Page):
    return page.locator("#cards > article.card").first


def wait_finished(card) -> None:
    """Finished, every image saved and loaded in the page: the card will not change again."""
    expect(card).to_have_attribute("data-status", "finished", timeout=FINISHED_TIMEOUT)
    expect(card).to_have_attribute("data-ready", "true", timeout=FINISHED_TIMEOUT)
    expect(card.locator(".shot__link img").first).to_be_visible(timeout=FINISHED_TIMEOUT)
    card.page.wait_for_function(
        "card => [...card.querySelectorAll('.shot__link img')].every((i) => i.complete && i.naturalWidth > 0)",
        arg=card.element_handle(),
        timeout=FINISHED_TIMEOUT,
    )


def image_sizes(card) -> list[tuple[int, int]]:
    return card.locator(".shot__link img").evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")


def image_menu(page: Page):
    """The page's one action menu, filled in for whichever image's Actions button opened it."""
    return page.locator("#image-menu")


def act(page: Page, card, *, image: int, button: str) -> None:
    card.get_by_label(f"Actions for image {image}").click()
    image_menu(page).get_by_role("button", name=f"{button}, image {image}").click()


@pytest.mark.sandbox(task_seconds=0.6)
def test_prompt_to_grid_then_pan_upscale_and_vary(page: Page, studio, artifacts, browser_errors):
    log_in(page, studio)
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    page.get_by_role("textbox", name="Prompt").fill("a quiet coffee shop at dawn, warm tones, film grain")
    page.get_by_role("button", name="Imagine").click()
    grid = newest_card(page)
    expect(grid).to_contain_text("a quiet coffee shop at dawn")
    expect(page.get_by_role("textbox", name="Prompt")).to_have_value("")  # the composer is ready for the next prompt
    wait_finished(grid)
    expect(grid.locator(".shot__link img")).to_have_count(4)
    assert image_sizes(grid) == [[512, 512]] * 4
    page.screenshot(path=artifacts / "studio-grid-desktop.png", full_page=True)

    act(page, grid, image=3, button="Pan right")
    pan = newest_card(page)
    expect(pan).to_contain_text("Pan right of image 3")
    wait_finished(pan)
    expect(pan.locator(".shot__link img")).to_have_count(4)
    widths_heights = image_sizes(pan)
    assert all(w > h for w, h in widths_heights), widths_heights  # the canvas grew to the right

    act(page, pan, image=1, button="Upscale (Creative)")
    upscale = newest_card(page)
    expect(upscale).to_contain_text("Upscale (creative) of image 1")
    wait_finished(upscale)
    expect(upscale.locator(".shot__link img")).to_have_count(1)
    upscale.get_by_label("Actions for image 1").click()
    expect(image_menu(page).get_by_role("button", name="Vary (Subtle), image 1")).to_be_visible()
    expect(image_menu(page).get_by_role("button", name="Pan right, image 1")).to_have_count(0)  # upscales only vary
    page.keyboard.press("Escape")

    act(page, upscale, image=1, button="Vary (Subtle)")
    vary = newest_card(page)
    expect(vary).to_contain_text("Vary (subtle) of image 1")
    wait_finished(vary)
    expect(vary.locator(".shot__link img")).to_have_count(4)

    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=artifacts / "studio-lineage-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "studio-phone.png", full_page=True)

    chain = Task.objects.order_by("created_at")
    assert [(t.action, t.option, t.parent_index, t.status) for t in chain] == [
        ("imagine", "", None, "finished"),
        ("pan", "right", 3, "finished"),
        ("upscale", "creative", 1, "finished"),
        ("vary", "subtle", 1, "finished"),
    ]
    assert {t.root_id for t in chain} == {chain[0].pk}
    lineage_link = vary.locator(".card__lineage a")
    expect(lineage_link).to_have_attribute("href", re.compile(rf"/tasks/{chain[2].pk}/$"))

    page.set_viewport_size({"width": 1366, "height": 900})
    vary.get_by_role("link", name="Details").click()
    lineage = page.get_by_role("complementary", name="Lineage")
    expect(lineage.get_by_role("listitem")).to_have_count(4)
    expect(lineage.get_by_role("link", name="Vary (subtle) of image 1")).to_have_attribute("aria-current", "page")
    page.screenshot(path=artifacts / "task-detail-desktop.png", full_page=True)
    assert browser_errors == []


@pytest.mark.sandbox(task_seconds=0.3)
def test_a_bad_custom_zoom_is_explained_in_place(page: Page, studio):
    log_in(page, studio)
    page.get_by_role("textbox", name="Prompt").fill("lanterns over a river")
    page.get_by_role("textbox", name="Prompt").press("Control+Enter")  # the keyboard way to Imagine
    grid = newest_card(page)
    expect(grid).to_contain_text("lanterns over a river")
    wait_finished(grid)
    grid.get_by_label("Actions for image 2").click()
    menu = image_menu(page)
    menu.locator("input[name=zoom_factor]").fill("2.5")
    menu.get_by_role("button", name="Custom Zoom, image 2").click()
    expect(menu.get_by_role("alert")).to_contain_text("Custom zoom must be more than 1 and at most 2")
    assert Task.objects.count() == 1  # nothing was sent
    # The box's content does not stand in the way of the other buttons of the menu.
    menu.get_by_role("button", name="Vary (Strong), image 2").click()
    expect(menu).to_be_hidden()
    expect(newest_card(page)).to_contain_text("Vary (strong) of image 2")
    assert Task.objects.count() == 2


@pytest.mark.sandbox(task_seconds=0.5)
def test_teammates_see_each_others_cards_arrive_live(chromium, studio):
    bob_context = chromium.new_context(viewport={"width": 1366, "height": 900})
    alice_context = chromium.new_context(viewport={"width": 1366, "height": 900})
    try:
        bob, alice = bob_context.new_page(), alice_context.new_page()
        errors = watch_errors(bob, watch_errors(alice, []))
        log_in(bob, studio, "bob")
        log_in(alice, studio, "alice")
        alice.get_by_role("textbox", name="Prompt").fill("a paper crane on a desk")
        alice.get_by_role("button", name="Imagine").click()
        bob.get_by_role("textbox", name="Prompt").fill("a kite over the dunes")
        bob.get_by_role("button", name="Imagine").click()
        for page in (alice, bob):  # each sees both, newest on top, and both finish without a reload
            cards = page.locator("#cards > article.card")
            expect(cards).to_have_count(2, timeout=FINISHED_TIMEOUT)
            expect(cards.nth(0)).to_contain_text("a kite over the dunes")
            expect(cards.nth(1)).to_contain_text("a paper crane on a desk")
            for i in range(2):
                wait_finished(cards.nth(i))
        assert errors == []
    finally:
        bob_context.close()
        alice_context.close()
