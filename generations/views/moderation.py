"""Flagging (any member, from the studio, the library and the task page) and the owners' moderation page: the review
queue of flagged images and tasks, the hidden ones, and the bulk acts on them (services/moderation.py writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import F, Prefetch, QuerySet, Value
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generations import params
from generations.forms import FlagForm, ModerationActForm
from generations.models import Flag, Image, Task, Team
from generations.services import moderation
from generations.views.roles import owner_required

QUEUE_PAGE_SIZE = 30
FLAGGED, HIDDEN = "flagged", "hidden"
FLAGGED_MESSAGE = "Flagged — the team's owners will review it."
# The bulk acts: the service, the verb for the message, and what "nothing to do" means for it.
ACTS = {
    "hide": (moderation.items_hide, "Hid", "already hidden"),
    "restore": (moderation.items_restore, "Restored", "not hidden"),
    "clear": (moderation.flags_clear, "Cleared the flags of", "not flagged"),
}


# --- Flagging -------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def image_flag(request: HttpRequest, pk: int) -> HttpResponse:
    """Flag one image of the team: a dialog with htmx, a page of its own without JS."""
    images = Image.objects.visible_to(request.user).select_related("task__prompt")
    image = get_object_or_404(images, pk=pk, task__team=request.team)
    return _flag(request, image=image, task=image.task, url=reverse("generations:image_flag", args=[image.pk]))


@require_http_methods(["GET", "POST"])
def task_flag(request: HttpRequest, pk: int) -> HttpResponse:
    """Flag a task of the team (the whole card: its prompt and every image)."""
    tasks = Task.objects.visible_to(request.user).select_related("prompt")
    task = get_object_or_404(tasks, pk=pk, team=request.team)
    return _flag(request, image=None, task=task, url=reverse("generations:task_flag", args=[task.pk]))


def _flag(request: HttpRequest, *, image: Image | None, task: Task, url: str) -> HttpResponse:
    form = FlagForm(request.POST if request.method == "POST" else None)
    context = {"form": form, "image": image, "task": task, "flag_url": url}
    if request.method == "GET":
        return render(request, "generations/flag.html#flag-form" if request.htmx else "generations/flag.html", context)
    if form.is_valid():
        try:
            moderation.flag_create(
                user=request.user,
                team=request.team,
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
                image=image,
                task=None if image else task,
            )
            message = FLAGGED_MESSAGE
        except moderation.FlagAlreadyOpen as already:
            message = str(already)
        except moderation.ModerationError as refused:
            form.add_error(None, str(refused))
            message = ""
        if message:
            if request.htmx:
                return render(request, "generations/flag.html#flag-done", {**context, "message": message})
            messages.success(request, message)
            return redirect("generations:task_detail", task.pk)
    template = "generations/flag.html#flag-form" if request.htmx else "generations/flag.html"
    return render(request, template, context, status=422)


# --- The moderation page ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One row of the moderation page: an image or a task, with what the owner needs to decide."""

    key: str  # "image:12" or "task:7": the checkbox's value
    kind: str
    item: Image | Task
    task: Task
    at: datetime  # flagged (the queue) or hidden (the hidden tab)
    flags: list[Flag]
    sees_hidden: bool  # staff: hidden pictures are shown to them (their files answer them)

    @property
    def thumb_image(self) -> Image | None:
        """The picture to show: the image, or the task's first saved one; none that is hidden, unless staff."""
        if self.task.hidden_at is not None and not self.sees_hidden:
            return None
        images = [self.item] if self.kind == "image" else self.task.images.all()
        return next((i for i in images if i.thumbnail and (i.hidden_at is None or self.sees_hidden)), None)


def _queue_rows(team: Team, *, show: str) -> QuerySet:
    """The page's rows as (kind, pk, at), images and tasks together: one query, oldest flag first (the queue) or
    last hidden first, read from the partial indexes of flagged (or hidden) rows, a few across every team."""
    field = "hidden_at" if show == HIDDEN else "flagged_at"
    # `team_id + 0`: the team's own index would walk its whole history; SQLite takes it over the partial index
    # when it can (it keeps no statistics to know better), PostgreSQL need not.
    only = {f"{field}__isnull": False, "team_key": team.pk}
    images = (
        Image.objects.alias(team_key=F("task__team_id") + 0)
        .filter(**only)
        .annotate(kind=Value("image"), at=F(field))
        .values_list("kind", "pk", "at")
        .order_by()  # the union orders
    )
    tasks = (
        Task.objects.alias(team_key=F("team_id") + 0)
        .filter(**only)
        .annotate(kind=Value("task"), at=F(field))
        .values_list("kind", "pk", "at")
        .order_by()
    )
    ordering = ("-at", "-pk") if show == HIDDEN else ("at", "pk")
    return images.union(tasks, all=True).order_by(*ordering)


