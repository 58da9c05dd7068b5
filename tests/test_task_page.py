"""The task page (facts, the drawn family tree, its cost), compare, provenance bundles, download names, the composer
prefilled from a task, and every new URL scoped to the team."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta
from html.parser import HTMLParser
from itertools import pairwise

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image as PILImage

from generations.models import Collection, CollectionItem, Image, Prompt, Task
from generations.services import provenance

T0 = timezone.now().replace(microsecond=0) - timedelta(hours=2)


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def add_images(
    task: Task, count: int = 4, *, size: tuple[int, int] = (24, 16), pngs: list[bytes] | None = None
) -> list[Image]:
    """Saved images with real PNG files and WebP thumbnails, as mirroring leaves them (plain colours, or `pngs`)."""
    images = []
    pngs = pngs or [png_bytes((task.pk * 40 % 256, index * 50, 90), size) for index in range(1, count + 1)]
    for index, data in enumerate(pngs, start=1):
        size = PILImage.open(io.BytesIO(data)).size
        image = Image(task=task, index=index, source_url=f"https://cdn.apiframe.pro/{task.pk}-{index}.png")
        image.file.save(f"{task.pk}-{index}.png", ContentFile(data), save=False)
        thumb = io.BytesIO()
        PILImage.open(io.BytesIO(data)).save(thumb, "WEBP")
        image.thumbnail.save(f"{task.pk}-{index}.webp", ContentFile(thumb.getvalue()), save=False)
        image.width, image.height = size
        image.content_hash = hashlib.sha256(data).hexdigest()
        image.size_bytes = len(data)
        image.mirrored_at = timezone.now()
        image.save()
        images.append(image)
    return images


@pytest.fixture
def family(make_task, bob):
    """root (imagine, alice) ─ vary of image 2 (bob) ─ upscale of image 3 (alice); root ─ pan right of image 3."""

    def finished(n: int, **fields) -> dict:
        return {
            "status": "finished",
            "created_at": T0 + timedelta(minutes=n),
            "submitted_at": T0 + timedelta(minutes=n, seconds=1),
            "started_at": T0 + timedelta(minutes=n, seconds=4),
            "finished_at": T0 + timedelta(minutes=n, seconds=34),
            **fields,
        }

    root = make_task(upstream_id="af-root", credits=4, **finished(0))
    Prompt.objects.filter(pk=root.prompt_id).update(
        text="Cà phê sữa đá at dawn, a quiet harbour in film grain", mode="turbo", aspect_ratio="3:2"
    )
    root.refresh_from_db()
    vary = make_task(
        user=bob,
        action="vary",
        option="strong",
        parent=root,
        parent_index=2,
        upstream_id="af-vary",
        credits=4,
        **finished(1),
    )
    upscale = make_task(
        action="upscale",
        option="creative",
        parent=vary,
        parent_index=3,
        upstream_id="af-up",
        credits=2,
        **finished(2),
    )
    pan = make_task(
        action="pan", option="right", parent=root, parent_index=3, upstream_id="af-pan", credits=4, **finished(3)
    )
    for task in (root, vary, pan):
        add_images(task)
    add_images(upscale, 1, size=(48, 32))
    return {"root": root, "vary": vary, "upscale": upscale, "pan": pan}


@pytest.fixture
def chain(make_task):
    """A chain of `depth` tasks, each made from the one before, created in bulk, each with a first image row."""

    def make(depth: int) -> list[Task]:
        root = make_task(status="finished", upstream_id=f"root-{depth}", credits=2)
        fields = {"team": root.team, "prompt": root.prompt, "created_by": root.created_by, "deadline": root.deadline}
        steps = [
            Task(action="vary", option="subtle", parent_index=1, root=root, status="finished", credits=2, **fields)
            for _ in range(depth - 1)
        ]
        tasks = [root, *Task.objects.bulk_create(steps)]
        for parent, child in pairwise(tasks):
            child.parent = parent
        Task.objects.bulk_update(tasks[1:], ["parent"], batch_size=500)
        Image.objects.bulk_create(
            Image(
                task=t,
                index=1,
                source_url="https://cdn.apiframe.pro/x.png",
                thumbnail="thumbs/x.webp",
                file="images/x.png",
                width=8,
                height=8,
                mirrored_at=timezone.now(),
            )
            for t in tasks
        )
        return tasks

    return make


class _Tree(HTMLParser):
    """The drawn tree read back from the HTML: each node's nearest enclosing node, and the nodes in order."""

    def __init__(self, root_class: str = "tree") -> None:
        super().__init__()
        self.root_class = root_class
        self.stack: list[tuple[str, str | None]] = []
        self.inside = 0
        self.parent_of: dict[int, int | None] = {}
        self.order: list[int] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "ul" and self.root_class in (attrs.get("class") or "").split():
            self.inside += 1
        if not self.inside or tag not in ("ul", "li"):
            return
        node = attrs.get("data-task")
        if tag == "li" and node:
            enclosing = next((int(n) for t, n in reversed(self.stack) if t == "li" and n), None)
            self.parent_of[int(node)] = enclosing
            self.order.append(int(node))
        self.stack.append((tag, node))

    def handle_endtag(self, tag: str) -> None:
        if not self.inside or tag not in ("ul", "li"):
            return
        opened, _ = self.stack.pop()
        assert opened == tag, f"</{tag}> closes <{opened}>: the tree's markup is not nested properly"
        if tag == "ul" and not any(t == "ul" for t, _ in self.stack):
            self.inside -= 1


