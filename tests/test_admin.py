"""Staff manage teams (and who is in them) and watch tasks and webhooks in the Django admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from generations.models import Membership


@pytest.fixture
def staff_client(client, db):
    admin = get_user_model().objects.create_superuser("ada", "ada@example.com", "pw-ada")
    client.force_login(admin)
    return client


@pytest.mark.parametrize(
    "url",
    ["team", "task", "prompt", "webhookdelivery", "team/add", "image", "flag", "auditentry", "stucktask"],
)
def test_admin_pages_open(staff_client, make_task, url):
    make_task(status="finished")
    assert staff_client.get(f"/admin/generations/{url}/").status_code == 200


def test_staff_add_a_user_to_a_team(staff_client, team, charlie):
    response = staff_client.post(
        f"/admin/generations/team/{team.pk}/change/",
        {
            "name": team.name,
            "created_at_0": "2026-11-24",
            "created_at_1": "10:00:00",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": charlie.pk,
            "memberships-0-role": "member",
            "memberships-0-joined_at_0": "2026-11-24",
            "memberships-0-joined_at_1": "10:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.get(team=team, user=charlie).role == Membership.Role.MEMBER


def test_the_admin_is_for_staff_only(alice_client):
    assert alice_client.get("/admin/generations/task/").status_code == 302


def test_a_team_owner_is_not_staff_either(alice_client, alice):
    Membership.objects.filter(user=alice).update(role=Membership.Role.OWNER)
    for url in ("/admin/", "/admin/generations/auditentry/", "/admin/generations/stucktask/"):
        response = alice_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
