"""The library (/library/): every filter and their combinations, the keyset cursor's edges, stacks, favourites,
a constant number of queries, page weight, and isolation between teams. Search: tests/test_search_parity.py."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generations.library import queries
from generations.library.queries import Position
from generations.models import Collection, CollectionItem, Favourite, Image, Prompt, Task
from tests.library_data import T0, add_task, image_tile, tile_ids

LIBRARY = "/library/"
HTMX = {"HX-Request": "true"}


def get_tiles(client, url: str, **headers: str) -> list[str]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.content[:2000]
    return tile_ids(response.content.decode())


def rows(task: Task) -> list[str]:
    """A task's tiles in listing order: its images, or the task itself when it has none."""
    images = list(task.images.order_by("index").values_list("pk", flat=True))
    return [f"i{pk}" for pk in images] or [f"k{task.pk}"]


# --- Filters: each one, and combined ---------------------------------------------------------------------


@pytest.fixture
def shelf(alice, bob):
    """Alice's and bob's team library, oldest first:
    t1 alice imagines (fast, 1:1); t2 bob varies its image 2; t3 alice upscales t2's image 3;
    t4 bob imagines lanterns (turbo, 16:9); t5 alice's desert fails; t6 bob pans t4 (still processing);
    t7 alice's kite times out (turbo, 1:1); t8 bob zooms t4 (finished, images not saved yet);
    t9 alice imagines snow five days later."""
    t = {}
    t[1] = add_task(user=alice, text="harbour at dawn", minutes=0)
    t[2] = add_task(user=bob, parent=t[1], action="vary", option="strong", index=2, minutes=1)
    t[3] = add_task(user=alice, parent=t[2], action="upscale", option="subtle", index=3, minutes=2)
    t[4] = add_task(user=bob, text="lanterns over a river", mode="turbo", ratio="16:9", minutes=3)
    t[5] = add_task(user=alice, text="desert", ratio="2:3", status="failed", error="Banned word", minutes=4)
    t[6] = add_task(user=bob, parent=t[4], action="pan", option="right", index=1, status="processing", minutes=5)
    t[7] = add_task(user=alice, text="kite", mode="turbo", status="timed_out", minutes=6)
    t[8] = add_task(user=bob, parent=t[4], action="zoom", option="2", index=2, mirrored=False, minutes=7)
    t[9] = add_task(user=alice, text="snow", at=T0 + timedelta(days=5))
    return t


def expect_rows(shelf: dict, *numbers: int) -> list[str]:
    return [tile for n in numbers for tile in rows(shelf[n])]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "numbers"),
    [
        ("", (9, 8, 7, 6, 5, 4, 3, 2, 1)),
        ("author=bob", (8, 6, 4, 2)),
        ("author=alice", (9, 7, 5, 3, 1)),
        ("action=vary", (2,)),
        ("action=imagine", (9, 7, 5, 4, 1)),
        ("action=zoom", (8,)),
        ("status=finished", (9, 8, 4, 3, 2, 1)),
        ("status=in_progress", (6,)),
        ("status=failed", (5,)),
        ("status=timed_out", (7,)),
        ("from=2026-11-21", (9,)),
        ("to=2026-11-20", (8, 7, 6, 5, 4, 3, 2, 1)),
        ("from=2026-11-20&to=2026-11-20", (8, 7, 6, 5, 4, 3, 2, 1)),
        ("from=2026-11-25&to=2026-11-25", (9,)),
        ("mode=turbo", (8, 7, 6, 4)),
        ("mode=fast", (9, 5, 3, 2, 1)),
        ("ratio=16:9", (8, 6, 4)),
        ("ratio=2:3", (5,)),
        ("q=lanterns", (8, 6, 4)),
        ("author=alice&action=imagine", (9, 7, 5, 1)),
        ("q=lanterns&status=finished", (8, 4)),
        ("mode=fast&ratio=1:1&status=finished", (9, 3, 2, 1)),
        ("author=bob&mode=turbo&from=2026-11-20&to=2026-11-20", (8, 6, 4)),
        ("q=harbour&action=upscale", (3,)),
        ("action=upscale&author=bob", ()),
    ],
)
def test_it_filters_and_combines_filters(alice_client, shelf, query, numbers):
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&{query}") == expect_rows(shelf, *numbers)


