"""Collections in real Chromium: create one, put an image in it from the image's control by keyboard alone,
and find it on the collections page with its count and cover."""

from __future__ import annotations

import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from playwright.sync_api import Page, expect

from generations.models import CollectionItem, Image, Prompt, Task, Team
from tests.support.teams import join
from tests.test_browser_studio import watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"


def _finished_grid(team: Team, user, text: str, seed: int) -> Task:
    """A finished grid whose four images are saved, drawn by the sandbox's painter (pictures, not flat colour)."""
    from sandbox import images
    from sandbox.palette import scene_for

    prompt = Prompt.objects.create(team=team, author=user, text=text)
    now = timezone.now()
    task = Task.objects.create(
        team=team, prompt=prompt, created_by=user, action="imagine", status="finished", deadline=now + timedelta(1)
    )
    task.root = task
    task.save(update_fields=["root"])
    for index, picture in enumerate(images.imagine(scene_for(text), (256, 256), seed), start=1):
        buffer = io.BytesIO()
        picture.image.save(buffer, "WEBP", quality=80)
        image = Image(task=task, index=index, source_url=f"https://cdn.apiframe.pro/{task.pk}-{index}.png")
        image.width, image.height, image.mirrored_at = 256, 256, now
        image.thumbnail.save(f"{task.pk}-{index}.webp", ContentFile(buffer.getvalue()), save=False)
        image.file.save(f"{task.pk}-{index}.webp", ContentFile(buffer.getvalue()), save=False)
        image.save()
    return task


@pytest.fixture
def studio(live_server, django_user_model):
    team = Team.objects.create(name="Moonlight Agency")
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    join(team, alice)
    grid = _finished_grid(team, alice, "a lighthouse in fog at dawn, soft teal light", seed=7)
    return SimpleNamespace(url=live_server.url, team=team, alice=alice, grid=grid)


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Imagine")).to_be_visible()
    page.wait_for_load_state("domcontentloaded")  # the deferred scripts have run


