"""Flagging an image or a task, the owners' moderation page (review queue, hidden tab, bulk hide / restore / clear),
the audit rows each act writes, and hidden cards leaving open studios on the next pulse."""

from __future__ import annotations

from datetime import timedelta

import hypothesis
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from hypothesis import given
from hypothesis import strategies as st

from generations.models import AuditEntry, Flag, Image, Membership, Task
from generations.services import moderation
from tests.library_data import add_task
from tests.support.teams import join

HX = {"HX-Request": "true"}
FLAGGED = escape("Flagged — the team's owners will review it.")  # as the page writes it


@pytest.fixture
def olivia(team, django_user_model):
    """The team's owner."""
    user = django_user_model.objects.create_user(username="olivia", password="pw-olivia")
    join(team, user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def owner_client(client, olivia):
    client.force_login(olivia)
    return client


@pytest.fixture
def grid(alice):
    """A finished grid of alice's: four saved images, each with a thumbnail."""
    task = add_task(user=alice, text="a lighthouse in fog", at=timezone.now() - timedelta(minutes=5))
    for image in task.images.all():
        Image.objects.filter(pk=image.pk).update(thumbnail=f"thumbs/{image.pk}.webp", file=f"images/{image.pk}.png")
    return task


def image_of(task: Task, index: int = 1) -> Image:
    return task.images.get(index=index)


def flag(user, *, image=None, task=None, reason="violence", note=""):
    team = user.memberships.first().team
    return moderation.flag_create(user=user, team=team, reason=reason, note=note, image=image, task=task)


# --- Flagging ----------------------------------------------------------------------------------------------------


def test_it_shows_the_flag_form_as_a_page_and_as_a_fragment(alice_client, grid):
    url = reverse("generations:image_flag", args=[image_of(grid, 2).pk])
    page = alice_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and "Flag image 2" in html
    assert html.count('type="radio" name="reason"') == len(Flag.Reason.choices)
    fragment = alice_client.get(url, headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode() and 'id="flag-panel"' in fragment.content.decode()


def test_it_flags_an_image_with_a_reason_and_a_note(alice_client, alice, grid):
    image = image_of(grid, 3)
    url = reverse("generations:image_flag", args=[image.pk])
    response = alice_client.post(url, {"reason": "real_person", "note": "  that is our CEO  "})
    assert response.status_code == 302
    assert response["Location"] == reverse("generations:task_detail", args=[grid.pk])
    flag_row = Flag.objects.get()
    assert (flag_row.image, flag_row.task, flag_row.created_by) == (image, None, alice)
    assert (flag_row.reason, flag_row.note, flag_row.team_id) == ("real_person", "that is our CEO", grid.team_id)
    image.refresh_from_db()
    assert image.flagged_at == flag_row.created_at
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.act, entry.team_id) == (alice, AuditEntry.Act.FLAG, grid.team_id)
    assert (entry.target_type, entry.target_id) == ("image", image.pk)
    assert entry.reason == "Depicts a real person: that is our CEO"
    assert FLAGGED in alice_client.get(response["Location"]).content.decode()


def test_it_flags_with_htmx_and_says_so_in_the_dialog(alice_client, grid):
    url = reverse("generations:image_flag", args=[image_of(grid).pk])
    response = alice_client.post(url, {"reason": "sexual"}, headers=HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert FLAGGED in html and "<html" not in html
    assert Flag.objects.filter(image=image_of(grid), note="").count() == 1


def test_it_flags_a_task(alice_client, alice, grid):
    response = alice_client.post(reverse("generations:task_flag", args=[grid.pk]), {"reason": "off_brief"}, headers=HX)
    assert response.status_code == 200 and FLAGGED in response.content.decode()
    flag_row = Flag.objects.get()
    assert (flag_row.task, flag_row.image) == (grid, None)
    grid.refresh_from_db()
    assert grid.flagged_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.act, entry.target_type, entry.target_id) == (alice, "flag", "task", grid.pk)
    assert entry.reason == "Off-brief or spam"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"note": "no reason"}, "Choose a reason from the list."),
        ({"reason": "ugly"}, "Choose a reason from the list."),
        ({"reason": "other", "note": "x" * (Flag.NOTE_MAX_LENGTH + 1)}, "Keep the note under 500 characters."),
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_it_refuses_bad_input_and_changes_nothing(alice_client, grid, data, message, htmx):
    url = reverse("generations:image_flag", args=[image_of(grid).pk])
    response = alice_client.post(url, data, headers=HX if htmx else {})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert ("<html" in response.content.decode()) is not htmx
    assert not Flag.objects.exists() and not AuditEntry.objects.exists()
    assert not Image.objects.filter(flagged_at__isnull=False).exists()