def read_tree(html: str, root_class: str = "tree") -> _Tree:
    tree = _Tree(root_class)
    tree.feed(html)
    assert not tree.stack, "the tree's lists are not all closed"
    return tree


def lineage_aside(body: str) -> str:
    return body.split('aria-labelledby="lineage-title"', 1)[1].split("</aside>", 1)[0]


# --- The page: facts ----------------------------------------------------------------------------------------------


def test_it_shows_every_fact_of_the_task(alice_client, family):
    vary = family["vary"]
    response = alice_client.get(f"/tasks/{vary.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Cà phê sữa đá at dawn, a quiet harbour in film grain" in body
    facts = body.split('id="facts-title"', 1)[1]
    for fact in ("Turbo", "3:2", "24×16 px", "Vary · strong · of image 2", "bob", "af-vary"):
        assert fact in facts, fact
    assert f'<a href="/tasks/{family["root"].pk}/">#{family["root"].pk} Imagine</a>, image 2' in facts
    assert f'<a href="/tasks/{family["upscale"].pk}/">#{family["upscale"].pk}' in facts  # made from this
    assert "<dt>Credits</dt><dd>4</dd>" in facts
    for moment in (vary.created_at, vary.submitted_at, vary.started_at, vary.finished_at):
        assert f'datetime="{timezone.localtime(moment).isoformat()}"' in facts
    # 1 s in our queue, 3 s at Apiframe, 30 s rendering, 34 s in all
    for label, took in (
        ("In our queue", "1.0 s"),
        ("Waiting at Apiframe", "3.0 s"),
        ("Rendering", "30.0 s"),
        ("In all", "34.0 s"),
    ):
        assert f"{label} <strong>{took}</strong>" in facts
    for image in vary.images.all():
        assert f'src="/images/{image.pk}/full/"' in body  # full size, not the thumbnail
        assert image.content_hash in facts


def test_a_task_not_yet_finished_says_so(alice_client, make_task):
    task = make_task(status="processing", percentage=42, submitted_at=timezone.now())
    body = alice_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "Rendering: 42% when this page was loaded." in body
    assert "<dt>Finished</dt><dd>Not yet</dd>" in body
    assert "Nothing: this is the root" in body


def test_long_durations_read_in_minutes_and_hours(alice_client, make_task):
    task = make_task(
        status="finished", created_at=T0, submitted_at=T0 + timedelta(seconds=75), finished_at=T0 + timedelta(hours=2)
    )
    body = alice_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "In our queue <strong>1 min 15 s</strong>" in body
    assert "In all <strong>2 h 0 min</strong>" in body


# --- The page: the tree ------------------------------------------------------------------------------------------


def test_it_draws_each_child_under_its_parent_labelled_with_its_action(alice_client, family):
    root, vary, upscale, pan = (family[k] for k in ("root", "vary", "upscale", "pan"))
    body = alice_client.get(f"/tasks/{upscale.pk}/").content.decode()
    tree = read_tree(lineage_aside(body))
    assert tree.order == [root.pk, vary.pk, upscale.pk, pan.pk]  # depth first, oldest first
    assert tree.parent_of == {root.pk: None, vary.pk: root.pk, upscale.pk: vary.pk, pan.pk: root.pk}
    aside = lineage_aside(body)
    for task in (root, vary, upscale, pan):
        task.refresh_from_db()
        link = re.search(rf'<a class="node__link" href="/tasks/{task.pk}/"[^>]*>(.*?)</a>', aside, re.S).group(1)
        assert task.describe() in link and task.created_by.get_username() in link
        first = task.images.get(index=1)
        assert f'src="/images/{first.pk}/thumb/"' in link  # a thumbnail link
    assert aside.count('aria-current="page"') == 1
    assert f'href="/tasks/{upscale.pk}/" aria-current="page"' in aside
    assert "Pan right of image 3" in aside


def test_it_marks_the_way_from_the_root_to_the_task(alice_client, family):
    body = alice_client.get(f"/tasks/{family['upscale'].pk}/").content.decode()
    on_branch = re.findall(r'<li class="tree__item tree__item--branch" data-task="(\d+)"', body)
    assert [int(pk) for pk in on_branch] == [family[k].pk for k in ("root", "vary", "upscale")]


def test_it_says_what_the_branch_and_the_family_cost(alice_client, family):
    body = alice_client.get(f"/tasks/{family['upscale'].pk}/").content.decode()
    assert "This image took <strong>3 tasks / 10 credits</strong>" in body  # imagine 4 + vary 4 + upscale 2
    assert "the whole family 4 tasks / 14 credits" in body
    body = alice_client.get(f"/tasks/{family['root'].pk}/").content.decode()
    assert "This image took <strong>1 task / 4 credits</strong>" in body


def test_a_long_branch_costs_what_every_step_cost(alice_client, chain):
    tasks = chain(30)
    body = alice_client.get(f"/tasks/{tasks[-1].pk}/").content.decode()
    assert "This image took <strong>30 tasks / 60 credits</strong>" in body


def _queries(client, task) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/tasks/{task.pk}/").status_code == 200
    return len(queries)


def test_the_page_costs_the_same_queries_for_a_family_of_20_as_of_200(alice_client, chain):
    small, big = chain(20), chain(200)
    alice_client.get("/")  # the session's team, once
    assert _queries(alice_client, small[-1]) == _queries(alice_client, big[-1]) == _queries(alice_client, big[100])
    body = alice_client.get(f"/tasks/{big[100].pk}/").content.decode()
    assert read_tree(lineage_aside(body)).order == [t.pk for t in big]  # 200 are drawn whole
    assert "more in this lineage" not in body


def test_a_family_of_200_is_drawn_whole_and_one_more_is_shortened(alice_client, chain, make_task):
    tasks = chain(200)
    extra = make_task(status="finished", action="vary", option="strong", parent=tasks[0], parent_index=1)
    body = alice_client.get(f"/tasks/{tasks[-1].pk}/").content.decode()
    assert extra.pk not in read_tree(lineage_aside(body)).order
    assert "more in this lineage" in body and "steps on the way here" in body


# --- Compare ---------------------------------------------------------------------------------------------------


def test_it_compares_two_to_four_images_side_by_side(alice_client, family):
    images = list(family["vary"].images.order_by("index"))
    response = alice_client.get("/compare/", {"images": f"{images[0].pk},{images[3].pk}"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="compare__pane"') == 2
    assert f'src="/images/{images[0].pk}/full/"' in body and f'src="/images/{images[3].pk}/full/"' in body
    # As the task page's checkboxes send them, and with four.
    response = alice_client.get("/compare/", {"images": [str(i.pk) for i in images]})
    assert response.status_code == 200 and response.content.decode().count('class="compare__pane"') == 4
    actual = alice_client.get("/compare/", {"images": f"{images[0].pk},{images[1].pk}", "size": "actual"})
    assert "compare--actual" in actual.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "you chose no image"),
        ({"images": "{0}"}, "you chose one image"),
        ({"images": "{0},{0}"}, "you chose one image"),
        ({"images": "{0},{1},{2},{3},{4}"}, "you chose 5 images"),
        ({"images": "{0},abc"}, "Images are chosen by number"),
        ({"images": "{0},²"}, "Images are chosen by number"),
        ({"images": "{0},-3"}, "Images are chosen by number"),
        ({"images": "{0},99999999999999999999999"}, "Images are chosen by number"),
    ],
)
def test_a_bad_choice_to_compare_is_explained(alice_client, family, query, message):
    pks = [i.pk for i in Image.objects.order_by("pk")]
    query = {k: v.format(*pks) for k, v in query.items()}
    response = alice_client.get("/compare/", query)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'role="alert"' in response.content.decode()