def test_create_a_collection_then_add_an_image_by_keyboard(page: Page, studio, artifacts):
    url, alice, grid = studio.url, studio.alice, studio.grid
    errors = watch_errors(page, [])
    log_in(page, url)

    page.get_by_role("link", name="Collections", exact=True).click()
    expect(page.get_by_role("heading", name="Collections", level=1)).to_be_visible()
    name_box = page.get_by_role("textbox", name="New collection name")
    name_box.fill("Moodboard")
    name_box.press("Enter")
    card = page.locator("article.coll", has=page.get_by_role("heading", name="Moodboard"))
    expect(card).to_contain_text("0 images")
    expect(page.get_by_role("status")).to_have_text("Created “Moodboard”.")
    expect(name_box).to_have_value("")  # ready for the next one

    page.goto(f"{url}/tasks/{grid.pk}/")
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("link", name="Collections for image 2").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#collect-dialog")
    expect(dialog).to_be_visible()
    toggle = dialog.get_by_role("button", name="Moodboard")
    expect(toggle).to_be_focused()  # the first collection, ready for Space
    expect(toggle).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(toggle).to_be_focused()  # still there, to toggle back or move on
    expect(dialog.get_by_role("status")).to_have_text("Added to “Moodboard”.")
    expect(toggle).to_contain_text("1")
    page.screenshot(path=artifacts / "collections-control-desktop.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("link", name="Collections for image 2")).to_be_focused()
    assert page.evaluate("window.__sameDocument") is True

    image = grid.images.get(index=2)
    item = CollectionItem.objects.get()
    assert (item.collection.name, item.image_id, item.added_by) == ("Moodboard", image.pk, alice)

    page.get_by_role("link", name="Collections", exact=True).click()
    card = page.locator("article.coll", has=page.get_by_role("heading", name="Moodboard"))
    expect(card).to_contain_text("1 image")
    expect(card.locator(f'img[src="/images/{image.pk}/thumb/"]')).to_be_visible()
    browse = f"/library/?collection={item.collection_id}"
    expect(card.get_by_role("link", name="Moodboard")).to_have_attribute("href", browse)
    assert errors == []


def test_a_key_pressed_the_moment_the_control_opens_toggles_in_place(page: Page, studio):
    url, team, alice, grid = studio.url, studio.team, studio.alice, studio.grid
    from generations.services import collections

    collections.collection_create(team=team, user=alice, name="Moodboard")
    log_in(page, url)
    page.goto(f"{url}/tasks/{grid.pk}/")
    page.evaluate("window.__sameDocument = true")
    # Faster than any hand: "press" the toggle as soon as focus reaches it. Before htmx has wired it, that would
    # send the plain form and leave the page.
    page.evaluate(
        """document.addEventListener("focusin", (event) => {
            if (!event.target.matches(".pick__toggle") || window.__pressed) return;
            window.__pressed = true;
            event.target.click();
        })"""
    )
    page.get_by_role("link", name="Collections for image 1").click()
    toggle = page.locator("dialog#collect-dialog").get_by_role("button", name="Moodboard")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__sameDocument") is True
    assert CollectionItem.objects.count() == 1


def test_rename_and_delete_in_place(page: Page, studio):
    url, team, alice = studio.url, studio.team, studio.alice
    from generations.services import collections

    moodboard = collections.collection_create(team=team, user=alice, name="Moodboard")
    collections.collection_create(team=team, user=alice, name="Harbours")
    errors = watch_errors(page, [])
    log_in(page, url)
    page.goto(f"{url}/collections/")
    page.evaluate("window.__sameDocument = true")

    card = page.locator(f"#collection-{moodboard.pk}")
    card.get_by_role("button", name="Rename").click()
    box = page.locator(f"#collection-{moodboard.pk}-new-name")
    expect(box).to_be_focused()
    box.fill("harbours")
    box.press("Enter")
    expect(page.locator(f"#collection-{moodboard.pk}-rename-error")).to_have_text(
        "Your team already has a collection named “Harbours”."
    )
    expect(box).to_be_visible()  # the popover stays open to fix the name
    box.fill("Night ferries")
    box.press("Enter")
    expect(box).to_be_hidden()
    expect(card.get_by_role("heading", name="Night ferries")).to_be_visible()
    expect(card.get_by_role("button", name="Rename")).to_be_focused()

    card.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Delete", exact=True).last.click()
    expect(card).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("Deleted “Night ferries”. Its images are still in the library.")
    assert page.evaluate("window.__sameDocument") is True
    assert list(team.collections.values_list("name", flat=True)) == ["Harbours"]
    assert errors == []


def test_screenshots_at_desktop_and_phone_widths(page: Page, studio, artifacts):
    """Not an assertion of looks: the pictures a person checks (test-artifacts/collections-*.png)."""
    url, team, alice, grid = studio.url, studio.team, studio.alice, studio.grid
    from generations.services import collections

    prompts = [
        ("a quiet coffee shop at dawn, warm tones, film grain", 11),
        ("a desert highway at night, neon motel sign", 12),
        ("snowy pine forest, blue hour, mist", 13),
    ]
    grids = [grid, *(_finished_grid(team, alice, text, seed) for text, seed in prompts)]
    names = ["Lighthouse series", "Coffee shop moods", "Neon nights — client pitch for the motel chain", "Winter"]
    names.append("Ideas")  # left empty
    for n, name in enumerate(names):
        board = collections.collection_create(team=team, user=alice, name=name)
        if n < len(grids):
            for image in grids[n].images.all()[: n + 2]:
                collections.collection_add_image(collection=board, image=image, user=alice)
    log_in(page, url)
    for width, height, label in ((1280, 900, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{url}/collections/")
        page.screenshot(path=artifacts / f"collections-index-{label}.png", full_page=True)
        page.locator("article.coll").first.get_by_role("button", name="Rename").click()
        page.screenshot(path=artifacts / f"collections-rename-{label}.png")
        page.keyboard.press("Escape")
        page.goto(f"{url}/tasks/{grid.pk}/")
        page.get_by_role("link", name="Collections for image 1").click()
        expect(page.locator("dialog#collect-dialog")).to_be_visible()
        page.screenshot(path=artifacts / f"collections-control-{label}.png")
        page.goto(f"{url}/images/{grid.images.get(index=1).pk}/collections/")  # the page without JS
        page.screenshot(path=artifacts / f"collections-control-page-{label}.png", full_page=True)
        page.goto(f"{url}/")
        page.get_by_label("Collection for the new images").select_option(label="Into “Neon nights — client pi…”")
        page.locator("#composer").screenshot(path=artifacts / f"collections-composer-{label}.png")


def test_an_image_joins_a_collection_from_the_studios_action_menu(page: Page, studio):
    url, team, alice, grid = studio.url, studio.team, studio.alice, studio.grid
    from generations.services import collections

    collections.collection_create(team=team, user=alice, name="Moodboard")
    errors = watch_errors(page, [])
    log_in(page, url)
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Actions for image 3").click()
    menu = page.locator("#image-menu")
    expect(menu).to_be_visible()
    menu.get_by_role("link", name="Collections…").click()
    dialog = page.locator("dialog#collect-dialog")
    expect(dialog).to_be_visible()
    expect(menu).to_be_hidden()
    toggle = dialog.get_by_role("button", name="Moodboard")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__sameDocument") is True  # the studio stayed, with its cards
    item = CollectionItem.objects.get()
    assert (item.image, item.added_by) == (grid.images.get(index=3), alice)
    assert errors == []