def test_another_teams_items_are_404_to_flag(client, charlie, grid):
    client.force_login(charlie)
    for url in (
        reverse("generations:image_flag", args=[image_of(grid).pk]),
        reverse("generations:task_flag", args=[grid.pk]),
    ):
        assert client.get(url).status_code == 404
        assert client.post(url, {"reason": "other"}).status_code == 404
    assert not Flag.objects.exists() and not AuditEntry.objects.exists()


def test_a_hidden_item_is_404_to_flag_for_members(alice_client, olivia, grid):
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=grid.pk), reason="off brief")
    assert alice_client.post(reverse("generations:task_flag", args=[grid.pk]), {"reason": "other"}).status_code == 404
    url = reverse("generations:image_flag", args=[image_of(grid).pk])
    assert alice_client.post(url, {"reason": "other"}).status_code == 404
    assert not Flag.objects.exists()


def test_flagging_twice_says_it_is_already_flagged_by_you_and_makes_nothing(alice_client, bob, client, grid):
    url = reverse("generations:image_flag", args=[image_of(grid).pk])
    alice_client.post(url, {"reason": "violence"})
    first = Image.objects.get(pk=image_of(grid).pk).flagged_at
    again = alice_client.post(url, {"reason": "hateful", "note": "really"}, headers=HX)
    assert again.status_code == 200
    assert "You have already flagged this" in again.content.decode()
    assert Flag.objects.count() == 1 and AuditEntry.objects.count() == 1
    # Another member's flag is a second voice; the queue still orders by the first flag.
    client.force_login(bob)
    assert client.post(url, {"reason": "hateful"}).status_code == 302
    assert Flag.objects.count() == 2
    assert Image.objects.get(pk=image_of(grid).pk).flagged_at == first


def test_a_member_may_flag_again_once_the_owner_cleared_their_flag(alice, olivia, grid):
    image = image_of(grid)
    flag(alice, image=image)
    moderation.flags_clear(actor=olivia, items=Image.objects.filter(pk=image.pk), reason="fine")
    flag(alice, image=image, reason="other")
    assert Flag.objects.filter(image=image, resolved_at=None).count() == 1
    assert Flag.objects.filter(image=image).count() == 2


def test_the_database_keeps_one_open_flag_per_member_and_item(alice, grid):
    flag(alice, task=grid)
    with pytest.raises(IntegrityError), transaction.atomic():
        Flag.objects.create(team=grid.team, task=grid, reason="other", created_by=alice)


# --- The moderation page -----------------------------------------------------------------------------------------