def test_another_teams_image_cannot_be_compared(alice_client, family, charlie, make_task):
    theirs = add_images(make_task(user=charlie, status="finished"), 1)[0]
    mine = family["root"].images.first()
    assert alice_client.get("/compare/", {"images": f"{mine.pk},{theirs.pk}"}).status_code == 404
    assert alice_client.get("/compare/", {"images": f"{mine.pk},{theirs.pk + 1000}"}).status_code == 404


def test_the_task_page_picks_images_to_compare_in_a_get_form(alice_client, family):
    body = alice_client.get(f"/tasks/{family['vary'].pk}/").content.decode()
    assert re.search(r'<form id="compare-form"[^>]*method="get" action="/compare/"', body)
    for image in family["vary"].images.all():
        assert f'name="images" value="{image.pk}" form="compare-form"' in body
    root_first = family["root"].images.get(index=1)
    node = f'value="{root_first.pk}" form="compare-form" aria-label="Compare image 1 of #{family["root"].pk} Imagine"'
    assert node in body  # a node of the tree


# --- Provenance bundles -----------------------------------------------------------------------------------------


def _zip(response) -> zipfile.ZipFile:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _check_bundle(bundle: zipfile.ZipFile, tasks: list[Task], images: list[Image]) -> dict:
    """The JSON and the HTML against the database, the files against their hashes."""
    metadata = json.loads(bundle.read("metadata.json"))
    by_id = {entry["id"]: entry for entry in metadata["tasks"]}
    assert sorted(by_id) == sorted(t.pk for t in tasks)
    for task in tasks:
        task = Task.objects.select_related("prompt", "created_by").get(pk=task.pk)
        entry = by_id[task.pk]
        assert entry["parent_id"] == task.parent_id and entry["root_id"] == task.root_id
        assert (entry["action"], entry["option"], entry["parent_index"]) == (
            task.action,
            task.option,
            task.parent_index,
        )
        assert (entry["prompt"], entry["mode"], entry["aspect_ratio"]) == (
            task.prompt.text,
            task.prompt.mode,
            task.prompt.aspect_ratio,
        )
        assert entry["author"] == task.created_by.username
        assert entry["apiframe_task_id"] == task.apiframe_task_id
        assert (entry["credits"], entry["status"]) == (task.credits, task.status)
        for moment in ("created_at", "submitted_at", "started_at", "finished_at"):
            value = getattr(task, moment)
            assert entry[moment] == (value.isoformat() if value else None)
    files = {}
    for image in images:
        entry = next(i for i in by_id[image.task_id]["images"] if i["id"] == image.pk)
        assert entry["file"] == f"images/{image.task_id}-{image.index}.png"
        data = bundle.read(entry["file"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] == image.content_hash
        assert (entry["width"], entry["height"], entry["size_bytes"]) == (image.width, image.height, len(data))
        files[entry["file"]] = image
    assert sorted(n for n in bundle.namelist() if n.startswith("images/")) == sorted(files)
    html = bundle.read("index.html").decode()
    assert "<script" not in html and "http://" not in html and "https://cdn" not in html  # offline
    for name in files:
        assert f'src="{name}"' in html
    tree = read_tree(html)
    assert sorted(tree.order) == sorted(t.pk for t in tasks)
    shown = set(tree.order)
    for task in tasks:
        assert tree.parent_of[task.pk] == (task.parent_id if task.parent_id in shown else None)
    return metadata


def test_a_lineage_exports_as_a_provenance_bundle(alice_client, family):
    response = alice_client.get(f"/tasks/{family['upscale'].pk}/export/")
    assert response["Content-Disposition"] == (
        f'attachment; filename="ca-phe-sua-da-at-dawn-a-quiet-lineage-{family["root"].pk}.zip"'
    )
    tasks = list(family.values())
    metadata = _check_bundle(_zip(response), tasks, list(Image.objects.all()))
    assert metadata["kind"] == "lineage" and metadata["root_id"] == family["root"].pk
    vary = next(t for t in metadata["tasks"] if t["id"] == family["vary"].pk)
    assert vary["author"] == "bob" and vary["label"] == "Vary (strong) of image 2"


def test_a_collection_exports_its_images_with_the_way_they_were_made(alice_client, alice, family):
    collection = Collection.objects.create(team=family["root"].team, name="Harbour picks", created_by=alice)
    picked = [family["upscale"].images.get(), family["pan"].images.get(index=2)]
    for image in picked:
        CollectionItem.objects.create(collection=collection, image=image, added_by=alice)
    response = alice_client.get(f"/collections/{collection.pk}/export/")
    assert response["Content-Disposition"] == f'attachment; filename="harbour-picks-collection-{collection.pk}.zip"'
    bundle = _zip(response)
    # The collected images, and the tasks from the root down to them (their other images stay out).
    metadata = _check_bundle(bundle, list(family.values()), picked)
    assert [i["image_id"] for i in metadata["collection"]["items"]] == [i.pk for i in picked]
    root_entry = next(t for t in metadata["tasks"] if t["id"] == family["root"].pk)
    assert root_entry["images"] == []


def test_an_image_whose_file_is_gone_is_left_out_and_said_so(alice_client, family, caplog):
    lost = family["pan"].images.get(index=4)
    lost.file.storage.delete(lost.file.name)
    bundle = _zip(alice_client.get(f"/tasks/{family['pan'].pk}/export/"))
    metadata = json.loads(bundle.read("metadata.json"))
    entry = next(i for t in metadata["tasks"] for i in t["images"] if i["id"] == lost.pk)
    assert entry["file"] is None
    assert f'src="images/{lost.task_id}-4.png"' not in bundle.read("index.html").decode()
    assert "stored file" in caplog.text


def test_a_very_deep_lineage_exports_with_its_page_nested_at_most_100_deep(alice_client, chain):
    tasks = chain(150)
    Image.objects.update(file="")  # rows only: the page and the metadata are what is checked here
    bundle = _zip(alice_client.get(f"/tasks/{tasks[-1].pk}/export/"))
    html = bundle.read("index.html").decode()
    tree = read_tree(html)  # properly nested, every list closed
    assert tree.order == [t.pk for t in tasks]
    depth = {}
    for pk, parent in tree.parent_of.items():
        depth[pk] = 0 if parent is None else depth[parent] + 1
    assert max(depth.values()) == provenance.BUNDLE_MAX_DEPTH
    for task in tasks[1:]:  # deeper nodes still name their parent
        assert f'data-task="{task.pk}" data-parent="{task.parent_id}"' in html
    assert len(json.loads(bundle.read("metadata.json"))["tasks"]) == 150


def test_the_bundle_reads_each_file_in_chunks(family, monkeypatch):
    monkeypatch.setattr(provenance, "CHUNK_SIZE", 40)
    image = family["upscale"].images.get()
    chunks = list(provenance._file_chunks(image.file.name, image.pk, set()))
    assert len(chunks) > 1 and all(len(chunk) <= 40 for chunk in chunks)
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == image.content_hash


# --- Download names, and the composer prefilled ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Cà phê sữa đá at dawn", "ca-phe-sua-da-at-dawn-7-2.png"),
        ("ĐÀ LẠT in the rain!!! --ar 16:9", "da-lat-in-the-rain-ar-169-7-2.png"),
        ("一只猫", "mjstudio-7-2.png"),
        ("   ", "mjstudio-7-2.png"),
        ("word " * 40, "word-word-word-word-word-word-word-word-7-2.png"),
        ("a" * 300, "a" * 60 + "-7-2.png"),
    ],
)
def test_a_download_is_named_from_the_prompt(text, name):
    assert provenance.download_name(text=text, suffix="7-2", extension="png") == name


