"""A task and its images: acting on an image, retrying, the task page with its lineage, the image files."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from itertools import islice

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from generations import actions
from generations.forms import ActionForm
from generations.models import Image, Task
from generations.services import limits, submitting
from generations.views.studio import render_new_card

logger = logging.getLogger(__name__)


def _get_task_for_user(request: HttpRequest, pk: int) -> Task:
    """A task of the user's current team, or 404: another team's task does not exist for them."""
    return get_object_or_404(Task.objects.for_cards(), pk=pk, team=request.team)


def _refused(
    request: HttpRequest, task: Task, message: str, *, index: str | None = None, retry_after: int | None = None
) -> HttpResponse:
    """An action that sends nothing: its message on the card (and in the image's menu), or as a flash."""
    if request.htmx:
        context = {"task": task, "message": message, "index": index}
        response = render(request, "generations/studio.html#action-error", context, status=422)
    else:
        messages.error(request, message)
        response = redirect("generations:studio")
    if retry_after is not None:  # over a limit: when to try again, for machines
        response["Retry-After"] = str(retry_after)
    return response


@require_GET
@never_cache  # its form carries an idempotency key: a page restored by Back must not reuse it
def task_image_actions(request: HttpRequest, pk: int) -> HttpResponse:
    """One image's action menu on a page of its own: where an image's Actions button leads without JS
    (with JS, the studio fills in its one menu instead)."""
    task = _get_task_for_user(request, pk)
    index = request.GET.get("index", "")
    image = next((i for i in task.images.all() if str(i.index) == index), None)
    if image is None or not task.images_ready:
        raise Http404("This task has no such image ready to act on.")
    kind = actions.GRID if task.is_grid else actions.UPSCALE
    context = {"task": task, "image": image, "kind": kind, "team": task.team}
    return render(request, "generations/image_actions.html", context)


@require_POST
def task_act(request: HttpRequest, pk: int) -> HttpResponse:
    parent = _get_task_for_user(request, pk)
    form = ActionForm(request.POST, parent=parent)
    if not form.is_valid():
        message = " ".join(e for errors in form.errors.values() for e in errors)
        index = request.POST.get("index", "")  # to show the message in that image's menu, if it is one
        return _refused(request, parent, message, index=index if index in ("1", "2", "3", "4") else None)
    action, option, index = (form.cleaned_data[k] for k in ("task_action", "task_option", "index"))
    try:
        task, _ = submitting.task_create_child(
            parent=parent,
            user=request.user,
            action=action,
            option=option,
            index=index,
            # One key per menu: each distinct button makes its own task, a repeated click (or POST) does not.
            idempotency_key=uuid.uuid5(form.cleaned_data["idempotency_key"], f"{action}:{option}:{index}"),
        )
    except limits.SubmissionRefused as refused:
        menu = str(index) if index else None
        return _refused(request, parent, refused.message, index=menu, retry_after=refused.retry_after)
    if not request.htmx:
        return redirect("generations:studio")
    return render_new_card(request, task, {"key_task": parent, "key_for": index or "reroll"})


@require_POST
def task_retry(request: HttpRequest, pk: int) -> HttpResponse:
    failed = _get_task_for_user(request, pk)
    try:
        key = uuid.UUID(request.POST.get("idempotency_key", ""))
    except ValueError:
        key = None
    if key is None:
        return _refused(request, failed, "This page is out of date: reload it and try again.")
    if not failed.can_retry:
        return _refused(request, failed, "Only a failed or timed-out task can be retried.")
    try:
        # Per failed task: one key sent with two Retry buttons makes two retries, never returns the other one.
        task, _ = submitting.task_retry(
            task=failed, user=request.user, idempotency_key=uuid.uuid5(key, f"retry:{failed.pk}")
        )
    except limits.SubmissionRefused as refused:
        return _refused(request, failed, refused.message, retry_after=refused.retry_after)
    if not request.htmx:
        return redirect("generations:studio")
    return render_new_card(request, task, {"key_task": failed, "key_for": "retry"})


# A task page lists at most this many lines of its lineage. A bigger family shows the way down from the root to
# this task (its first step and the last ones, when it is long) and what was made from this task, then "+N more".
LINEAGE_MAX_LINES = 100
LINEAGE_MAX_PATH = 10
LINEAGE_MAX_INDENT = 5


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


def _lineage_lines(task: Task) -> list[dict]:
    """The lines of a task page's lineage, in two queries whatever the family's size: a task line is
    {"node", "depth"}, a line for what is left out {"more", "depth", "on_the_way"}."""
    family = list(
        Task.objects.filter(team_id=task.team_id, root_id=task.root_id)
        .order_by("created_at", "pk")
        .values_list("pk", "parent_id")
    )
    parents = dict(family)
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in family:
        children.setdefault(parent_id if parent_id in parents else None, []).append(pk)
    lines: list[dict] = []
    if len(family) <= LINEAGE_MAX_LINES:
        for root in children.get(None, []):
            lines += ({"pk": pk, "depth": depth} for pk, depth in _depth_first(children, root, 0))
    else:
        above = _way_down(parents, task.pk)[:-1]
        if len(above) > LINEAGE_MAX_PATH:
            skipped = len(above) - LINEAGE_MAX_PATH
            lines.append({"pk": above[0], "depth": 0})
            lines.append({"more": skipped, "depth": 1, "on_the_way": True})
            lines += ({"pk": pk, "depth": depth} for depth, pk in enumerate(above) if depth > skipped)
        else:
            lines += ({"pk": pk, "depth": depth} for depth, pk in enumerate(above))
        below = _depth_first(children, task.pk, len(above))
        lines += ({"pk": pk, "depth": depth} for pk, depth in islice(below, LINEAGE_MAX_LINES - len(lines)))
        shown = sum(1 for line in lines if "pk" in line)
        if shown < len(family):
            lines.append({"more": len(family) - shown, "depth": 0, "on_the_way": False})
    nodes = (
        Task.objects.filter(team_id=task.team_id)
        .select_related("created_by")
        .in_bulk([line["pk"] for line in lines if "pk" in line])
    )
    for line in lines:
        line["depth"] = min(line["depth"], LINEAGE_MAX_INDENT)
        if "pk" in line:
            line["node"] = nodes[line.pop("pk")]
    return lines


@require_GET
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    task = _get_task_for_user(request, pk)
    context = {"task": task, "lineage": _lineage_lines(task), "team": task.team}
    return render(request, "generations/task_detail.html", context)


@require_GET
def image_file(request: HttpRequest, pk: int, variant: str) -> FileResponse:
    """Serve a mirrored image to members of its team only (files are never public)."""
    if variant not in ("thumb", "full"):
        raise Http404("No such image variant.")
    image = get_object_or_404(Image.objects.select_related("task"), pk=pk, task__team=request.team)
    field = image.thumbnail if variant == "thumb" else image.file
    if not field:
        raise Http404("This image has not been saved yet.")
    try:
        opened = field.open("rb")
    except OSError as exc:
        logger.error("image %s: stored file %s is missing: %s", image.pk, field.name, exc)
        raise Http404("This image file is missing.") from exc
    if request.GET.get("download") == "1":
        name = f"mjstudio-{image.task_id}-{image.index}.{field.name.rsplit('.', 1)[-1]}"
        response = FileResponse(opened, as_attachment=True, filename=name)
    else:
        response = FileResponse(opened)
    # Private: only team members may see it. Short-lived, so that hiding an image takes effect soon.
    response["Cache-Control"] = "private, max-age=3600"
    return response
