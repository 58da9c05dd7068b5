"""Review: setting an image's state (none, shortlisted, approved, rejected) from any card, tile or task page.
(The approved images' bundle is with the other exports, in views/provenance.py.)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from generations.models import Image, Task
from generations.services import review
from generations.templatetags.review import review_control_html

# The form's word for each state: "none" rather than an empty value, so a missing field is not "clear it".
STATES = {"none": Image.Review.NONE, **{state: state for state in Image.Review.values if state}}


def _back_url(request: HttpRequest) -> str:
    """The page the form was on (without JS); the library if that page is unknown or not ours."""
    referer = request.headers.get("referer", "")
    allowed = url_has_allowed_host_and_scheme(referer, {request.get_host()}, require_https=request.is_secure())
    return referer.split("#")[0] if referer and allowed else reverse("generations:library")


@require_POST
def image_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Set an image's review state: `state` is none, shortlisted, approved or rejected. The role is checked by the
    service (a member's approval is a 403 that changes nothing). With htmx the answer replaces what the request
    named as its target: the studio's card (`task-<pk>`, whose version then matches the live refresh's) or the
    image's review control (`rv<pk>`: a library tile, the task page)."""
    image = get_object_or_404(
        Image.objects.visible_to(request.user).only("pk", "task_id", "review_state"), pk=pk, task__team=request.team
    )
    try:
        review.image_review_set(
            user=request.user, team=request.team, image=image, state=STATES.get(request.POST.get("state", ""), "?")
        )
    except review.ReviewRefused as refused:
        status = 403 if refused.forbidden else 400
        if request.htmx:  # review.js shows it beside the image
            return HttpResponse(refused.message, status=status, content_type="text/plain; charset=utf-8")
        context = {"message": refused.message, "back": _back_url(request)}
        return render(request, "generations/review_refused.html", context, status=status)
    if not request.htmx:
        return redirect(f"{_back_url(request)}#i{image.pk}")
    if request.htmx.target == f"task-{image.task_id}":
        task = Task.objects.for_cards(user=request.user).get(pk=image.task_id)
        return render(request, "generations/studio.html#task-card", {"task": task})
    return HttpResponse(review_control_html(image.pk, image.review_state, owner=bool(request.is_team_owner)))