def test_an_image_downloads_under_a_name_made_from_its_prompt(alice_client, family):
    image = family["vary"].images.get(index=3)
    response = alice_client.get(f"/images/{image.pk}/full/", {"download": "1"})
    assert response.status_code == 200
    name = f"ca-phe-sua-da-at-dawn-a-quiet-{family['vary'].pk}-3.png"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'


def test_reuse_and_remix_link_to_the_composer_prefilled(alice_client, family):
    body = alice_client.get(f"/tasks/{family['vary'].pk}/").content.decode()
    reuse = re.search(r'href="(/\?[^"]+)">Reuse prompt', body).group(1).replace("&amp;", "&")
    remix = re.search(r'href="(/\?[^"]+)">Remix', body).group(1).replace("&amp;", "&")
    studio = alice_client.get(reuse).content.decode()
    assert ">Cà phê sữa đá at dawn, a quiet harbour in film grain</textarea>" in studio
    assert 'value="turbo" id="mode-turbo" checked' in studio
    assert '<option value="3:2" selected>' in studio
    remixed = alice_client.get(remix)
    assert ">Cà phê sữa đá at dawn, a quiet harbour in film grain</textarea>" in remixed.content.decode()
    assert remixed.context["remix"] is True
    assert " autofocus" in remixed.content.decode() and " autofocus" not in studio  # Remix: the prompt to edit
    assert not Task.objects.filter(created_at__gt=T0 + timedelta(minutes=10)).exists()  # nothing was sent


