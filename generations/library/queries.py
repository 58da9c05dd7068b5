"""What the library shows: a team's images, newest first, filtered, searched, stacked, one page at a time.

A row is one image of a task, or the task itself while it has no image (in flight, failed, timed out: the
library hides nothing). Rows are ordered by position, (task.created_at DESC, task.id DESC, image.index ASC),
which is unique, so a keyset cursor ("after this position") pages through ties on time and through rows
deleted mid-scroll without skipping or repeating any.

Stacked (the default), each lineage (a root task and everything made from it) shows as one row: the first of
its rows that match the filters, that is, its newest work, with how many rows it holds (one aggregate query
per page). Every page is a fixed number of queries, whatever its size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

from django.db import connection
from django.db.models import (
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.functions import Coalesce, Substr
from django.urls import reverse

from generations.library.search import SearchTerms, matching_prompts, matching_tasks
from generations.models import CollectionItem, Favourite, Image, Prompt, Task

PAGE_SIZE = 24
# Back to a long scroll renders everything from the top down to where the reader was, at most this much.
MAX_WINDOW = 240
# An expanded stack shows at most this many of its images (a lineage is rarely longer).
MAX_STACK = 200
# A filter matching at most this many prompts, tasks or images leads the query with their ids (see Library).
# Past it, walking the newest tasks finds a page sooner than sorting every match.
FEW_PROMPTS = 200
FEW_TASKS = 200
FEW_IMAGES = 500
# PostgreSQL checks each row of a walk at more cost than SQLite, and sorts a list quicker: measured at 2,000
# starred images among 370,000, its walk took 75 ms and its list 15 ms (SQLite: 8 ms and 10 ms).
POSTGRES_LIST_FACTOR = 4
PROMPT_CHARS = 240  # of a prompt's text, in a tile's caption
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Order of actions in a stack's label ("Pan, Vary x6").
ACTION_ORDER = [a.value for a in Task.Action]


@dataclass(frozen=True)
class Position:
    """Where a row sits in the listing; its text form is the `cursor` and `until` of library URLs."""

    created_at: datetime
    task_id: int
    index: int  # 0 for a task without images

    def encode(self) -> str:
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.task_id}.{self.index}"

    @classmethod
    def decode(cls, value: str) -> Position:
        """Raises ValueError for anything that is not an encoded position."""
        parts = value.split(".")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
            raise ValueError(value)
        micros, task_id, index = (int(p) for p in parts)
        try:
            created_at = EPOCH + timedelta(microseconds=micros)
        except OverflowError as exc:
            raise ValueError(value) from exc
        if index > 4:
            raise ValueError(value)
        return cls(created_at=created_at, task_id=task_id, index=index)

    def after(self) -> Q:
        """Rows after this one. The redundant bound on created_at lets the index seek to it."""
        c, t, i = self.created_at, self.task_id, self.index
        return Q(created_at__lte=c) & (
            Q(created_at__lt=c) | Q(created_at=c, pk__lt=t) | Q(created_at=c, pk=t, image_index__gt=i)
        )

    def up_to(self) -> Q:
        """Rows before this one, and this one."""
        c, t, i = self.created_at, self.task_id, self.index
        return Q(created_at__gte=c) & (
            Q(created_at__gt=c) | Q(created_at=c, pk__gt=t) | Q(created_at=c, pk=t, image_index__lte=i)
        )


def _before_outer_row() -> Q:
    """Rows placed before the outer query's row (newer): the stack subquery's condition."""
    c, t, i = OuterRef("created_at"), OuterRef("pk"), OuterRef("image_index")
    return Q(created_at__gte=c) & (
        Q(created_at__gt=c) | Q(created_at=c, pk__gt=t) | Q(created_at=c, pk=t, image_index__lt=i)
    )


@dataclass(frozen=True)
class Filters:
    """What the reader asked for (generations/library/forms.py turns the URL into this)."""

    terms: SearchTerms = field(default_factory=lambda: SearchTerms(terms=()))
    author_id: int | None = None
    action: str = ""
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None
    mode: str = ""
    aspect_ratio: str = ""
    favourites: bool = False
    review: str | None = None  # an image's review state ("" for not reviewed); None: any
    collection_id: int | None = None
    root_id: int | None = None
    stacked: bool = True


@cache
def _url_prefixes() -> dict[str, str]:
    """URL shapes reversed once per process (a page has hundreds of links; reversing each costs)."""
    return {
        "task": reverse("generations:task_detail", args=[0]).replace("/0/", "/{}/"),
        "actions": reverse("generations:task_image_actions", args=[0]).replace("/0/", "/{}/"),
        "thumb": reverse("generations:image_file", args=[0, "thumb"]).replace("/0/", "/{}/"),
        "favourite": reverse("generations:image_favourite", args=[0]).replace("/0/", "/{}/"),
        "stack": reverse("generations:library_stack", args=[0]).replace("/0/", "/{}/"),
    }


@lru_cache(maxsize=256)
def _describe(action: str, option: str, parent_index: int | None) -> str:
    """Task.describe() for a row (a handful of distinct values: built once each, not a model per tile)."""
    return Task(action=action, option=option, parent_index=parent_index).describe()


@dataclass(slots=True)
class Tile:
    """One row as a page shows it."""

    task_id: int
    image_id: int | None
    index: int
    created_at: datetime
    status: str
    error: str
    action: str
    option: str
    parent_index: int | None
    root_id: int
    prompt: str
    author: str
    aspect_ratio: str
    width: int | None
    height: int | None
    mirrored: bool
    mirror_gave_up: bool
    favourite: bool
    # Set only on what staff are shown: a hidden task's (or image's) reason; non-staff never get such a row.
    hidden_reason: str = ""
    review: str = ""
    stack_count: int = 1
    stack_actions: list[str] = field(default_factory=list)

    @property
    def position(self) -> Position:
        return Position(created_at=self.created_at, task_id=self.task_id, index=self.index)

    @property
    def dom_id(self) -> str:
        return f"i{self.image_id}" if self.image_id else f"k{self.task_id}"

    @property
    def task_url(self) -> str:
        """The task's page, at this image (its actions are there)."""
        url = _url_prefixes()["task"].format(self.task_id)
        return f"{url}#task-{self.task_id}-image-{self.index}" if self.image_id else url

    @property
    def actions_url(self) -> str:
        """The image's own action menu (Vary, Upscale, Pan, Zoom), once it is saved; else the task's page."""
        if self.shows_image and self.status == Task.Status.FINISHED:
            return _url_prefixes()["actions"].format(self.task_id) + f"?index={self.index}"
        return self.task_url

    @property
    def thumb_url(self) -> str:
        return _url_prefixes()["thumb"].format(self.image_id)

    @property
    def favourite_url(self) -> str:
        return _url_prefixes()["favourite"].format(self.image_id)

    @property
    def stack_url(self) -> str:
        return _url_prefixes()["stack"].format(self.root_id)

    @property
    def shows_image(self) -> bool:
        return self.image_id is not None and self.mirrored

    @property
    def note(self) -> str:
        """What a tile without a picture says instead."""
        if self.image_id is not None:
            return "Could not save this image" if self.mirror_gave_up else "Saving…"
        match self.status:
            case Task.Status.FAILED:
                return f"Failed: {self.error}" if self.error else "Failed"
            case Task.Status.TIMED_OUT:
                return "Timed out"
            case Task.Status.PROCESSING:
                return "Processing…"
        return "Waiting…"

    @property
    def describe(self) -> str:
        return _describe(self.action, self.option, self.parent_index)

    @property
    def day(self) -> str:
        """ "Nov 28": strftime, not the date filter, which costs more than the rest of a tile."""
        return f"{self.created_at:%b} {self.created_at.day}"

    @property
    def is_stack(self) -> bool:
        return self.stack_count > 1

    @property
    def stack_actions_label(self) -> str:
        """ "Pan, Vary": what was done in the lineage beyond imagining."""
        return ", ".join(Task.Action(a).label for a in self.stack_actions if a != Task.Action.IMAGINE)

    @property
    def stack_label(self) -> str:
        """ "Pan, Vary x6" (with the times sign): what was done in the lineage, and how many images it holds."""
        actions = self.stack_actions_label
        return f"{actions} ×{self.stack_count}" if actions else f"×{self.stack_count}"

    @property
    def ratio_class(self) -> str:
        """The tile's shape as one of the stylesheet's classes, r40 (2:5) to r250 (5:2) in steps of 0.05: a
        class, not an inline style, which the CSP forbids."""
        if self.width and self.height:
            ratio = self.width / self.height
        else:
            w, _, h = self.aspect_ratio.partition(":")
            ratio = int(w) / int(h) if w.isdigit() and h.isdigit() and int(h) else 1
        return f"r{max(40, min(250, round(ratio * 20) * 5))}"


