"""The blocklist in real Chromium: an owner blocks a phrase on the team's settings page, and a member's prompt holding
it is refused in the composer, naming the term, with nothing sent to the sandbox."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from generations.models import AuditEntry, BlockedTerm, Membership, Prompt, Task, Team
from tests.support.teams import join
from tests.test_browser_studio import log_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def studio(live_server, studio_upstream, django_user_model):
    team = Team.objects.create(name="Moonlight Agency")
    for name, role in (("alice", Membership.Role.OWNER), ("bob", Membership.Role.MEMBER)):
        user = django_user_model.objects.create_user(name, password="a-long-test-password")
        join(team, user, role=role)
    return live_server.url


def test_a_phrase_blocked_by_the_owner_is_refused_in_a_members_composer(studio, studio_upstream, chromium, artifacts):
    errors: list[str] = []
    owner = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = owner.new_page()
    watch_errors(page, errors)
    log_in(page, studio, "alice")
    page.get_by_role("link", name="Team", exact=True).click()
    expect(page.get_by_role("heading", name="Team settings")).to_be_visible()
    page.get_by_label("Word, phrase or pattern to block").fill("ca phe")
    page.get_by_role("button", name="Block").click()
    expect(page.get_by_text("Blocked “ca phe”.")).to_be_visible()
    page.get_by_label("Word, phrase or pattern to block").fill("(kill")
    page.get_by_label("Pattern (regex)").check()
    page.get_by_role("button", name="Block").click()
    expect(page.get_by_role("alert")).to_have_text("This is not a pattern we can use: missing ): (kill.")
    page.get_by_label("Word, phrase or pattern to block").fill(r"\bk[i1]ll(s|ing)?\b")
    page.get_by_role("button", name="Block").click()
    expect(page.get_by_text("Blocked “\\bk[i1]ll(s|ing)?\\b”.")).to_be_visible()
    assert BlockedTerm.objects.count() == 2
    page.screenshot(path=artifacts / "team-settings-1280.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "team-settings-390.png", full_page=True)

    member = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    watch_errors(member, errors)
    log_in(member, studio, "bob")
    expect(member.get_by_role("link", name="Team", exact=True)).to_have_count(0)  # owners only
    member.get_by_role("textbox", name="Prompt").fill("Cà phê đen, morning light")
    member.get_by_role("button", name="Imagine").click()
    alert = member.locator("#prompt-error")
    expect(alert).to_have_text("Your prompt contains “ca phe”, which this team does not allow.")
    expect(member.get_by_role("textbox", name="Prompt")).to_have_value(
        "Cà phê đen, morning light"
    )  # kept, to be reworded
    member.screenshot(path=artifacts / "blocklist-composer-refusal.png")
    assert not Task.objects.exists() and not Prompt.objects.exists()
    assert studio_upstream.engine.request_counts["/pro/imagine"] == 0
    assert AuditEntry.objects.filter(act="prompt_blocked", actor__username="bob").count() == 1

    member.get_by_role("textbox", name="Prompt").fill("a cafeteria at noon")  # looks alike, is not the phrase
    member.get_by_role("button", name="Imagine").click()
    expect(member.locator("#cards > article.card").first).to_contain_text("a cafeteria at noon")
    expect(alert).to_have_count(0)
    assert errors == []
    owner.close()