def test_it_lists_the_queue_oldest_flag_first_with_who_why_and_how_many(owner_client, alice, bob, grid):
    image = image_of(grid, 2)
    flag(alice, task=grid, reason="off_brief", note="not for this client")
    flag(bob, image=image, reason="violence", note="blood on the rocks")
    flag(alice, image=image, reason="hateful")
    response = owner_client.get(reverse("generations:moderation"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index(f'value="task:{grid.pk}"') < html.index(f'value="image:{image.pk}"')  # oldest flag first
    assert f"/images/{image.pk}/thumb/" in html
    assert "a lighthouse in fog" in html
    assert "2 flags" in html and "1 flag" in html
    for text in ("not for this client", "blood on the rocks", "Violence or gore", "Hateful or harassing", "bob"):
        assert text in html
    assert "2 flagged items to review" in html
    assert 'href="/moderation/" aria-current="page">Moderation' in html


def test_the_hidden_tab_lists_hidden_items_last_hidden_first(owner_client, olivia, alice, grid):
    other = add_task(user=alice, text="a red barn")
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image_of(grid).pk), reason="gore")
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=other.pk), reason="off brief")
    html = owner_client.get(reverse("generations:moderation"), {"show": "hidden"}).content.decode()
    assert html.index(f'value="task:{other.pk}"') < html.index(f'value="image:{image_of(grid).pk}"')
    assert "Hidden by olivia" in html and ": gore" in html and "Restore" in html
    queue = owner_client.get(reverse("generations:moderation")).content.decode()
    assert "Nothing to review" in queue


def test_it_pages_the_queue(owner_client, alice, settings, monkeypatch):
    from generations.views import moderation as views

    monkeypatch.setattr(views, "QUEUE_PAGE_SIZE", 2)
    tasks = [add_task(user=alice, text=f"prompt {n}", minutes=n) for n in range(5)]
    for task in tasks:
        flag(alice, task=task)
    first = owner_client.get(reverse("generations:moderation")).content.decode()
    third = owner_client.get(reverse("generations:moderation"), {"page": "3"}).content.decode()
    assert f'value="task:{tasks[0].pk}"' in first and f'value="task:{tasks[2].pk}"' not in first
    assert f'value="task:{tasks[4].pk}"' in third and "Page 3 of 3" in third


def _queries_for_page(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("generations:moderation")).status_code == 200
    return len(captured)


def test_the_page_costs_the_same_queries_for_3_or_30_items(owner_client, alice, bob):
    def fill(count: int) -> None:
        for n in range(count):
            task = add_task(user=alice, text=f"prompt {n}", minutes=n)
            flag(alice, task=task, note="a")
            flag(bob, task=task)
            flag(alice, image=task.images.first())

    owner_client.get(reverse("generations:moderation"))  # the session's first request picks the team: not counted
    fill(2)
    few = _queries_for_page(owner_client)
    fill(13)
    many = _queries_for_page(owner_client)
    assert few == many, (few, many)
    assert many <= 12


def test_a_member_gets_403_on_the_page_and_every_act(alice_client, grid):
    flag_row = flag(grid.created_by, task=grid)
    assert alice_client.get(reverse("generations:moderation")).status_code == 403
    for act in ("hide", "restore", "clear"):
        data = {"items": [f"task:{grid.pk}"], "act": act, "reason": "because"}
        assert alice_client.post(reverse("generations:moderation_act"), data).status_code == 403
        assert alice_client.post(reverse("generations:moderation_act"), data, headers=HX).status_code == 403
    grid.refresh_from_db()
    flag_row.refresh_from_db()
    assert grid.hidden_at is None and grid.flagged_at is not None and flag_row.resolved_at is None
    assert AuditEntry.objects.filter(act="flag").count() == AuditEntry.objects.count() == 1
    assert "/moderation/" not in alice_client.get(reverse("generations:studio")).content.decode()


def test_anonymous_is_sent_to_log_in(client, grid):
    for response in (
        client.get(reverse("generations:moderation")),
        client.post(reverse("generations:moderation_act"), {"items": [f"task:{grid.pk}"], "act": "hide"}),
        client.post(reverse("generations:task_flag", args=[grid.pk]), {"reason": "other"}),
    ):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Flag.objects.exists() and Task.objects.get(pk=grid.pk).hidden_at is None


