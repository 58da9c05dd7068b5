"""A team's collections: the index (create, rename, delete) and the per-image control that puts an image in or
out of them. Browsing one collection is the library's page, filtered: /library/?collection=<id>."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import retarget

from generations import params
from generations.forms import CollectionForm
from generations.models import Collection, CollectionItem, Image, Team
from generations.services import collections

SORTS = {"recent": ("-updated_at", "-pk"), "name": ("name_key",)}


def _get_collection(request: HttpRequest, pk: int) -> Collection:
    """A collection of the user's current team, or 404: another team's does not exist for them."""
    return get_object_or_404(Collection.objects.select_related("team"), pk=pk, team=request.team)


def _visible_items(user: object, prefix: str = "") -> Q:
    """The items a user may see: for non-staff, not a hidden image nor an image of a hidden task."""
    if getattr(user, "is_staff", False):
        return Q()
    return Q(**{f"{prefix}image__hidden_at": None, f"{prefix}image__task__hidden_at": None})


def _for_index(team: Team, user: object) -> QuerySet[Collection]:
    """The team's collections with their item count and cover (the newest item with a thumbnail) as the user
    may see them (hidden images are neither counted nor a cover for non-staff): one query."""
    cover = (
        CollectionItem.objects.filter(_visible_items(user), collection=OuterRef("pk"), image__mirrored_at__isnull=False)
        .exclude(image__thumbnail="")
        .order_by("-added_at", "-pk")
        .values("image_id")[:1]
    )
    count = Count("items", filter=_visible_items(user, "items__"))
    return Collection.objects.filter(team=team).annotate(item_count=count, cover_id=Subquery(cover))


def _index_context(request: HttpRequest, **extra: object) -> dict:
    sort = request.GET.get("sort") if request.GET.get("sort") in SORTS else "recent"
    return {
        "team": request.team,
        "collections": list(_for_index(request.team, request.user).order_by(*SORTS[sort])),
        "sort": sort,
        "form": CollectionForm(team=request.team),
        **extra,
    }


@require_GET
def collection_list(request: HttpRequest) -> HttpResponse:
    return render(request, "generations/collections.html", _index_context(request))


def _name_form(request: HttpRequest, collection: Collection | None = None) -> tuple[CollectionForm, str | None]:
    """The posted name checked: the form, and the clean name if it passed (else None, the errors on the form)."""
    form = CollectionForm(request.POST, team=request.team, collection=collection)
    if not form.is_valid():
        return form, None
    return form, form.cleaned_data["name"]


@require_POST
def collection_create(request: HttpRequest) -> HttpResponse:
    form, name = _name_form(request)
    collection = None
    if name is not None:
        try:
            collection = collections.collection_create(team=request.team, user=request.user, name=name)
        except ValidationError as exc:  # taken a moment ago by a teammate
            form.add_error("name", exc)
    if collection is None:
        if request.htmx:
            return render(request, "generations/collections.html#create-form", {"form": form}, status=422)
        return render(request, "generations/collections.html", _index_context(request, form=form), status=422)
    if not request.htmx:
        messages.success(request, f"Created “{collection.name}”.")
        return redirect("generations:collections")
    context = {
        "form": CollectionForm(team=request.team),
        "collection": _for_index(request.team, request.user).get(pk=collection.pk),
        "status": f"Created “{collection.name}”.",
    }
    return render(request, "generations/collection_created.html", context)


@require_POST
def collection_rename(request: HttpRequest, pk: int) -> HttpResponse:
    collection = _get_collection(request, pk)
    form, name = _name_form(request, collection)
    if name is not None:
        try:
            collections.collection_rename(collection=collection, name=name)
        except ValidationError as exc:
            form.add_error("name", exc)
    if form.errors:
        message = " ".join(form.errors["name"])
        if request.htmx:  # the message beside the name being typed; the popover stays open
            context = {"collection": collection, "rename_error": message}
            return render(request, "generations/collection_renamed.html", context, status=422)
        messages.error(request, f"“{collection.name}” was not renamed: {message}")
        return render(request, "generations/collections.html", _index_context(request), status=422)
    if not request.htmx:
        messages.success(request, f"Renamed to “{collection.name}”.")
        return redirect("generations:collections")
    context = {
        "collection": _for_index(request.team, request.user).get(pk=collection.pk),
        "renamed": True,
        "status": f"Renamed to “{collection.name}”.",
    }
    return render(request, "generations/collection_renamed.html", context)


@require_POST
def collection_delete(request: HttpRequest, pk: int) -> HttpResponse:
    collection = _get_collection(request, pk)
    name = collection.name
    collections.collection_delete(collection=collection)
    status = f"Deleted “{name}”. Its images are still in the library."
    if not request.htmx:
        messages.success(request, status)
        return redirect("generations:collections")
    # The card is swapped for nothing; the status line says what happened.
    return render(request, "generations/collections.html#status", {"status": status, "oob": True})


# --- The per-image control: the team's collections as toggles, and "New collection…" ------------------------


def _choices(team: Team, image: Image, user: object) -> QuerySet[Collection]:
    """The team's collections by name (toggling never reorders them), each saying whether it holds the image."""
    holds = CollectionItem.objects.filter(collection=OuterRef("pk"), image=image)
    count = Count("items", filter=_visible_items(user, "items__"))
    return Collection.objects.filter(team=team).annotate(item_count=count, has_image=Exists(holds)).order_by("name_key")


