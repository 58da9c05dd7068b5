"""A task and its images: acting on an image, retrying, the task page with its lineage, the image files."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from generations import actions
from generations.forms import ActionForm
from generations.models import Image, Task
from generations.services import blocklist, limits, media, provenance, submitting
from generations.views.studio import render_new_card

logger = logging.getLogger(__name__)


def _get_task_for_user(request: HttpRequest, pk: int) -> Task:
    """A task of the user's current team, or 404: another team's task does not exist for them, nor a hidden one
    for non-staff (whose images come without the hidden ones)."""
    tasks = Task.objects.visible_to(request.user).for_cards(user=request.user)
    return get_object_or_404(tasks, pk=pk, team=request.team)


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
    if image.is_hidden or task.is_hidden:  # only staff get this far: a hidden image is no parent, even for them
        raise Http404("A moderator hid this image: it can't be used for new work.")
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
    except submitting.ParentHidden as hidden:
        return _refused(request, parent, hidden.message, index=str(index) if index else None)
    except blocklist.PromptBlocked as blocked:  # a Reroll sends the prompt again
        return _refused(request, parent, blocked.message)
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
    except submitting.ParentHidden as hidden:
        return _refused(request, failed, hidden.message)
    except blocklist.PromptBlocked as blocked:
        return _refused(request, failed, blocked.message)
    if not request.htmx:
        return redirect("generations:studio")
    return render_new_card(request, task, {"key_task": failed, "key_for": "retry"})


def _duration_text(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _durations(task: Task) -> list[tuple[str, str]]:
    """How long each stage took: waiting in our queue, at Apiframe, rendering, and in all."""
    stages = [
        ("In our queue", task.created_at, task.submitted_at),
        ("Waiting at Apiframe", task.submitted_at, task.started_at),
        ("Rendering", task.started_at or task.submitted_at, task.finished_at),
        ("In all", task.created_at, task.finished_at),
    ]
    return [(label, _duration_text(end - start)) for label, start, end in stages if start and end and end >= start]


@require_GET
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    task = _get_task_for_user(request, pk)
    lineage = provenance.lineage_tree(task=task, show_hidden=request.user.is_staff)
    parent = task.parent if task.parent_id and task.parent.team_id == task.team_id else None
    parent_hidden = parent is not None and parent.is_hidden and not request.user.is_staff
    context = {
        "task": task,
        "team": request.team,
        "images": list(task.images.all()),
        "lineage": lineage,
        # A parent moved to another team is not shown (nor linked) here; a hidden one is named as such.
        "parent": None if parent_hidden else parent,
        "parent_hidden": parent_hidden,
        "durations": _durations(task),
        "reuse_query": urlencode(
            {"prompt": task.prompt.text, "mode": task.prompt.mode, "aspect_ratio": task.prompt.aspect_ratio}
        ),
        "remix_query": urlencode({"prompt": task.prompt.text, "remix": "1"}),
    }
    return render(request, "generations/task_detail.html", context)


@require_GET
def image_file(request: HttpRequest, pk: int, variant: str) -> HttpResponse:
    """Serve a mirrored image to members of its team only (files are never public): streamed from local storage,
    or, from a bucket, a redirect to a short-lived signed URL (web workers are not held by the download)."""
    if variant not in ("thumb", "full"):
        raise Http404("No such image variant.")
    # A hidden image, or one of a hidden task, answers 404 for non-staff, whatever the variant. Staff see any
    # team's images (the admin's thumbnails, hidden ones included); everyone else only their current team's.
    images = Image.objects.visible_to(request.user).select_related("task__prompt")
    image = get_object_or_404(images if request.user.is_staff else images.filter(task__team=request.team), pk=pk)
    field = image.thumbnail if variant == "thumb" else image.file
    if not field:
        raise Http404("This image has not been saved yet.")
    # Inline or downloaded, the file is named from its prompt: the stored name is unguessable, and stays unsaid.
    name = provenance.download_name(
        text=image.task.prompt.text,
        suffix=f"{image.task_id}-{image.index}",
        extension=field.name.rsplit(".", 1)[-1],
    )
    as_attachment = request.GET.get("download") == "1"
    if media.in_bucket():
        url, fresh_for = media.signed_url(field.name, filename=name, as_attachment=as_attachment)
        response = HttpResponseRedirect(url)
        # The browser keeps the redirect while its URL stays valid: a page redrawn every pulse costs no request.
        response["Cache-Control"] = f"private, max-age={fresh_for}"
        return response
    try:
        opened = field.open("rb")
    except OSError as exc:
        logger.error("image %s: stored file %s is missing: %s", image.pk, field.name, exc)
        raise Http404("This image file is missing.") from exc
    response = FileResponse(opened, as_attachment=as_attachment, filename=name)
    # Private: only team members may see it. Short-lived, so that hiding an image takes effect soon.
    response["Cache-Control"] = "private, max-age=3600"
    return response