def test_another_teams_owner_gets_404_for_our_items(client, charlie, alice, grid):
    Membership.objects.filter(user=charlie).update(role=Membership.Role.OWNER)
    flag(alice, task=grid)
    client.force_login(charlie)
    page = client.get(reverse("generations:moderation"))
    assert page.status_code == 200 and f"task:{grid.pk}" not in page.content.decode()
    for key in (f"task:{grid.pk}", f"image:{image_of(grid).pk}"):
        for act in ("hide", "restore", "clear"):
            data = {"items": [key], "act": act, "reason": "mine now"}
            assert client.post(reverse("generations:moderation_act"), data).status_code == 404
    grid.refresh_from_db()
    assert grid.hidden_at is None and grid.flagged_at is not None
    assert AuditEntry.objects.count() == 1


def test_staff_count_as_owners(client, django_user_model, team, grid, alice):
    staff = django_user_model.objects.create_user(username="sam", password="pw", is_staff=True)
    join(team, staff)
    flag(alice, task=grid)
    client.force_login(staff)
    assert f"task:{grid.pk}" in client.get(reverse("generations:moderation")).content.decode()


# --- Bulk acts ---------------------------------------------------------------------------------------------------


def test_it_hides_the_picked_images_and_tasks_with_a_reason(owner_client, olivia, alice, bob, grid):
    other = add_task(user=bob, text="a red barn")
    image = image_of(grid, 4)
    flag(alice, image=image)
    flag(alice, task=other)
    before = timezone.now()
    data = {"items": [f"image:{image.pk}", f"task:{other.pk}"], "act": "hide", "reason": "  gore  ", "show": "flagged"}
    response = owner_client.post(reverse("generations:moderation_act"), data)
    assert response.status_code == 302 and response["Location"] == "/moderation/?show=flagged"
    for item in (image, other):
        item.refresh_from_db()
        assert (item.hidden_by, item.hidden_reason, item.flagged_at) == (olivia, "gore", None)
        assert item.hidden_at >= before
    assert not Flag.objects.filter(resolved_at=None).exists()
    assert Flag.objects.filter(resolved_by=olivia).count() == 2
    grid.refresh_from_db()
    assert grid.updated_at >= before and grid.hidden_at is None  # the card redraws; the task stays
    hides = AuditEntry.objects.filter(act=AuditEntry.Act.HIDE)
    assert sorted((e.target_type, e.target_id) for e in hides) == sorted([("image", image.pk), ("task", other.pk)])
    assert {(e.actor_id, e.actor_name, e.reason, e.team_id) for e in hides} == {
        (olivia.pk, "olivia", "gore", grid.team_id)
    }
    assert "Hid 2 items." in owner_client.get(response["Location"]).content.decode()


def test_with_htmx_it_answers_with_the_queue_and_what_changed(owner_client, alice, grid):
    flag(alice, task=grid)
    data = {"items": [f"task:{grid.pk}"], "act": "clear", "reason": "it is fine"}
    response = owner_client.post(reverse("generations:moderation_act"), data, headers=HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="mod-queue"' in html
    assert "Cleared the flags of 1 item." in html and "Nothing to review" in html


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"act": "hide", "reason": ""}, "Give a reason: it is kept in the audit trail."),
        ({"act": "hide", "reason": "   "}, "Give a reason: it is kept in the audit trail."),
        ({"act": "clear", "reason": "x" * 301}, "Keep the reason under 300 characters."),
        ({"act": "delete", "reason": "why not"}, "Choose Hide, Restore or Clear flag."),
        ({"act": "hide", "reason": "gore", "items": []}, "Select at least one item."),
        ({"act": "hide", "reason": "gore\x00"}, "Null characters are not allowed."),  # PostgreSQL stores no NUL
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_a_refused_act_says_why_and_changes_nothing(owner_client, alice, grid, data, message, htmx):
    image = image_of(grid)
    flag(alice, image=image)
    flag(alice, task=grid)
    data = {"items": [f"image:{image.pk}", f"task:{grid.pk}"], **data}
    response = owner_client.post(reverse("generations:moderation_act"), data, headers=HX if htmx else {})
    assert response.status_code == 422
    html = response.content.decode()
    assert message in html
    if data["items"]:  # the picks stay ticked, to try again
        assert f'value="image:{image.pk}" id="pick-image-{image.pk}" class="mod-item__pick" checked' in html
    image.refresh_from_db()
    grid.refresh_from_db()
    assert image.hidden_at is None and grid.hidden_at is None
    assert image.flagged_at is not None and grid.flagged_at is not None
    assert Flag.objects.filter(resolved_at=None).count() == 2
    assert AuditEntry.objects.exclude(act="flag").count() == 0


