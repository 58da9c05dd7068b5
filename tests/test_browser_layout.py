"""Every page at phone width in real Chromium, as an owner (the widest header: six section links and the team
switcher): nothing scrolls the page sideways, and every link of the header is on screen."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from generations.models import Image, Membership, Task, Team
from generations.services.moderation import flag_create, items_hide
from generations.services.review import image_review_set
from tests.library_data import add_task
from tests.support.teams import join

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
PHONE = {"width": 390, "height": 844}
LONG = "a cathedral made of glass and coral beneath the sea, volumetric light shafts, schools of silver fish, 35mm"


@pytest.fixture
def studio(live_server, django_user_model):
    """dana owns "Demo studio" and belongs to a second team; a lineage with a hidden task and an approved image,
    a flagged image and a failed task with a long reason."""
    team = Team.objects.create(name="Demo studio")
    dana = django_user_model.objects.create_user("dana", password=PASSWORD)
    eli = django_user_model.objects.create_user("eli", password=PASSWORD)
    join(team, dana, role=Membership.Role.OWNER)
    join(team, eli, role=Membership.Role.MEMBER)
    Membership.objects.create(team=Team.objects.create(name="Moonlight Agency"), user=dana)
    now = timezone.now()
    root = add_task(user=dana, text=LONG, ratio="16:9", files=True, at=now)
    vary = add_task(user=eli, parent=root, action="vary", option="strong", index=2, files=True, at=now)
    upscale = add_task(user=dana, parent=vary, action="upscale", option="creative", index=3, files=True, at=now)
    other = add_task(user=eli, text="kite over the dunes", ratio="2:3", files=True, at=now)
    add_task(user=eli, text="Đăng quang", status="failed", error="Banned word: " + LONG, at=now)
    image_review_set(user=dana, team=team, image=upscale.images.get(), state="approved")
    flag_create(user=eli, team=team, reason="violence", note=LONG, image=other.images.get(index=1))
    items_hide(actor=dana, items=Task.objects.filter(pk=vary.pk), reason="a real person's likeness")
    items_hide(actor=dana, items=Image.objects.filter(pk=other.images.get(index=4).pk), reason="a brand's logo")
    compare = ",".join(str(pk) for pk in other.images.filter(index__lte=3).values_list("pk", flat=True))
    return SimpleNamespace(url=live_server.url, root=root, compare=compare)


def open_phone(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport=PHONE).new_page()
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Imagine")).to_be_visible()
    return page


def test_no_page_scrolls_sideways_on_a_phone_and_the_header_fits(chromium, studio, artifacts):
    page = open_phone(chromium, studio.url)
    paths = {
        "studio": "/",
        "library": "/library/?review=approved",
        "task": f"/tasks/{studio.root.pk}/",
        "collections": "/collections/",
        "usage": "/usage/",
        "moderation": "/moderation/",
        "moderation-hidden": "/moderation/?show=hidden",
        "team": "/team/settings/",
        "compare": f"/compare/?images={studio.compare}",
    }
    for name, path in paths.items():
        response = page.goto(studio.url + path)
        assert response.status == 200, (name, response.status)
        page.wait_for_load_state("load")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if widths[0] > widths[1]:
            page.screenshot(path=artifacts / f"overflow-{name}-390.png", full_page=True)
        assert widths[0] <= widths[1], f"{name} ({path}) is {widths[0]} px wide on a {widths[1]} px screen"
        # Every header control is on screen (none scrolled or pushed out of reach).
        header = page.locator("header.topbar")
        for control in header.locator("a, button, select").all():
            box = control.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= widths[1], (name, control.inner_text(), box)
    sections = page.get_by_role("navigation", name="Sections")
    for label in ("Studio", "Library", "Collections", "Usage", "Moderation", "Team"):
        expect(sections.get_by_role("link", name=label, exact=True)).to_be_visible()
    # The keyboard reaches the last section link (skip link, brand, six sections), with its focus ring drawn.
    team = sections.get_by_role("link", name="Team", exact=True)
    for _ in range(8):
        page.keyboard.press("Tab")
    expect(team).to_be_focused()
    assert team.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"
    page.screenshot(path=artifacts / "layout-header-team-focused-390.png")
