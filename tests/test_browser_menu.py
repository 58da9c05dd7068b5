"""The page's one image menu in real Chromium: by keyboard, through a live update of its card, with a double
click, and without JS. Finished cards are made directly (real image files, no sandbox), so these are quick."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from playwright.sync_api import Page, expect

from generations.models import Image, Prompt, Task, Team
from tests.support.teams import join
from tests.test_browser_studio import image_menu, log_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROMPTS = (
    "a quiet coffee shop at dawn, warm tones, film grain",
    "lanterns over a river at dusk, long exposure",
    "a paper crane on a wooden desk, soft window light",
)


def _png(color: tuple[int, int, int], size: int, fmt: str) -> bytes:
    from PIL import Image as Picture
    from PIL import ImageDraw

    picture = Picture.new("RGB", (size, size), color)
    draw = ImageDraw.Draw(picture)
    for i in range(0, size, max(size // 8, 1)):  # a few soft bands, so the screenshots show pictures
        shade = tuple(min(255, c + i * 60 // size) for c in color)
        draw.ellipse((i // 2, i // 3, size - i // 3, size - i // 2), outline=shade, width=max(size // 40, 1))
    out = io.BytesIO()
    picture.save(out, fmt)
    return out.getvalue()


def finished(user, text: str, *, action: str = "imagine", parent: Task | None = None, index: int | None = None):
    """A finished task of the user's team with every image saved as real files."""
    team = user.memberships.first().team
    prompt = parent.prompt if parent else Prompt.objects.create(team=team, author=user, text=text)
    now = timezone.now()
    task = Task.objects.create(
        team=team,
        prompt=prompt,
        created_by=user,
        action=action,
        option="subtle" if action == "upscale" else "",
        parent=parent,
        parent_index=index,
        status="finished",
        percentage=100,
        apiframe_task_id=f"up-{Task.objects.count() + 1}-{text[:8]}",
        deadline=now + timedelta(minutes=5),
    )
    task.root = parent.root if parent else task
    task.save(update_fields=["root"])
    for i in (1,) if action == "upscale" else (1, 2, 3, 4):
        color = ((40 + 50 * i + len(text) * 7) % 200, (90 + 30 * i) % 200, (150 + len(text) * 13) % 200)
        source = f"https://cdn.apiframe.pro/{task.pk}-{i}.png"
        image = Image(task=task, index=i, source_url=source, width=512, height=512)
        image.file.save(f"{task.pk}-{i}.png", ContentFile(_png(color, 512, "PNG")), save=False)
        image.thumbnail.save(f"{task.pk}-{i}.webp", ContentFile(_png(color, 256, "WEBP")), save=False)
        image.mirrored_at = timezone.now()
        image.save()
    return task


@pytest.fixture
def studio(live_server, django_user_model):
    team = Team.objects.create(name="Moonlight Agency")
    users = {}
    for name in ("alice", "bob"):
        users[name] = django_user_model.objects.create_user(name, password="a-long-test-password")
        join(team, users[name])
    return live_server.url, users


def card_of(page: Page, task: Task):
    return page.locator(f"#task-{task.pk}")


def test_the_menu_works_by_keyboard_and_gives_focus_back(page: Page, studio, artifacts):
    url, users = studio
    errors = watch_errors(page, [])
    tasks = [finished(users["alice"], text) for text in PROMPTS]
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, url)
    card = card_of(page, tasks[1])
    opener = card.get_by_role("button", name="Actions for image 2")
    opener.focus()
    page.keyboard.press("Enter")
    menu = image_menu(page)
    expect(menu).to_be_visible()
    expect(menu.get_by_role("button", name="Vary (Strong), image 2")).to_be_focused()
    expect(menu).to_contain_text(PROMPTS[1])
    page.keyboard.press("Tab")
    expect(menu.get_by_role("button", name="Vary (Subtle), image 2")).to_be_focused()
    page.screenshot(path=artifacts / "menu-open-desktop.png")
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(opener).to_be_focused()

    page.set_viewport_size({"width": 390, "height": 844})
    card_of(page, tasks[0]).get_by_role("button", name="Actions for image 4").click()
    expect(menu.get_by_role("button", name="Pan right, image 4")).to_be_visible()
    page.screenshot(path=artifacts / "menu-open-phone.png")
    page.keyboard.press("Escape")
    page.screenshot(path=artifacts / "studio-cards-phone.png", full_page=True)
    assert errors == []


