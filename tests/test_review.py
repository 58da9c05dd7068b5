"""Review (none, shortlisted, approved, rejected): who may set what, the audit trail, the card redrawn, the controls
on every page, the library's filters, the task page's marks and the approved images' provenance bundle."""

from __future__ import annotations

import io
import json
import re
import zipfile
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations.library import queries
from generations.models import AuditEntry, Image, Membership, Task
from generations.services.review import ReviewRefused, image_review_set
from tests.library_data import add_task, image_tile, tile_ids
from tests.support.teams import join

HTMX = {"HX-Request": "true"}
LIBRARY = "/library/"


@pytest.fixture
def olivia(team):
    """alice and bob's team's owner."""
    user = get_user_model().objects.create_user(username="olivia", password="pw-olivia")
    join(team, user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def sam(team):
    """Staff, a plain member of the team: staff count as owners."""
    user = get_user_model().objects.create_user(username="sam", password="pw-sam", is_staff=True)
    join(team, user)
    return user


@pytest.fixture
def grid(alice):
    return add_task(user=alice, text="harbour at dawn", minutes=0)


def review(client, image: Image, state: str, **headers: str):
    return client.post(f"/images/{image.pk}/review/", {"state": state}, headers=headers)


def state_of(image: Image) -> str:
    image.refresh_from_db()
    return image.review_state


# --- Who may set what ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lets_a_member_shortlist_and_clear(client, alice, grid):
    image = grid.images.get(index=2)
    client.force_login(alice)
    response = review(client, image, "shortlisted", Referer="http://testserver/library/?q=harbour")
    assert response.status_code == 302
    assert response["Location"] == f"http://testserver/library/?q=harbour#i{image.pk}"
    image.refresh_from_db()
    assert (image.review_state, image.reviewed_by, image.reviewed_at is not None) == ("shortlisted", alice, True)
    assert review(client, image, "none").status_code == 302
    image.refresh_from_db()
    assert (image.review_state, image.reviewed_by, image.reviewed_at) == ("", None, None)


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["approved", "rejected"])
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
def test_it_refuses_a_member_approving_or_rejecting(client, alice, grid, state, headers):
    image = grid.images.get(index=1)
    before = Task.objects.get(pk=grid.pk).updated_at
    client.force_login(alice)
    response = review(client, image, state, **headers)
    assert response.status_code == 403
    assert "Only the team's owners can approve or reject an image." in unescape(response.content.decode())
    assert state_of(image) == ""
    assert not AuditEntry.objects.exists()
    assert Task.objects.get(pk=grid.pk).updated_at == before


@pytest.mark.django_db
@pytest.mark.parametrize("decided", ["approved", "rejected"])
@pytest.mark.parametrize("state", ["none", "shortlisted"])
def test_a_member_cannot_undo_an_owners_decision(client, alice, olivia, grid, decided, state):
    image = grid.images.get(index=1)
    image_review_set(user=olivia, team=grid.team, image=image, state=decided)
    client.force_login(alice)
    response = review(client, image, state)
    assert response.status_code == 403
    assert f"An owner has {decided} this image" in response.content.decode()
    image.refresh_from_db()
    assert (image.review_state, image.reviewed_by) == (decided, olivia)
    assert AuditEntry.objects.count() == 1  # the owner's


@pytest.mark.django_db
@pytest.mark.parametrize("actor", ["olivia", "sam"])
def test_an_owner_or_staff_sets_any_state(client, request, grid, actor):
    user = request.getfixturevalue(actor)
    image = grid.images.get(index=3)
    client.force_login(user)
    for state in ("shortlisted", "approved", "rejected", "approved", "none"):
        assert review(client, image, state).status_code == 302
        assert state_of(image) == ("" if state == "none" else state)
    assert [(a.details["before"], a.details["after"]) for a in AuditEntry.objects.order_by("pk")] == [
        ("", "shortlisted"),
        ("shortlisted", "approved"),
        ("approved", "rejected"),
        ("rejected", "approved"),
        ("approved", ""),
    ]


