"""The library in real Chromium: scroll, search "ca phe", filter by author and drop the chip, star by keyboard,
open a stack in place, and come Back to the same place after opening a task."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from generations.models import Favourite, Task, Team
from tests.library_data import add_task
from tests.support.teams import join
from tests.test_browser_studio import watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
WORDS = ("lighthouse in fog", "lanterns over a river", "brutalist library in moss", "kite over the dunes")


@pytest.fixture
def library(live_server, django_user_model):
    """A team whose library holds 34 lineages (some stacked), images saved as real files, and an imagined
    "Cà phê sữa đá" by bob; the newest first page is full and a second one follows."""
    team = Team.objects.create(name="Moonlight Agency")
    users = {}
    for name in ("alice", "bob"):
        users[name] = django_user_model.objects.create_user(name, password=PASSWORD)
        join(team, users[name])
    alice, bob = users["alice"], users["bob"]
    ratios = ("1:1", "16:9", "2:3", "4:3", "9:16", "3:2")
    minute = 0
    for n in range(34):
        user = bob if n % 3 == 0 else alice
        text = f"{WORDS[n % len(WORDS)]}, study {n}"
        root = add_task(user=user, text=text, minutes=minute, ratio=ratios[n % len(ratios)], files=True)
        minute += 1
        if n % 4 == 0:
            vary = add_task(
                user=alice, parent=root, action="vary", option="subtle", index=2, minutes=minute, files=True
            )
            add_task(
                user=bob, parent=vary, action="upscale", option="creative", index=1, minutes=minute + 0.5, files=True
            )
            minute += 1
    add_task(user=bob, text="Cà phê sữa đá on a tiled table, morning light", minutes=minute, ratio="4:3", files=True)
    add_task(user=alice, text="Đăng quang, golden crown", minutes=minute + 1, status="failed", error="Banned word")
    return {"url": live_server.url, "alice": alice, "bob": bob}


def log_in(page: Page, base: str, next_path: str = "/library/") -> None:
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#lib-grid .tile").first).to_be_visible()


def tiles(page: Page):
    return page.locator("#lib-grid .tile")


def wait_images(page: Page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#lib-grid img')].every(i => i.complete)")


def test_the_library_flow(page: Page, library, artifacts):
    errors = watch_errors(page, [])
    # Short enough that the first page is more than a screen ahead of its end: nothing more loads yet.
    page.set_viewport_size({"width": 1280, "height": 560})
    log_in(page, library["url"])
    expect(tiles(page)).to_have_count(24)
    wait_images(page)

    # Scroll: the next page arrives by itself, and the address bar names every row loaded so far.
    page.mouse.wheel(0, 6000)
    expect(tiles(page)).to_have_count(36)  # 34 lineages stacked, the coffee and the failed crown
    expect(page.locator(".lib-more__end")).to_be_visible()
    assert "until=" in page.url
    page.set_viewport_size({"width": 1280, "height": 860})
    page.evaluate("window.scrollTo(0, 0)")
    wait_images(page)
    page.screenshot(path=artifacts / "library-desktop.png")

    # Back returns to the same place: the tile at the top of the screen is there again, at the same height.
    page.evaluate("window.scrollTo(0, 900)")
    page.wait_for_timeout(300)
    anchor = page.evaluate(
        """() => {
          const top = document.querySelector('.lib-bar').getBoundingClientRect().bottom;
          const tiles = [...document.querySelectorAll('#lib-grid .tile')];
          const tile = tiles.find(t => t.getBoundingClientRect().bottom > top);
          return {id: tile.id, top: Math.round(tile.getBoundingClientRect().top)};
        }"""
    )
    # Clicked by the page's script: Playwright's click would first scroll the tile out from under the bar.
    page.evaluate("id => document.querySelector(`#${id} .tile__open`).click()", anchor["id"])
    expect(page).to_have_url(re.compile(r"/tasks/\d+/"))
    page.go_back()
    expect(tiles(page)).to_have_count(36)
    at_anchor = "([id, top]) => Math.abs(document.getElementById(id).getBoundingClientRect().top - top) <= 2"
    page.wait_for_function(at_anchor, arg=[anchor["id"], anchor["top"]])
    # A fresh load of the same address (what Back does when the browser did not keep the page) as well:
    # the server renders every row down to `until`, the script puts the tile back where it was.
    page.reload()
    expect(tiles(page)).to_have_count(36)
    page.wait_for_function(at_anchor, arg=[anchor["id"], anchor["top"]])
    assert page.evaluate("performance.getEntriesByType('navigation')[0].type") == "reload"

    # Search "ca phe": bob's "Cà phê sữa đá" alone, and the URL can be shared.
    page.get_by_role("searchbox", name="Search prompts").fill("ca phe")
    expect(tiles(page)).to_have_count(1)
    expect(tiles(page).first).to_contain_text("Cà phê sữa đá")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["ca phe"]

    # Filter by author: a chip says so; removing it brings every author back.
    page.get_by_role("searchbox", name="Search prompts").fill("")
    page.wait_for_function("() => document.querySelectorAll('#lib-grid .tile').length >= 24")
    page.get_by_label("Author").select_option("bob")
    chip = page.get_by_role("link", name="Remove filter: By bob")
    expect(chip).to_be_visible()
    expect(tiles(page).first).to_contain_text("bob")
    metas = page.locator("#lib-grid .tile__meta").all_inner_texts()
    assert metas and all("bob" in text for text in metas)
    chip.click()
    expect(chip).to_have_count(0)
    expect(page.get_by_label("Author")).to_have_value("")
    assert any("alice" in text for text in page.locator("#lib-grid .tile__meta").all_inner_texts())

    # Every image rather than stacks: the toggle applies at once and says so in the URL.
    page.get_by_text("All images").click()
    expect(page.locator(".tile--stack")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"stacks=0"))
    page.get_by_text("Stacks", exact=True).click()
    expect(page.locator(".tile--stack").first).to_be_visible()

    # Star by keyboard: Tab to a tile's star, Space; "f" on the tile undoes it.
    image_id = int(page.locator("#lib-grid .tile:has(.fav__btn)").first.get_attribute("id")[1:])
    tile = page.locator(f"#i{image_id}")
    tile.locator(".tile__open").focus()
    page.keyboard.press("Tab")
    expect(tile.locator(".fav__btn")).to_be_focused()
    page.keyboard.press("Space")
    expect(tile.locator(".fav__btn")).to_have_attribute("aria-pressed", "true")
    assert Favourite.objects.filter(user=library["alice"], image_id=image_id).exists()
    expect(tile.locator(".fav__btn")).to_be_focused()  # the keyboard stays on the star

    # My favourites: that image alone, never stacked; leaving them brings the stacks back.
    page.get_by_text("★ Favourites").click()
    expect(tiles(page)).to_have_count(1)
    expect(tile).to_be_visible()
    expect(page.get_by_role("radio", name="Stacks")).to_be_disabled()
    page.get_by_text("★ Favourites").click()
    expect(page.locator(".tile--stack").first).to_be_visible()
    assert "stacks" not in page.url

    tile.locator(".tile__open").focus()
    page.keyboard.press("f")
    expect(tile.locator(".fav__btn")).to_have_attribute("aria-pressed", "false")
    page.wait_for_function(f"() => document.getElementById('f{image_id}').getAttribute('aria-pressed') === 'false'")
    assert not Favourite.objects.filter(user=library["alice"], image_id=image_id).exists()

    # A stack opens in place, with every image of its lineage, and folds again.
    page.mouse.wheel(0, 6000)
    expect(page.locator(".lib-more__end")).to_be_visible()  # everything loaded: the count holds still
    stack = page.locator(".tile--stack").first
    label = stack.locator(".tile__stack").inner_text()
    count = int(label.rsplit("×", 1)[1])
    before = tiles(page).count()
    stack.locator(".tile__stack").click()
    group = page.locator(".stack-open")
    expect(group.locator(".tile")).to_have_count(count)
    expect(tiles(page)).to_have_count(before - 1 + count)
    expect(group.locator(".tile__open").first).to_be_focused()
    wait_images(page)
    page.screenshot(path=artifacts / "library-stack-open-desktop.png")
    group.get_by_role("button", name="Fold this stack").click()
    expect(tiles(page)).to_have_count(before)

    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    wait_images(page)
    page.screenshot(path=artifacts / "library-phone.png")
    assert errors == []


def test_the_library_works_without_javascript(chromium, library):
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        log_in(page, library["url"])
        expect(tiles(page)).to_have_count(24)
        page.get_by_role("link", name="Older images").click()
        expect(tiles(page)).to_have_count(12)
        assert "cursor=" in page.url
        page.get_by_role("searchbox", name="Search prompts").fill("dang")
        page.get_by_role("button", name="Apply").click()
        expect(tiles(page)).to_have_count(1)
        expect(tiles(page).first).to_contain_text("Failed: Banned word")
        assert "q=dang" in page.url and "cursor" not in page.url
        tile = tiles(page).first
        assert Task.objects.get(pk=int(tile.get_attribute("id")[1:])).status == "failed"
    finally:
        context.close()