def test_a_live_update_of_its_card_leaves_an_open_menu_open_and_working(page: Page, studio):
    url, users = studio
    errors = watch_errors(page, [])
    grid = finished(users["alice"], PROMPTS[0])
    Task.objects.create(  # bob's queued task keeps the page asking for news every half second
        team=grid.team, prompt=grid.prompt, created_by=users["bob"], action="imagine", deadline=timezone.now()
    )
    log_in(page, url)
    card_of(page, grid).get_by_role("button", name="Actions for image 3").click()
    menu = image_menu(page)
    menu.get_by_role("spinbutton", name="Custom").fill("1.5")  # typed before the update arrives, still there after
    page.evaluate(f"document.getElementById('task-{grid.pk}').dataset.before = 'yes'")
    Task.objects.filter(pk=grid.pk).update(updated_at=timezone.now())  # a visible change: the pulse swaps it
    page.wait_for_function(f"() => document.getElementById('task-{grid.pk}').dataset.before === undefined")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("spinbutton", name="Custom")).to_have_value("1.5")
    menu.get_by_role("button", name="Pan right, image 3").click()
    expect(menu).to_be_hidden()
    expect(page.locator("#cards > article.card").first).to_contain_text("Pan right of image 3")
    child = Task.objects.get(parent=grid)
    assert (child.action, child.option, child.parent_index) == ("pan", "right", 3)
    assert errors == []


def test_a_double_click_in_the_menu_makes_one_task_and_an_upscale_offers_vary_only(page: Page, studio):
    url, users = studio
    grid = finished(users["alice"], PROMPTS[0])
    upscale = finished(users["alice"], PROMPTS[0], action="upscale", parent=grid, index=2)
    log_in(page, url)
    card_of(page, grid).get_by_role("button", name="Actions for image 1").click()
    image_menu(page).get_by_role("button", name="Vary (Strong), image 1").dblclick()
    expect(page.locator("#cards > article.card").first).to_contain_text("Vary (strong) of image 1")
    page.wait_for_timeout(500)  # room for a second request, were there one
    assert Task.objects.filter(parent=grid, action="vary").count() == 1

    card_of(page, upscale).get_by_role("button", name="Actions for image 1").click()
    menu = image_menu(page)
    expect(menu.get_by_role("button", name="Vary (Subtle), image 1")).to_be_visible()
    for hidden in ("Upscale (Creative), image 1", "Pan right, image 1", "Make Square, image 1", "Custom Zoom, image 1"):
        expect(menu.get_by_role("button", name=hidden)).to_have_count(0)
    # Opened again for a grid, every row is back, named for that image.
    page.keyboard.press("Escape")
    card_of(page, grid).get_by_role("button", name="Actions for image 4").click()
    expect(menu.get_by_role("button", name="Pan up, image 4")).to_be_visible()
    expect(menu.get_by_role("button", name="Vary (Subtle), image 1")).to_have_count(0)


def test_a_refused_action_is_explained_in_the_menu_of_that_image(page: Page, studio):
    url, users = studio
    grid = finished(users["alice"], PROMPTS[0])
    log_in(page, url)
    card_of(page, grid).get_by_role("button", name="Actions for image 2").click()
    menu = image_menu(page)
    menu.get_by_role("spinbutton", name="Custom").fill("3")
    menu.get_by_role("button", name="Custom Zoom, image 2").click()
    expect(menu.get_by_role("alert")).to_contain_text("Custom zoom must be more than 1 and at most 2")
    page.keyboard.press("Escape")
    card_of(page, grid).get_by_role("button", name="Actions for image 3").click()
    feedback = menu.locator(".menu__error")  # another image's menu starts clean, ready for its own refusals
    expect(feedback).to_have_text("")
    expect(feedback).to_have_attribute("id", f"task-{grid.pk}-3-feedback")
    assert not Task.objects.filter(parent=grid).exists()


def test_without_js_an_images_actions_open_on_a_page_of_their_own(chromium, studio, artifacts):
    url, users = studio
    grid = finished(users["alice"], PROMPTS[2])
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        log_in(page, url)
        card_of(page, grid).get_by_role("button", name="Actions for image 2").click()
        expect(page).to_have_url(f"{url}/tasks/{grid.pk}/actions/?index=2")
        page.screenshot(path=artifacts / "image-actions-without-js.png")
        page.get_by_role("button", name="Pan left, image 2").click()
        expect(page).to_have_url(f"{url}/")
        expect(page.locator("#cards > article.card").first).to_contain_text("Pan left of image 2")
    finally:
        context.close()
    child = Task.objects.get(parent=grid)
    assert (child.action, child.option, child.parent_index) == ("pan", "left", 2)
