"""The team settings page (owners only): the team's blocklist, its members and roles and its invitations, each change
audited, never the last owner gone; and the admin's blocklist and membership screens. Invitations from the invitee's
side, leaving a team and the personal team: tests/test_invitations.py."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone

from generations.models import AuditEntry, BlockedTerm, Invitation, Membership, Task, Team
from generations.services import blocklist, members, submitting


@pytest.fixture
def owner(alice, team):
    Membership.objects.filter(user=alice, team=team).update(role=Membership.Role.OWNER)
    return alice


@pytest.fixture
def other_owner(charlie):
    Membership.objects.filter(user=charlie).update(role=Membership.Role.OWNER)
    return charlie


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("ada", "ada@example.com", "pw-ada")


@pytest.fixture
def term(owner, team):
    return blocklist.term_add(actor=owner, team=team, text="ca phe")


def membership(user, team=None) -> Membership:
    """The user's membership of `team`, else of the one team they are in besides their own."""
    return Membership.objects.exclude(team__personal_for=user).get(user=user, **({"team": team} if team else {}))


# --- Who may do what ----------------------------------------------------------------------------------------------


def _requests(term: BlockedTerm, bob_membership: Membership, invitation: Invitation) -> list[tuple[str, str, dict]]:
    """Every URL of the page, with a body that would change something for an owner."""
    return [
        ("get", "/team/settings/", {}),
        ("post", "/team/blocklist/", {"text": "moon"}),
        ("post", f"/team/blocklist/{term.pk}/", {"text": "tra da"}),
        ("post", f"/team/blocklist/{term.pk}/remove/", {}),
        ("post", "/team/invitations/", {"username": "dora", "role": "member"}),
        ("post", f"/team/invitations/{invitation.pk}/withdraw/", {}),
        ("post", f"/team/members/{bob_membership.pk}/role/", {"role": "owner"}),
        ("post", f"/team/members/{bob_membership.pk}/remove/", {}),
    ]


@pytest.fixture
def world(term, owner, team, bob, other_owner, django_user_model):
    django_user_model.objects.create_user("dora", password="pw-dora")
    invitation = members.invitation_create(actor=owner, team=team, username="erin", role="member")
    return _requests(term, membership(bob), invitation)


def _state() -> tuple:
    """What a refused request leaves alone. A user's personal team, made on their first request, aside."""
    return (
        sorted(BlockedTerm.objects.values_list("text", flat=True)),
        sorted(Membership.objects.exclude(team__personal_for=F("user")).values_list("user__username", "role")),
        sorted(Invitation.objects.values_list("username", "state")),
        AuditEntry.objects.count(),
    )


@pytest.mark.parametrize("index", range(8))
def test_members_are_refused_with_403_and_nothing_changes(client, world, bob, index):
    client.force_login(bob)
    method, url, body = world[index]
    before = _state()
    assert getattr(client, method)(url, body).status_code == 403
    assert _state() == before


@pytest.mark.parametrize("index", range(1, 8))
def test_another_teams_owner_gets_404_for_this_teams_rows(client, world, other_owner, index):
    client.force_login(other_owner)
    method, url, body = world[index]
    before = _state()
    status = getattr(client, method)(url, body).status_code
    if url in ("/team/blocklist/", "/team/invitations/"):  # they act on their own team: allowed there
        assert status == 302
        return
    assert status == 404
    assert _state() == before


@pytest.mark.parametrize("index", range(8))
def test_anonymous_visitors_are_sent_to_log_in(client, world, index):
    method, url, body = world[index]
    before = _state()
    response = getattr(client, method)(url, body)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert _state() == before


@pytest.mark.parametrize("index", range(8))
def test_owners_and_staff_may(client, world, owner, staff, team, index):
    for actor in (owner, staff):
        Membership.objects.get_or_create(team=team, user=staff, defaults={"role": Membership.Role.MEMBER})
        client.force_login(actor)
        method, url, body = world[index]
        response = getattr(client, method)(url, body)
        assert response.status_code in (200, 302), response.content.decode()[:500]
        if method == "post":
            assert response["Location"].startswith("/team/settings/")
            break  # the change is made; the second actor would find it done


