"""Collections: the index (create, rename, delete), the per-image control, the composer's choice, a finished
task's images joining its collection, and isolation for every collections URL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import hypothesis
import pytest
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import strategies as st

from generations.models import Collection, CollectionItem, Image, Task
from generations.services import collections, submitting

HTMX = {"HX-Request": "true"}
UPSTREAM_ID = "8a6e2a3b-6f0c-4c5e-9a51-2f1d3c4b5a60"  # the task id in tests/test_data/finished_grid.json


@pytest.fixture
def make_image(make_task):
    """A saved image (a finished task of `user`'s team, with a thumbnail file)."""

    def make(*, user=None, index=1, task=None):
        task = task or make_task(user=user, status="finished")
        image = Image(task=task, index=index, source_url=f"https://cdn.apiframe.pro/{task.pk}-{index}.png")
        image.width = image.height = 512
        image.thumbnail.save(f"t{task.pk}-{index}.webp", ContentFile(b"RIFF....WEBP"), save=False)
        image.mirrored_at = timezone.now()
        image.save()
        return image

    return make


@pytest.fixture
def moodboard(alice, team):
    return collections.collection_create(team=team, user=alice, name="Moodboard")


@pytest.fixture
def theirs(charlie):
    """A collection of charlie's team, holding one of charlie's images."""
    return collections.collection_create(
        team=charlie.memberships.get(chosen_at__isnull=False).team, user=charlie, name="Moodboard"
    )


def _stamp(collection: Collection, minutes_ago: int = 60) -> timezone.datetime:
    """Move "last updated" into the past, so a test can see whether a change bumps it."""
    then = timezone.now() - timedelta(minutes=minutes_ago)
    Collection.objects.filter(pk=collection.pk).update(updated_at=then)
    return then


# --- The index: create, rename, delete ------------------------------------------------------------------------


def test_it_creates_a_collection_with_a_tidy_name(alice_client, alice, team):
    response = alice_client.post("/collections/new/", {"name": "  Coffee   shop\tmoods  "})
    assert response.status_code == 302 and response["Location"] == "/collections/"
    collection = Collection.objects.get()
    assert (collection.name, collection.team, collection.created_by) == ("Coffee shop moods", team, alice)
    assert "Created “Coffee shop moods”." in alice_client.get("/collections/").content.decode()


def test_it_creates_one_with_htmx_and_answers_the_form_and_the_new_card(alice_client):
    response = alice_client.post("/collections/new/", {"name": "Harbours"}, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    collection = Collection.objects.get(name="Harbours")
    assert "<html" not in body
    assert 'id="collection-create"' in body and 'value=""' in body  # the form again, empty
    assert 'hx-swap-oob="afterbegin:#collections"' in body and f'id="collection-{collection.pk}"' in body
    assert "Created “Harbours”." in body


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the collection a name."),
        ("   \t ", "Give the collection a name."),
        ("x" * 81, "Keep the name to 80 characters at most (it has 81)."),
        ("MOODBOARD", "Your team already has a collection named “Moodboard”."),
        (" moodboard ", "Your team already has a collection named “Moodboard”."),
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_it_refuses_a_bad_name_and_changes_nothing(alice_client, moodboard, name, message, htmx):
    response = alice_client.post("/collections/new/", {"name": name}, headers=HTMX if htmx else {})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert ("<html" in response.content.decode()) is not htmx
    assert list(Collection.objects.values_list("name", flat=True)) == ["Moodboard"]


def test_names_are_unique_whatever_their_case_or_form(alice, team):
    collections.collection_create(team=team, user=alice, name="Straße")
    with pytest.raises(collections.ValidationError, match="already has a collection named “Straße”"):
        collections.collection_create(team=team, user=alice, name="STRASSE")
    collections.collection_create(team=team, user=alice, name="Été")
    with pytest.raises(collections.ValidationError):
        collections.collection_create(team=team, user=alice, name="ÉTÉ")
    assert Collection.objects.count() == 2


def test_the_database_refuses_a_duplicate_that_slips_past_the_check(alice, team, moodboard, monkeypatch):
    # Two teammates creating "Moodboard" at once: both pass the check, the unique name_key stops the second.
    monkeypatch.setattr(collections, "collection_name_clean", lambda *, team, name, collection=None: name)
    with pytest.raises(collections.ValidationError, match="already has a collection named"):
        collections.collection_create(team=team, user=alice, name="moodboard")
    assert Collection.objects.count() == 1


def test_another_team_may_use_the_same_name(alice_client, theirs):
    response = alice_client.post("/collections/new/", {"name": "Moodboard"})
    assert response.status_code == 302
    assert Collection.objects.filter(name="Moodboard").count() == 2


def test_it_renames_and_bumps_last_updated(alice_client, moodboard):
    then = _stamp(moodboard)
    response = alice_client.post(f"/collections/{moodboard.pk}/rename/", {"name": "Mood board 2"}, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="collection-{moodboard.pk}-head" hx-swap-oob="true"' in body and "Mood board 2" in body
    assert "Renamed to “Mood board 2”." in body
    moodboard.refresh_from_db()
    assert (moodboard.name, moodboard.name_key) == ("Mood board 2", "mood board 2")
    assert moodboard.updated_at > then


def test_a_rename_to_its_own_name_in_another_case_is_allowed(alice_client, moodboard):
    assert alice_client.post(f"/collections/{moodboard.pk}/rename/", {"name": "MOODBOARD"}).status_code == 302
    moodboard.refresh_from_db()
    assert moodboard.name == "MOODBOARD"


def test_a_rename_to_the_same_name_changes_nothing(alice_client, moodboard):
    then = _stamp(moodboard)
    assert alice_client.post(f"/collections/{moodboard.pk}/rename/", {"name": " Moodboard "}).status_code == 302
    moodboard.refresh_from_db()
    assert moodboard.updated_at == then


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the collection a name."),
        ("y" * 90, "Keep the name to 80 characters at most (it has 90)."),
        ("harbours", "Your team already has a collection named “Harbours”."),
    ],
)
def test_a_bad_rename_gets_a_message_and_changes_nothing(alice_client, alice, team, moodboard, name, message):
    collections.collection_create(team=team, user=alice, name="Harbours")
    then = _stamp(moodboard)
    response = alice_client.post(f"/collections/{moodboard.pk}/rename/", {"name": name}, headers=HTMX)
    assert response.status_code == 422
    body = response.content.decode()
    assert f'id="collection-{moodboard.pk}-rename-error"' in body and message in body
    assert "-head" not in body  # the card keeps its name
    page = alice_client.post(f"/collections/{moodboard.pk}/rename/", {"name": name})  # without JS: the page, saying why
    assert page.status_code == 422 and message in page.content.decode() and "<html" in page.content.decode()
    moodboard.refresh_from_db()
    assert (moodboard.name, moodboard.updated_at) == ("Moodboard", then)


def test_it_deletes_a_collection_and_keeps_its_images(alice_client, alice, moodboard, make_image, make_task):
    image = make_image()
    collections.collection_add_image(collection=moodboard, image=image, user=alice)
    waiting = make_task(collection=moodboard)  # a task whose images have not arrived yet
    response = alice_client.post(f"/collections/{moodboard.pk}/delete/", headers=HTMX)
    assert response.status_code == 200
    assert "Deleted “Moodboard”. Its images are still in the library." in response.content.decode()
    assert not Collection.objects.exists() and not CollectionItem.objects.exists()
    assert Image.objects.filter(pk=image.pk).exists()
    waiting.refresh_from_db()
    assert waiting.collection is None


def test_a_delete_without_js_redirects_with_a_message(alice_client, moodboard):
    response = alice_client.post(f"/collections/{moodboard.pk}/delete/", follow=True)
    assert response.redirect_chain == [("/collections/", 302)]
    assert "Deleted “Moodboard”." in response.content.decode()
    assert not Collection.objects.exists()


def test_the_index_shows_each_collection_with_its_newest_cover_count_and_link(
    alice_client, alice, team, moodboard, make_image, make_task
):
    older, newer = make_image(index=1), make_image(index=2)
    collections.collection_add_image(collection=moodboard, image=older, user=alice)
    collections.collection_add_image(collection=moodboard, image=newer, user=alice)
    unsaved = Image.objects.create(task=make_task(status="finished"), index=1, source_url="https://cdn.apiframe.pro/u")
    collections.collection_add_image(collection=moodboard, image=unsaved, user=alice)  # newest, but no thumbnail yet
    collections.collection_create(team=team, user=alice, name="Empty one")
    body = alice_client.get("/collections/").content.decode()
    card = body.split(f'id="collection-{moodboard.pk}"')[1].split("</article>")[0]
    assert f'src="/images/{newer.pk}/thumb/"' in card and f"/images/{older.pk}/" not in card
    assert "3 images" in card
    assert f'href="/library/?collection={moodboard.pk}"' in card
    assert "Empty one" in body and "0 images" in body
    assert "{%" not in body and "{#" not in body


def test_the_index_sorts_by_last_update_or_by_name(alice_client, alice, team):
    for name in ("b-second", "a-oldest", "c-newest"):
        collections.collection_create(team=team, user=alice, name=name)
    _stamp(Collection.objects.get(name="a-oldest"), minutes_ago=90)
    _stamp(Collection.objects.get(name="b-second"), minutes_ago=60)

    def order(url):
        body = alice_client.get(url).content.decode()
        return sorted(("a-oldest", "b-second", "c-newest"), key=body.index)

    assert order("/collections/") == ["c-newest", "b-second", "a-oldest"]
    assert order("/collections/?sort=name") == ["a-oldest", "b-second", "c-newest"]


def test_the_index_shows_only_the_teams_collections(alice_client, moodboard, charlie):
    collections.collection_create(
        team=charlie.memberships.get(chosen_at__isnull=False).team, user=charlie, name="Charlie's secrets"
    )
    body = alice_client.get("/collections/").content.decode()
    assert "Moodboard" in body and "Charlie&#x27;s secrets" not in body and "Charlie's secrets" not in body


def _index_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/collections/").status_code == 200
    return len(queries)


def test_the_index_costs_the_same_queries_for_2_or_12_collections(alice_client, alice, team, make_image):
    images = [make_image(index=i) for i in range(1, 5)]

    def add(count):
        start = Collection.objects.count()
        for n in range(start, start + count):
            collection = collections.collection_create(team=team, user=alice, name=f"Board {n}")
            for image in images[: n % 4 + 1]:
                collections.collection_add_image(collection=collection, image=image, user=alice)

    alice_client.get("/collections/")  # the first request of a session picks the team and saves it
    add(2)
    small = _index_queries(alice_client)
    add(10)
    assert _index_queries(alice_client) == small


# --- The per-image control --------------------------------------------------------------------------------------


def test_the_control_costs_the_same_queries_for_2_or_12_collections(alice_client, alice, team, make_image):
    image = make_image()
    url = f"/images/{image.pk}/collections/"
    alice_client.get(url)  # the first request of a session picks the team and saves it

    def add(count):
        start = Collection.objects.count()
        for n in range(start, start + count):
            collection = collections.collection_create(team=team, user=alice, name=f"Board {n}")
            if n % 2:
                collections.collection_add_image(collection=collection, image=image, user=alice)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert alice_client.get(url, headers=HTMX).status_code == 200
        return len(captured)

    add(2)
    small = queries()
    add(10)
    assert queries() == small


def test_the_control_lists_the_teams_collections_as_toggles(alice_client, alice, team, moodboard, make_image, theirs):
    image = make_image()
    harbours = collections.collection_create(team=team, user=alice, name="harbours")
    collections.collection_add_image(collection=harbours, image=image, user=alice)
    page = alice_client.get(f"/images/{image.pk}/collections/")
    assert page.status_code == 200 and "<html" in page.content.decode()  # a page of its own without JS
    fragment = alice_client.get(f"/images/{image.pk}/collections/", headers=HTMX).content.decode()
    assert "<html" not in fragment
    assert f'id="pick-{image.pk}-{harbours.pk}" aria-pressed="true"' in fragment
    assert f'id="pick-{image.pk}-{moodboard.pk}" aria-pressed="false"' in fragment
    assert fragment.index("harbours") < fragment.index("Moodboard")  # by name, whatever the case
    assert f"pick-{image.pk}-{theirs.pk}" not in fragment
    assert 'name="new_name"' in fragment


def test_it_adds_an_image_once_however_often_it_is_asked(alice_client, alice, moodboard, make_image):
    image = make_image()
    then = _stamp(moodboard)
    data = {"collection": moodboard.pk, "op": "add"}
    first = alice_client.post(f"/images/{image.pk}/collections/", data, headers=HTMX)
    assert first.status_code == 200
    body = first.content.decode()
    assert f'id="pick-{image.pk}-{moodboard.pk}" aria-pressed="true"' in body and 'value="remove"' in body
    assert "Added to “Moodboard”." in body and "<html" not in body
    moodboard.refresh_from_db()
    bumped = moodboard.updated_at
    assert bumped > then
    assert alice_client.post(f"/images/{image.pk}/collections/", data, headers=HTMX).status_code == 200
    item = CollectionItem.objects.get()
    assert (item.collection, item.image, item.added_by) == (moodboard, image, alice)
    moodboard.refresh_from_db()
    assert moodboard.updated_at == bumped  # nothing changed the second time


def test_it_removes_an_image_and_removing_again_changes_nothing(alice_client, alice, moodboard, make_image):
    image = make_image()
    collections.collection_add_image(collection=moodboard, image=image, user=alice)
    then = _stamp(moodboard)
    data = {"collection": moodboard.pk, "op": "remove"}
    response = alice_client.post(f"/images/{image.pk}/collections/", data)
    assert response.status_code == 302 and response["Location"] == f"/images/{image.pk}/collections/"
    assert not CollectionItem.objects.exists()
    assert Image.objects.filter(pk=image.pk).exists()
    moodboard.refresh_from_db()
    assert moodboard.updated_at > then
    then = _stamp(moodboard)
    assert alice_client.post(f"/images/{image.pk}/collections/", data).status_code == 302
    moodboard.refresh_from_db()
    assert moodboard.updated_at == then


def test_the_control_creates_a_collection_holding_the_image(alice_client, alice, make_image):
    image = make_image()
    response = alice_client.post(f"/images/{image.pk}/collections/", {"new_name": " Night  ferries "}, headers=HTMX)
    assert response.status_code == 200
    collection = Collection.objects.get()
    assert collection.name == "Night ferries"
    assert list(collection.images.all()) == [image]
    body = response.content.decode()
    assert f'id="pick-{image.pk}-{collection.pk}" aria-pressed="true"' in body
    assert "Created “Night ferries” with this image in it." in body


@pytest.mark.parametrize(
    ("new_name", "message"),
    [("", "Give the collection a name."), ("moodboard", "already has a collection named “Moodboard”")],
)
def test_a_bad_new_name_in_the_control_changes_nothing(alice_client, moodboard, make_image, new_name, message):
    image = make_image()
    response = alice_client.post(f"/images/{image.pk}/collections/", {"new_name": new_name}, headers=HTMX)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert response["HX-Retarget"] == f"#pick-{image.pk}"
    assert Collection.objects.count() == 1 and not CollectionItem.objects.exists()


def test_an_unknown_op_is_refused(alice_client, moodboard, make_image):
    image = make_image()
    response = alice_client.post(f"/images/{image.pk}/collections/", {"collection": moodboard.pk, "op": "x"})
    assert response.status_code == 422
    assert "Say whether to add the image" in response.content.decode()
    assert not CollectionItem.objects.exists()


@pytest.mark.parametrize("collection", ["", "abc", "999999", "²", "99999999999999999999", "-1"])
def test_an_unknown_collection_is_a_404(alice_client, make_image, collection):
    image = make_image()
    response = alice_client.post(f"/images/{image.pk}/collections/", {"collection": collection, "op": "add"})
    assert response.status_code == 404
    assert not CollectionItem.objects.exists()


def test_the_services_refuse_to_mix_teams(alice, charlie, moodboard, make_image):
    image = make_image(user=charlie)
    with pytest.raises(ValueError, match="different teams"):
        collections.collection_add_image(collection=moodboard, image=image, user=alice)
    assert not CollectionItem.objects.exists()


def test_the_task_page_links_each_image_to_its_control(alice_client, make_image, make_task):
    task = make_task(status="finished")
    images = [make_image(task=task, index=i) for i in (1, 2)]
    body = alice_client.get(f"/tasks/{task.pk}/").content.decode()
    for image in images:
        assert f'href="/images/{image.pk}/collections/"' in body
        assert f'aria-label="Collections for image {image.index}"' in body
    assert 'id="collect-dialog"' in body


# --- The composer ------------------------------------------------------------------------------------------------


def _imagine(client, **extra):
    data = {"prompt": "a ferry at dusk", "mode": "fast", "aspect_ratio": "1:1", "idempotency_key": str(uuid.uuid4())}
    return client.post("/tasks/", {**data, **extra}, headers=HTMX)


def test_the_composer_offers_the_teams_collections(alice_client, moodboard, theirs):
    body = alice_client.get("/").content.decode()
    assert 'name="collection"' in body
    assert f'value="{moodboard.pk}"' in body and f'value="{theirs.pk}"' not in body


def test_the_composer_hides_the_choice_while_the_team_has_no_collection(alice_client):
    assert 'name="collection"' not in alice_client.get("/").content.decode()


def test_a_new_task_stores_the_chosen_collection_and_the_composer_keeps_it(alice_client, moodboard):
    response = _imagine(alice_client, collection=moodboard.pk)
    assert response.status_code == 200
    assert Task.objects.get().collection == moodboard
    assert f'<option value="{moodboard.pk}" selected>' in response.content.decode()  # ready for the next prompt


def test_a_new_task_without_a_collection_joins_none(alice_client, moodboard):
    assert _imagine(alice_client, collection="").status_code == 200
    assert Task.objects.get().collection is None


@pytest.mark.parametrize("collection", ["abc", "²", "99999999999999999999", "-1"])
def test_a_mangled_collection_is_a_form_error(alice_client, collection):
    response = _imagine(alice_client, collection=collection)
    assert response.status_code == 422
    assert "Choose one of your team&#x27;s collections" in response.content.decode()
    assert not Task.objects.exists()


def test_another_teams_collection_is_a_form_error(alice_client, theirs):
    response = _imagine(alice_client, collection=theirs.pk)
    assert response.status_code == 422
    assert "Choose one of your team&#x27;s collections" in response.content.decode()
    assert not Task.objects.exists()


def test_the_service_refuses_another_teams_collection_for_a_task(alice, team, theirs):
    with pytest.raises(ValueError, match="is not team"):
        submitting.task_create_imagine(
            team=team,
            user=alice,
            text="a ferry",
            mode="fast",
            aspect_ratio="1:1",
            idempotency_key=uuid.uuid4(),
            collection=theirs,
        )
    assert not Task.objects.exists()


def test_a_retry_keeps_the_collection_and_an_action_does_not_inherit_it(alice_client, moodboard, make_task):
    failed = make_task(status="failed", collection=moodboard)
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", {"idempotency_key": str(uuid.uuid4())}, headers=HTMX)
    assert response.status_code == 200
    assert Task.objects.exclude(pk=failed.pk).get().collection == moodboard
    grid = make_task(status="finished", upstream_id="up-1", collection=moodboard)
    data = {"action": "vary:subtle", "index": 2, "idempotency_key": str(uuid.uuid4())}
    assert alice_client.post(f"/tasks/{grid.pk}/act/", data, headers=HTMX).status_code == 200
    assert Task.objects.get(parent=grid).collection is None


# --- A finished task's images join its collection --------------------------------------------------------------


def _grid(task):
    Image.objects.bulk_create(
        [Image(task=task, index=i, source_url=f"https://cdn.apiframe.pro/{task.pk}-{i}.png") for i in range(1, 5)]
    )


def test_collection_add_task_images_puts_the_grid_in_the_chosen_collection(bob, moodboard, make_task):
    task = make_task(user=bob, status="finished", collection=moodboard)
    _grid(task)
    then = _stamp(moodboard)
    assert collections.collection_add_task_images(task_id=task.pk) == 4
    items = CollectionItem.objects.filter(collection=moodboard)
    assert sorted(items.values_list("image__index", flat=True)) == [1, 2, 3, 4]
    assert {item.added_by for item in items} == {bob}
    moodboard.refresh_from_db()
    assert moodboard.updated_at > then
    then = _stamp(moodboard)
    assert collections.collection_add_task_images(task_id=task.pk) == 0  # a repeated "finished"
    assert items.count() == 4
    moodboard.refresh_from_db()
    assert moodboard.updated_at == then


def test_collection_add_task_images_keeps_what_was_added_by_hand(alice, moodboard, make_task):
    task = make_task(status="finished", collection=moodboard)
    _grid(task)
    collections.collection_add_image(collection=moodboard, image=task.images.get(index=3), user=alice)
    assert collections.collection_add_task_images(task_id=task.pk) == 3
    assert CollectionItem.objects.filter(collection=moodboard).count() == 4


def test_collection_add_task_images_does_nothing_without_a_collection(make_task, moodboard):
    task = make_task(status="finished")
    _grid(task)
    assert collections.collection_add_task_images(task_id=task.pk) == 0
    assert not CollectionItem.objects.exists()


def test_collection_add_task_images_never_fills_another_teams_collection(make_task, theirs):
    task = make_task(status="finished", collection=theirs)  # only a bug could set this: the form refuses it
    _grid(task)
    assert collections.collection_add_task_images(task_id=task.pk) == 0
    assert not CollectionItem.objects.exists()


def test_a_finished_webhook_fills_the_chosen_collection(
    client, settings, payload, make_task, moodboard, django_capture_on_commit_callbacks
):
    """End to end: needs collection_add_task_images called where task_apply_state creates the images."""
    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"
    task = make_task(status="pending", upstream_id=UPSTREAM_ID, collection=moodboard)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/webhooks/apiframe/",
            data=payload("finished_grid.json"),
            content_type="application/json",
            headers={"x-webhook-secret": "whsec_test"},
        )
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.status == "finished"
    assert sorted(moodboard.items.values_list("image__task_id", "image__index")) == [(task.pk, i) for i in (1, 2, 3, 4)]