@pytest.mark.django_db
def test_another_teams_member_gets_404_and_nothing_changes(client, charlie, grid):
    image = grid.images.get(index=1)
    client.force_login(charlie)
    assert review(client, image, "shortlisted").status_code == 404
    assert review(client, image, "shortlisted", **HTMX).status_code == 404
    assert state_of(image) == "" and not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_anonymous_goes_to_login(client, grid):
    image = grid.images.get(index=1)
    response = review(client, image, "shortlisted")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    response = client.get("/library/approved/export/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert state_of(image) == ""


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["", "None", "approve", "shortlisted ", "\x00"])
def test_it_refuses_a_state_it_does_not_know(client, olivia, grid, state):
    image = grid.images.get(index=1)
    client.force_login(olivia)
    response = review(client, image, state)
    assert response.status_code == 400
    assert "Choose a review state" in response.content.decode()
    assert state_of(image) == "" and not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_it_answers_get_with_405(alice_client, grid):
    assert alice_client.get(f"/images/{grid.images.first().pk}/review/").status_code == 405


# --- The audit trail and the card -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_change_writes_one_audit_row_and_a_repeat_writes_none(client, alice, grid):
    image = grid.images.get(index=4)
    client.force_login(alice)
    review(client, image, "shortlisted")
    review(client, image, "shortlisted")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_name, entry.team, entry.act) == (alice, "alice", grid.team, "review")
    assert (entry.target_type, entry.target_id) == ("image", image.pk)
    assert entry.details == {"before": "", "after": "shortlisted"}


@pytest.mark.django_db
def test_a_change_bumps_the_cards_version_so_open_studios_redraw_it(alice_client, grid):
    before = Task.objects.get(pk=grid.pk).updated_at
    review(alice_client, grid.images.get(index=1), "shortlisted")
    assert Task.objects.get(pk=grid.pk).updated_at > before
    # The live refresh sends the card again, with its badge.
    pulse = alice_client.get("/studio/pulse/", {"since": before.isoformat()}, headers=HTMX)
    assert pulse.status_code == 200
    assert _card_buttons(pulse.content.decode()) == ["shortlisted", "", "", ""]


@pytest.mark.django_db
def test_the_service_refuses_without_writing(alice, grid):
    image = grid.images.get(index=1)
    with pytest.raises(ReviewRefused) as refused:
        image_review_set(user=alice, team=grid.team, image=image, state="approved")
    assert refused.value.forbidden
    assert state_of(image) == "" and not AuditEntry.objects.exists()


# --- The controls, and the fragments htmx swaps ----------------------------------------------------------------


def _controls(page: str) -> dict[int, str]:
    """Each image's control on a library tile or the task page: its state, by image id."""
    return {int(pk): state for state, pk in re.findall(r'<div class="rv rv--(\w+)" id="rv(\d+)"', page)}


def _card_buttons(page: str) -> list[str]:
    """The review buttons of a studio card's images, in order: their state ("" for none)."""
    return re.findall(r'<button class="rv(?: rv--(\w+))?" name="index" value="\d"', page)


@pytest.mark.django_db
def test_a_member_sees_the_shortlist_button_and_an_owner_all_three(client, alice, olivia, grid):
    image = grid.images.get(index=1)
    for user, buttons in ((alice, ["shortlisted"]), (olivia, ["shortlisted", "approved", "rejected"])):
        client.force_login(user)
        # A studio card's image has one small button: in the card's image form (its menu page, without JS).
        studio = client.get("/").content.decode()
        assert '<button class="rv" name="index" value="1" title="Shortlist (S)"></button>' in studio
        assert '<form id="review-form" method="post" data-url="/images/0/review/" hidden>' in studio
        for url in ("/library/?stacks=0", f"/tasks/{grid.pk}/"):
            html = client.get(url).content.decode()
            control = re.search(rf'<div class="rv rv--none" id="rv{image.pk}".*?</div>', html).group(0)
            assert re.findall(r'rv__btn rv__btn--(\w+)"', control) == buttons, url
            assert 'form="review-form"' in control and f'formaction="/images/{image.pk}/review/"' in control
            assert '<form id="review-form" method="post" data-url="/images/0/review/" hidden>' in html


