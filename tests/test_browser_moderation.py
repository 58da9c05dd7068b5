"""Moderation in real Chromium: a member flags an image from the studio's image menu (by keyboard) and a task from
its card, the owner hides both from the moderation page, and they leave a teammate's already-open studio live, with
no reload. Also: flagging without JS, and the pages at phone and desktop widths."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from playwright.sync_api import Browser, Page, expect

from generations.models import AuditEntry, Flag, Image, Membership, Task, Team
from tests.support.teams import join
from tests.test_browser_collections import _finished_grid
from tests.test_browser_studio import watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
FLAGGED = "Flagged — the team's owners will review it."
LIVE_TIMEOUT = 15_000  # ms: an idle studio asks for news every 5 s


@pytest.fixture
def studio(live_server, django_user_model):
    """The demo team: demo owns it, alex and bob are members; two finished grids of alex's."""
    team = Team.objects.create(name="Demo studio")
    users = {}
    for name, role in (("demo", Membership.Role.OWNER), ("alex", Membership.Role.MEMBER), ("bob", "member")):
        users[name] = django_user_model.objects.create_user(name, password=PASSWORD)
        join(team, users[name], role=role)
    harbour = _finished_grid(team, users["alex"], "a harbour at night, sodium lamps, wet cobbles", seed=3)
    lighthouse = _finished_grid(team, users["alex"], "a lighthouse in fog at dawn, soft teal light", seed=7)
    return SimpleNamespace(url=live_server.url, team=team, harbour=harbour, lighthouse=lighthouse, **users)


def open_as(browser: Browser, studio, username: str, *, width: int = 1280, js: bool = True) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=js)
    page = context.new_page()
    page.goto(f"{studio.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Imagine")).to_be_visible()
    page.wait_for_load_state("domcontentloaded")  # the deferred scripts have run
    return page


def card(page: Page, task: Task):
    return page.locator(f"#task-{task.pk}")


def test_a_flagged_image_and_task_hidden_by_the_owner_leave_a_teammates_open_studio(chromium, studio, artifacts):
    errors: list[str] = []
    bob = open_as(chromium, studio, "bob")
    watch_errors(bob, errors)
    image = studio.lighthouse.images.get(index=2)
    thumb = f'img[src="/images/{image.pk}/thumb/"]'
    expect(card(bob, studio.lighthouse).locator(thumb)).to_be_visible()
    bob.evaluate("window.__sameDocument = true")  # gone if anything reloads bob's page

    # alex flags image 2 from the image menu, by keyboard.
    alex = open_as(chromium, studio, "alex")
    watch_errors(alex, errors)
    expect(alex.get_by_role("link", name="Moderation")).to_have_count(0)  # members have no such page
    card(alex, studio.lighthouse).get_by_label("Actions for image 2").focus()
    alex.keyboard.press("Enter")
    menu = alex.locator("#image-menu")
    menu.get_by_role("link", name="Flag…").focus()
    alex.keyboard.press("Enter")
    dialog = alex.get_by_role("dialog", name="Flag")
    expect(dialog.get_by_role("heading", name="Flag image 2")).to_be_visible()
    expect(dialog.get_by_role("radio", name="Sexual or nudity")).to_be_focused()
    alex.keyboard.press("ArrowDown")  # the next reason, chosen as it gets focus
    expect(dialog.get_by_role("radio", name="Violence or gore")).to_be_checked()
    alex.keyboard.press("Tab")
    alex.keyboard.type("blood on the rocks")
    alex.keyboard.press("Tab")
    alex.keyboard.press("Enter")
    expect(dialog).to_contain_text(FLAGGED)
    alex.set_viewport_size({"width": 1280, "height": 900})
    alex.screenshot(path=artifacts / "flag-dialog-done-1280.png")
    alex.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(card(alex, studio.lighthouse).get_by_label("Actions for image 2")).to_be_focused()  # focus came back

    # ... and the harbour task from its card.
    card(alex, studio.harbour).get_by_role("link", name=f"Flag task {studio.harbour.pk}").click()
    expect(dialog.get_by_role("heading", name="Flag this task")).to_be_visible()
    dialog.get_by_label("Off-brief or spam").check()
    dialog.get_by_role("button", name="Flag").click()
    expect(dialog).to_contain_text(FLAGGED)
    dialog.get_by_role("button", name="Close").click()
    assert Flag.objects.filter(image=image, reason="violence", note="blood on the rocks").count() == 1
    assert Flag.objects.filter(task=studio.harbour, reason="off_brief").count() == 1

    # demo, the owner, hides the image from the moderation page.
    demo = open_as(chromium, studio, "demo")
    watch_errors(demo, errors)
    demo.get_by_role("link", name="Moderation").click()
    expect(demo.get_by_role("heading", name="Moderation")).to_be_visible()
    queue = demo.locator("#mod-list")
    expect(queue.locator(".mod-item")).to_have_count(2)
    expect(queue).to_contain_text("blood on the rocks")
    demo.get_by_role("button", name="Hide").click()  # nothing picked, no reason: refused
    expect(demo.locator("#mod-error")).to_have_text("Select at least one item.")
    demo.locator(f"#pick-image-{image.pk}").check()
    demo.get_by_role("button", name="Hide").click()
    expect(demo.locator("#mod-error")).to_have_text("Give a reason: it is kept in the audit trail.")
    assert Image.objects.get(pk=image.pk).hidden_at is None
    demo.get_by_label("Reason, kept in the audit trail").fill("gore, not for the client")
    demo.get_by_role("button", name="Hide").click()
    expect(demo.locator("#mod-error")).to_have_text("Hid 1 item.")
    expect(queue.locator(".mod-item")).to_have_count(1)

    # The image leaves bob's open studio on its next pulse; the card keeps the other three.
    lighthouse = card(bob, studio.lighthouse)
    expect(lighthouse.locator(thumb)).to_have_count(0, timeout=LIVE_TIMEOUT)
    expect(lighthouse.locator(".shot__link img")).to_have_count(3)
    lighthouse.screenshot(path=artifacts / "studio-hidden-image-1280.png")

    # Then the whole harbour task, picked with "Select all": its card leaves bob's studio.
    demo.get_by_label("Select all").check()
    demo.get_by_label("Reason, kept in the audit trail").fill("off brief")
    demo.get_by_role("button", name="Hide").click()
    expect(demo.locator("#mod-error")).to_have_text("Hid 1 item.")
    expect(demo.get_by_text("Nothing to review: no open flags.")).to_be_visible()
    expect(card(bob, studio.harbour)).to_have_count(0, timeout=LIVE_TIMEOUT)
    assert bob.evaluate("window.__sameDocument") is True  # no reload on the way

    hides = AuditEntry.objects.filter(act=AuditEntry.Act.HIDE).order_by("pk")
    assert [(e.actor_name, e.target_type, e.target_id, e.reason) for e in hides] == [
        ("demo", "image", image.pk, "gore, not for the client"),
        ("demo", "task", studio.harbour.pk, "off brief"),
    ]

    # Restored from the Hidden tab, the card comes back to bob's page live.
    demo.get_by_role("link", name="Hidden", exact=True).click()
    demo.locator(f"#pick-task-{studio.harbour.pk}").check()
    demo.get_by_label("Reason, kept in the audit trail").fill("the client asked for it after all")
    demo.get_by_role("button", name="Restore").click()
    expect(demo.locator("#mod-error")).to_have_text("Restored 1 item.")
    expect(card(bob, studio.harbour)).to_be_visible(timeout=LIVE_TIMEOUT)
    assert bob.evaluate("window.__sameDocument") is True
    assert errors == []