@dataclass
class Page:
    tiles: list[Tile]
    has_more: bool

    @property
    def last(self) -> Position | None:
        return self.tiles[-1].position if self.tiles else None


_VALUES = (
    "pk",
    "created_at",
    "status",
    "error",
    "action",
    "option",
    "parent_index",
    "root_id",
    "prompt_head",
    "prompt__aspect_ratio",
    "created_by__username",
    "image_id",
    "image_index",
    "image_width",
    "image_height",
    "image_mirrored_at",
    "image_attempts",
    "favourite",
    "hidden_reason",
    "image_hidden_reason",
    "image_review_state",
)


def _unindexed(name: str) -> ExpressionWrapper | F:
    """On SQLite, a column + 0: the same value, which no index serves, so that SQLite cannot pick that
    column's index to walk in time order, and starts from the short list or the lineage it is given instead
    (see Library). PostgreSQL gets the column itself: its planner, which has statistics, chooses well, and
    would misjudge how many rows `+ 0` keeps."""
    if connection.vendor != "sqlite":
        return F(name)
    return ExpressionWrapper(F(name) + 0, output_field=IntegerField())


def _unindexed_text(name: str) -> Func | F:
    """_unindexed for text: `+column` on SQLite (a no-op that no index serves), so that a common review state is
    found by walking the newest tasks, not by sorting every image in that state; a rare one leads with its list."""
    if connection.vendor != "sqlite":
        return F(name)
    return Func(F(name), template="+%(expressions)s", output_field=CharField())