@pytest.mark.parametrize("key", ["image:x", "photo:1", "task:", "task:99999999", "task:-1"])
def test_items_that_name_nothing_are_404(owner_client, key):
    data = {"items": [key], "act": "hide", "reason": "gore"}
    assert owner_client.post(reverse("generations:moderation_act"), data).status_code == 404
    assert not AuditEntry.objects.exists()


def test_it_restores_hidden_items(owner_client, olivia, grid):
    image = image_of(grid)
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image.pk), reason="gore")
    data = {"items": [f"image:{image.pk}"], "act": "restore", "reason": "a mistake", "show": "hidden"}
    response = owner_client.post(reverse("generations:moderation_act"), data)
    assert response.status_code == 302 and response["Location"] == "/moderation/?show=hidden"
    image.refresh_from_db()
    assert (image.hidden_at, image.hidden_by, image.hidden_reason) == (None, None, "")
    entry = AuditEntry.objects.get(act=AuditEntry.Act.RESTORE)
    assert (entry.actor, entry.target_type, entry.target_id, entry.reason) == (olivia, "image", image.pk, "a mistake")
    again = owner_client.post(reverse("generations:moderation_act"), data, follow=True)
    assert "Nothing changed: that item is not hidden." in again.content.decode()
    assert AuditEntry.objects.filter(act=AuditEntry.Act.RESTORE).count() == 1


def test_clearing_a_flag_leaves_the_item_visible_and_audits_it(owner_client, olivia, alice, grid):
    flag_row = flag(alice, task=grid)
    data = {"items": [f"task:{grid.pk}"], "act": "clear", "reason": "on brief after all"}
    assert owner_client.post(reverse("generations:moderation_act"), data).status_code == 302
    grid.refresh_from_db()
    flag_row.refresh_from_db()
    assert grid.flagged_at is None and grid.hidden_at is None
    assert (flag_row.resolved_by, flag_row.resolved_at is not None) == (olivia, True)
    entry = AuditEntry.objects.get(act=AuditEntry.Act.CLEAR_FLAGS)
    assert (entry.actor, entry.target_type, entry.target_id) == (olivia, "task", grid.pk)
    assert entry.reason == "on brief after all"


# --- Live removal: the studio's pulse ----------------------------------------------------------------------------


def _pulse(client, since) -> str:
    response = client.get(reverse("generations:pulse"), {"since": since.isoformat()}, headers=HX)
    assert response.status_code == 200
    return response.content.decode()


def test_the_pulse_deletes_a_hidden_tasks_card_for_members(alice_client, olivia, grid):
    since = timezone.now()
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=grid.pk), reason="off brief")
    html = _pulse(alice_client, since)
    assert f'<div id="task-{grid.pk}" hx-swap-oob="delete"></div>' in html
    assert f'<article id="task-{grid.pk}"' not in html


def test_the_pulse_brings_a_restored_card_back(alice_client, olivia, grid):
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=grid.pk), reason="off brief")
    since = timezone.now()
    moderation.items_restore(actor=olivia, items=Task.objects.filter(pk=grid.pk), reason="fine")
    html = _pulse(alice_client, since)
    assert f'<article id="task-{grid.pk}"' in html and 'hx-swap-oob="delete"' not in html