@pytest.mark.django_db
def test_the_state_shows_as_a_badge_everywhere(client, alice, olivia, grid):
    first, second = grid.images.get(index=1), grid.images.get(index=2)
    image_review_set(user=olivia, team=grid.team, image=first, state="approved")
    image_review_set(user=alice, team=grid.team, image=second, state="shortlisted")
    client.force_login(alice)
    assert _card_buttons(client.get("/").content.decode()) == ["approved", "shortlisted", "", ""]
    for url in ("/library/?stacks=0", f"/tasks/{grid.pk}/"):
        html = client.get(url).content.decode()
        assert _controls(html)[first.pk] == "approved" and _controls(html)[second.pk] == "shortlisted"
        # The member's badge for an owner's decision is not a button; their shortlist is a pressed one.
        assert '<span class="rv__badge rv__badge--approved">✓<span class="rv__word"> Approved</span></span>' in html
        assert re.search(rf'id="rv{second.pk}s"[^>]*value="none" aria-pressed="true"', html)


@pytest.mark.django_db
def test_htmx_gets_the_studio_card_or_the_control_it_targets(client, olivia, grid):
    image = grid.images.get(index=2)
    client.force_login(olivia)
    card = review(client, image, "approved", **HTMX, **{"HX-Target": f"task-{grid.pk}"}).content.decode()
    assert card.lstrip().startswith(f'<article id="task-{grid.pk}"') and "<html" not in card
    assert _card_buttons(card) == ["", "approved", "", ""]
    version = Task.objects.get(pk=grid.pk).updated_at.timestamp()
    assert f'data-version="{version:.6f}"' in card  # as the live refresh will send it: not swapped twice
    control = review(client, image, "rejected", **HTMX, **{"HX-Target": f"rv{image.pk}"}).content.decode()
    assert control.startswith(f'<div class="rv rv--rejected" id="rv{image.pk}"') and control.endswith("</div>")


@pytest.mark.django_db
def test_the_card_it_sends_back_leaves_out_a_hidden_image(client, alice, olivia, grid):
    from generations.services import moderation

    hidden = grid.images.get(index=3)
    moderation.items_hide(actor=olivia, items=Image.objects.filter(pk=hidden.pk), reason="off brief")
    client.force_login(alice)
    card = review(client, grid.images.get(index=2), "shortlisted", **HTMX, **{"HX-Target": f"task-{grid.pk}"})
    assert card.status_code == 200
    assert f"/images/{hidden.pk}/" not in card.content.decode()  # as the studio page and the pulse draw it


@pytest.mark.django_db
def test_the_image_menu_has_a_review_row_with_the_keys(client, alice, olivia, grid):
    client.force_login(alice)
    html = client.get("/").content.decode()
    row = re.search(r'<div class="menu__row menu__row--review".*?</div>', html, re.S).group(0)
    assert re.findall(r'name="state" value="(\w+)"', row) == ["shortlisted", "none"]
    assert "Keys on a focused image: <kbd>S</kbd> shortlist · <kbd>0</kbd> clear</p>" in html
    client.force_login(olivia)
    page = client.get(f"/tasks/{grid.pk}/actions/?index=2").content.decode()  # the menu without JS
    row = re.search(r'<div class="menu__row menu__row--review".*?</div>', page, re.S).group(0)
    image = grid.images.get(index=2)
    assert re.findall(r'value="(\w+)"', row) == ["shortlisted", "approved", "rejected", "none"]
    assert f'formaction="/images/{image.pk}/review/"' in row and 'id="review-form"' in page
    assert re.search(r'value="none" class="rv-menu rv-menu--none" aria-pressed="true"', row)