def _render_picker(request: HttpRequest, image: Image, *, status: int = 200, **extra: object) -> HttpResponse:
    context = {
        "image": image,
        "task": image.task,
        "choices": list(_choices(request.team, image, request.user)),
        **extra,
    }
    if not request.htmx:
        return render(request, "generations/image_collections.html", {"team": request.team, **context}, status=status)
    response = render(request, "generations/image_collections.html#picker", context, status=status)
    # A POST may come from one toggle (its target is that toggle): the whole control answers it.
    return retarget(response, f"#pick-{image.pk}") if request.method == "POST" else response


@require_http_methods(["GET", "POST"])
def image_collections(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: which of the team's collections hold this image, as toggles (a page, or the fragment for a dialog).
    POST: `collection` and `op` (add or remove) toggles one; `new_name` creates a collection holding it."""
    images = Image.objects.visible_to(request.user).select_related("task__prompt")
    image = get_object_or_404(images, pk=pk, task__team=request.team)
    if request.method == "GET":
        return _render_picker(request, image, first_open=request.htmx)  # in a dialog: focus on the first toggle
    if "new_name" in request.POST:
        return _create_and_add(request, image)
    op = request.POST.get("op", "")
    collection_id = params.positive_int(request.POST.get("collection"))
    if collection_id is None:
        raise Http404("No such collection.")
    collection = _get_collection(request, collection_id)
    if op == "add":
        collections.collection_add_image(collection=collection, image=image, user=request.user)
        done = f"Added to “{collection.name}”."
    elif op == "remove":
        collections.collection_remove_image(collection=collection, image=image)
        done = f"Removed from “{collection.name}”."
    else:
        refusal = "Say whether to add the image to that collection or remove it."
        return _render_picker(request, image, status=422, message=refusal, message_is_error=True)
    if request.htmx:  # only that collection's toggle changes (focus stays on it), and the status line
        context = {
            "image": image,
            "collection": _choices(request.team, image, request.user).get(pk=collection.pk),
            "message": done,
        }
        return render(request, "generations/image_collections.html#toggled", context)
    return _picker_done(request, image, done)


def _create_and_add(request: HttpRequest, image: Image) -> HttpResponse:
    form = CollectionForm({"name": request.POST["new_name"]}, team=request.team)
    collection = None
    if form.is_valid():
        try:
            collection = collections.collection_create(
                team=request.team, user=request.user, name=form.cleaned_data["name"]
            )
        except ValidationError as exc:
            form.add_error("name", exc)
    if collection is None:
        error = " ".join(form.errors["name"])
        return _render_picker(request, image, status=422, new_name_error=error, new_name=request.POST["new_name"])
    collections.collection_add_image(collection=collection, image=image, user=request.user)
    return _picker_done(request, image, f"Created “{collection.name}” with this image in it.")


def _picker_done(request: HttpRequest, image: Image, done: str) -> HttpResponse:
    if request.htmx:
        return _render_picker(request, image, message=done)
    messages.success(request, done)  # POST/redirect/GET: a reload never sends it again
    return redirect("generations:image_collections", pk=image.pk)