def test_the_settings_page_lists_terms_and_members_and_the_header_links_it_for_owners(client, term, owner, bob):
    blocklist.term_add(actor=owner, team=None, text="nsfw")
    client.force_login(owner)
    body = client.get("/team/settings/").content.decode()
    assert 'value="ca phe"' in body and "nsfw" not in body  # the site's terms are counted, not shown
    assert "The studio's admins block 1 more term for every team." in body
    assert body.index("<strong>alice</strong>") < body.index("<strong>bob</strong>")  # owners first
    assert 'href="/team/settings/" aria-current="page">Team</a>' in body
    client.force_login(bob)
    assert 'href="/team/settings/"' not in client.get("/").content.decode()


# --- The blocklist on the page -----------------------------------------------------------------------------------


def test_an_owner_adds_a_term_and_it_is_audited(client, owner, team):
    client.force_login(owner)
    response = client.post("/team/blocklist/", {"text": " Cà phê ", "is_regex": ""})
    assert response.status_code == 302 and response["Location"] == "/team/settings/"
    term = BlockedTerm.objects.get()
    assert (term.team, term.text, term.is_regex, term.created_by) == (team, "Cà phê", False, owner)
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.actor, entry.team_id, entry.target_id) == ("blocklist_add", owner, team.pk, term.pk)
    assert "Blocked “Cà phê”." in client.get("/team/settings/").content.decode()


def test_a_bad_pattern_is_refused_with_its_reason_and_nothing_saved(client, owner):
    client.force_login(owner)
    response = client.post("/team/blocklist/", {"text": "(kill", "is_regex": "on"})
    assert response.status_code == 422
    body = response.content.decode()
    assert "This is not a pattern we can use: missing ): (kill." in body
    assert 'value="(kill"' in body  # kept, to be fixed
    assert not BlockedTerm.objects.exists() and not AuditEntry.objects.exists()


def test_an_owner_edits_a_term_with_before_and_after_in_the_audit(client, owner, term):
    client.force_login(owner)
    response = client.post(f"/team/blocklist/{term.pk}/", {"text": r"\bca\s*phe\b", "is_regex": "on"})
    assert response.status_code == 302
    term.refresh_from_db()
    assert (term.text, term.is_regex, term.revision) == (r"\bca\s*phe\b", True, 2)
    entry = AuditEntry.objects.get(act="blocklist_change")
    assert entry.details == {
        "before": {"text": "ca phe", "is_regex": False},
        "after": {"text": r"\bca\s*phe\b", "is_regex": True},
    }


def test_a_bad_edit_says_why_beside_the_term_and_keeps_it(client, owner, term):
    blocklist.term_add(actor=owner, team=term.team, text="moon")
    client.force_login(owner)
    response = client.post(f"/team/blocklist/{term.pk}/", {"text": "Moon"})
    assert response.status_code == 422
    assert f'id="term-{term.pk}-error" role="alert">“Moon” is already on the list.' in response.content.decode()
    term.refresh_from_db()
    assert term.text == "ca phe"


def test_an_owner_removes_a_term(client, owner, term):
    client.force_login(owner)
    assert client.post(f"/team/blocklist/{term.pk}/remove/").status_code == 302
    assert not BlockedTerm.objects.exists()
    entry = AuditEntry.objects.get(act="blocklist_remove")
    assert entry.details == {"before": {"text": "ca phe", "is_regex": False}} and entry.target_repr == "ca phe"


def test_the_sites_terms_cannot_be_edited_from_a_team_page(client, owner):
    site = blocklist.term_add(actor=owner, team=None, text="nsfw")
    client.force_login(owner)
    assert client.post(f"/team/blocklist/{site.pk}/remove/").status_code == 404
    assert client.post(f"/team/blocklist/{site.pk}/", {"text": "x"}).status_code == 404
    assert BlockedTerm.objects.get().text == "nsfw"


# --- Members and roles -------------------------------------------------------------------------------------------