# --- Isolation: every collections URL, every method, every actor -------------------------------------------------

# (method, url template, data): {c} is alice's team's collection, {i} her team's image.
ROUTES = [
    ("get", "/collections/", {}),
    ("post", "/collections/new/", {"name": "Stolen"}),
    ("post", "/collections/{c}/rename/", {"name": "Stolen"}),
    ("post", "/collections/{c}/delete/", {}),
    ("get", "/images/{i}/collections/", {}),
    ("post", "/images/{i}/collections/", {"collection": "{c}", "op": "add"}),
    ("post", "/images/{i}/collections/", {"collection": "{c}", "op": "remove"}),
    ("post", "/images/{i}/collections/", {"new_name": "Stolen"}),
]


def _fill(route, collection, image):
    method, url, data = route
    fill = {"c": collection.pk, "i": image.pk}
    return method, url.format(**fill), {k: v.format(**fill) for k, v in data.items()}


@pytest.fixture
def targets(alice, moodboard, make_image):
    image = make_image()
    collections.collection_add_image(collection=moodboard, image=image, user=alice)
    return moodboard, image


def _state(moodboard):
    return (
        list(Collection.objects.order_by("pk").values_list("team_id", "name")),
        list(CollectionItem.objects.order_by("pk").values_list("collection_id", "image_id")),
    )


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]} {'+'.join(r[2])}")
def test_anonymous_users_go_to_login_and_change_nothing(client, targets, route, htmx):
    method, url, data = _fill(route, *targets)
    before = _state(targets[0])
    response = getattr(client, method)(url, data, headers=HTMX if htmx else {})
    if htmx:  # the whole page goes to log in, not the fragment
        assert response.status_code == 200 and response["HX-Redirect"].startswith("/accounts/login/?next=")
    else:
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert _state(targets[0]) == before


