"""Review in real Chromium: a member shortlists an image from the studio with the keyboard (focus stays put), is
told why they cannot approve, the owner approves it from the image menu, and the badge shows: on the owner's
card at once, on the member's open studio by the live refresh, in the library and on the task page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from generations.models import AuditEntry, Image, Membership, Team
from tests.support.teams import join
from tests.test_browser_menu import PROMPTS, finished
from tests.test_browser_studio import image_menu, log_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def studio(live_server, django_user_model):
    team = Team.objects.create(name="Moonlight Agency")
    users = {}
    for name, role in (("alice", Membership.Role.MEMBER), ("olivia", Membership.Role.OWNER)):
        users[name] = django_user_model.objects.create_user(name, password="a-long-test-password")
        join(team, users[name], role=role)
    return live_server.url, users


def test_a_member_shortlists_by_keyboard_and_the_owner_approves(chromium, page: Page, studio, artifacts):
    url, users = studio
    errors = watch_errors(page, [])
    tasks = [finished(users["alice"], text) for text in PROMPTS]
    upscale = finished(users["alice"], PROMPTS[1], action="upscale", parent=tasks[1], index=2)
    image = tasks[1].images.get(index=2)
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, url)

    # The member: S on a focused image shortlists it; the badge shows and the focus stays on that image.
    card = page.locator(f"#task-{tasks[1].pk}")
    opener = card.get_by_role("button", name="Actions for image 2")
    opener.focus()
    page.keyboard.press("s")
    control = card.locator('.shot[data-index="2"] > .rv')
    expect(control).to_have_class("rv rv--shortlisted")
    expect(control).to_have_attribute("aria-pressed", "true")
    expect(control).to_have_attribute("title", "Shortlisted: press to clear (0)")
    expect(card.get_by_role("button", name="Actions for image 2")).to_be_focused()
    assert Image.objects.get(pk=image.pk).review_state == "shortlisted"
    # A tells them why not, and changes nothing.
    page.keyboard.press("a")
    expect(page.locator("#review-feedback")).to_have_text("Only the team's owners can approve or reject an image.")
    assert Image.objects.get(pk=image.pk).review_state == "shortlisted"
    # The upscale's own control shortlists it by a click, and a second click clears it; a third shortlists again.
    upscale_control = page.locator(f"#task-{upscale.pk} .shot > .rv")
    upscale_control.click()
    expect(upscale_control).to_have_class("rv rv--shortlisted")
    upscale_control.click()
    expect(upscale_control).to_have_class("rv")
    upscale_control.click()
    expect(upscale_control).to_have_class("rv rv--shortlisted")

    # The owner, in a studio of their own: approve from the image menu.
    owner_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    owner = owner_context.new_page()
    owner_errors = watch_errors(owner, [])
    log_in(owner, url, "olivia")
    owner_card = owner.locator(f"#task-{tasks[1].pk}")
    owner_card.get_by_role("button", name="Actions for image 2").click()
    menu = image_menu(owner)
    expect(menu).to_be_visible()
    review_row = menu.locator(".menu__row--review")
    expect(review_row.get_by_role("button", name="Shortlist")).to_have_attribute("aria-pressed", "true")
    review_row.get_by_role("button", name="Approve").click()
    expect(owner_card.locator('.shot[data-index="2"] > .rv')).to_have_class("rv rv--approved")
    expect(review_row.get_by_role("button", name="Approve")).to_have_attribute("aria-pressed", "true")
    owner.keyboard.press("Escape")
    # R on another focused image rejects it.
    owner_card.get_by_role("link", name="Image 3").focus()
    owner.keyboard.press("r")
    expect(owner_card.locator('.shot[data-index="3"] > .rv')).to_have_class("rv rv--rejected")
    expect(owner_card.get_by_role("link", name="Image 3")).to_be_focused()
    owner.screenshot(path=artifacts / "review-studio-owner-desktop.png")
    assert [(a.actor_name, a.details["after"]) for a in AuditEntry.objects.order_by("pk")] == [
        ("alice", "shortlisted"),
        ("alice", "shortlisted"),
        ("alice", ""),
        ("alice", "shortlisted"),
        ("olivia", "approved"),
        ("olivia", "rejected"),
    ]

    # The member's open studio shows the owner's approval by itself; pressing it opens the image's menu.
    expect(control).to_have_class("rv rv--approved", timeout=15_000)
    control.click()
    expect(image_menu(page).locator(".menu__row--review")).to_be_visible()
    expect(image_menu(page).get_by_role("button", name="Clear")).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Escape")
    page.screenshot(path=artifacts / "review-studio-member-desktop.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator(f"#task-{tasks[1].pk}").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "review-studio-member-phone.png")

    # The library, filtered to the approved, and the task page's tree.
    owner.goto(f"{url}/library/?review=approved")
    expect(owner.locator("#lib-grid .tile")).to_have_count(1)
    expect(owner.locator(f"#rv{image.pk} .rv__btn--approved")).to_contain_text("Approved")
    expect(owner.get_by_role("link", name="Export approved (.zip)")).to_be_visible()
    owner.screenshot(path=artifacts / "review-library-approved-desktop.png")
    owner.goto(f"{url}/library/?stacks=0")
    owner.set_viewport_size({"width": 390, "height": 844})
    owner.screenshot(path=artifacts / "review-library-phone.png")
    owner.set_viewport_size({"width": 1280, "height": 900})
    owner.goto(f"{url}/tasks/{upscale.pk}/")
    expect(owner.locator(".tree__item--approved")).to_have_count(1)  # the vary's parent holds the approval
    expect(owner.locator(".rv-mark--approved")).to_have_count(1)
    owner.screenshot(path=artifacts / "review-task-page-desktop.png", full_page=True)
    # On the task page: 0 on a focused image clears its state, in place, and the focus stays on it.
    owner.goto(f"{url}/tasks/{tasks[1].pk}/")
    rejected = tasks[1].images.get(index=3)
    plate_link = owner.locator(f'[data-image="{rejected.pk}"] .plate__link')
    plate_link.focus()
    owner.keyboard.press("0")
    expect(owner.locator(f"#rv{rejected.pk}")).to_have_class("rv rv--none")
    expect(plate_link).to_be_focused()
    owner.locator(f"#rv{image.pk} .rv__btn--approved").click()  # the pressed badge clears too
    expect(owner.locator(f"#rv{image.pk}")).to_have_class("rv rv--none")
    assert Image.objects.filter(task=tasks[1]).exclude(review_state="").count() == 0
    owner_context.close()
    assert errors == [] and owner_errors == []