class Library:
    """The library of one team as one member sees it (favourites are per member), under some filters.

    Most filters are checked row by row while walking the team's newest tasks (an index gives them in
    order), which finds a page after a few rows when matches are common. A filter that may match only a
    handful (a search, an aspect ratio, favourites, a collection, a status other than finished) is first
    asked for its matches, once, with a limit: if they are few, the query starts from them (their ids, then
    a small sort), since a walk through 100,000 tasks for three matches would take a tenth of a second.
    So building a Library may cost up to three small queries; a page costs the same whatever its size.
    """

    def __init__(self, *, team_id: int, user_id: int, filters: Filters, show_hidden: bool = False) -> None:
        self.team_id, self.user_id, self.filters = team_id, user_id, filters
        self.show_hidden = show_hidden  # staff: hidden tasks and images too (marked); for everyone else, gone
        f = filters
        self.condition = Q()  # on tasks, checked on every row
        self.prompt_condition = Q()  # the part about the prompt: the same on every row of a lineage
        # Short lists of ids that lead the listing query (never the stack check, which starts from a lineage).
        # Each is the same as a condition above, so it changes how rows are found, never which.
        self.lists = Q()
        self._select_prompts()
        if f.action:
            self.condition &= Q(action=f.action)
        if f.statuses:
            self._select_statuses()
        if f.created_from is not None:
            self.condition &= Q(created_at__gte=f.created_from)
        if f.created_before is not None:
            self.condition &= Q(created_at__lt=f.created_before)
        if f.root_id is not None:
            self.condition &= Q(root_id=f.root_id)
        if f.favourites or f.collection_id:
            self._select_images()
        if f.review is not None:
            self._select_review()

    def _select_prompts(self) -> None:
        f = self.filters
        if not (f.terms or f.mode or f.aspect_ratio):
            return
        on_prompt = Q(mode=f.mode) if f.mode else Q()
        if f.aspect_ratio:
            on_prompt &= Q(aspect_ratio=f.aspect_ratio)
        prompts = Prompt.objects.filter(matching_prompts(f.terms), on_prompt, team_id=self.team_id)
        self.prompt_condition = matching_tasks(f.terms) & Q(
            **{f"prompt__{k}": v for k, v in (("mode", f.mode), ("aspect_ratio", f.aspect_ratio)) if v}
        )
        few = list(prompts.values_list("id", flat=True)[: FEW_PROMPTS + 1])
        if len(few) <= FEW_PROMPTS:
            # The list says it all: no LIKE on each row (and no join to the prompt for it).
            self.lists &= Q(prompt_id__in=few)
            self.prompt_condition = Q(prompt_id__in=few)

    def _select_statuses(self) -> None:
        statuses = self.filters.statuses
        self.condition &= Q(status__in=statuses)
        if Task.Status.FINISHED in statuses:  # most tasks: walk
            return
        tasks = Task.objects.filter(team_id=self.team_id, status__in=statuses).values_list("id", flat=True)
        few = list(tasks[: FEW_TASKS + 1])
        if len(few) <= FEW_TASKS:
            self.lists &= Q(pk__in=few)

    def _select_images(self) -> None:
        f = self.filters
        if f.favourites:
            named = Favourite.objects.filter(user_id=self.user_id)
            if f.collection_id:
                named = named.filter(image__collection_items__collection_id=f.collection_id)
        else:
            named = CollectionItem.objects.filter(collection_id=f.collection_id)
        named = named.values_list("image_id", flat=True)
        self.condition &= Q(image_id__in=named)
        limit = FEW_IMAGES * (POSTGRES_LIST_FACTOR if connection.vendor == "postgresql" else 1)
        few = list(named[: limit + 1])
        if len(few) <= limit:
            self.lists &= Q(images__id__in=few)

    def _select_review(self) -> None:
        """Images in one review state. Most images are not reviewed: for those, walk. A state set by hand is
        usually rarer: when few images of the team are in it, their ids lead (index image_review_state)."""
        state = self.filters.review
        self.condition &= Q(image_review=state)
        if state == Image.Review.NONE:
            return
        reviewed = Image.objects.filter(review_state=state, task__team_id=self.team_id).values_list("id", flat=True)
        limit = FEW_IMAGES * (POSTGRES_LIST_FACTOR if connection.vendor == "postgresql" else 1)
        few = list(reviewed[: limit + 1])
        if len(few) <= limit:
            self.lists &= Q(images__id__in=few)

    def _rows(self, *, by_root: bool = False) -> QuerySet:
        """Every matching row (a task and one of its images, or the task alone), unordered.

        Images come through one join shared by these annotations: a LEFT JOIN (a task without images is a
        row too), or an inner join when a list of images leads. With a list leading, or `by_root` (the rows
        of given lineages: the stack check and the counts), the team and author are compared as `+ 0`, so
        that SQLite starts from the list or from the lineage (index on root_id), not from the team's or the
        author's index in time order. `by_root` leaves out the prompt's conditions: a lineage has one prompt.
        """
        leading = self.lists and not by_root
        rows = Task.objects.filter(self.lists) if leading else Task.objects.all()
        rows = rows.alias(team_key=_unindexed("team_id"), author_key=_unindexed("created_by_id"))
        rows = rows.annotate(image_id=F("images__id"), image_index=Coalesce("images__index", 0))
        if not self.show_hidden:
            # No hidden task, no image of one, no hidden image (a task without images has a NULL here too).
            # Checked on rows the listing reads anyway: at 100,000 tasks with 300 of them or their images hidden, a
            # member's page costs what staff's does, within a millisecond (lists of hidden ids cost 3-5 ms more).
            rows = rows.alias(image_hidden_at=F("images__hidden_at")).filter(hidden_at=None, image_hidden_at=None)
        if self.filters.review is not None:
            rows = rows.alias(image_review=_unindexed_text("images__review_state"))
        unindexed = bool(leading) or by_root
        who = Q(team_key=self.team_id) if unindexed else Q(team_id=self.team_id)
        if self.filters.author_id is not None:
            who &= Q(author_key=self.filters.author_id) if unindexed else Q(created_by_id=self.filters.author_id)
        # A finished task shows its images; one whose images were all deleted has nothing left to show.
        shown = Q(image_id__isnull=False) | ~Q(status=Task.Status.FINISHED)
        rows = rows.filter(who, shown, self.condition)
        return rows if by_root else rows.filter(self.prompt_condition)

    def _listed(self) -> QuerySet:
        rows = self._rows()
        if self.filters.stacked:
            # One row per lineage: a row is listed only if no matching row of its lineage comes before it.
            earlier = self._rows(by_root=True).filter(_before_outer_row(), root_id=OuterRef("root_id"))
            rows = rows.filter(~Exists(earlier))
        return rows

    def page(self, *, after: Position | None = None, until: Position | None = None, limit: int | None = None) -> Page:
        """The rows after `after` (from the top without it): `limit` of them (PAGE_SIZE), or with `until`
        every row up to and including it (at most MAX_WINDOW)."""
        limit = limit or PAGE_SIZE
        rows = self._listed()
        if after is not None:
            rows = rows.filter(after.after())
        if until is not None:
            rows, limit = rows.filter(until.up_to()), MAX_WINDOW
        tiles = self._tiles(rows, limit=limit + 1)
        page = Page(tiles=tiles[:limit], has_more=len(tiles) > limit)
        if self.filters.stacked:
            self._count_stacks(page.tiles)
        return page

    def stack(self, *, root_id: int) -> list[Tile]:
        """Every matching row of one lineage (an opened stack), in listing order."""
        return self._tiles(self._rows().filter(root_id=root_id), limit=MAX_STACK)

    def cover(self, *, root_id: int) -> Tile | None:
        """The row a folded stack shows (its first matching one), with its count."""
        tiles = self._tiles(self._rows().filter(root_id=root_id), limit=1)
        self._count_stacks(tiles)
        return tiles[0] if tiles else None

    def _tiles(self, rows: QuerySet, *, limit: int) -> list[Tile]:
        favourite = Favourite.objects.filter(user_id=self.user_id, image_id=OuterRef("image_id"))
        rows = rows.annotate(
            prompt_head=Substr("prompt__text", 1, PROMPT_CHARS),
            image_width=F("images__width"),
            image_height=F("images__height"),
            image_mirrored_at=F("images__mirrored_at"),
            image_attempts=F("images__mirror_attempts"),
            image_hidden_reason=F("images__hidden_reason"),
            favourite=Exists(favourite),
            image_review_state=F("images__review_state"),
        )
        rows = rows.order_by("-created_at", "-pk", "image_index").values(*_VALUES)[:limit]
        return [
            Tile(
                task_id=row["pk"],
                image_id=row["image_id"],
                index=row["image_index"],
                created_at=row["created_at"],
                status=row["status"],
                error=row["error"],
                action=row["action"],
                option=row["option"],
                parent_index=row["parent_index"],
                root_id=row["root_id"] or row["pk"],
                prompt=row["prompt_head"],
                author=row["created_by__username"],
                aspect_ratio=row["prompt__aspect_ratio"],
                width=row["image_width"],
                height=row["image_height"],
                mirrored=row["image_mirrored_at"] is not None,
                mirror_gave_up=row["image_mirrored_at"] is None
                and (row["image_attempts"] or 0) >= Image.MIRROR_MAX_ATTEMPTS,
                favourite=row["favourite"],
                hidden_reason=row["hidden_reason"] or row["image_hidden_reason"] or "",
                review=row["image_review_state"] or "",
            )
            for row in rows
        ]

    def _count_stacks(self, tiles: list[Tile]) -> None:
        """How many matching rows each tile's lineage holds, and which actions made them: one query."""
        if not tiles:
            return
        counts = (
            self._rows(by_root=True)
            .filter(root_id__in={t.root_id for t in tiles})
            .order_by()
            .values("root_id", "action")
            .annotate(rows=Count("*"))
        )
        per_root: dict[int, dict[str, int]] = defaultdict(dict)
        for row in counts:
            per_root[row["root_id"]][row["action"]] = row["rows"]
        for tile in tiles:
            actions = per_root.get(tile.root_id, {})
            tile.stack_count = sum(actions.values()) or 1
            tile.stack_actions = sorted(actions, key=ACTION_ORDER.index)
