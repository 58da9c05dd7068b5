"""Provenance: a task's family drawn as a tree, the cost of the way to an image, and provenance bundles (a zip of
the original images, their metadata as JSON and an offline page drawing the tree), streamed in constant memory."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from generations.models import Collection, Image, Task, Team
from generations.services import media
from generations.services.submitting import normalize_for_search

logger = logging.getLogger(__name__)

# A family up to this size is drawn whole. A bigger one shows the way down from the root to the task (its first
# step and the last ones, when it is long) and what was made from the task, up to this many nodes, then "+N more".
LINEAGE_MAX_LINES = 200
LINEAGE_MAX_PATH = 10
# The offline page nests at most this deep (browsers flatten markup nested past ~500 elements); deeper nodes are
# drawn as siblings at that depth, still naming their parent.
BUNDLE_MAX_DEPTH = 100
# Files are copied into the zip in chunks of this size: an image is never held whole.
CHUNK_SIZE = 64 * 1024
BUNDLE_FORMAT = "mjstudio-provenance/1"
_NODE_FIELDS = (
    "pk",
    "team_id",
    "action",
    "option",
    "parent_index",
    "status",
    "created_at",
    "created_by",
    "hidden_at",
    "hidden_reason",
)
_PK_PLACEHOLDER = 987654321
NAME_MAX_WORDS = 8
NAME_MAX_LENGTH = 60


# A review state's mark beside a tree node's images.
REVIEW_GLYPHS = {Image.Review.SHORTLISTED: "☆", Image.Review.APPROVED: "✓", Image.Review.REJECTED: "✕"}


# --- The family as rows of a drawn tree ---------------------------------------------------------------------


@dataclass
class TreeRow:
    """One node of a drawn tree (or a line saying what is left out), in depth-first order. `opens`: the next rows
    are its children (a nested list starts); `closes`: the nested lists that end after this leaf."""

    depth: int
    pk: int | None = None
    task: Task | None = None
    thumb: Image | None = None
    more: int = 0  # for a line that stands for left-out nodes
    on_the_way: bool = False
    opens: bool = False
    closes: range = range(0)
    current: bool = False
    on_branch: bool = False  # on the way from the root to the current task
    files: list[dict] = field(default_factory=list)  # in a bundle: its images, by their names in the zip
    # Worked out once per page rather than by template tags, which cost ~0.1 ms a node on a 200-node tree.
    url: str = ""
    thumb_url: str = ""
    when: str = ""
    when_iso: str = ""
    parent_outside: bool = False  # in a bundle: made from a task that is not in it
    entry: dict | None = None  # in a bundle: the task's record in metadata.json
    status: str = ""
    placeholder: bool = False  # a hidden task, for non-staff: "Hidden by a moderator", nothing else of it
    hidden_reason: str = ""  # for staff: why the task (or its first image) was hidden
    reviews: list[dict] = field(default_factory=list)  # its images' review states, those set: index, state, glyph
    approved_path: bool = False  # an approved image is here or below: on the way down to one


@dataclass
class Lineage:
    rows: list[TreeRow]
    family_size: int
    family_credits: int
    branch: list[int]  # pks from the root to the task, both included
    branch_credits: int
    children: list[Task] = field(default_factory=list)


def _depth_first(children: dict[int | None, list[int]], start: int, depth: int) -> Iterator[tuple[int, int]]:
    """(pk, depth) of `start` and everything made from it, each followed by its own, oldest first. Iterative:
    a lineage a thousand deep is as easy as a short one."""
    stack = [(start, depth)]
    seen: set[int] = set()
    while stack:
        pk, depth = stack.pop()
        if pk in seen:  # only a corrupt parent link could loop; never walk it twice
            continue
        seen.add(pk)
        yield pk, depth
        stack.extend((child, depth + 1) for child in reversed(children.get(pk, ())))


def _way_down(parents: dict[int, int | None], pk: int) -> list[int]:
    """The pks from the root to `pk`, both included."""
    path, seen = [pk], {pk}
    while (parent := parents.get(path[-1])) in parents and parent not in seen:  # stops at the root (None)
        path.append(parent)
        seen.add(parent)
    return path[::-1]


def _children_of(family: Iterable[tuple[int, int | None]], parents: dict[int, int | None]) -> dict:
    """Children pks by parent pk, oldest first; a node whose parent is not in the family is a root (None)."""
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in family:
        children.setdefault(parent_id if parent_id in parents else None, []).append(pk)
    return children


def tree_nest(rows: list[TreeRow], *, max_depth: int | None = None) -> list[TreeRow]:
    """Set each row's `opens` and `closes` from the depths, so a template draws nested lists without recursion.
    A depth never grows by more than one from a row to the next (it is clamped so)."""
    if not rows:  # an empty bundle (a collection emptied, no approved image yet) draws no tree
        return rows
    previous = -1
    for row in rows:
        row.depth = min(row.depth, previous + 1, max_depth if max_depth is not None else row.depth)
        previous = row.depth
    for row, after in zip(rows, [*rows[1:], None], strict=True):
        next_depth = after.depth if after else 0
        row.opens = next_depth > row.depth
        row.closes = range(0 if row.opens else row.depth - next_depth)
    return rows


def _lines(task: Task, parents: dict[int, int | None], children: dict) -> list[TreeRow]:
    """The rows to draw: the whole family when small, else the way down to the task and what came from it."""
    if len(parents) <= LINEAGE_MAX_LINES:
        return [
            TreeRow(depth=depth, pk=pk)
            for root in children.get(None, [])
            for pk, depth in _depth_first(children, root, 0)
        ]
    above = _way_down(parents, task.pk)[:-1]
    rows: list[TreeRow] = []
    start = 0
    if len(above) > LINEAGE_MAX_PATH:  # the root, a line for the steps left out, the last steps
        skipped = len(above) - LINEAGE_MAX_PATH
        rows.append(TreeRow(depth=0, pk=above[0]))
        rows.append(TreeRow(depth=1, more=skipped, on_the_way=True))
        above, start = above[skipped + 1 :], 2
    rows += (TreeRow(depth=start + depth, pk=pk) for depth, pk in enumerate(above))
    below = _depth_first(children, task.pk, start + len(above))
    rows += (TreeRow(depth=depth, pk=pk) for pk, depth in islice(below, LINEAGE_MAX_LINES - len(rows)))
    shown = sum(1 for row in rows if row.pk is not None)
    if shown < len(parents):
        rows.append(TreeRow(depth=0, more=len(parents) - shown))
    return rows


def _url_for_pk(name: str, *args: str) -> Callable[[int], str]:
    """A URL pattern reversed once, then filled in for each pk."""
    head, tail = reverse(name, args=[_PK_PLACEHOLDER, *args]).split(str(_PK_PLACEHOLDER))
    return lambda pk: f"{head}{pk}{tail}"


def lineage_tree(*, task: Task, show_hidden: bool = False) -> Lineage:
    """The task's family as rows of a drawn tree, with the cost of the branch from the root to it and of the
    whole family. Three queries whatever the family's size: the family's links, its shown tasks, their first
    images.

    A hidden task stays in the tree, so what was made from it still hangs from it: for non-staff as a
    placeholder (no prompt, picture or link), for staff (`show_hidden`) marked with the reason. The costs count
    every task, hidden or not: credits spent are spent."""
    family = list(
        Task.objects.filter(team_id=task.team_id, root_id=task.root_id)
        .order_by("created_at", "pk")
        .values_list("pk", "parent_id", "credits")
    )
    parents = {pk: parent_id for pk, parent_id, _ in family}
    credits = {pk: spent for pk, _, spent in family}
    links = [(pk, parent_id) for pk, parent_id, _ in family]
    children = _children_of(links, parents)
    branch = _way_down(parents, task.pk)
    rows = _lines(task, parents, children)
    pks = [row.pk for row in rows if row.pk is not None]
    tasks = (
        Task.objects.filter(team_id=task.team_id)
        .select_related("created_by")
        .only(*_NODE_FIELDS, "created_by__username")
        .in_bulk(pks)
    )
    # The first image of each node (its thumbnail), and every image with a review state (its mark): one query.
    thumbs: dict[int, Image] = {}
    reviews: dict[int, list[dict]] = {}
    for image in (
        Image.objects.filter(Q(index=1) | ~Q(review_state=""), task_id__in=pks, task__team_id=task.team_id)
        .only(
            "pk",
            "task_id",
            "index",
            "width",
            "height",
            "thumbnail",
            "mirrored_at",
            "review_state",
            "hidden_at",
            "hidden_reason",
        )
        .order_by("task_id", "index")
    ):
        if image.index == 1:
            thumbs[image.task_id] = image
        if image.review_state and (show_hidden or image.hidden_at is None):
            state = Image.Review(image.review_state)
            mark = {"index": image.index, "state": state.value, "glyph": REVIEW_GLYPHS[state], "word": state.label}
            reviews.setdefault(image.task_id, []).append(mark)
    # The way down to each approved image is drawn: its node and every node above it.
    approved_path = {
        pk
        for approved in reviews
        if any(mark["state"] == Image.Review.APPROVED for mark in reviews[approved])
        for pk in _way_down(parents, approved)
    }
    on_branch = set(branch)
    task_url, thumb_url = _url_for_pk("generations:task_detail"), _url_for_pk("generations:image_file", "thumb")
    for row in rows:
        if row.pk is not None:
            row.task, row.thumb = tasks[row.pk], thumbs.get(row.pk)
            row.current, row.on_branch = row.pk == task.pk, row.pk in on_branch
            if row.task.is_hidden and not show_hidden:
                row.task, row.thumb, row.placeholder = None, None, True
                continue
            if row.thumb is not None and row.thumb.is_hidden:
                if not show_hidden:
                    row.thumb = None
                else:
                    row.hidden_reason = f"Image 1: {row.thumb.hidden_reason}"
            if row.task.is_hidden:
                row.hidden_reason = row.task.hidden_reason
            row.reviews, row.approved_path = reviews.get(row.pk, []), row.pk in approved_path
            row.url = task_url(row.pk)
            if row.thumb is not None and row.thumb.thumbnail:
                row.thumb_url = thumb_url(row.thumb.pk)
            when = timezone.localtime(row.task.created_at)
            row.when, row.when_iso = f"{when:%b} {when.day}, {when:%H:%M}", when.isoformat()
    return Lineage(
        rows=tree_nest(rows),
        family_size=len(family),
        family_credits=sum(credits.values()),
        branch=branch,
        branch_credits=sum(credits.get(pk, 0) for pk in branch),
        children=[
            tasks[pk] for pk in children.get(task.pk, []) if pk in tasks and (show_hidden or not tasks[pk].is_hidden)
        ],
    )


# --- File names ---------------------------------------------------------------------------------------------


def download_name(*, text: str, suffix: str, extension: str) -> str:
    """A file name from a prompt's first words: ASCII, accents folded ("cà phê" -> "ca-phe"), length-capped,
    then the suffix that makes it unique ("a-quiet-harbour-12-3.png")."""
    words = slugify(normalize_for_search(text)).split("-")[:NAME_MAX_WORDS]
    stem = "-".join(words)[:NAME_MAX_LENGTH].strip("-") or "mjstudio"
    extension = re.sub(r"[^a-z0-9]", "", extension.lower())[:5] or "bin"
    return f"{stem}-{suffix}.{extension}"


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1] if "." in name.rsplit("/", 1)[-1] else "bin"


# --- Provenance bundles -------------------------------------------------------------------------------------
# Only the metadata (a small dict per task and per image) is held while a bundle streams; model instances are
# dropped as they are read, and each file is read from storage in chunks when the zip reaches it.


def _iso(moment: object) -> str | None:
    return moment.isoformat() if moment else None


def _hidden_mark(item: Task | Image) -> dict:
    """In a staff member's bundle (the only ones that hold hidden items): why a moderator hid it."""
    return {"hidden_reason": item.hidden_reason} if item.hidden_at is not None else {}


