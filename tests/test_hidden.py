"""Hidden means gone, for non-staff: every page, list, count, export and file of a hidden task or image (or of an
image of a hidden task) is absent for members and answers 404, while staff see it, marked with the reason. A hidden
image is no parent of new work, for anyone. The lineage tree keeps a placeholder so it stays whole."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.tasks import default_task_backend
from django.utils import timezone

from generations.library import queries
from generations.models import Collection, CollectionItem, Favourite, Image, Prompt, Task
from generations.services.moderation import items_hide, items_restore
from tests.support.teams import join
from tests.test_task_page import add_images

REASON = "Depicts a real person"
HTMX = {"HX-Request": "true"}
FILE_VARIANTS = ("full/", "thumb/", "full/?download=1", "thumb/?download=1")
T0 = timezone.now().replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def staff(team):
    """A site admin who also works in the team (staff see a team's pages as its members do)."""
    user = get_user_model().objects.create_user(username="sam", password="pw-sam", is_staff=True)
    join(team, user)
    return user


@pytest.fixture
def staff_client(staff):
    from django.test import Client

    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def family(make_task, bob):
    """root (imagine) ─ vary of image 2 (bob) ─ upscale of image 3; root ─ pan of image 3; each with files."""

    def finished(n: int) -> dict:
        return {"status": "finished", "created_at": T0 + timedelta(minutes=n), "finished_at": T0 + timedelta(minutes=n)}

    root = make_task(upstream_id="af-root", credits=4, **finished(0))
    Prompt.objects.filter(pk=root.prompt_id).update(search_text="a quiet harbour")  # as prompt_create sets it
    vary = make_task(
        user=bob, action="vary", option="strong", parent=root, parent_index=2, upstream_id="af-vary", credits=4,
        **finished(1),
    )  # fmt: skip
    upscale = make_task(
        action="upscale", option="creative", parent=vary, parent_index=3, upstream_id="af-up", credits=2, **finished(2)
    )
    pan = make_task(action="pan", option="right", parent=root, parent_index=3, upstream_id="af-pan", credits=4,
                    **finished(3))  # fmt: skip
    for task in (root, vary, pan):
        add_images(task)
    add_images(upscale, 1, size=(48, 32))
    return {"root": root, "vary": vary, "upscale": upscale, "pan": pan}


def hide(staff, items) -> None:
    assert items_hide(actor=staff, items=items, reason=REASON) >= 1


def image(task: Task, index: int) -> Image:
    return task.images.get(index=index)


def tiles(html: str) -> set[str]:
    """The library tiles' dom ids on a page (i<image> or k<task>)."""
    import re

    return set(re.findall(r'<figure class="tile[^"]*" id="([ik]\d+)"', html))


# --- The studio --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hidden_task_leaves_the_studio_for_members_and_stays_marked_for_staff(
    alice_client, staff_client, staff, family
):
    vary = family["vary"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    html = alice_client.get("/").content.decode()
    assert f'id="task-{vary.pk}"' not in html
    assert f'id="task-{family["pan"].pk}"' in html  # its siblings stay
    for img in vary.images.all():
        assert f"/images/{img.pk}/" not in html
    # What was made from it stays, without the hidden task's link.
    upscale_card = html.split(f'id="task-{family["upscale"].pk}"')[1].split("</article>")[0]
    assert "from a task hidden by a moderator" in upscale_card
    assert f"/tasks/{vary.pk}/" not in upscale_card

    staff_html = staff_client.get("/").content.decode()
    card = staff_html.split(f'id="task-{vary.pk}"')[1].split("</article>")[0]
    assert 'class="badge badge--hidden"' in card and REASON in card
    assert 'name="action" value="reroll"' not in card and "shot__actions" not in card  # no new work from it


@pytest.mark.django_db
def test_a_hidden_image_leaves_its_card_for_members_and_is_marked_for_staff(alice_client, staff_client, staff, family):
    root = family["root"]
    hidden = image(root, 2)
    hide(staff, Image.objects.filter(pk=hidden.pk))
    html = alice_client.get("/").content.decode()
    card = html.split(f'id="task-{root.pk}"')[1].split("</article>")[0]
    assert f"/images/{hidden.pk}/" not in card
    assert f"/images/{image(root, 1).pk}/thumb/" in card  # the others stay
    assert card.count('class="shot"') == 3

    staff_card = staff_client.get("/").content.decode().split(f'id="task-{root.pk}"')[1].split("</article>")[0]
    hidden_shot = staff_card.split(f"/images/{hidden.pk}/thumb/")[1].split("</figure>")[0]
    assert f"Hidden · {REASON}" in hidden_shot and "shot__actions" not in hidden_shot


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/library/", "/library/?stacks=0", "/collections/", "TASK"])
def test_hiding_costs_no_query_per_row(alice_client, staff_client, staff, family, url):
    """A member's page (hidden items left out) makes as many queries as staff's (hidden items shown, marked)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    hide(staff, Task.objects.filter(pk=family["vary"].pk))
    hide(staff, Image.objects.filter(pk__in=[image(family["root"], 2).pk, image(family["pan"], 1).pk]))
    url = f"/tasks/{family['upscale'].pk}/" if url == "TASK" else url
    counts = []
    for client in (alice_client, staff_client):
        client.get(url)  # sessions and caches settled
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# --- The library, its search, stacks, favourites and collections ---------------------------------------------


@pytest.mark.django_db
def test_hidden_items_leave_every_library_listing_for_members(alice, alice_client, staff, family):
    root, vary, pan = family["root"], family["vary"], family["pan"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    hidden = image(pan, 1)
    hide(staff, Image.objects.filter(pk=hidden.pk))
    gone = {f"i{i.pk}" for i in vary.images.all()} | {f"i{hidden.pk}"}
    Favourite.objects.create(user=alice, image=hidden)
    Favourite.objects.create(user=alice, image=image(vary, 1))
    Favourite.objects.create(user=alice, image=image(root, 1))
    collection = Collection.objects.create(team=root.team, name="Picks", created_by=alice)
    for img in (hidden, image(vary, 1), image(root, 4)):
        CollectionItem.objects.create(collection=collection, image=img, added_by=alice)

    every = tiles(alice_client.get("/library/?stacks=0").content.decode())
    assert every and not every & gone
    assert f"i{image(pan, 2).pk}" in every and f"i{image(family['upscale'], 1).pk}" in every
    for url in ("/library/", "/library/?q=harbour", "/library/?q=harbour&stacks=0", f"/library/?lineage={root.pk}"):
        listed = tiles(alice_client.get(url).content.decode())
        assert listed and not listed & gone, url
    assert tiles(alice_client.get("/library/?fav=1&stacks=0").content.decode()) == {f"i{image(root, 1).pk}"}
    in_collection = tiles(alice_client.get(f"/library/?collection={collection.pk}&stacks=0").content.decode())
    assert in_collection == {f"i{image(root, 4).pk}"}
    opened = tiles(alice_client.get(f"/library/stacks/{root.pk}/", headers=HTMX).content.decode())
    assert opened and not opened & gone
    # The stack's count is what a member can open: 4 + 3 (pan) + 1 (upscale), not the 4 of the hidden vary
    # nor the hidden pan image.
    assert "×8" in alice_client.get("/library/").content.decode()


@pytest.mark.django_db
def test_staff_see_hidden_items_in_the_library_marked_with_the_reason(staff_client, staff, family):
    vary = family["vary"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    html = staff_client.get("/library/?stacks=0").content.decode()
    assert {f"i{i.pk}" for i in vary.images.all()} <= tiles(html)
    tile = html.split(f'id="i{image(vary, 1).pk}"')[1].split("</figure>")[0]
    assert f"Hidden · {REASON}" in tile and "tile__act" not in tile
    assert "tile--hidden" in html.split(f'id="i{image(vary, 1).pk}"')[0].rsplit("<figure", 1)[1]


@pytest.mark.django_db
def test_collections_count_and_cover_only_what_members_may_see(alice, alice_client, staff_client, staff, family):
    root = family["root"]
    collection = Collection.objects.create(team=root.team, name="Picks", created_by=alice)
    older, newest = image(root, 1), image(root, 2)
    CollectionItem.objects.create(collection=collection, image=older, added_by=alice, added_at=T0)
    CollectionItem.objects.create(collection=collection, image=newest, added_by=alice)
    hide(staff, Image.objects.filter(pk=newest.pk))

    shown = alice_client.get("/collections/").context["collections"][0]
    assert (shown.item_count, shown.cover_id) == (1, older.pk)
    picker = alice_client.get(f"/images/{older.pk}/collections/").context["choices"][0]
    assert picker.item_count == 1
    staff_shown = staff_client.get("/collections/").context["collections"][0]
    assert (staff_shown.item_count, staff_shown.cover_id) == (2, newest.pk)

    hide(staff, Task.objects.filter(pk=root.pk))  # an image of a hidden task counts as hidden too
    shown = alice_client.get("/collections/").context["collections"][0]
    assert (shown.item_count, shown.cover_id) == (0, None)


@pytest.mark.django_db
@pytest.mark.parametrize("stacked", [True, False], ids=["stacks", "all-images"])
def test_a_members_library_page_still_walks_the_indexes(team, alice, staff, family, stacked):
    """Leaving hidden rows out is a check on rows the page reads anyway: the tasks and images are still found
    through their indexes (the team's in time order, the images by task), never by a scan."""
    from django.db import connection

    from tests.planner import history_for_the_planner

    hide(staff, Task.objects.filter(pk=family["vary"].pk))
    library = queries.Library(team_id=team.pk, user_id=alice.pk, filters=queries.Filters(stacked=stacked))
    rows = library._listed().order_by("-created_at", "-pk", "image_index").values("pk", "image_id")
    sql, params = rows[: queries.PAGE_SIZE + 1].query.sql_with_params()
    assert "hidden_at" in sql
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert "SCAN generations_task" not in plan and "SCAN generations_image" not in plan, plan
            assert "(team_id=?)" in plan and "(task_id=?)" in plan, plan
        else:
            history_for_the_planner(team, alice)
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan" not in plan, plan


# --- The task page and its tree ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hidden_tasks_page_is_404_for_members_and_marked_for_staff(
    alice_client, staff_client, staff, family, client, charlie
):
    vary = family["vary"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    assert alice_client.get(f"/tasks/{vary.pk}/").status_code == 404
    page = staff_client.get(f"/tasks/{vary.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "badge--hidden" in html and REASON in html
    assert 'value="reroll"' not in html and "shot__actions" not in html
    # Another team's member: 404 before, 404 now, hidden or not.
    client.force_login(charlie)
    assert client.get(f"/tasks/{vary.pk}/").status_code == 404
    assert client.get(f"/tasks/{family['pan'].pk}/").status_code == 404


@pytest.mark.django_db
def test_a_hidden_image_leaves_its_task_page_for_members(alice_client, staff_client, staff, family):
    root = family["root"]
    hidden = image(root, 3)
    hide(staff, Image.objects.filter(pk=hidden.pk))
    html = alice_client.get(f"/tasks/{root.pk}/").content.decode()
    assert f"/images/{hidden.pk}/" not in html and hidden.content_hash not in html
    assert f"/images/{image(root, 1).pk}/full/" in html
    staff_html = staff_client.get(f"/tasks/{root.pk}/").content.decode()
    assert f"/images/{hidden.pk}/full/" in staff_html and f"Hidden · {REASON}" in staff_html


@pytest.mark.django_db
def test_the_tree_keeps_a_placeholder_for_a_hidden_task_and_its_children_show(
    alice_client, staff_client, staff, family
):
    root, vary, upscale = family["root"], family["vary"], family["upscale"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    html = alice_client.get(f"/tasks/{upscale.pk}/").content.decode()
    tree = html.split('<ul class="tree">')[1].split("</aside>")[0]
    assert tree.count("Hidden by a moderator") == 1
    placeholder = tree.split("tree__item--hidden")[1].split("<ul>")[0]
    assert "href" not in placeholder and "<img" not in placeholder and "bob" not in placeholder
    assert f"/images/{image(vary, 1).pk}/" not in html and f"/tasks/{vary.pk}/" not in html
    # The hidden node's child (this task) hangs below the placeholder; the root and the pan still link.
    assert f'data-task="{upscale.pk}"' in tree.split("tree__item--hidden")[1]
    assert f"/tasks/{root.pk}/" in tree and f"/tasks/{family['pan'].pk}/" in tree
    assert "a task hidden by a moderator" in html  # "Made from"
    assert "14 credits" in html  # the whole family still costs what it cost

    root_page = alice_client.get(f"/tasks/{root.pk}/").content.decode()
    made_from_this = root_page.split("<dt>Made from this</dt>")[1].split("</dd>")[0]
    assert f"/tasks/{vary.pk}/" not in made_from_this and f"/tasks/{family['pan'].pk}/" in made_from_this

    staff_tree = staff_client.get(f"/tasks/{upscale.pk}/").content.decode().split('<ul class="tree">')[1]
    node = staff_tree.split(f'data-task="{vary.pk}"')[1].split("</li>")[0]
    assert f"/tasks/{vary.pk}/" in node and "badge--hidden" in node and REASON in node


@pytest.mark.django_db
def test_a_tree_node_whose_first_image_is_hidden_shows_no_thumbnail_to_members(alice_client, staff, family):
    pan = family["pan"]
    first = image(pan, 1)
    hide(staff, Image.objects.filter(pk=first.pk))
    html = alice_client.get(f"/tasks/{family['root'].pk}/").content.decode()
    tree = html.split('<ul class="tree">')[1]
    assert f"/images/{first.pk}/" not in tree and f'value="{first.pk}"' not in tree
    assert f"/tasks/{pan.pk}/" in tree  # the task itself is not hidden


# --- Files ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("variant", FILE_VARIANTS)
def test_every_file_of_a_hidden_image_is_404_for_members_and_served_to_staff(
    alice_client, staff_client, staff, family, variant
):
    root = family["root"]
    hidden, shown = image(root, 2), image(root, 1)
    assert alice_client.get(f"/images/{hidden.pk}/{variant}").status_code == 200
    hide(staff, Image.objects.filter(pk=hidden.pk))
    assert alice_client.get(f"/images/{hidden.pk}/{variant}").status_code == 404
    assert alice_client.get(f"/images/{shown.pk}/{variant}").status_code == 200
    served = staff_client.get(f"/images/{hidden.pk}/{variant}")
    assert served.status_code == 200 and b"".join(served.streaming_content)
    items_restore(actor=staff, items=Image.objects.filter(pk=hidden.pk), reason="A look-alike, not the person")
    assert alice_client.get(f"/images/{hidden.pk}/{variant}").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("variant", FILE_VARIANTS)
def test_every_file_of_an_image_of_a_hidden_task_is_404_for_members(alice_client, staff_client, staff, family, variant):
    vary = family["vary"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    for img in vary.images.all():
        assert alice_client.get(f"/images/{img.pk}/{variant}").status_code == 404
        assert staff_client.get(f"/images/{img.pk}/{variant}").status_code == 200
    assert alice_client.get(f"/images/{image(family['upscale'], 1).pk}/{variant}").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("variant", FILE_VARIANTS)
def test_another_teams_member_still_gets_404_for_every_file(client, charlie, staff, family, variant):
    client.force_login(charlie)
    assert client.get(f"/images/{image(family['root'], 1).pk}/{variant}").status_code == 404
    hide(staff, Image.objects.filter(pk=image(family["root"], 1).pk))
    assert client.get(f"/images/{image(family['root'], 1).pk}/{variant}").status_code == 404


@pytest.mark.django_db
def test_a_hidden_image_cannot_be_starred_collected_or_compared_by_members(alice, alice_client, staff_client, staff,
                                                                           family):  # fmt: skip
    root = family["root"]
    hidden, other = image(root, 2), image(root, 1)
    hide(staff, Image.objects.filter(pk=hidden.pk))
    assert alice_client.post(f"/images/{hidden.pk}/favourite/", {"on": "1"}).status_code == 404
    assert not Favourite.objects.exists()
    assert alice_client.get(f"/images/{hidden.pk}/collections/").status_code == 404
    assert alice_client.post(f"/images/{hidden.pk}/collections/", {"new_name": "Mine"}).status_code == 404
    assert not Collection.objects.exists()
    assert alice_client.get(f"/compare/?images={hidden.pk},{other.pk}").status_code == 404
    assert alice_client.get(f"/compare/?images={image(family['vary'], 1).pk},{other.pk}").status_code == 200
    compared = staff_client.get(f"/compare/?images={hidden.pk},{other.pk}")
    assert compared.status_code == 200 and "badge--hidden" in compared.content.decode()
    hide(staff, Task.objects.filter(pk=family["vary"].pk))
    assert alice_client.get(f"/compare/?images={image(family['vary'], 1).pk},{other.pk}").status_code == 404


# --- No new work from a hidden parent ------------------------------------------------------------------------


def submissions() -> list[int]:
    """The tasks whose upstream call was queued (jobs are recorded, not run, in tests)."""
    return [r.args[0] for r in default_task_backend.results if r.task.name == "submit_task"]


def _act(client, task: Task, **data) -> object:
    return client.post(f"/tasks/{task.pk}/act/", {"idempotency_key": "6f1c1f8e-4c55-4b7e-9a39-1d0c3a1e8f00", **data},
                       headers=HTMX)  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["alice", "staff"])
def test_a_hidden_image_is_no_parent_for_anyone(
    alice_client, staff_client, staff, family, who, django_capture_on_commit_callbacks
):
    client = alice_client if who == "alice" else staff_client
    root = family["root"]
    hide(staff, Image.objects.filter(pk=image(root, 2).pk))
    before = Task.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        for action in ("vary:strong", "upscale:subtle", "pan:left", "zoom:2"):
            response = _act(client, root, action=action, index="2")
            assert response.status_code == 422, action
            assert "A moderator hid image 2" in response.content.decode()
    assert Task.objects.count() == before
    assert submissions() == []  # nothing is queued for Apiframe
    assert client.get(f"/tasks/{root.pk}/actions/?index=2").status_code == 404
    assert client.get(f"/tasks/{root.pk}/actions/?index=1").status_code == 200
    # Another image of the same grid is still a parent.
    with django_capture_on_commit_callbacks(execute=True):
        assert _act(client, root, action="vary:strong", index="1").status_code == 200
    assert Task.objects.count() == before + 1
    assert submissions() == [Task.objects.latest("pk").pk]


@pytest.mark.django_db
def test_a_hidden_task_can_be_neither_rerolled_nor_acted_on(alice_client, staff_client, staff, family):
    root = family["root"]
    hide(staff, Task.objects.filter(pk=root.pk))
    before = Task.objects.count()
    assert _act(alice_client, root, action="reroll").status_code == 404
    assert _act(alice_client, root, action="vary:strong", index="1").status_code == 404
    assert alice_client.get(f"/tasks/{root.pk}/actions/?index=1").status_code == 404
    refused = _act(staff_client, root, action="reroll")
    assert refused.status_code == 422 and "A moderator hid this task" in refused.content.decode()
    assert _act(staff_client, root, action="vary:strong", index="1").status_code == 422
    assert staff_client.get(f"/tasks/{root.pk}/actions/?index=1").status_code == 404
    assert Task.objects.count() == before


@pytest.mark.django_db
def test_a_retry_whose_parent_image_or_task_is_hidden_is_refused(alice_client, staff, family, make_task):
    root = family["root"]
    failed = make_task(action="vary", option="subtle", parent=root, parent_index=4, status="failed")
    key = {"idempotency_key": "0b7f0a8e-2b7d-4f7e-8f50-7d9e0c1b2a33"}
    hide(staff, Image.objects.filter(pk=image(root, 4).pk))
    before = Task.objects.count()
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", key, headers=HTMX)
    assert response.status_code == 422 and "A moderator hid image 4" in response.content.decode()
    items_restore(actor=staff, items=Image.objects.filter(pk=image(root, 4).pk), reason="fine after all")
    hide(staff, Task.objects.filter(pk=root.pk))
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", key, headers=HTMX)
    assert response.status_code == 422 and "A moderator hid this task" in response.content.decode()
    assert Task.objects.count() == before


# --- Usage and exports ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_usage_names_no_hidden_lineage_but_counts_its_credits(alice_client, staff_client, staff, family, make_task):
    root = family["root"]
    root.prompt.text = "a secret lighthouse"
    root.prompt.save()
    hide(staff, Task.objects.filter(pk=root.pk))
    response = alice_client.get("/usage/")
    html = response.content.decode()
    top = html.split('id="top-lineages"')[1].split("</table>")[0]
    assert "Hidden by a moderator" in top and "a secret lighthouse" not in top and f"/tasks/{root.pk}/" not in top
    assert response.context["summary"].total.credits == 14  # spent is spent, hidden or not
    staff_top = staff_client.get("/usage/").content.decode().split('id="top-lineages"')[1].split("</table>")[0]
    assert "a secret lighthouse" in staff_top and "badge--hidden" in staff_top


def _bundle(response) -> tuple[zipfile.ZipFile, dict]:
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    return bundle, json.loads(bundle.read("metadata.json"))


@pytest.mark.django_db
def test_exports_leave_hidden_tasks_and_images_out_for_members(alice, alice_client, staff, family):
    root, vary, pan = family["root"], family["vary"], family["pan"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    hidden = image(pan, 2)
    hide(staff, Image.objects.filter(pk=hidden.pk))
    assert alice_client.get(f"/tasks/{vary.pk}/export/").status_code == 404

    bundle, metadata = _bundle(alice_client.get(f"/tasks/{root.pk}/export/"))
    assert {t["id"] for t in metadata["tasks"]} == {root.pk, pan.pk, family["upscale"].pk}
    names = set(bundle.namelist())
    assert f"images/{pan.pk}-2.png" not in names and not any(n.startswith(f"images/{vary.pk}-") for n in names)
    assert f"images/{pan.pk}-1.png" in names
    assert hidden.pk not in {i["id"] for t in metadata["tasks"] for i in t["images"]}
    index = bundle.read("index.html").decode()
    assert f"Made from task #{vary.pk}, which is not in this bundle." in index and REASON not in index

    collection = Collection.objects.create(team=root.team, name="Picks", created_by=alice)
    for img in (hidden, image(vary, 1), image(pan, 1)):
        CollectionItem.objects.create(collection=collection, image=img, added_by=alice)
    bundle, metadata = _bundle(alice_client.get(f"/collections/{collection.pk}/export/"))
    assert [item["image_id"] for item in metadata["collection"]["items"]] == [image(pan, 1).pk]
    assert {t["id"] for t in metadata["tasks"]} == {root.pk, pan.pk}
    assert sorted(n for n in bundle.namelist() if n.startswith("images/")) == [f"images/{pan.pk}-1.png"]


@pytest.mark.django_db
def test_staff_exports_keep_hidden_items_marked(alice, staff_client, staff, family):
    root, vary = family["root"], family["vary"]
    hide(staff, Task.objects.filter(pk=vary.pk))
    hide(staff, Image.objects.filter(pk=image(root, 2).pk))
    bundle, metadata = _bundle(staff_client.get(f"/tasks/{vary.pk}/export/"))
    by_id = {t["id"]: t for t in metadata["tasks"]}
    assert by_id[vary.pk]["hidden_reason"] == REASON and "hidden_reason" not in by_id[root.pk]
    assert [i.get("hidden_reason") for i in by_id[root.pk]["images"]] == [None, REASON, None, None]
    assert f"images/{vary.pk}-1.png" in bundle.namelist()
    assert f"Hidden by a moderator: {REASON}" in bundle.read("index.html").decode()