@pytest.mark.parametrize(
    "query",
    [
        {"prompt": "x" * 10_000},
        {"prompt": "nul\x00 and bell\x07", "mode": "warp", "aspect_ratio": "99:1"},
        {"prompt": "", "mode": "", "aspect_ratio": ""},
        "prompt=%ED%A0%80&mode=%FF",  # not UTF-8
        {"remix": "yes", "prompt": "<script>alert(1)</script>"},
    ],
)
def test_odd_prefills_are_cut_cleaned_or_ignored(alice_client, query):
    response = alice_client.get(
        f"/?{query}" if isinstance(query, str) else "/", {} if isinstance(query, str) else query
    )
    assert response.status_code == 200
    body = response.content.decode()
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", body, re.S).group(1)
    assert len(textarea) <= Prompt.MAX_LENGTH
    assert "\x00" not in textarea and "\x07" not in textarea and "<script>" not in textarea
    assert 'value="fast" id="mode-fast" checked' in body and '<option value="1:1" selected>' in body


# --- Everything scoped: every new URL, method and actor ---------------------------------------------------------

NEW_URLS = [
    "/tasks/{task}/",
    "/tasks/{task}/export/",
    "/collections/{collection}/export/",
    "/compare/?images={image},{image2}",
    "/images/{image}/full/?download=1",
]