def _task_entry(task: Task, images: Iterable[Image]) -> dict:
    """metadata.json's record of a task and of its images in the bundle ("file": its name in the zip)."""
    return {
        "id": task.pk,
        "parent_id": task.parent_id,
        "root_id": task.root_id,
        "action": task.action,
        "option": task.option,
        "parent_index": task.parent_index,
        "label": task.describe(),
        "prompt": task.prompt.text,
        "mode": task.prompt.mode,
        "aspect_ratio": task.prompt.aspect_ratio,
        "author": task.created_by.get_username(),
        "prompt_author": task.prompt.author.get_username(),
        "created_at": _iso(task.created_at),
        "submitted_at": _iso(task.submitted_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
        "credits": task.credits,
        "apiframe_task_id": task.apiframe_task_id,
        "status": task.status,
        "error": task.error,
        **_hidden_mark(task),
        "images": [
            {
                "id": image.pk,
                "index": image.index,
                "file": f"images/{task.pk}-{image.index}.{_extension(image.file.name)}" if image.file else None,
                "width": image.width,
                "height": image.height,
                "size_bytes": image.size_bytes,
                "sha256": image.content_hash,
                "mirrored_at": _iso(image.mirrored_at),
                **_hidden_mark(image),
            }
            for image in images
        ],
    }


def _file_chunks(name: str, image_id: int, missing: set[int]) -> Iterator[bytes]:
    """A stored original, read in chunks when the zip reaches it. A file gone from storage becomes an empty
    entry (noted in metadata.json, written after the images) instead of a broken download."""
    try:
        chunks = media.file_chunks(name, size=CHUNK_SIZE)
    except OSError as exc:
        logger.error("export: image %s: stored file %s is missing: %s", image_id, name, exc)
        missing.add(image_id)
        return
    yield from chunks


def _bundle(*, team: Team, kind: str, title: str, entries: list[dict], stored: dict[int, str], extra: dict):
    """The zip: images/<task>-<index>.<ext> from storage (`stored`: image id -> storage name), then
    metadata.json and index.html, both written when the zip reaches them, so they leave out unreadable files."""
    stream = ZipStream(compress_type=ZIP_STORED)  # images are compressed already
    missing: set[int] = set()
    for entry in entries:
        for image in entry["images"]:
            if image["file"]:
                stream.add(_file_chunks(stored[image["id"]], image["id"], missing), image["file"])

    def without_missing(entry: dict) -> dict:
        for image in entry["images"]:
            if image["id"] in missing:
                image["file"] = None
        return entry

    def metadata_json() -> Iterator[bytes]:
        """One task at a time: the whole document is never held as one string."""
        head = {"format": BUNDLE_FORMAT, "kind": kind, "title": title, "team": team.name}
        head.update(exported_at=timezone.now().isoformat(), **extra, tasks=[])
        before, after = json.dumps(head, indent=2, ensure_ascii=False).rsplit("[]", 1)
        yield f"{before}[\n".encode()
        for n, entry in enumerate(entries):
            separator = ",\n" if n else ""
            yield f"{separator}    {json.dumps(without_missing(entry), ensure_ascii=False)}".encode()
        yield f"\n  ]{after}".encode()

    def index_html() -> Iterator[bytes]:
        yield _index_html(title=title, entries=[without_missing(e) for e in entries]).encode()

    stream.add(metadata_json(), "metadata.json", compress_type=ZIP_DEFLATED)
    stream.add(index_html(), "index.html", compress_type=ZIP_DEFLATED)
    return stream


def _index_html(*, title: str, entries: list[dict]) -> str:
    """The offline page: the tree drawn as nested lists, each node with its images from the zip."""
    by_pk = {entry["id"]: entry for entry in entries}
    parents = {pk: entry["parent_id"] for pk, entry in by_pk.items()}
    children = _children_of(parents.items(), parents)
    rows = []
    for root in children.get(None, []):
        for pk, depth in _depth_first(children, root, 0):
            entry = by_pk[pk]
            outside = entry["parent_id"] is not None and entry["parent_id"] not in by_pk
            files = [image for image in entry["images"] if image["file"]]
            rows.append(TreeRow(depth=depth, pk=pk, files=files, parent_outside=outside, entry=entry))
    for row in rows:
        row.when = row.entry["created_at"][:16].replace("T", " ")
        row.status = Task.Status(row.entry["status"]).label
    context = {
        "title": title,
        "rows": tree_nest(rows, max_depth=BUNDLE_MAX_DEPTH),
        "task_count": len(entries),
        "image_count": sum(len(row.files) for row in rows),
        "credits": sum(entry["credits"] for entry in entries),
        "exported_at": timezone.now(),
    }
    return render_to_string("generations/export_index.html", context)


def _images_by_task(images: Iterable[Image]) -> dict[int, list[Image]]:
    by_task: dict[int, list[Image]] = {}
    for image in images:
        by_task.setdefault(image.task_id, []).append(image)
    return by_task


_BUNDLE_IMAGE_FIELDS = (
    "pk",
    "task_id",
    "index",
    "file",
    "width",
    "height",
    "size_bytes",
    "content_hash",
    "mirrored_at",
    "hidden_at",
    "hidden_reason",
)


def _entries(tasks: QuerySet[Task], images: dict[int, list[Image]], stored: dict[int, str]) -> list[dict]:
    entries = []
    for task in tasks.select_related("prompt__author", "created_by").order_by("created_at", "pk").iterator(500):
        mine = images.pop(task.pk, [])
        stored.update((image.pk, image.file.name) for image in mine if image.file)
        entries.append(_task_entry(task, mine))
    return entries


def bundle_for_lineage(*, task: Task, show_hidden: bool = False) -> ZipStream:
    """The whole family of the task's root: every task and every saved image. Two queries.
    Hidden tasks and images are left out (their children say they were made from a task not in the bundle),
    unless `show_hidden` (staff), which keeps them, marked with the reason."""
    visible = {} if show_hidden else {"hidden_at": None}
    images = _images_by_task(
        Image.objects.filter(task__team_id=task.team_id, task__root_id=task.root_id)
        .filter(**visible, **{f"task__{k}": v for k, v in visible.items()})
        .only(*_BUNDLE_IMAGE_FIELDS)
        .iterator(2000)
    )
    stored: dict[int, str] = {}
    family = Task.objects.filter(team_id=task.team_id, root_id=task.root_id, **visible)
    entries = _entries(family, images, stored)
    root = next((e for e in entries if e["id"] == task.root_id), None)
    title = f"Lineage of “{(root or {'prompt': task.prompt.text})['prompt'][:80]}”"
    return _bundle(
        team=task.team, kind="lineage", title=title, entries=entries, stored=stored, extra={"root_id": task.root_id}
    )


def _entries_on_the_way(
    *, team_id: int, images: dict[int, list[Image]], stored: dict[int, str], show_hidden: bool = False
) -> tuple[list[dict], dict[int, list[int]]]:
    """The records of the images' tasks (with those images) and of every task on the way from their roots to
    them (metadata only), hidden tasks left out unless `show_hidden`. Also returns each image task's way down,
    root first: three queries."""
    roots = set(
        Task.objects.filter(team_id=team_id, pk__in=images).exclude(root=None).values_list("root_id", flat=True)
    )
    links = dict(Task.objects.filter(team_id=team_id, root_id__in=roots).values_list("pk", "parent_id"))
    ways = {pk: _way_down(links, pk) if pk in links else [pk] for pk in images}
    wanted = {pk for way in ways.values() for pk in way}
    visible = {} if show_hidden else {"hidden_at": None}
    return _entries(Task.objects.filter(team_id=team_id, pk__in=wanted, **visible), images, stored), ways


def bundle_for_collection(*, collection: Collection, show_hidden: bool = False) -> ZipStream:
    """The collection's images with their tasks, and every task on the way from their roots to them (metadata
    only: their images are not in the collection), so the page shows how each image was made.
    Hidden images, images of hidden tasks and hidden tasks on the way are left out, unless `show_hidden`."""
    team_id = collection.team_id
    items = collection.items.filter(image__task__team_id=team_id)
    if not show_hidden:
        items = items.filter(image__hidden_at=None, image__task__hidden_at=None)
    items = [
        {
            "image_id": item.image_id,
            "task_id": item.image.task_id,
            "added_by": item.added_by.get_username(),
            "added_at": _iso(item.added_at),
            "image": item.image,
        }
        for item in items.select_related("image", "added_by").order_by("added_at", "pk")
    ]
    collected = _images_by_task(item.pop("image") for item in items)
    stored: dict[int, str] = {}
    entries, _ = _entries_on_the_way(team_id=team_id, images=collected, stored=stored, show_hidden=show_hidden)
    return _bundle(
        team=collection.team,
        kind="collection",
        title=f"Collection “{collection.name}”",
        entries=entries,
        stored=stored,
        extra={
            "collection": {
                "id": collection.pk,
                "name": collection.name,
                "created_by": collection.created_by.get_username(),
                "items": items,
            }
        },
    )


def bundle_for_approved(*, team: Team, show_hidden: bool = False) -> ZipStream:
    """The team's approved images, one lineage each: every approved image with its task, and every task on the way
    from its root to it (metadata only), as for a collection. metadata.json's `approved` lists each image with
    who approved it, when, and its lineage (task ids from the root down). Four queries. Hidden images and tasks
    are left out, unless `show_hidden`."""
    approved = Image.objects.filter(task__team_id=team.pk, review_state=Image.Review.APPROVED)
    if not show_hidden:
        approved = approved.filter(hidden_at=None, task__hidden_at=None)
    approved = list(
        approved.select_related("reviewed_by")
        .only(*_BUNDLE_IMAGE_FIELDS, "reviewed_at", "reviewed_by__username")
        .order_by("task__created_at", "task_id", "index")
    )
    items = [
        {
            "image_id": image.pk,
            "task_id": image.task_id,
            "index": image.index,
            "approved_by": image.reviewed_by.get_username() if image.reviewed_by else None,
            "approved_at": _iso(image.reviewed_at),
        }
        for image in approved
    ]
    stored: dict[int, str] = {}
    entries, ways = _entries_on_the_way(
        team_id=team.pk, images=_images_by_task(approved), stored=stored, show_hidden=show_hidden
    )
    del approved  # the records hold what the bundle needs
    for item in items:
        item["lineage"] = ways[item["task_id"]]
    return _bundle(
        team=team,
        kind="approved",
        title=f"Approved images of {team.name}",
        entries=entries,
        stored=stored,
        extra={"approved": items},
    )
