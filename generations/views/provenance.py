"""Comparing images side by side, and provenance bundles (a lineage's or a collection's images and metadata as a
zip streamed from storage)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from generations import params
from generations.models import Collection, Image, Task
from generations.services import provenance

COMPARE_MIN, COMPARE_MAX = 2, 4


def _compare_refused(request: HttpRequest, message: str, images: list[Image]) -> HttpResponse:
    context = {"message": message, "images": images, "team": request.team}
    return render(request, "generations/compare.html", context, status=400)


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """2 to 4 of the team's images side by side at full size: ?images=1,2,3 (or images=1&images=2, as a form of
    checkboxes sends them)."""
    words = [word.strip() for value in request.GET.getlist("images") for word in value.split(",") if word.strip()]
    pks = [params.positive_int(word) for word in words[: COMPARE_MAX + 1]]
    if None in pks:
        return _compare_refused(request, "Images are chosen by number: “?images=12,13”.", [])
    pks = list(dict.fromkeys(pks))  # the same image picked twice is compared once
    found = (
        Image.objects.visible_to(request.user)
        .filter(task__team=request.team)
        .select_related("task__prompt", "task__created_by")
        .in_bulk(pks)
    )
    images = [found[pk] for pk in pks if pk in found]
    if len(images) < len(pks):  # another team's image, or a hidden one for non-staff, does not exist for this one
        raise Http404("No such image.")
    if not COMPARE_MIN <= len(images) <= COMPARE_MAX:
        chosen = "one image" if len(images) == 1 else f"{len(words)} images" if words else "no image"
        return _compare_refused(
            request, f"Pick {COMPARE_MIN} to {COMPARE_MAX} images to compare (you chose {chosen}).", images
        )
    actual = request.GET.get("size") == "actual"
    ids = ",".join(str(image.pk) for image in images)
    context = {"images": images, "actual": actual, "ids": ids, "team": request.team}
    return render(request, "generations/compare.html", context)


def _zip_response(stream: object, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=name)
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def task_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The whole lineage the task belongs to (its root's family) as a provenance bundle."""
    tasks = Task.objects.visible_to(request.user).select_related("team", "prompt")
    task = get_object_or_404(tasks, pk=pk, team=request.team)
    root = Task.objects.filter(pk=task.root_id, team=request.team).select_related("prompt").first() or task
    name = provenance.download_name(text=root.prompt.text, suffix=f"lineage-{root.pk}", extension="zip")
    return _zip_response(provenance.bundle_for_lineage(task=task, show_hidden=request.user.is_staff), name)


@require_GET
def collection_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """A collection's images, with how each was made, as a provenance bundle."""
    collection = get_object_or_404(Collection.objects.select_related("team", "created_by"), pk=pk, team=request.team)
    name = provenance.download_name(text=collection.name, suffix=f"collection-{collection.pk}", extension="zip")
    bundle = provenance.bundle_for_collection(collection=collection, show_hidden=request.user.is_staff)
    return _zip_response(bundle, name)


@require_GET
def approved_export(request: HttpRequest) -> StreamingHttpResponse:
    """The team's approved images as a provenance bundle: each image with the way from its lineage's root to it."""
    team = request.team
    name = provenance.download_name(text=f"{team.name} approved", suffix=f"team-{team.pk}", extension="zip")
    return _zip_response(provenance.bundle_for_approved(team=team, show_hidden=request.user.is_staff), name)