# --- Library filters -------------------------------------------------------------------------------------------


@pytest.fixture
def reviewed(alice, bob, olivia):
    """Three lineages with images in every state, plus a failed task (no images) and unsaved images."""
    t1 = add_task(user=alice, text="harbour at dawn", minutes=0)
    t2 = add_task(user=bob, parent=t1, action="vary", option="strong", index=2, minutes=1)
    t3 = add_task(user=alice, parent=t2, action="upscale", option="subtle", index=3, minutes=2)
    t4 = add_task(user=bob, text="lanterns", minutes=3)
    t5 = add_task(user=alice, text="desert", status="failed", error="Banned word", minutes=4)
    states = {
        (t1, 2): ("shortlisted", alice),
        (t2, 3): ("approved", olivia),
        (t3, 1): ("approved", olivia),
        (t4, 1): ("rejected", olivia),
        (t4, 4): ("shortlisted", bob),
    }
    for (task, index), (state, user) in states.items():
        image_review_set(user=user, team=task.team, image=task.images.get(index=index), state=state)
    return {"t1": t1, "t2": t2, "t3": t3, "t4": t4, "t5": t5}


def _tiles(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return tile_ids(response.content.decode())


@pytest.mark.django_db
@pytest.mark.parametrize("few", [True, False], ids=["from-the-list", "walking"])
def test_the_library_filters_each_review_state(alice_client, reviewed, monkeypatch, few):
    if not few:
        monkeypatch.setattr(queries, "FEW_IMAGES", 0)
    t1, t2, t3, t4 = (reviewed[k] for k in ("t1", "t2", "t3", "t4"))
    assert _tiles(alice_client, f"{LIBRARY}?review=shortlisted") == [image_tile(t4, 4), image_tile(t1, 2)]
    assert _tiles(alice_client, f"{LIBRARY}?review=approved") == [image_tile(t3, 1), image_tile(t2, 3)]
    assert _tiles(alice_client, f"{LIBRARY}?review=rejected") == [image_tile(t4, 1)]
    reviewed_ids = {image_tile(t, i) for t, i in ((t1, 2), (t2, 3), (t3, 1), (t4, 1), (t4, 4))}
    every_image = [image_tile(t, i.index) for t in (t4, t3, t2, t1) for i in t.images.order_by("index")]
    # Not reviewed: every image without a state; a task without images is not an image to review.
    assert _tiles(alice_client, f"{LIBRARY}?review=none") == [t for t in every_image if t not in reviewed_ids]
    # Combined with the other filters.
    assert _tiles(alice_client, f"{LIBRARY}?review=approved&author=alice") == [image_tile(t3, 1)]
    assert _tiles(alice_client, f"{LIBRARY}?review=shortlisted&q=lanterns") == [image_tile(t4, 4)]
    assert _tiles(alice_client, f"{LIBRARY}?review=approved&action=imagine") == []


@pytest.mark.django_db
def test_a_review_filter_lists_every_image_with_a_chip_and_the_export_button(alice_client, reviewed):
    response = alice_client.get(f"{LIBRARY}?review=approved")
    html = response.content.decode()
    assert '<fieldset class="segmented lib-view" id="lib-view" disabled' in html  # never stacked
    assert 'aria-label="Remove filter: ✓ Approved"' in html
    assert '<option value="approved" selected>✓ Approved</option>' in html
    assert 'href="/library/approved/export/"' in html
    assert 'href="/library/approved/export/"' not in alice_client.get(f"{LIBRARY}?review=shortlisted").content.decode()


@pytest.mark.django_db
def test_a_bad_review_filter_is_explained(alice_client, reviewed):
    response = alice_client.get(f"{LIBRARY}?review=maybe")
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode() and tile_ids(response.content.decode()) == []


@pytest.mark.django_db
def test_another_teams_reviews_never_show(client, charlie, reviewed):
    theirs = add_task(user=charlie, text="other harbour")
    charlie_image = theirs.images.get(index=1)
    image_review_set(user=charlie, team=theirs.team, image=charlie_image, state="shortlisted")
    client.force_login(charlie)
    assert _tiles(client, f"{LIBRARY}?review=shortlisted") == [image_tile(theirs, 1)]
    assert _tiles(client, f"{LIBRARY}?review=approved") == []


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["none", "shortlisted", "approved"])
def test_a_review_filter_costs_a_fixed_number_of_queries(alice_client, reviewed, alice, state):
    alice_client.get(f"{LIBRARY}?review={state}")  # the session and the team, once
    with CaptureQueriesContext(connection) as few:
        alice_client.get(f"{LIBRARY}?review={state}")
    for n in range(6):
        add_task(user=alice, text=f"more {n}", minutes=10 + n)
    image_review_set(user=alice, team=reviewed["t1"].team, image=Image.objects.last(), state="shortlisted")
    with CaptureQueriesContext(connection) as more:
        alice_client.get(f"{LIBRARY}?review={state}")
    assert len(few) == len(more)