@pytest.fixture
def targets(family, alice):
    collection = Collection.objects.create(team=family["root"].team, name="Picks", created_by=alice)
    image, image2 = family["vary"].images.all()[:2]
    CollectionItem.objects.create(collection=collection, image=image, added_by=alice)
    return {"task": family["vary"].pk, "collection": collection.pk, "image": image.pk, "image2": image2.pk}


@pytest.mark.parametrize("url", NEW_URLS)
@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_anonymous_users_go_to_login(client, targets, url, method):
    path = url.format(**targets)
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", NEW_URLS)
def test_another_team_gets_404_and_the_team_gets_200(client, targets, charlie, alice, url):
    path = url.format(**targets)
    client.force_login(charlie)
    assert client.get(path).status_code == 404
    client.force_login(alice)
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("url", NEW_URLS)
@pytest.mark.parametrize("method", ["post", "put", "delete"])
@pytest.mark.parametrize("actor", ["alice", "charlie"])
def test_new_urls_only_answer_get(client, targets, request, url, method, actor):
    client.force_login(request.getfixturevalue(actor))
    response = getattr(client, method)(url.format(**targets))
    assert response.status_code == 405
    assert Task.objects.count() == 4 and Collection.objects.count() == 1  # nothing changed


def test_another_teams_collection_and_missing_ones_are_404(alice_client, charlie, make_task):
    theirs = Collection.objects.create(
        team=charlie.memberships.get(chosen_at__isnull=False).team, name="Theirs", created_by=charlie
    )
    assert alice_client.get(f"/collections/{theirs.pk}/export/").status_code == 404
    assert alice_client.get(f"/collections/{theirs.pk + 1}/export/").status_code == 404
    assert alice_client.get(f"/tasks/{2**63}/export/").status_code == 404


def test_a_collection_never_exports_another_teams_image(alice_client, alice, charlie, make_task):
    team = alice.memberships.get().team
    collection = Collection.objects.create(team=team, name="Mixed", created_by=alice)
    mine = add_images(make_task(status="finished"), 1)[0]
    theirs = add_images(make_task(user=charlie, status="finished"), 1)[0]
    for image in (mine, theirs):  # a row no view would write, but the export must not trust it
        CollectionItem.objects.create(collection=collection, image=image, added_by=alice)
    bundle = _zip(alice_client.get(f"/collections/{collection.pk}/export/"))
    assert [n for n in bundle.namelist() if n.startswith("images/")] == [f"images/{mine.task_id}-1.png"]
    assert [t["id"] for t in json.loads(bundle.read("metadata.json"))["tasks"]] == [mine.task_id]