def test_a_member_flags_without_javascript(chromium, studio):
    alex = open_as(chromium, studio, "alex", js=False)
    image = studio.harbour.images.get(index=1)
    card(alex, studio.harbour).get_by_role("button", name="Actions for image 1").click()  # the image's menu page
    alex.get_by_role("link", name="Flag…").click()
    expect(alex.get_by_role("heading", name="Flag image 1")).to_be_visible()
    alex.get_by_role("button", name="Flag").click()  # no reason chosen: the browser asks for one first
    expect(alex.get_by_role("heading", name="Flag image 1")).to_be_visible()
    assert not Flag.objects.exists()
    alex.get_by_label("Depicts a real person").check()
    alex.get_by_label("Note").fill("our CEO's face")
    alex.get_by_role("button", name="Flag").click()
    expect(alex.get_by_role("status")).to_contain_text(FLAGGED)
    assert alex.url.endswith(f"/tasks/{studio.harbour.pk}/")
    assert Flag.objects.filter(image=image, reason="real_person", note="our CEO's face").count() == 1


@pytest.mark.parametrize("width", [390, 1280])
def test_the_moderation_page_and_the_flag_dialog_look_right(chromium, studio, artifacts, width):
    from generations.services import moderation

    for user, task in ((studio.alex, studio.lighthouse), (studio.bob, studio.lighthouse)):
        moderation.flag_create(user=user, team=studio.team, reason="violence", note="blood on the rocks", task=task)
    image = studio.harbour.images.get(index=3)
    moderation.flag_create(user=studio.bob, team=studio.team, reason="real_person", note="our CEO", image=image)
    demo = open_as(chromium, studio, "demo", width=width)
    demo.goto(f"{studio.url}/moderation/")
    demo.locator(f"#pick-image-{image.pk}").check()
    demo.screenshot(path=artifacts / f"moderation-{width}.png", full_page=True)
    # No sideways scrolling on a phone.
    assert demo.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    moderation.items_hide(actor=studio.demo, items=Image.objects.filter(pk=image.pk), reason="a real face, no consent")
    demo.goto(f"{studio.url}/moderation/?show=hidden")
    expect(demo.get_by_role("button", name="Restore")).to_be_visible()
    demo.screenshot(path=artifacts / f"moderation-hidden-{width}.png", full_page=True)
    assert demo.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    alex = open_as(chromium, studio, "alex", width=width)
    card(alex, studio.harbour).get_by_label("Actions for image 1").click()
    alex.locator("#image-menu").get_by_role("link", name="Flag…").click()
    expect(alex.get_by_role("dialog", name="Flag").get_by_role("heading", name="Flag image 1")).to_be_visible()
    alex.screenshot(path=artifacts / f"flag-dialog-{width}.png")