def test_an_owner_invites_by_username_and_nobody_joins_until_they_accept(client, owner, team, charlie):
    client.force_login(owner)
    response = client.post("/team/invitations/", {"username": "CHARLIE", "role": "owner"})
    assert response.status_code == 302 and response["Location"] == "/team/settings/#invitations"
    assert not Membership.objects.filter(user=charlie, team=team).exists()
    invitation = Invitation.objects.get()
    assert (invitation.team, invitation.username, invitation.user, invitation.role, invitation.state) == (
        team,
        "CHARLIE",
        charlie,
        "owner",
        "pending",
    )
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.target_id, entry.details) == (
        "invite",
        invitation.pk,
        {"user": "CHARLIE", "role": "owner"},
    )
    body = client.get("/team/settings/").content.decode()
    assert "Invited CHARLIE as owner: they will see it when they sign in." in body
    assert f'<li class="row" id="invitation-{invitation.pk}">' in body and "<strong>CHARLIE</strong>" in body


def test_an_owner_withdraws_an_invitation_and_it_is_audited(client, owner, team, charlie):
    invitation = members.invitation_create(actor=owner, team=team, username="charlie", role="member")
    client.force_login(owner)
    assert client.post(f"/team/invitations/{invitation.pk}/withdraw/").status_code == 302
    invitation.refresh_from_db()
    assert invitation.state == "withdrawn" and invitation.answered_at is not None
    assert list(AuditEntry.objects.order_by("pk").values_list("act", flat=True)) == ["invite", "invite_withdraw"]
    assert client.post(f"/team/invitations/{invitation.pk}/withdraw/").status_code == 404  # no longer open


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("bob", "bob is already in Moonlight Agency."),
        ("", "Write the username of the person to invite."),
        ("bob smith", "A username has only letters, digits and @ . + - _ in it."),
        ("b" * 151, "A username has at most 150 characters."),
        ("bob\x00", "A username has only letters, digits and @ . + - _ in it."),
    ],
)
def test_inviting_says_why_it_cannot(client, owner, bob, username, message):
    client.force_login(owner)
    before = _state()
    response = client.post("/team/invitations/", {"username": username, "role": "member"})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert _state() == before


def test_inviting_with_an_unknown_role_says_so(client, owner, charlie):
    client.force_login(owner)
    response = client.post("/team/invitations/", {"username": "charlie", "role": "admin"})
    assert response.status_code == 422 and "Choose a role: member or owner." in response.content.decode()
    assert not Invitation.objects.exists()


# Every field of every form of the page, with a NUL: the form's message and a 422, never a 500 (PostgreSQL cannot
# store one) and no change. Issue 15, item 4.
NUL_POSTS = [
    ("/team/blocklist/", {"text": "moon\x00light"}),
    ("/team/blocklist/{term}/", {"text": "tra\x00da"}),
    ("/team/invitations/", {"username": "do\x00ra", "role": "member"}),
    ("/team/invitations/", {"username": "dora", "role": "member\x00"}),
    ("/team/members/{bob}/role/", {"role": "owner\x00"}),
]


@pytest.mark.parametrize(("url", "body"), NUL_POSTS)
def test_a_nul_anywhere_in_a_team_settings_form_is_refused_with_a_message(client, world, term, bob, url, body):
    client.force_login(Membership.objects.get(role="owner", team=term.team).user)
    before = _state()
    response = client.post(url.format(term=term.pk, bob=membership(bob).pk), body)
    assert response.status_code == 422
    assert 'role="alert">' in response.content.decode()
    assert _state() == before


def test_an_owner_changes_a_role_and_it_is_audited(client, owner, bob, team):
    client.force_login(owner)
    target = membership(bob)
    assert client.post(f"/team/members/{target.pk}/role/", {"role": "owner"}).status_code == 302
    assert membership(bob).role == "owner"
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.actor, entry.details) == (
        "role_change",
        owner,
        {"user": "bob", "before": "member", "after": "owner"},
    )
    # Now bob is an owner too, so alice may step down.
    assert client.post(f"/team/members/{membership(owner).pk}/role/", {"role": "member"}).status_code == 302
    assert membership(owner).role == "member"


def test_the_last_owner_can_neither_step_down_nor_leave(client, owner, bob):
    client.force_login(owner)
    mine = membership(owner)
    before = _state()
    for url, body in [(f"/team/members/{mine.pk}/role/", {"role": "member"}), (f"/team/members/{mine.pk}/remove/", {})]:
        response = client.post(url, body)
        assert response.status_code == 422
        assert "A team needs an owner: make someone else an owner first." in response.content.decode()
    assert _state() == before