# --- The task page ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_task_page_marks_each_nodes_reviewed_images_and_the_way_to_the_approved(alice_client, alice, reviewed):
    t1, t2, t3 = reviewed["t1"], reviewed["t2"], reviewed["t3"]
    t2b = add_task(user=alice, parent=t1, action="pan", option="left", index=1, minutes=5)  # a branch, not approved
    html = alice_client.get(f"/tasks/{t1.pk}/").content.decode()
    items = {int(pk): classes for classes, pk in re.findall(r'<li class="tree__item([^"]*)" data-task="(\d+)"', html)}
    # t2 and t3 hold approved images: they and their ancestors (t1) are on the way; the pan branch is not.
    assert all("tree__item--approved" in items[t.pk] for t in (t1, t2, t3))
    assert "tree__item--approved" not in items[t2b.pk]
    marks = re.findall(r'<span class="rv-mark rv-mark--(\w+)" title="Image (\d)', html)
    assert marks == [("shortlisted", "2"), ("approved", "3"), ("approved", "1")]


@pytest.mark.django_db
def test_the_task_page_draws_the_tree_in_the_same_number_of_queries(alice_client, reviewed, olivia):
    alice_client.get(f"/tasks/{reviewed['t1'].pk}/")  # the session and the team, once
    with CaptureQueriesContext(connection) as before:
        alice_client.get(f"/tasks/{reviewed['t1'].pk}/")
    for image in reviewed["t1"].images.all():
        image_review_set(user=olivia, team=reviewed["t1"].team, image=image, state="approved")
    with CaptureQueriesContext(connection) as after:
        alice_client.get(f"/tasks/{reviewed['t1'].pk}/")
    assert len(before) == len(after)