@pytest.mark.django_db
def test_it_shows_my_favourites_only(alice_client, alice, bob, shelf):
    for user, task, index in ((alice, shelf[1], 2), (alice, shelf[3], 1), (bob, shelf[4], 1)):
        Favourite.objects.create(user=user, image=task.images.get(index=index))
    mine = [image_tile(shelf[3], 1), image_tile(shelf[1], 2)]
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&fav=1") == mine
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&fav=1&action=upscale") == [image_tile(shelf[3], 1)]
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&fav=1&author=bob") == []
    # Picked images are listed every one, never stacked (both are from t1's lineage).
    assert get_tiles(alice_client, f"{LIBRARY}?fav=1") == mine
    assert (
        b'<fieldset class="segmented lib-view" id="lib-view" disabled' in alice_client.get(f"{LIBRARY}?fav=1").content
    )


@pytest.mark.django_db
@pytest.mark.parametrize("few", [True, False])
def test_it_browses_a_collection_and_combines_it(alice_client, alice, shelf, monkeypatch, few):
    """Favourites and collections find the same rows from their few images or by walking the library."""
    if not few:
        monkeypatch.setattr(queries, "FEW_IMAGES", 0)
    board = Collection.objects.create(team=shelf[1].team, name="Boards", created_by=alice)
    for task, index in ((shelf[2], 1), (shelf[4], 3), (shelf[9], 4)):
        CollectionItem.objects.create(collection=board, image=task.images.get(index=index), added_by=alice)
    in_board = [image_tile(shelf[9], 4), image_tile(shelf[4], 3), image_tile(shelf[2], 1)]
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&collection={board.pk}") == in_board
    url = f"{LIBRARY}?stacks=0&collection={board.pk}&author=bob"
    assert get_tiles(alice_client, url) == [image_tile(shelf[4], 3), image_tile(shelf[2], 1)]
    Favourite.objects.create(user=alice, image=shelf[4].images.get(index=3))
    Favourite.objects.create(user=alice, image=shelf[4].images.get(index=1))
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0&collection={board.pk}&fav=1") == [image_tile(shelf[4], 3)]


@pytest.mark.django_db
def test_it_lists_one_lineage_from_any_of_its_tasks(alice_client, shelf):
    for member in (1, 2, 3):
        assert get_tiles(alice_client, f"{LIBRARY}?lineage={shelf[member].pk}") == expect_rows(shelf, 3, 2, 1)


@pytest.mark.django_db
def test_it_shows_each_filter_as_a_chip_that_removes_it(alice_client, shelf):
    response = alice_client.get(f"{LIBRARY}?q=lanterns&author=bob&status=finished&stacks=0")
    html = response.content.decode()
    chips = dict(re.findall(r'<a class="chip" href="([^"]*)" aria-label="Remove filter: ([^"]*)"', html))
    chips = {
        label.replace("&ldquo;", "“").replace("&rdquo;", "”"): href.replace("&amp;", "&")
        for href, label in chips.items()
    }
    assert set(chips) == {"“lanterns”", "By bob", "Finished"}
    assert parse_qs(urlsplit(chips["By bob"]).query) == {"q": ["lanterns"], "status": ["finished"], "stacks": ["0"]}
    assert parse_qs(urlsplit(chips["“lanterns”"]).query) == {"author": ["bob"], "status": ["finished"], "stacks": ["0"]}
    assert "Clear all" in html