def test_an_owner_removes_a_member_and_it_is_audited(client, owner, bob, team):
    client.force_login(owner)
    target = membership(bob)
    assert client.post(f"/team/members/{target.pk}/remove/").status_code == 302
    assert not Membership.objects.filter(user=bob).exists()
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.target_id, entry.details) == (
        "member_remove",
        target.pk,
        {"user": "bob", "role": "member"},
    )


def test_an_owner_who_leaves_goes_back_to_the_studio_in_their_own_team(client, owner, bob, team):
    members.member_role_change(actor=owner, membership=membership(bob), role="owner")
    client.force_login(owner)
    response = client.post(f"/team/members/{membership(owner, team).pk}/remove/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Membership.objects.filter(user=owner, team=team).exists()
    assert client.session["team_id"] == Team.objects.get(personal_for=owner).pk


def test_a_personal_team_keeps_its_person(owner, bob):
    personal = Team.objects.create(name="bob's team", personal_for=bob)
    theirs = Membership.objects.create(team=personal, user=bob, role="owner")
    Membership.objects.create(team=personal, user=owner, role="owner")
    with pytest.raises(members.MembershipError, match=r"This is bob's personal team: they stay in it\."):
        members.member_remove(actor=owner, membership=theirs)


# --- The admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_staff_add_a_site_wide_term_in_the_admin_and_it_is_audited(staff_client, staff):
    response = staff_client.post("/admin/generations/blockedterm/add/", {"text": "nsfw", "is_regex": ""})
    assert response.status_code == 302, response.content.decode()[:3000]
    term = BlockedTerm.objects.get()
    assert (term.team, term.text, term.created_by) == (None, "nsfw", staff)
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.actor, entry.team, entry.target_id) == ("blocklist_add", staff, None, term.pk)


def test_the_admin_refuses_a_bad_pattern_with_its_reason(staff_client):
    response = staff_client.post("/admin/generations/blockedterm/add/", {"text": "(a)\\1", "is_regex": "on"})
    assert response.status_code == 200
    assert "This is not a pattern we can use: invalid escape sequence: \\1." in response.content.decode()
    assert not BlockedTerm.objects.exists() and not AuditEntry.objects.exists()


def test_the_admin_lists_site_wide_and_team_terms_apart(staff_client, term, staff):
    blocklist.term_add(actor=staff, team=None, text="nsfw")

    def listed(query: str) -> list[str]:
        return [t.text for t in staff_client.get(f"/admin/generations/blockedterm/{query}").context["cl"].result_list]

    assert listed("") == ["ca phe", "nsfw"]
    assert listed("?list=site") == ["nsfw"]
    assert listed("?list=team") == ["ca phe"]


