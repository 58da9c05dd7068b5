"""Invitations in real Chromium: an owner invites a username from the team settings page, the invitee sees the count
in the header, accepts on their Teams page and works in the team; then leaves it and is back in their own."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from generations.models import Membership, Team
from tests.support.teams import join
from tests.test_browser_studio import log_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def studio(live_server, studio_upstream, django_user_model):
    team = Team.objects.create(name="Moonlight Agency")
    alice = django_user_model.objects.create_user("alice", password="a-long-test-password")
    join(team, alice, role=Membership.Role.OWNER)
    django_user_model.objects.create_user("dora", password="a-long-test-password")  # in no team yet
    return live_server.url


def test_an_invitation_from_the_settings_page_is_accepted_by_the_invitee(studio, chromium, artifacts):
    errors: list[str] = []
    owner = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    watch_errors(owner, errors)
    log_in(owner, studio, "alice")
    owner.get_by_role("link", name="Team", exact=True).click()
    owner.get_by_label("Username").fill("dora")
    owner.get_by_role("button", name="Invite").click()
    expect(owner.get_by_text("Invited dora as member: they will see it when they sign in.")).to_be_visible()
    expect(owner.get_by_role("list", name="Invitations")).to_contain_text("dora")

    invitee = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
    watch_errors(invitee, errors)
    log_in(invitee, studio, "dora")
    teams = invitee.get_by_role("link", name="Teams 1 invitation waiting")
    expect(teams).to_be_visible()
    teams.click()
    invitee.screenshot(path=artifacts / "invitations-390.png", full_page=True)
    invitee.get_by_role("button", name="Accept").click()
    expect(invitee.get_by_text("You joined Moonlight Agency as member: you are working in it now.")).to_be_visible()
    moonlight = Team.objects.get(name="Moonlight Agency")
    expect(invitee.get_by_role("combobox", name="Team")).to_have_value(str(moonlight.pk))
    assert Membership.objects.filter(team__name="Moonlight Agency", user__username="dora").exists()

    invitee.get_by_role("link", name="Teams", exact=True).click()
    invitee.get_by_role("button", name="Leave Moonlight Agency").click()
    expect(invitee.get_by_text("You left Moonlight Agency. You are working in your own team now.")).to_be_visible()
    assert not Membership.objects.filter(team__name="Moonlight Agency", user__username="dora").exists()
    assert errors == []