def test_the_pulse_redraws_a_card_without_its_hidden_image(alice_client, olivia, grid):
    image = image_of(grid, 2)
    since = timezone.now()
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image.pk), reason="gore")
    html = _pulse(alice_client, since)
    assert f'<article id="task-{grid.pk}"' in html
    assert f"/images/{image.pk}/" not in html  # neither its thumbnail nor its file
    assert html.count('<figure class="shot"') == 3
    assert f"/images/{image_of(grid, 1).pk}/thumb/" in html
    assert 'aria-label="Actions for image 2"' not in html and 'aria-label="Actions for image 1"' in html


def test_staff_keep_hidden_cards_and_images_marked(client, django_user_model, team, olivia, grid):
    staff = django_user_model.objects.create_user(username="sam", password="pw", is_staff=True)
    join(team, staff)
    client.force_login(staff)
    since = timezone.now()
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image_of(grid, 2).pk), reason="gore")
    html = _pulse(client, since)
    assert f"/images/{image_of(grid, 2).pk}/thumb/" in html and 'class="shot__hidden" title="gore">Hidden' in html
    since = timezone.now()
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=grid.pk), reason="off brief")
    html = _pulse(client, since)
    assert f'<article id="task-{grid.pk}"' in html and "badge--hidden" in html and "delete" not in html


@pytest.mark.parametrize(
    ("show", "indexes"), [("flagged", ("image_flagged", "task_flagged")), ("hidden", ("image_hidden", "task_hidden"))]
)
def test_a_page_of_the_queue_reads_the_partial_indexes_not_the_teams_history(team, alice, olivia, show, indexes):
    from generations.views.moderation import QUEUE_PAGE_SIZE, _queue_rows
    from tests.planner import history_for_the_planner

    task = add_task(user=alice)
    flag(alice, task=task)
    flag(alice, image=image_of(task))
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image_of(task, 2).pk), reason="gore")
    moderation.items_hide(actor=olivia, items=Task.objects.filter(pk=add_task(user=alice).pk), reason="spam")
    sql, params = _queue_rows(team, show=show)[:QUEUE_PAGE_SIZE].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert "task_team" not in plan and "TEMP B-TREE" not in plan, plan
        else:  # PostgreSQL picks by statistics: give it a team's history as production has it
            history_for_the_planner(team, alice)
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "task_team" not in plan, plan
    assert all(index in plan for index in indexes), plan


def test_the_hidden_tab_shows_owners_no_hidden_picture_and_staff_do_see_it(owner_client, client, olivia, grid, team):
    image = image_of(grid)
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=image.pk), reason="gore")
    html = owner_client.get(reverse("generations:moderation"), {"show": "hidden"}).content.decode()
    assert f'value="image:{image.pk}"' in html and f"/images/{image.pk}/thumb/" not in html
    assert '<span class="mod-item__blank">Hidden</span>' in html
    staff = type(olivia).objects.create_user(username="sam", password="pw", is_staff=True)
    join(team, staff)
    client.force_login(staff)
    assert f"/images/{image.pk}/thumb/" in client.get("/moderation/?show=hidden").content.decode()


# --- Who may do what: each URL of this part for member, owner, staff, another team's member and owner, anonymous