@pytest.mark.django_db
def test_it_drops_blank_parameters_from_the_url(alice_client, shelf):
    """A GET form sends every field: the address to share names only what is set."""
    response = alice_client.get(f"{LIBRARY}?q=kite&author=&action=&status=&from=&to=&stacks=&cursor=")
    assert response.status_code == 302
    assert response["Location"] == f"{LIBRARY}?q=kite"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("author=nobody", 400, "No member of this team is called that."),
        ("action=dance", 400, "Select a valid choice."),
        ("status=lost", 400, "Select a valid choice."),
        ("from=yesterday", 400, "Enter a date as YYYY-MM-DD."),
        ("from=2026-11-25&to=2026-11-20", 400, "The end date is before the start date."),
        ("mode=slow", 400, "Select a valid choice."),
        ("ratio=7:5", 400, "Select a valid choice."),
        ("fav=yes", 400, "Select a valid choice."),
        ("collection=abc", 404, "This team has no such collection."),
        ("collection=999999", 404, "This team has no such collection."),
        ("lineage=999999", 404, "This team has no such task."),
        ("cursor=garbage", 400, "This link&#x27;s place in the library is damaged"),
        ("cursor=99999999999999999999.1.1", 400, "This link&#x27;s place in the library is damaged"),
        ("until=1.2.9", 400, "This link&#x27;s place in the library is damaged"),
        (f"q={'x' * 201}", 400, "Search for at most 200 characters"),
        ("to=9999-12-31", 400, "Pick a date between 2000 and 2999."),
        ("from=0001-01-01", 400, "Pick a date between 2000 and 2999."),
    ],
)
def test_it_explains_a_bad_filter_and_lists_nothing(alice_client, shelf, query, status, message):
    response = alice_client.get(f"{LIBRARY}?{query}")
    assert response.status_code == status
    assert message in response.content.decode()
    if status != 200:
        assert tile_ids(response.content.decode()) == []


@pytest.mark.django_db
def test_it_explains_a_bad_filter_in_place_for_htmx(alice_client, shelf):
    response = alice_client.get(
        f"{LIBRARY}?from=2026-11-25&to=2026-11-20", headers={**HTMX, "HX-Target": "library-results"}
    )
    assert response.status_code == 422  # swapped in place (htmx-config), with the message
    assert b"The end date is before the start date." in response.content
    assert b"<html" not in response.content


@pytest.mark.django_db
def test_it_answers_a_filter_change_with_the_results_and_a_clean_url(alice_client, shelf):
    response = alice_client.get(f"{LIBRARY}?q=&author=bob&action=", headers={**HTMX, "HX-Target": "library-results"})
    assert response.status_code == 200
    assert response["HX-Push-Url"] == f"{LIBRARY}?author=bob"
    assert b'id="library-results"' in response.content and b"<html" not in response.content
    # The Stacks toggle comes along (out of band), locked for favourites, which list every image.
    assert b'<div id="lib-view-slot" hx-swap-oob="innerHTML">' in response.content
    assert b"disabled" not in response.content.split(b"</fieldset>")[0]
    favourites = alice_client.get(f"{LIBRARY}?fav=1", headers={**HTMX, "HX-Target": "library-results"})
    assert b'<fieldset class="segmented lib-view" id="lib-view" disabled' in favourites.content


# --- The cursor: page boundaries, ties on time, rows deleted mid-scroll, Back to the same place -----------


@pytest.fixture
def many(alice, bob):
    """30 imagined grids a minute apart (120 rows), newest last."""
    return [add_task(user=alice if n % 2 else bob, text=f"study {n}", minutes=n) for n in range(30)]


def walk(client, url: str) -> list[list[str]]:
    """Every page, following each page's "Older images" link (no JS)."""
    pages = []
    while url:
        html = client.get(url).content.decode()
        pages.append(tile_ids(html))
        more = re.search(r'<a class="btn lib-more__link" href="([^"]+)"', html)
        url = more.group(1).replace("&amp;", "&") if more else None
    return pages


@pytest.mark.django_db
def test_it_pages_through_everything_once_in_order(alice_client, many, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 7)
    pages = walk(alice_client, f"{LIBRARY}?stacks=0")
    everything = [tile for task in reversed(many) for tile in rows(task)]
    assert [len(p) for p in pages] == [7] * 17 + [1]
    assert [tile for page in pages for tile in page] == everything
    # A page boundary inside a grid: the grid's images stay in order across it.
    assert pages[0][-1] == rows(many[-2])[2] and pages[1][0] == rows(many[-2])[3]


