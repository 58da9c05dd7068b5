"""The team library: every image of the team, newest first, searched, filtered and stacked; favourites."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, replace_url

from generations.library import queries
from generations.library.forms import URL_NAMES, LibraryFiltersForm
from generations.library.queries import Library, Page, Position
from generations.models import Image, Task
from generations.services import favourites

PAGE_TEMPLATE = "generations/library.html"
TILES_TEMPLATE = "generations/_library_tiles.html"


def csrf_input(request: HttpRequest) -> str:
    """The CSRF field for the tiles' forms (no JS), rendered once per page rather than by a tag per tile."""
    return format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', get_token(request))


def _library_url(params: dict[str, str]) -> str:
    query = urlencode(params)
    return reverse("generations:library") + (f"?{query}" if query else "")


def _page_context(request: HttpRequest, form: LibraryFiltersForm, **extra: object) -> dict:
    return {
        "team": request.team,
        "form": form,
        "csrf_input": csrf_input(request),
        **extra,
    }


def _more(form: LibraryFiltersForm, page: Page, *, top: Position | None, shown: int) -> dict | None:
    """The way on past this page: a plain link (it works without JS), and the URL infinite scroll asks.

    The scroll URL also carries the window the reader is in (where it starts, `top`, and how many rows it
    shows, `shown`) and where its last page began (`prev`), so that its answer can name a URL showing the
    same rows again (_window_url)."""
    if not page.has_more:
        return None
    params = form.params()
    cursor = page.last.encode()
    # Where the last queries.PAGE_SIZE rows of this page begin (exclusive): a capped window restarts there.
    prev = (
        page.tiles[-queries.PAGE_SIZE - 1].position
        if len(page.tiles) > queries.PAGE_SIZE
        else form.cleaned_data["cursor"]
    )
    scroll = {**params, "cursor": cursor, "shown": str(shown)}
    if top is not None:
        scroll["top"] = top.encode()
    if prev is not None:
        scroll["prev"] = prev.encode()
    return {"href": _library_url({**params, "cursor": cursor}), "scroll": _library_url(scroll)}


def _window_url(request: HttpRequest, form: LibraryFiltersForm, page: Page) -> tuple[str, int, Position | None]:
    """The URL to show in the address bar after a page arrived by scrolling: a fresh load of it (Back after
    the browser dropped the page, a reload, a shared link) shows every row of the window again, from its
    top down to this page's last row; library.js then scrolls to the row the reader was at.

    Returns the URL, the window's rows, and its top. Past queries.MAX_WINDOW rows the window restarts at the
    previous page (a fresh load stays quick; the reader is seldom further back than one page)."""
    top = _position(request.GET.get("top"))
    shown = _int(request.GET.get("shown")) + len(page.tiles)
    if shown > queries.MAX_WINDOW:
        top = _position(request.GET.get("prev"))
        shown = queries.PAGE_SIZE + len(page.tiles)
    params = {**form.params(), **({"cursor": top.encode()} if top else {}), "until": page.last.encode()}
    return _library_url(params), shown, top


@require_GET
def library(request: HttpRequest) -> HttpResponse:
    form = LibraryFiltersForm(request.GET, team=request.team)
    htmx = request.htmx if request.htmx and not request.htmx.history_restore_request else None
    results_only = bool(htmx) and htmx.target == "library-results"
    scrolling = bool(htmx) and htmx.target == "lib-grid"
    if not form.is_valid():
        context = _page_context(request, form, page=None, chips=[], stacked=request.GET.get("stacks") != "0")
        if form.not_found:  # another team's collection or task: as if it did not exist, htmx or not
            return render(request, PAGE_TEMPLATE, context, status=404)
        if htmx:  # a filter changed in place: its message shows where the results were
            return render(request, f"{PAGE_TEMPLATE}#results", context, status=422)
        return render(request, PAGE_TEMPLATE, context, status=400)
    if not htmx and _has_blank_params(request.GET):
        # A GET form sends every field: the shareable URL names only what is set.
        return redirect(_library_url(_clean_params(request.GET)))

    data = form.cleaned_data
    filters = form.filters()
    library_ = Library(
        team_id=request.team.pk, user_id=request.user.pk, filters=filters, show_hidden=request.user.is_staff
    )
    page = library_.page(after=data["cursor"], until=data["until"])
    context = _page_context(
        request,
        form,
        page=page,
        stacked=filters.stacked,
        view_locked=form.curated and data.get("stacks") != "0",
        chips=form.chips(),
        query=urlencode(form.params()),
    )
    if scrolling:
        url, shown, top = _window_url(request, form, page) if page.tiles else ("", 0, None)
        context["more"] = _more(form, page, top=top, shown=shown)
        response = render(request, f"{TILES_TEMPLATE}#next-page", context)
        return replace_url(response, url) if url else response
    context["more"] = _more(form, page, top=data["cursor"], shown=len(page.tiles))
    if results_only:
        response = render(request, f"{PAGE_TEMPLATE}#results", {**context, "oob_toggle": True})
        return push_url(response, _library_url(form.params()))
    return render(request, PAGE_TEMPLATE, context)