@pytest.mark.parametrize("route", [r for r in ROUTES if "{" in r[1] or "{c}" in str(r[2])], ids=lambda r: r[1])
def test_another_teams_member_gets_404_and_changes_nothing(client, charlie, targets, route):
    client.force_login(charlie)
    method, url, data = _fill(route, *targets)
    before = _state(targets[0])
    for headers in ({}, HTMX):
        assert getattr(client, method)(url, data, headers=headers).status_code == 404
    assert _state(targets[0]) == before


def test_another_teams_member_sees_and_creates_only_in_their_own_team(client, charlie, targets):
    client.force_login(charlie)
    assert "Moodboard" not in client.get("/collections/").content.decode()
    assert client.post("/collections/new/", {"name": "Moodboard"}).status_code == 302  # their own, same name
    mine = Collection.objects.get(created_by=charlie)
    assert mine.team == charlie.memberships.get(chosen_at__isnull=False).team and mine.pk != targets[0].pk


def test_a_member_cannot_mix_in_another_teams_collection_or_image(alice_client, alice, targets, theirs, make_image):
    moodboard, image = targets
    their_image = make_image(user=theirs.created_by)
    response = alice_client.post(f"/images/{image.pk}/collections/", {"collection": theirs.pk, "op": "add"})
    assert response.status_code == 404
    response = alice_client.post(f"/images/{their_image.pk}/collections/", {"collection": moodboard.pk, "op": "add"})
    assert response.status_code == 404
    assert not theirs.items.exists() and list(moodboard.items.values_list("image", flat=True)) == [image.pk]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]} {'+'.join(r[2])}")