@pytest.mark.django_db
def test_it_pages_through_ties_on_time(alice_client, alice, monkeypatch):
    """Tasks made at the very same moment: the cursor orders them by id, then by image."""
    tied = [add_task(user=alice, text=f"tie {n}", at=T0) for n in range(6)]
    monkeypatch.setattr(queries, "PAGE_SIZE", 5)
    pages = walk(alice_client, f"{LIBRARY}?stacks=0")
    assert [tile for page in pages for tile in page] == [tile for task in reversed(tied) for tile in rows(task)]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
    stacked = walk(alice_client, LIBRARY)
    assert [tile for page in stacked for tile in page] == [rows(task)[0] for task in reversed(tied)]


@pytest.mark.django_db
def test_it_carries_on_after_rows_deleted_mid_scroll(alice_client, many, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 6)
    html = alice_client.get(f"{LIBRARY}?stacks=0").content.decode()
    next_url = re.search(r'<a class="btn lib-more__link" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    # The grid the cursor points into and the next one are deleted before the next page is asked for.
    gone = Task.objects.filter(pk__in=[many[-2].pk, many[-3].pk])
    gone.update(root=None)
    gone.delete()
    assert get_tiles(alice_client, next_url) == rows(many[-4]) + rows(many[-5])[:2]


@pytest.mark.django_db
def test_a_finished_task_whose_images_were_deleted_leaves_no_tile(alice_client, many):
    Image.objects.filter(task=many[-1]).delete()
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0")[:4] == rows(many[-2])
    assert get_tiles(alice_client, LIBRARY)[0] == rows(many[-2])[0]


@pytest.mark.django_db
def test_a_new_image_never_shifts_the_next_page(alice_client, alice, many, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 8)
    html = alice_client.get(f"{LIBRARY}?stacks=0").content.decode()
    next_url = re.search(r'<a class="btn lib-more__link" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    add_task(user=alice, text="brand new", minutes=99)
    assert get_tiles(alice_client, next_url) == rows(many[-3]) + rows(many[-4])


@pytest.mark.django_db
def test_scrolling_names_a_url_that_shows_the_same_rows_again(alice_client, many, monkeypatch):
    """Each page that arrives by scrolling puts in the address bar a URL listing every row so far (until=),
    which a fresh load (Back, reload) renders at once."""
    monkeypatch.setattr(queries, "PAGE_SIZE", 8)
    first = alice_client.get(f"{LIBRARY}?stacks=0&author=bob").content.decode()
    scroll = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', first).group(1).replace("&amp;", "&")
    response = alice_client.get(scroll, headers={**HTMX, "HX-Target": "lib-grid"})
    assert b"<html" not in response.content and b'hx-swap-oob="true"' in response.content
    window = response["HX-Replace-Url"]
    assert parse_qs(urlsplit(window).query).keys() == {"author", "stacks", "until"}
    shown = tile_ids(first) + tile_ids(response.content.decode())
    assert len(shown) == 16
    assert get_tiles(alice_client, window) == shown


@pytest.mark.django_db
def test_a_long_scroll_window_restarts_at_the_previous_page(alice_client, many, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 5)
    monkeypatch.setattr(queries, "MAX_WINDOW", 12)
    html = alice_client.get(f"{LIBRARY}?stacks=0").content.decode()
    shown = tile_ids(html)
    for _ in range(3):
        scroll = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', html).group(1).replace("&amp;", "&")
        response = alice_client.get(scroll, headers={**HTMX, "HX-Target": "lib-grid"})
        html = response.content.decode()
        shown += tile_ids(html)
    # 20 rows shown, more than the window's 12: the URL now starts one page back and ends where we are.
    window = get_tiles(alice_client, response["HX-Replace-Url"])
    assert window == shown[-10:]
    assert "Back to the newest" in alice_client.get(response["HX-Replace-Url"]).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("junk", ["²", "-3", "x", "9" * 30, "1.2.3"])
def test_a_scroll_request_with_junk_window_numbers_still_answers(alice_client, many, junk):
    """`shown`, `top` and `prev` only shape the next address: junk in them is ignored, never a 500."""
    url = f"{LIBRARY}?stacks=0&shown={junk}&top={junk}&prev={junk}"
    response = alice_client.get(url, headers={**HTMX, "HX-Target": "lib-grid"})
    assert response.status_code == 200
    assert len(tile_ids(response.content.decode())) == 24


@pytest.mark.django_db
def test_positions_round_trip():
    position = Position(created_at=T0 + timedelta(microseconds=7), task_id=12, index=3)
    assert Position.decode(position.encode()) == position
    for bad in ("", "1.2", "a.b.c", "1.2.5", "-1.2.3", "1.2.3.4", f"{10**18}.1.1", "².1.1", "١.١.١"):
        with pytest.raises(ValueError):
            Position.decode(bad)


# --- Stacks --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_folds_each_lineage_into_its_newest_work_with_a_count(alice_client, shelf):
    html = alice_client.get(LIBRARY).content.decode()
    assert tile_ids(html) == [
        rows(shelf[9])[0],
        rows(shelf[8])[0],
        f"k{shelf[7].pk}",
        f"k{shelf[5].pk}",
        rows(shelf[3])[0],
    ]
    assert "Vary, Upscale ×9" in html  # t1's 4 + t2's 4 + t3's 1
    assert "Pan, Zoom ×9" in html  # t4's 4 + t6 (no image yet) + t8's 4
    assert 'aria-label="Open stack: ×4"' in html  # t9: a grid alone
    assert f'href="/library/stacks/{shelf[1].pk}/"' in html


@pytest.mark.django_db
def test_stacks_count_only_what_the_filters_keep(alice_client, shelf):
    html = alice_client.get(f"{LIBRARY}?author=alice").content.decode()
    assert tile_ids(html) == [rows(shelf[9])[0], f"k{shelf[7].pk}", f"k{shelf[5].pk}", rows(shelf[3])[0]]
    assert "Upscale ×5" in html  # alice's t3 (1) and t1 (4); bob's vary is filtered out
    assert f"/library/stacks/{shelf[1].pk}/?author=alice" in html


@pytest.mark.django_db
def test_a_stack_opens_in_place_with_its_images_and_folds_again(alice_client, shelf):
    url = f"/library/stacks/{shelf[1].pk}/?author=alice"
    opened = alice_client.get(url, headers=HTMX)
    assert opened.status_code == 200 and b"<html" not in opened.content
    assert tile_ids(opened.content.decode()) == expect_rows(shelf, 3, 1)
    assert b'class="stack-open"' in opened.content and b"tile__stack" not in opened.content
    folded = alice_client.get(f"{url}&fold=1", headers=HTMX)
    assert tile_ids(folded.content.decode()) == [rows(shelf[3])[0]]
    assert "Upscale ×5" in folded.content.decode()


@pytest.mark.django_db
def test_a_stack_without_javascript_is_its_lineage_s_listing(alice_client, shelf):
    response = alice_client.get(f"/library/stacks/{shelf[2].pk}/?author=bob&stacks=")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query) == {"author": ["bob"], "lineage": [str(shelf[1].pk)]}


@pytest.mark.django_db
def test_every_image_is_one_toggle_away(alice_client, shelf):
    assert get_tiles(alice_client, f"{LIBRARY}?stacks=0") == expect_rows(shelf, 9, 8, 7, 6, 5, 4, 3, 2, 1)


# --- Tiles: what hover shows, where actions are, the weight of a page -----------------------------------


@pytest.mark.django_db
def test_a_tile_shows_prompt_author_and_action_and_links_to_its_actions(alice_client, shelf):
    html = alice_client.get(f"{LIBRARY}?stacks=0&action=vary").content.decode()
    tile = html[html.index('<figure class="tile') :]
    tile = tile[: tile.index("</figure>")]
    image = shelf[2].images.get(index=1)
    assert "harbour at dawn" in tile and "bob · Vary (strong) of image 2" in tile
    assert f'src="/images/{image.pk}/thumb/"' in tile and 'loading="lazy"' in tile
    assert 'width="1024" height="1024"' in tile
    assert f'href="/tasks/{shelf[2].pk}/actions/?index=1">Actions</a>' in tile  # the image's own menu
    assert b"Vary" in alice_client.get(f"/tasks/{shelf[2].pk}/actions/?index=1").content
    assert f'action="/images/{image.pk}/favourite/"' in tile and 'aria-pressed="false"' in tile


@pytest.mark.django_db
def test_a_tile_without_a_picture_says_why(alice_client, shelf):
    html = alice_client.get(f"{LIBRARY}?stacks=0").content.decode()
    assert "Failed: Banned word" in html
    assert "Timed out" in html and "Processing…" in html and "Saving…" in html


@pytest.mark.django_db
def test_24_tiles_weigh_under_80_kb_even_with_the_longest_prompts(alice_client, alice):
    for n in range(8):
        root = add_task(user=alice, text=("a very long prompt " * 300)[: Prompt.MAX_LENGTH], minutes=n * 3)
        vary = add_task(user=alice, parent=root, action="vary", option="subtle", index=4, minutes=n * 3 + 1)
        add_task(user=alice, parent=vary, action="upscale", option="creative", index=1, minutes=n * 3 + 2)
    for url in (f"{LIBRARY}?stacks=0", LIBRARY):
        response = alice_client.get(url)
        assert len(tile_ids(response.content.decode())) in (24, 8)
        per_24 = len(response.content) / len(tile_ids(response.content.decode())) * 24
        assert per_24 <= 80 * 1024, (url, per_24)


# --- A fixed number of queries, whatever the page size ---------------------------------------------------


def count_queries(client, url: str, **headers: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.django_db
def test_a_page_costs_the_same_queries_at_any_size(alice_client, alice, bob, monkeypatch):
    for n in range(30):
        root = add_task(user=alice if n % 2 else bob, text=f"cà phê {n}", minutes=n * 2, ratio="16:9")
        if n % 3 == 0:
            add_task(user=bob, parent=root, action="vary", option="strong", index=1, minutes=n * 2 + 1)
    image = Image.objects.first()
    Favourite.objects.create(user=alice, image=image)
    board = Collection.objects.create(team=image.task.team, name="Board", created_by=alice)
    CollectionItem.objects.create(collection=board, image=image, added_by=alice)
    first = Position(created_at=T0 + timedelta(hours=5), task_id=10**9, index=0).encode()
    urls = [
        (LIBRARY, {}),
        (f"{LIBRARY}?stacks=0", {}),
        (f"{LIBRARY}?q=ca+phe", {}),
        (f"{LIBRARY}?q=ca+phe&stacks=0&ratio=16:9&author=bob", {}),
        (f"{LIBRARY}?fav=1&collection={board.pk}&status=finished", {}),
        (f"{LIBRARY}?status=failed&action=vary&from=2026-01-01", {}),
        (f"{LIBRARY}?stacks=0&cursor={first}&shown=5", {**HTMX, "HX-Target": "lib-grid"}),
        (f"{LIBRARY}?until={first}", {}),
        (f"/library/stacks/{image.task.root_id}/", HTMX),
    ]
    alice_client.get(LIBRARY)  # the session's first request settles the team once
    counts = {}
    for size in (5, 24):
        monkeypatch.setattr(queries, "PAGE_SIZE", size)
        counts[size] = [count_queries(alice_client, url, **headers) for url, headers in urls]
    assert counts[5] == counts[24]
    assert max(counts[24]) <= 12


# --- Favourites ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stars_and_unstars_an_image_in_place(alice_client, alice, shelf):
    image = shelf[1].images.get(index=1)
    url = reverse("generations:image_favourite", args=[image.pk])
    starred = alice_client.post(url, {"on": "1"}, headers=HTMX)
    assert starred.status_code == 200
    assert b'aria-pressed="true"' in starred.content and b'name="on" value="0"' in starred.content
    assert Favourite.objects.filter(user=alice, image=image).count() == 1
    again = alice_client.post(url, {"on": "1"}, headers=HTMX)  # a double click changes nothing more
    assert again.status_code == 200 and Favourite.objects.filter(user=alice, image=image).count() == 1
    unstarred = alice_client.post(url, {"on": "0"}, headers=HTMX)
    assert b'aria-pressed="false"' in unstarred.content
    assert not Favourite.objects.filter(user=alice, image=image).exists()
    assert alice_client.post(url, {"on": "0"}, headers=HTMX).status_code == 200


@pytest.mark.django_db
def test_favourites_are_each_member_s_own(client, alice, bob, shelf):
    image = shelf[1].images.get(index=1)
    Favourite.objects.create(user=bob, image=image)
    client.force_login(alice)
    html = client.get(f"{LIBRARY}?stacks=0&q=harbour&action=imagine").content.decode()
    assert f'id="f{image.pk}" aria-pressed="false"' in html
    assert get_tiles(client, f"{LIBRARY}?fav=1") == []


@pytest.mark.django_db
def test_starring_without_javascript_goes_back_to_the_page(alice_client, alice, shelf):
    image = shelf[1].images.get(index=1)
    url = reverse("generations:image_favourite", args=[image.pk])
    back = f"http://testserver{LIBRARY}?q=harbour"
    response = alice_client.post(url, {"on": "1"}, headers={"Referer": back})
    assert response.status_code == 302 and response["Location"] == f"{back}#i{image.pk}"
    assert Favourite.objects.filter(user=alice, image=image).exists()
    elsewhere = alice_client.post(url, {"on": "0"}, headers={"Referer": "https://evil.example/"})
    assert elsewhere["Location"] == f"{LIBRARY}#i{image.pk}"


@pytest.mark.django_db
@pytest.mark.parametrize("on", ["", "2", "yes"])
def test_a_star_without_a_clear_on_or_off_changes_nothing(alice_client, alice, shelf, on):
    image = shelf[1].images.get(index=1)
    url = reverse("generations:image_favourite", args=[image.pk])
    assert alice_client.post(url, {"on": on}, headers=HTMX).status_code == 400
    response = alice_client.post(url, {"on": on}, follow=True)
    assert "Say whether to star the image" in response.content.decode()
    assert not Favourite.objects.exists()


# --- Everything scoped: every new URL, each method, each actor ---------------------------------------------------


@pytest.fixture
def alices_things(alice, shelf):
    board = Collection.objects.create(team=shelf[1].team, name="Mine", created_by=alice)
    image = shelf[1].images.get(index=1)
    CollectionItem.objects.create(collection=board, image=image, added_by=alice)
    return {"task": shelf[2].pk, "image": image.pk, "collection": board.pk}


URLS = [
    ("get", "/library/", None),
    ("get", "/library/?collection={collection}", "collection"),
    ("get", "/library/?lineage={task}", "task"),
    ("get", "/library/stacks/{task}/", "task"),
    ("post", "/images/{image}/favourite/", "image"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "pattern", "owned"), URLS)
def test_anonymous_visitors_are_sent_to_log_in(client, alices_things, method, pattern, owned):
    url = pattern.format(**alices_things)
    response = getattr(client, method)(url, {"on": "1"} if method == "post" else None)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert not Favourite.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "pattern", "owned"), URLS)
def test_another_team_s_member_gets_404_for_our_things(client, charlie, alices_things, method, pattern, owned):
    client.force_login(charlie)
    url = pattern.format(**alices_things)
    for headers in ({}, HTMX):
        response = getattr(client, method)(url, {"on": "1"} if method == "post" else None, headers=headers)
        if owned is None:
            assert response.status_code == 200
            assert tile_ids(response.content.decode()) == []  # charlie's own library: none of ours
        else:
            assert response.status_code == 404
    assert not Favourite.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "pattern", "owned"), URLS)
def test_a_member_reaches_every_url(alice_client, alices_things, method, pattern, owned):
    url = pattern.format(**alices_things)
    response = getattr(alice_client, method)(url, {"on": "1"} if method == "post" else None, headers=HTMX)
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "pattern"),
    [("post", "/library/"), ("post", "/library/stacks/{task}/"), ("get", "/images/{image}/favourite/")],
)
def test_each_url_refuses_the_other_method(alice_client, alices_things, method, pattern):
    assert getattr(alice_client, method)(pattern.format(**alices_things)).status_code == 405


@pytest.mark.django_db
def test_the_header_links_to_the_library(alice_client):
    html = alice_client.get("/").content.decode()
    assert '<a href="/library/">Library</a>' in html