def test_the_admin_edits_and_deletes_terms_through_the_audit(staff_client, term, team):
    url = f"/admin/generations/blockedterm/{term.pk}/change/"
    assert staff_client.post(url, {"text": "tra da", "is_regex": ""}).status_code == 302
    term.refresh_from_db()
    assert (term.text, term.team) == ("tra da", team)
    assert staff_client.post(f"/admin/generations/blockedterm/{term.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not BlockedTerm.objects.exists()
    acts = list(AuditEntry.objects.order_by("pk").values_list("act", flat=True))
    assert acts == ["blocklist_add", "blocklist_change", "blocklist_remove"]


def _team_form(team, rows) -> dict:
    data = {
        "name": team.name,
        "created_at_0": "2026-11-24",
        "created_at_1": "10:00:00",
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
    }
    for i, row in enumerate(rows):
        data.update({f"memberships-{i}-{k}": v for k, v in row.items()})
        data.update({f"memberships-{i}-team": team.pk, f"memberships-{i}-joined_at_0": "2026-11-24"})
        data[f"memberships-{i}-joined_at_1"] = "10:00:00"
    return data


def test_role_changes_in_the_team_admin_are_audited_and_keep_an_owner(staff_client, staff, team, owner, bob):
    url = f"/admin/generations/team/{team.pk}/change/"
    a, b = membership(owner), membership(bob)
    demote_all = [{"id": a.pk, "user": owner.pk, "role": "member"}, {"id": b.pk, "user": bob.pk, "role": "member"}]
    response = staff_client.post(url, _team_form(team, demote_all))
    assert response.status_code == 200
    assert "A team needs an owner: make someone else an owner first." in response.content.decode()
    assert membership(owner).role == "owner" and not AuditEntry.objects.exists()
    swap = [{"id": a.pk, "user": owner.pk, "role": "member"}, {"id": b.pk, "user": bob.pk, "role": "owner"}]
    assert staff_client.post(url, _team_form(team, swap)).status_code == 302
    rows = sorted(AuditEntry.objects.values_list("act", "actor", "target_id", "details"), key=lambda r: r[2])
    assert rows == [
        ("role_change", staff.pk, a.pk, {"user": "alice", "before": "owner", "after": "member"}),
        ("role_change", staff.pk, b.pk, {"user": "bob", "before": "member", "after": "owner"}),
    ]


def test_adding_and_removing_in_the_team_admin_is_audited(staff_client, team, owner, bob, charlie):
    url = f"/admin/generations/team/{team.pk}/change/"
    a, b = membership(owner), membership(bob)
    rows = [
        {"id": a.pk, "user": owner.pk, "role": "owner"},
        {"id": b.pk, "user": bob.pk, "role": "member", "DELETE": "on"},
        {"user": charlie.pk, "role": "member"},
    ]
    assert staff_client.post(url, _team_form(team, rows)).status_code == 302
    assert sorted(team.memberships.values_list("user__username", flat=True)) == ["alice", "charlie"]
    acts = sorted(AuditEntry.objects.values_list("act", "details"))
    assert acts == [
        ("member_add", {"user": "charlie", "role": "member"}),
        ("member_remove", {"user": "bob", "role": "member"}),
    ]


def test_the_membership_list_counts_refusals_per_member(staff_client, make_task, owner, bob, team):
    for _ in range(2):
        make_task(
            status="failed", error=f"{submitting.UPSTREAM_REFUSED}: Banned prompt detected", finished_at=timezone.now()
        )
    make_task(status="failed", error="Apiframe did not confirm this task", user=bob)
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    with pytest.raises(blocklist.PromptBlocked):
        blocklist.prompt_check(team=team, user=bob, text="ca phe", action="imagine")
    response = staff_client.get("/admin/generations/membership/?o=5")
    assert response.status_code == 200
    rows = {m.user.username: (m.refused_upstream, m.blocked_prompts) for m in response.context["cl"].result_list}
    assert rows == {"alice": (2, 0), "bob": (0, 1)}
    refused = staff_client.get("/admin/generations/membership/?refused=yes").context["cl"].result_list
    assert [m.user.username for m in refused] == ["alice"]


def test_the_membership_admin_changes_a_role_with_an_audit_but_never_the_last_owner(staff_client, owner, bob):
    mine = membership(owner)
    url = f"/admin/generations/membership/{mine.pk}/change/"
    response = staff_client.post(url, {"role": "member"})
    assert response.status_code == 200 and "A team needs an owner" in response.content.decode()
    assert (
        staff_client.post(f"/admin/generations/membership/{membership(bob).pk}/change/", {"role": "owner"}).status_code
        == 302
    )
    assert staff_client.post(url, {"role": "member"}).status_code == 302
    assert list(AuditEntry.objects.values_list("act", flat=True)) == ["role_change", "role_change"]


def test_the_admin_screens_are_for_staff_only(client, owner):
    client.force_login(owner)
    for url in ("/admin/generations/blockedterm/", "/admin/generations/membership/"):
        assert client.get(url).status_code == 302
    assert not Task.objects.exists()


def _admin_queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_the_admin_lists_ask_no_query_per_row(staff_client, staff, team, make_task, django_user_model):
    def grow(start: int, count: int) -> None:
        for i in range(start, start + count):
            user = django_user_model.objects.create_user(f"member{i}")
            Membership.objects.create(team=team, user=user)
            make_task(user=user, status="failed", error=f"{submitting.UPSTREAM_REFUSED}: Banned prompt detected")
            blocklist.term_add(actor=user, team=team if i % 2 else None, text=f"word{i}")

    grow(0, 2)
    few = [
        _admin_queries(staff_client, url)
        for url in ("/admin/generations/membership/", "/admin/generations/blockedterm/")
    ]
    grow(2, 10)
    many = [
        _admin_queries(staff_client, url)
        for url in ("/admin/generations/membership/", "/admin/generations/blockedterm/")
    ]
    assert many == few