def test_a_member_may_use_every_route(alice_client, bob, targets, route):
    method, url, data = _fill(route, *targets)
    response = getattr(alice_client, method)(url, data)
    assert response.status_code in (200, 302)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/collections/"),
        ("get", "/collections/new/"),
        ("get", "/collections/{c}/rename/"),
        ("get", "/collections/{c}/delete/"),
        ("put", "/images/{i}/collections/"),
        ("delete", "/images/{i}/collections/"),
    ],
)
def test_each_route_refuses_other_methods(alice_client, targets, method, url):
    _, url, _ = _fill((method, url, {}), *targets)
    before = _state(targets[0])
    assert getattr(alice_client, method)(url).status_code == 405
    assert _state(targets[0]) == before


# --- Odd input: never a 5xx, and a refusal changes nothing -------------------------------------------------------

ODD = ["", " ", "\x00", "a\x00b", "²", "٣", "１", "-1", "0", "9" * 30, str(2**63), "x" * 200, "\u202e", "NaN"]
odd = st.one_of(st.sampled_from(ODD), st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
# (method, path, fields): {c} is the team's collection, {t} another team's, {i} the team's image.
ODD_ROUTES = [
    ("GET", "/collections/", ("sort",)),
    ("POST", "/collections/new/", ("name",)),
    ("POST", "/collections/{c}/rename/", ("name",)),
    ("POST", "/collections/{t}/rename/", ("name",)),
    ("POST", "/collections/{c}/delete/", ("name",)),
    ("GET", "/images/{i}/collections/", ("collection", "op")),
    ("POST", "/images/{i}/collections/", ("collection", "op")),
    ("POST", "/images/{i}/collections/", ("new_name",)),
]


@pytest.mark.parametrize(("method", "path", "names"), ODD_ROUTES, ids=lambda v: str(v))
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(data=st.data())
def test_odd_input_never_breaks_a_collections_url(alice, targets, theirs, method, path, names, data):
    moodboard, image = targets
    path = path.format(c=moodboard.pk, t=theirs.pk, i=image.pk)
    values = st.one_of(st.sampled_from([*ODD, str(moodboard.pk), "add", "remove"]), odd)
    fields = {name: data.draw(values) for name in names}
    with transaction.atomic():  # each example starts from the same rows
        client = Client()
        client.force_login(alice)
        before = _state(moodboard)
        headers = HTMX if data.draw(st.booleans()) else {}
        response = (
            client.get(path, fields, headers=headers) if method == "GET" else client.post(path, fields, headers=headers)
        )
        after = _state(moodboard)
        transaction.set_rollback(True)
    assert response.status_code < 500
    if 400 <= response.status_code < 500:
        assert after == before