@require_GET
def library_stack(request: HttpRequest, pk: int) -> HttpResponse:
    """A stack opened in place (htmx), or folded again (?fold=1); without JS, its lineage's own listing."""
    task = get_object_or_404(Task.objects.only("pk", "root_id"), pk=pk, team=request.team)
    root_id = task.root_id or task.pk
    form = LibraryFiltersForm(request.GET, team=request.team)
    if not form.is_valid():
        if request.htmx:
            return render(request, f"{TILES_TEMPLATE}#stack-error", {"form": form}, status=422)
        return redirect(_library_url({"lineage": str(root_id)}))
    if not request.htmx:
        return redirect(_library_url(form.params(lineage=str(root_id), stacks=None)))
    filters = form.filters()
    library_ = Library(
        team_id=request.team.pk, user_id=request.user.pk, filters=filters, show_hidden=request.user.is_staff
    )
    context = {"form": form, "root_id": root_id, "query": urlencode(form.params()), "csrf_input": csrf_input(request)}
    if request.GET.get("fold") == "1":
        tile = library_.cover(root_id=root_id)
        return render(request, f"{TILES_TEMPLATE}#stack-folded", {**context, "tile": tile, "stacked": True})
    return render(request, f"{TILES_TEMPLATE}#stack-open", {**context, "tiles": library_.stack(root_id=root_id)})


@require_POST
def image_favourite(request: HttpRequest, pk: int) -> HttpResponse:
    """Star or unstar an image for oneself. `on` says which, so a repeated POST changes nothing more."""
    image = get_object_or_404(Image.objects.visible_to(request.user).only("pk"), pk=pk, task__team=request.team)
    on = request.POST.get("on", "")
    if on not in ("0", "1"):
        message = "Say whether to star the image (on=1) or not (on=0)."
        if request.htmx:
            return HttpResponse(message, status=400, content_type="text/plain")
        messages.error(request, message)
        return _back(request)
    starred = favourites.favourite_set(user=request.user, image=image, on=on == "1")
    if request.htmx:
        tile = {"image_id": image.pk, "favourite": starred, "favourite_url": request.path}
        return render(request, f"{TILES_TEMPLATE}#favourite", {"tile": tile, "csrf_input": csrf_input(request)})
    return _back(request, anchor=f"i{image.pk}")


def _back(request: HttpRequest, *, anchor: str = "") -> HttpResponse:
    """Back to the page the form was on (without JS), at the image; the library if that page is unknown."""
    referer = request.headers.get("referer", "")
    allowed = url_has_allowed_host_and_scheme(referer, {request.get_host()}, require_https=request.is_secure())
    target = referer.split("#")[0] if referer and allowed else reverse("generations:library")
    return redirect(f"{target}#{anchor}" if anchor else target)


def _has_blank_params(query: QueryDict) -> bool:
    return any(not value for name in query for value in query.getlist(name))


def _clean_params(query: QueryDict) -> dict[str, str]:
    return {name: query[name] for name in URL_NAMES if query.get(name)}


def _position(value: str | None) -> Position | None:
    try:
        return Position.decode(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 7 else 0