def _queue_items(rows: list[tuple[str, int, datetime]], *, show: str, sees_hidden: bool) -> list[QueueItem]:
    """The rows' images and tasks with their flags, people and thumbnails: a fixed number of queries."""
    flags = Flag.objects.select_related("created_by").order_by("created_at", "pk")
    if show == FLAGGED:
        flags = flags.filter(resolved_at=None)
    with_flags = Prefetch("flags", queryset=flags, to_attr="shown_flags")
    image_ids = [pk for kind, pk, _ in rows if kind == "image"]
    task_ids = [pk for kind, pk, _ in rows if kind == "task"]
    images = {}
    if image_ids:
        related = ("task__prompt", "task__created_by", "hidden_by")
        images = Image.objects.select_related(*related).prefetch_related(with_flags).in_bulk(image_ids)
    tasks = {}
    if task_ids:
        related = ("prompt", "created_by", "hidden_by")
        tasks = Task.objects.select_related(*related).prefetch_related(with_flags, "images").in_bulk(task_ids)
    items = []
    for kind, pk, at in rows:
        item = images.get(pk) if kind == "image" else tasks.get(pk)
        if item is None:  # gone between the two queries
            continue
        task = item.task if kind == "image" else item
        items.append(QueueItem(f"{kind}:{pk}", kind, item, task, at, item.shown_flags, sees_hidden))
    return items


def _queue_context(request: HttpRequest, *, show: str, page_number: int, **extra: object) -> dict:
    paginator = Paginator(_queue_rows(request.team, show=show), QUEUE_PAGE_SIZE)
    page: Page = paginator.get_page(page_number)
    return {
        "team": request.team,
        "show": show,
        "page": page,
        "items": _queue_items(list(page.object_list), show=show, sees_hidden=request.user.is_staff),
        "selected": set(),
        **extra,
    }


def _show(value: str | None) -> str:
    return HIDDEN if value == HIDDEN else FLAGGED


@require_GET
@owner_required
def moderation_queue(request: HttpRequest) -> HttpResponse:
    """The team's review queue (flagged images and tasks, oldest flag first) and, as a tab, its hidden items."""
    show = _show(request.GET.get("show"))
    context = _queue_context(request, show=show, page_number=params.positive_int(request.GET.get("page")) or 1)
    return render(request, "generations/moderation.html", context)


def _selected_items(request: HttpRequest, keys: list[str]) -> tuple[list[int], list[int]]:
    """The image and task ids picked on the page, all of them the team's, or 404: another team's item, or a value
    that names nothing, does not exist here."""
    image_ids, task_ids = set(), set()
    for key in keys:
        kind, _, pk = key.partition(":")
        number = params.positive_int(pk)
        if kind not in ("image", "task") or number is None:
            raise Http404("No such item.")
        (image_ids if kind == "image" else task_ids).add(number)
    found = Image.objects.filter(pk__in=image_ids, task__team=request.team).count() if image_ids else 0
    found += Task.objects.filter(pk__in=task_ids, team=request.team).count() if task_ids else 0
    if found != len(image_ids) + len(task_ids):
        raise Http404("No such item in this team.")
    return sorted(image_ids), sorted(task_ids)


@require_POST
@owner_required
def moderation_act(request: HttpRequest) -> HttpResponse:
    """Hide, restore or clear the flags of the items picked on the moderation page, with a reason (audited)."""
    show = _show(request.POST.get("show"))
    page_number = params.positive_int(request.POST.get("page")) or 1
    keys = request.POST.getlist("items")
    image_ids, task_ids = _selected_items(request, keys)
    form = ModerationActForm(request.POST)
    reason = request.POST.get("reason", "")
    changed, error = 0, ""
    if not form.is_valid():
        error = " ".join(e for errors in form.errors.values() for e in errors)
    elif not keys:
        error = "Select at least one item."
    else:
        service, verb, already = ACTS[form.cleaned_data["act"]]
        reason = form.cleaned_data["reason"]
        try:
            with transaction.atomic():  # images and tasks together, or neither
                if image_ids:
                    images = Image.objects.filter(pk__in=image_ids, task__team=request.team)
                    changed += service(actor=request.user, items=images, reason=reason)
                if task_ids:
                    tasks = Task.objects.filter(pk__in=task_ids, team=request.team)
                    changed += service(actor=request.user, items=tasks, reason=reason)
        except moderation.ModerationError as refused:
            error = str(refused)
    if error:
        selected = set(keys)
        context = _queue_context(request, show=show, page_number=page_number, error=error, selected=selected)
        context["reason"] = reason
        template = "generations/moderation.html#queue" if request.htmx else "generations/moderation.html"
        return render(request, template, context, status=422)
    count = len(image_ids) + len(task_ids)
    if changed:
        status = f"{verb} {changed} item{'s' if changed != 1 else ''}."
    else:
        status = f"Nothing changed: {'that item is' if count == 1 else 'those items are'} {already}."
    if request.htmx:
        context = _queue_context(request, show=show, page_number=page_number, status=status)
        return render(request, "generations/moderation.html#queue", context)
    messages.success(request, status)
    query = urlencode({"show": show, **({"page": page_number} if page_number > 1 else {})})
    return redirect(f"{reverse('generations:moderation')}?{query}")