# --- Exporting the approved images -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_approved_export_holds_one_lineage_per_approved_image(alice_client, alice, olivia):
    from tests.test_task_page import add_images

    root = add_task(user=alice, text="Cà phê at dawn", images=0)
    vary = add_task(user=alice, parent=root, action="vary", option="strong", index=2, images=0, minutes=1)
    upscale = add_task(user=alice, parent=vary, action="upscale", option="subtle", index=3, images=0, minutes=2)
    pan = add_task(user=alice, parent=root, action="pan", option="left", index=1, images=0, minutes=3)
    other = add_task(user=alice, text="lanterns", images=0, minutes=4)
    for task in (root, vary, pan, other):
        add_images(task)
    add_images(upscale, 1)
    approved = [upscale.images.get(), vary.images.get(index=1), other.images.get(index=4)]
    for image in approved:
        image_review_set(user=olivia, team=root.team, image=image, state="approved")
    image_review_set(user=olivia, team=root.team, image=pan.images.get(index=1), state="shortlisted")
    response = alice_client.get("/library/approved/export/")
    assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == (
        f'attachment; filename="moonlight-agency-approved-team-{root.team_id}.zip"'
    )
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    metadata = json.loads(bundle.read("metadata.json"))
    assert metadata["kind"] == "approved"
    # One lineage per approved image, root first; oldest task first.
    assert [(a["image_id"], a["lineage"], a["approved_by"]) for a in metadata["approved"]] == [
        (approved[1].pk, [root.pk, vary.pk], "olivia"),
        (approved[0].pk, [root.pk, vary.pk, upscale.pk], "olivia"),
        (approved[2].pk, [other.pk], "olivia"),
    ]
    # The approved images' files only; every task on the way, the shortlisted pan left out.
    files = sorted(n for n in bundle.namelist() if n.startswith("images/"))
    assert files == sorted(f"images/{i.task_id}-{i.index}.png" for i in approved)
    assert sorted(t["id"] for t in metadata["tasks"]) == sorted([root.pk, vary.pk, upscale.pk, other.pk])
    by_id = {t["id"]: t for t in metadata["tasks"]}
    assert by_id[root.pk]["images"] == [] and [i["id"] for i in by_id[vary.pk]["images"]] == [approved[1].pk]
    for image in approved:
        assert bundle.read(f"images/{image.task_id}-{image.index}.png") == image.file.open("rb").read()
    html = bundle.read("index.html").decode()
    assert "Approved images of Moonlight Agency" in html and "<script" not in html


@pytest.mark.django_db
def test_the_approved_export_is_the_teams_own(client, charlie, alice, olivia, reviewed):
    client.force_login(charlie)
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(client.get("/library/approved/export/").streaming_content)))
    metadata = json.loads(bundle.read("metadata.json"))
    assert metadata["approved"] == [] and metadata["tasks"] == []
    assert [n for n in bundle.namelist() if n.startswith("images/")] == []


@pytest.mark.django_db
def test_the_service_never_touches_another_teams_image(olivia, charlie, grid):
    theirs = add_task(user=charlie, text="other harbour").images.get(index=1)
    with pytest.raises(Image.DoesNotExist):
        image_review_set(user=olivia, team=grid.team, image=theirs, state="approved")
    assert state_of(theirs) == "" and not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_the_review_filters_plans_walk_for_a_common_state_and_seek_a_rare_one(reviewed, alice):
    """At 100,000 tasks (bench/library_pages.py) "not reviewed" took 1.2 s when SQLite sorted every unreviewed image
    found through image_review_state; walking the newest tasks takes a few ms. A rare state's ids come from that
    index."""
    from generations.library.queries import Filters, Library

    team = reviewed["t1"].team
    listing = Library(team_id=team.pk, user_id=alice.pk, filters=Filters(review="", stacked=False))._listed()
    listing = listing.order_by("-created_at", "-pk", "image_index").values("pk")[:25]
    few = Image.objects.filter(review_state="approved", task__team_id=team.pk).values_list("id", flat=True)[:501]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # The walk: down the team's tasks in time order (task_team_recent, or task_team_usage when no hidden-item
            # check needs the row), never through image_review_state.
            for query, expected, unwanted in (
                (listing, ("task_team_recent", "task_team_usage"), "image_review_state"),
                (few, ("image_review_state",), None),
            ):
                sql, params = query.query.sql_with_params()
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                plan = " ".join(row[-1] for row in cursor.fetchall())
                assert any(index in plan for index in expected), plan
                assert unwanted is None or unwanted not in plan, plan
        else:  # PostgreSQL picks by statistics: the rare state's list reads the index, never the team's images
            from tests.planner import history_for_the_planner

            history_for_the_planner(team, alice)
            cursor.execute("SET LOCAL enable_seqscan = off")
            sql, params = few.query.sql_with_params()
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "image_review_state" in plan, plan
