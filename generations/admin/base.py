"""What every generations admin shares: the read-only base (rows the services write), the capped paginator that
keeps the lists fast at 100,000 rows, links, thumbnails, pretty payloads, the task search (exact id or number, else
the library's prompt index), and the page that asks for a reason before an audited act."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.paginator import Paginator
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from generations.library.search import matching_prompts, search_terms
from generations.models import Image, Prompt, Task
from generations.services import moderation

BOTH = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]  # an action in the list and on the object's page


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP rows: a filter or search matching tens of thousands (a week of tasks, a common
    prompt word) stops counting there instead of walking every match. Pages past the cap are out of reach:
    narrow the filter. The list then says "more than 10,000" (templates/admin/generations/pagination.html)."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        # Unordered: with the list's ORDER BY id, SQLite walks the table in id order instead of a filter's index.
        return self.object_list.order_by()[: self.COUNT_CAP + 1].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the studio's services only: staff read them and act through actions, never edit them
    (an edit here would skip the service's rules and its audit row)."""

    list_per_page = 50
    show_full_result_count = False  # "N results (M total)" would count the whole table on every page
    paginator = CappedPaginator

    class Media:
        css = {"all": ("css/admin_ops.css",)}  # thumbnails, hidden and flagged marks, payloads

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # Every field shown read-only, but those left out (each shown its own way, e.g. pretty-printed).
        own = [f.name for f in self.model._meta.concrete_fields if f.name not in (self.exclude or ())]
        return [*own, *self.readonly_fields]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None):
        # Nothing on the page is editable: no Save buttons (the actions above the form still work).
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        extra_context |= {"show_save_and_add_another": False, "show_delete": False}
        return super().change_view(request, object_id, form_url, extra_context)


def admin_link(model: str, pk: int | None, text: object = None) -> str:
    if pk is None:
        return "–"
    url = reverse(f"admin:generations_{model}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else f"#{pk}")


def thumbnail(image: Image | None, *, size: int = 64) -> str:
    """The image's thumbnail through the studio's own file view (staff may see any team's), marked if hidden."""
    if image is None or not image.thumbnail:
        return format_html('<span class="mj-thumb mj-thumb--none">{}</span>', "no file" if image else "–")
    url = reverse("generations:image_file", args=[image.pk, "thumb"])
    hidden = image.hidden_at is not None
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" loading="lazy" class="mj-thumb{}">',
        url,
        f"image {image.index} (hidden)" if hidden else f"image {image.index}",
        size,
        size,
        " mj-thumb--hidden" if hidden else "",
    )


def moderation_badge(item: Image | Task) -> str:
    if item.hidden_at is not None:
        return format_html('<span class="mj-badge mj-badge--hidden" title="{}">hidden</span>', item.hidden_reason)
    if item.flagged_at is not None:
        return format_html('<span class="mj-badge mj-badge--{}">{}</span>', "flagged", "flagged")
    return ""


def pretty_json(value: object) -> str:
    return format_html('<pre class="mj-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


COMMON_WORDS = 500  # prompts matching a search from which walking the newest rows beats the index


def search_by_task(queryset: QuerySet, term: str, *, task: str = "") -> QuerySet:
    """An Apiframe task id or a task number, exactly (one lookup on a unique index), else prompt words through the
    library's search index (FTS5 trigram on SQLite, pg_trgm over unaccent on PostgreSQL): never a LIKE scan of
    the tasks. One or the other, not both ORed: an OR makes SQLite gather every match of the words and sort them
    (85 ms for a common word at 100,000 tasks, against 15 ms). `task` is the path from the listed model to its
    task."""
    term = term.strip()
    if not term:
        return queryset
    number = term.isascii() and term.isdigit() and len(term) < 19  # "²" is a digit to isdigit, not to int
    exact = Q(apiframe_task_id=term) | (Q(pk=int(term)) if number else Q(pk__in=[]))
    if (found := Task.objects.filter(exact).values_list("pk", flat=True).first()) is not None:
        return queryset.filter(**{f"{task}pk": found})
    terms = search_terms(term)
    if not terms:
        return queryset.none()
    prompts = Prompt.objects.filter(matching_prompts(terms)).values("pk")
    if prompts.order_by()[:COMMON_WORDS].count() < COMMON_WORDS:  # rare words: the prompt_id index finds them
        return queryset.filter(**{f"{task}prompt__in": prompts})
    # Common words: "+ 0" keeps the planner off the prompt_id index. Walking the newest rows, testing each
    # against the matching prompts, stops after a page, where the index would gather every match (30,000 tasks
    # for a common word at 100,000) and sort them: 25 ms against 85 (tasks) and 460 (images) on SQLite.
    return queryset.alias(searched_prompt=F(f"{task}prompt_id") + 0).filter(searched_prompt__in=prompts)


# POST keys the confirmation page must not echo back: its own fields, and the token (the page has its own).
_OWN_FIELDS = {"csrfmiddlewaretoken", "reason", "confirm"}


def with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    title: str,
    button: str,
    run: Callable[[str], str],
) -> HttpResponse | None:
    """An intermediate page asking for the reason; nothing changes until one is given. `run(reason)` does the
    act (raising ModerationError for a reason it refuses) and returns the message to show."""
    error, reason = "", request.POST.get("reason", "")
    if request.POST.get("confirm") == "yes":
        try:
            modeladmin.message_user(request, run(reason), messages.SUCCESS)
            return None  # back to the list (or the object's page)
        except moderation.ModerationError as exc:
            error = str(exc)
    items = list(queryset[:21])
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "button": button,
        "opts": modeladmin.model._meta,
        "items": items[:20],
        "more": len(items) > 20,
        "error": error,
        "reason": reason,
        "reason_max": moderation.REASON_MAX_LENGTH,
        # The action's own POST (its name, the selected rows, select-across) comes back with the reason.
        "passthrough": [(k, v) for k in request.POST if k not in _OWN_FIELDS for v in request.POST.getlist(k)],
    }
    status = 422 if error else 200  # as the studio's own forms answer a refused input
    return TemplateResponse(request, "admin/generations/confirm_reason.html", context, status=status)


def plural(n: int, noun: str, many: str = "") -> str:
    """ "1 task", "3 tasks"; `many` for nouns that do not just take an s ("deliveries")."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"