EXPECTED = {
    # name: member, owner, staff, other team's member, other team's owner, anonymous ("login": sent to log in)
    "image_flag": (200, 200, 200, 404, 404, "login"),
    "task_flag": (200, 200, 200, 404, 404, "login"),
    "moderation": (403, 200, 200, 403, 200, "login"),
    "moderation_act": (403, 302, 302, 403, 404, "login"),
}
WHO = ("member", "owner", "staff", "other_member", "other_owner", "anonymous")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_permission_matrix(client, django_user_model, team, alice, olivia, charlie, grid, name):
    other_owner = django_user_model.objects.create_user(username="otto", password="pw")
    join(charlie.memberships.first().team, other_owner, role=Membership.Role.OWNER)
    staff = django_user_model.objects.create_user(username="sam", password="pw", is_staff=True)
    join(team, staff)
    users = {"member": alice, "owner": olivia, "staff": staff, "other_member": charlie, "other_owner": other_owner}
    image = image_of(grid)
    requests = {
        "image_flag": ("get", reverse("generations:image_flag", args=[image.pk]), {}),
        "task_flag": ("get", reverse("generations:task_flag", args=[grid.pk]), {}),
        "moderation": ("get", reverse("generations:moderation"), {}),
        "moderation_act": (
            "post",
            reverse("generations:moderation_act"),
            {"items": [f"image:{image.pk}"], "act": "clear", "reason": "checked"},
        ),
    }
    method, url, data = requests[name]
    for who, expected in zip(WHO, EXPECTED[name], strict=True):
        client.logout()
        if who != "anonymous":
            client.force_login(users[who])
        if not Flag.objects.filter(resolved_at=None).exists():  # a clear that went through: flag it again
            flag(alice, image=image)
        response = getattr(client, method)(url, data)
        if expected == "login":
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), who
        else:
            assert response.status_code == expected, (who, response.status_code)
    # Only the owner's and the staff member's clears happened: one audit row each.
    clears = AuditEntry.objects.filter(act=AuditEntry.Act.CLEAR_FLAGS).values_list("actor__username", flat=True)
    assert sorted(clears) == (["olivia", "sam"] if name == "moderation_act" else [])


# --- Odd input from an owner: never a 5xx, and a refused act changes nothing --------------------------------------

ODD = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "image:\x00", "task:²", "image:99999999999999999999999", "task:0", "x" * 400]),
)


@hypothesis.settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@given(
    items=st.lists(st.one_of(st.sampled_from(["image", "task"]), ODD), max_size=3),
    act=st.one_of(st.sampled_from(["hide", "restore", "clear"]), ODD),
    reason=st.one_of(st.just("checked"), ODD),
    show=st.one_of(st.sampled_from(["flagged", "hidden"]), ODD),
    page=ODD,
    htmx=st.booleans(),
)
def test_no_act_gets_a_5xx_and_a_refused_one_changes_nothing(
    owner_client, alice, grid, items, act, reason, show, page, htmx
):
    image = image_of(grid)
    real = {"image": f"image:{image.pk}", "task": f"task:{grid.pk}"}
    data = {"items": [real.get(i, i) for i in items], "act": act, "reason": reason, "show": show, "page": page}
    with transaction.atomic():
        if not Flag.objects.filter(image=image).exists():
            flag(alice, image=image)
        before = (AuditEntry.objects.count(), list(Task.objects.values_list("hidden_at", "flagged_at")))
        response = owner_client.post(reverse("generations:moderation_act"), data, headers=HX if htmx else {})
        assert response.status_code < 500
        if response.status_code >= 400:
            assert (AuditEntry.objects.count(), list(Task.objects.values_list("hidden_at", "flagged_at"))) == before
            assert Image.objects.get(pk=image.pk).flagged_at is not None
        transaction.set_rollback(True)


def test_every_place_offers_its_flag_link(alice_client, grid):
    image = image_of(grid, 1)
    flag_image, flag_task = f"/images/{image.pk}/flag/", f"/tasks/{grid.pk}/flag/"
    # A library tile's Actions (and a task page image's) lead to the image's menu page, which has the image's link.
    library = alice_client.get(reverse("generations:library")).content.decode()
    actions_url = f"/tasks/{grid.pk}/actions/?index=1"
    assert f'class="tile__act" href="{actions_url}"' in library
    assert f'class="menu__flag" href="{flag_image}"' in alice_client.get(actions_url).content.decode()
    studio = alice_client.get(reverse("generations:studio")).content.decode()
    assert f'class="flag-open" href="{flag_task}"' in studio and 'class="menu__flag"' in studio
    assert 'id="flag-dialog"' in studio
    task_page = alice_client.get(reverse("generations:task_detail", args=[grid.pk])).content.decode()
    assert f'class="btn flag-open" href="{flag_task}"' in task_page and 'id="flag-dialog"' in task_page
