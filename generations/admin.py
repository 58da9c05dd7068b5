"""The Django admin: staff moderate (the review queue's bulk actions), run operations (stuck work, webhook
replays) and read the audit trail. Writes go through the services, each act audited; the lists stay fast at
100,000 rows (a fixed number of queries per page, exact-id and indexed prompt search, no full counts)."""

from __future__ import annotations

import json
from collections.abc import Callable

from axes import admin as axes_admin
from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from generations.apiframe import ApiframeError
from generations.library.search import matching_prompts, search_terms
from generations.models import (
    AuditEntry,
    BlockedTerm,
    Flag,
    Image,
    Membership,
    Prompt,
    StuckTask,
    Task,
    Team,
    WebhookDelivery,
)
from generations.services import blocklist, members, moderation, operations, submitting
from generations.services.audit import audit_record


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = (MembershipInline,)


# --- Shared pieces: read-only admins, links, thumbnails, payloads, search --------------------------------------

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


def _admin_link(model: str, pk: int | None, text: object = None) -> str:
    if pk is None:
        return "–"
    url = reverse(f"admin:generations_{model}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else f"#{pk}")


def _thumbnail(image: Image | None, *, size: int = 64) -> str:
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


def _moderation_badge(item: Image | Task) -> str:
    if item.hidden_at is not None:
        return format_html('<span class="mj-badge mj-badge--hidden" title="{}">hidden</span>', item.hidden_reason)
    if item.flagged_at is not None:
        return format_html('<span class="mj-badge mj-badge--{}">{}</span>', "flagged", "flagged")
    return ""


def _pretty_json(value: object) -> str:
    return format_html('<pre class="mj-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _search(queryset: QuerySet, term: str, *, task: str = "") -> QuerySet:
    """An Apiframe task id or a task number, exactly (one lookup on a unique index), else prompt words through the
    library's search index (FTS5 trigram on SQLite, pg_trgm on PostgreSQL): never a LIKE scan of the tasks.
    One or the other, not both ORed: an OR makes SQLite gather every match of the words and sort them (85 ms
    for a common word at 100,000 tasks, against 15 ms). `task` is the path from the listed model to its task."""
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


COMMON_WORDS = 500  # prompts matching a search from which walking the newest rows beats the index


# --- Filters --------------------------------------------------------------------------------------------------


class ModerationFilter(admin.SimpleListFilter):
    """The review queue: flagged (a partial index holds these), hidden, or clean."""

    title = "moderation"
    parameter_name = "moderation"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("flagged", "Flagged"), ("hidden", "Hidden"), ("clean", "Clean")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "flagged":
                return queryset.filter(flagged_at__isnull=False)
            case "hidden":
                return queryset.filter(hidden_at__isnull=False)
            case "clean":
                return queryset.filter(flagged_at=None, hidden_at=None)
        return queryset


class MirrorFilter(admin.SimpleListFilter):
    title = "mirror"
    parameter_name = "mirror"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("saved", "Saved"), ("pending", "Still trying"), ("gave_up", "Gave up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "saved":
                return queryset.filter(mirrored_at__isnull=False)
            case "pending":
                return queryset.mirror_pending()
            case "gave_up":
                return queryset.filter(mirrored_at=None, mirror_attempts__gte=Image.MIRROR_MAX_ATTEMPTS)
        return queryset


class StuckFilter(admin.SimpleListFilter):
    title = "why"
    parameter_name = "why"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("overdue", "In flight past its deadline"), ("timed_out", "Timed out"), ("mirror", "Mirror gave up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "overdue":
                return queryset.filter(status__in=Task.IN_FLIGHT)
            case "timed_out":
                return queryset.filter(status=Task.Status.TIMED_OUT)
            case "mirror":
                gave_up = Image.objects.filter(mirrored_at=None, mirror_attempts__gte=Image.MIRROR_MAX_ATTEMPTS)
                return queryset.filter(pk__in=gave_up.values("task_id"))
        return queryset


# --- Actions that ask for a reason first ----------------------------------------------------------------------

# POST keys the confirmation page must not echo back: its own fields, and the token (the page has its own).
_OWN_FIELDS = {"csrfmiddlewaretoken", "reason", "confirm"}


def _with_reason(
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


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@admin.action(description="Hide (asks for a reason)", permissions=["change"], location=BOTH)
def hide_items(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.items_hide(actor=request.user, items=queryset, reason=reason)
        return f"Hid {_plural(changed, noun)}."

    return _with_reason(modeladmin, request, queryset, title=f"Hide these {noun}s", button="Hide", run=run)


@admin.action(description="Restore (asks for a reason)", permissions=["change"], location=BOTH)
def restore_items(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.items_restore(actor=request.user, items=queryset, reason=reason)
        return f"Restored {_plural(changed, noun)}."

    return _with_reason(modeladmin, request, queryset, title=f"Restore these {noun}s", button="Restore", run=run)


@admin.action(description="Clear flags (asks for a reason)", permissions=["change"], location=BOTH)
def clear_flags(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.flags_clear(actor=request.user, items=queryset, reason=reason)
        return f"Cleared the flags of {_plural(changed, noun)}."

    return _with_reason(
        modeladmin, request, queryset, title=f"Clear the flags of these {noun}s", button="Clear flags", run=run
    )


def _tasks_of(queryset: QuerySet) -> QuerySet[Task]:
    """The tasks behind a selection of tasks or images."""
    if queryset.model is Image:
        return Task.objects.filter(pk__in=queryset.values("task_id"))
    return Task.objects.filter(pk__in=queryset.values("pk"))


@admin.action(description="Refresh from Apiframe", permissions=["change"], location=BOTH)
def refresh_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    try:
        counts = operations.tasks_refresh(actor=request.user, tasks=_tasks_of(queryset))
    except ApiframeError as exc:
        modeladmin.message_user(request, f"Apiframe did not answer: {exc}. Batches before it landed.", messages.ERROR)
        return
    message = (
        f"Asked Apiframe about {_plural(counts['asked'], 'task')}: {counts['answered']} answered, "
        f"{counts['applied']} moved forward, {counts['stale']} unchanged."
    )
    if counts["not_sent"]:
        message += f" {_plural(counts['not_sent'], 'task')} never reached Apiframe (no id to ask about)."
    if counts["more"]:
        message += f" More were selected: run it again for the next {operations.REFRESH_MAX}."
    modeladmin.message_user(request, message, messages.SUCCESS)


@admin.action(description="Retry mirror", permissions=["change"], location=BOTH)
def retry_mirror(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    queued = operations.images_mirror_retry(actor=request.user, tasks=_tasks_of(queryset))
    if queued:
        modeladmin.message_user(request, f"Queued the mirror again for {_plural(queued, 'task')}.", messages.SUCCESS)
    else:
        modeladmin.message_user(request, "No image of these had given up: nothing to retry.", messages.WARNING)


@admin.action(description="Fail with reason", permissions=["change"], location=BOTH)
def fail_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    def run(reason: str) -> str:
        failed = operations.tasks_fail(actor=request.user, tasks=_tasks_of(queryset), reason=reason)
        return f"Failed {_plural(failed, 'task')} (finished and failed tasks are left as they are)."

    return _with_reason(modeladmin, request, queryset, title="Fail these tasks", button="Fail", run=run)


# --- Prompts, tasks, images -----------------------------------------------------------------------------------


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ("short_text", "team", "author", "mode", "aspect_ratio", "created_at")
    list_select_related = ("team", "author")
    list_filter = ("mode", "team", "author", ("created_at", admin.DateFieldListFilter))
    search_fields = ("text",)  # answered by _search (the library's index), not by LIKE on the column
    search_help_text = "Words of the prompt, accents and case ignored."

    @admin.display(description="text")
    def short_text(self, prompt: Prompt) -> str:
        return Truncator(prompt.text).chars(90)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        terms = search_terms(search_term)
        return (queryset.filter(matching_prompts(terms)) if terms else queryset), False


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    max_num = 0
    fields = ("thumb", "index", "size", "mirror", "review_state", "moderation")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    @admin.display(description="thumbnail")
    def thumb(self, image: Image) -> str:
        return _thumbnail(image, size=96)

    @admin.display(description="size")
    def size(self, image: Image) -> str:
        return f"{image.width}×{image.height}" if image.width else "–"

    @admin.display(description="mirror")
    def mirror(self, image: Image) -> str:
        if image.is_mirrored:
            return "saved"
        if image.mirror_gave_up:
            return f"gave up: {image.mirror_error}"
        return f"trying ({image.mirror_attempts} attempts)"

    @admin.display(description="moderation")
    def moderation(self, image: Image) -> str:
        return _moderation_badge(image)


class ChildInline(admin.TabularInline):
    """The tasks made from this one (its children in the lineage)."""

    model = Task
    fk_name = "parent"
    verbose_name, verbose_name_plural = "child task", "child tasks"
    extra = 0
    max_num = 0
    fields = ("child", "parent_index", "status", "created_by", "created_at")
    readonly_fields = fields
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("created_by").order_by("created_at")

    @admin.display(description="task")
    def child(self, task: Task) -> str:
        return _admin_link("task", task.pk, f"#{task.pk} {task.describe()}")


def _tasks_for_list(queryset: QuerySet[Task]) -> QuerySet[Task]:
    """With what a row shows, in a fixed number of queries: its prompt, team and author joined, its first
    image (the row's thumbnail) in one query for the whole page."""
    fields = ("pk", "task_id", "index", "thumbnail", "hidden_at", "mirrored_at", "mirror_attempts")
    first_images = Image.objects.only(*fields).order_by("index")
    return queryset.select_related("prompt", "team", "created_by").prefetch_related(
        Prefetch("images", queryset=first_images, to_attr="listed_images")
    )


class TaskListMixin:
    """The columns, filters and search that a list of tasks shows (all tasks, or the stuck ones)."""

    list_display = (
        "number",
        "thumb",
        "prompt_text",
        "what",
        "status",
        "team",
        "created_by",
        "created_at",
        "lineage",
        "moderation",
    )
    list_display_links = ("number",)
    search_help_text = "An Apiframe task id or a task number (exact), or words of the prompt."
    search_fields = ("apiframe_task_id",)  # answered by _search: exact id, number, or the prompt index

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return _tasks_for_list(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return _search(queryset, search_term), False

    @admin.display(description="task", ordering="pk")
    def number(self, task: Task) -> str:
        return f"#{task.pk}"

    @admin.display(description="preview")
    def thumb(self, task: Task) -> str:
        images = getattr(task, "listed_images", None) or [None]
        return _thumbnail(images[0])

    @admin.display(description="prompt")
    def prompt_text(self, task: Task) -> str:
        return Truncator(task.prompt.text).chars(70)

    @admin.display(description="action")
    def what(self, task: Task) -> str:
        return task.describe()

    @admin.display(description="lineage")
    def lineage(self, task: Task) -> str:
        if task.parent_id is None:
            return "root"
        return format_html("of {} (root {})", _admin_link("task", task.parent_id), _admin_link("task", task.root_id))

    @admin.display(description="moderation")
    def moderation(self, task: Task) -> str:
        return _moderation_badge(task)


@admin.register(Task)
class TaskAdmin(TaskListMixin, ReadOnlyAdmin):
    list_filter = (
        ModerationFilter,
        "status",
        "action",
        "team",
        "created_by",
        ("created_at", admin.DateFieldListFilter),
    )
    actions = (hide_items, restore_items, clear_flags, refresh_tasks, retry_mirror, fail_tasks)
    readonly_fields = ("family", "pretty_result", "moderation")
    exclude = ("result", "parent", "root", "collection")
    inlines = (ImageInline, ChildInline)
    fieldsets = (
        (None, {"fields": ("prompt", ("team", "created_by"), ("action", "option"), "family")}),
        ("Progress", {"fields": (("status", "upstream_status", "percentage"), "error", "apiframe_task_id", "credits")}),
        ("Moderation", {"fields": ("moderation", "flagged_at", ("hidden_at", "hidden_by"), "hidden_reason")}),
        (
            "Times",
            {
                "fields": (
                    ("created_at", "submitted_at", "started_at", "finished_at"),
                    ("deadline", "updated_at", "last_heard_at"),
                    "submit_attempts",
                )
            },
        ),
        ("Result (from Apiframe)", {"fields": ("pretty_result",)}),
    )

    @admin.display(description="lineage")
    def family(self, task: Task) -> str:
        if task.parent_id is None:
            return "A root: nothing came before it."
        return format_html(
            "Made from image {} of {}; its root is {}.",
            task.parent_index or "–",
            _admin_link("task", task.parent_id),
            _admin_link("task", task.root_id),
        )

    @admin.display(description="result")
    def pretty_result(self, task: Task) -> str:
        return _pretty_json(task.result)


@admin.register(StuckTask)
class StuckTaskAdmin(TaskListMixin, ReadOnlyAdmin):
    """Stuck work: tasks in flight past their deadline, timed out, or with an image whose mirror gave up."""

    list_filter = (StuckFilter, "status", "action", "team")
    actions = (refresh_tasks, retry_mirror, fail_tasks)
    ordering = ("-pk",)

    list_display_links = None  # a row's number opens the task itself
    list_display = ("number", "why", *TaskListMixin.list_display[1:])

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return _tasks_for_list(operations.tasks_stuck(tasks=StuckTask.objects.all()))

    @admin.display(description="task", ordering="pk")
    def number(self, task: Task) -> str:
        return _admin_link("task", task.pk)

    @admin.display(description="why")
    def why(self, task: Task) -> str:
        reasons = []
        if task.is_in_flight and task.deadline < timezone.now():
            reasons.append(f"overdue since {timezone.localtime(task.deadline):%Y-%m-%d %H:%M}")
        if task.status == Task.Status.TIMED_OUT:
            reasons.append("timed out")
        if gave_up := sum(image.mirror_gave_up for image in task.listed_images):
            reasons.append(f"mirror gave up ({gave_up} image{'s' if gave_up > 1 else ''})")
        return "; ".join(reasons)


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = (
        "thumb",
        "label",
        "prompt_text",
        "team",
        "author",
        "review_state",
        "moderation",
        "mirror",
        "created",
    )
    list_display_links = ("label",)
    list_select_related = ("task__prompt", "task__team", "task__created_by")
    list_filter = (
        ModerationFilter,
        "review_state",
        MirrorFilter,
        ("task__team", admin.RelatedFieldListFilter),
        ("task__created_by", admin.RelatedFieldListFilter),
        "task__action",
        ("task__created_at", admin.DateFieldListFilter),
    )
    ordering = ("-pk",)
    search_fields = ("task__apiframe_task_id",)  # answered by _search: exact id, task number, prompt index
    search_help_text = "An Apiframe task id or a task number (exact), or words of the prompt."
    actions = (hide_items, restore_items, clear_flags, retry_mirror)
    readonly_fields = ("large", "task_link", "moderation")
    exclude = ("task",)
    fieldsets = (
        (None, {"fields": ("large", "task_link", "index", ("width", "height", "size_bytes"))}),
        (
            "Moderation and review",
            {"fields": ("moderation", "flagged_at", ("hidden_at", "hidden_by"), "hidden_reason")},
        ),
        (None, {"fields": (("review_state", "reviewed_by", "reviewed_at"),)}),
        (
            "Mirror",
            {
                "fields": (
                    "source_url",
                    ("mirrored_at", "mirror_attempts", "mirror_next_at"),
                    "mirror_error",
                    ("file", "thumbnail", "content_hash"),
                )
            },
        ),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return _search(queryset, search_term, task="task__"), False

    @admin.display(description="preview")
    def thumb(self, image: Image) -> str:
        return _thumbnail(image)

    @admin.display(description="preview")
    def large(self, image: Image) -> str:
        return _thumbnail(image, size=320)

    @admin.display(description="image", ordering="pk")
    def label(self, image: Image) -> str:
        return f"{image.index} of #{image.task_id}"

    @admin.display(description="task")
    def task_link(self, image: Image) -> str:
        return _admin_link("task", image.task_id, str(image.task))

    @admin.display(description="prompt")
    def prompt_text(self, image: Image) -> str:
        return Truncator(image.task.prompt.text).chars(60)

    @admin.display(description="team")
    def team(self, image: Image) -> Team:
        return image.task.team

    @admin.display(description="author")
    def author(self, image: Image) -> object:
        return image.task.created_by

    @admin.display(description="moderation")
    def moderation(self, image: Image) -> str:
        if image.hidden_at is None and image.task.hidden_at is not None:  # gone with its task, for non-staff
            return format_html(
                '<span class="mj-badge mj-badge--hidden" title="{}">task hidden</span>', image.task.hidden_reason
            )
        return _moderation_badge(image)

    @admin.display(description="mirror")
    def mirror(self, image: Image) -> str:
        if image.is_mirrored:
            return "saved"
        return "gave up" if image.mirror_gave_up else "trying"

    @admin.display(description="created", ordering="task__created_at")
    def created(self, image: Image) -> object:
        return image.task.created_at


# --- The webhook log ------------------------------------------------------------------------------------------


@admin.action(description="Replay (apply the body again)", permissions=["change"], location=BOTH)
def replay_deliveries(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    outcomes: dict[str, int] = {}
    for delivery in queryset.order_by("received_at"):  # in the order they came: a later state wins
        try:
            outcome = operations.webhook_replay(actor=request.user, delivery=delivery)
        except operations.OperationError as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
            continue
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if outcomes:
        labels = dict(WebhookDelivery.Outcome.choices)
        said = ", ".join(f"{n} {labels[o].lower()}" for o, n in sorted(outcomes.items()))
        modeladmin.message_user(request, f"Replayed {_plural(sum(outcomes.values()), 'delivery')}: {said}.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "apiframe_task_id", "task_link", "reported_status", "outcome", "replays")
    list_filter = ("outcome", ("received_at", admin.DateFieldListFilter))
    search_fields = ("apiframe_task_id",)  # exact: the (apiframe_task_id, outcome) index answers it
    search_help_text = "An Apiframe task id (exact)."
    ordering = ("-received_at",)
    actions = (replay_deliveries,)
    readonly_fields = ("task_link", "pretty_body", "replays")
    exclude = ("body", "task")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Replays are audit rows against the delivery: counted in the same query (the audit_target index).
        replays = (
            AuditEntry.objects.filter(
                act=AuditEntry.Act.WEBHOOK_REPLAY, target_type="webhookdelivery", target_id=OuterRef("pk")
            )
            .values("target_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(replay_count=Coalesce(Subquery(replays), 0))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return (queryset.filter(apiframe_task_id=term) if term else queryset), False

    @admin.display(description="task")
    def task_link(self, delivery: WebhookDelivery) -> str:
        return _admin_link("task", delivery.task_id)

    @admin.display(description="replays")
    def replays(self, delivery: WebhookDelivery) -> int:
        return delivery.replay_count

    @admin.display(description="body")
    def pretty_body(self, delivery: WebhookDelivery) -> str:
        return _pretty_json(delivery.body)


# --- Flags and the audit trail --------------------------------------------------------------------------------


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Open"), ("no", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(resolved_at__isnull=self.value() == "yes")
        return queryset


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    """Members' reports, as history: moderate them from the image and task lists (Hide, Clear flags)."""

    list_display = ("created_at", "reason", "target", "note", "team", "created_by", "resolved_at", "resolved_by")
    list_select_related = ("team", "created_by", "resolved_by")
    list_filter = (OpenFilter, "reason", "team", ("created_at", admin.DateFieldListFilter))
    ordering = ("-created_at",)
    readonly_fields = ("target",)

    @admin.display(description="flagged")
    def target(self, flag: Flag) -> str:
        if flag.image_id:
            return _admin_link("image", flag.image_id, f"image {flag.image_id}")
        return _admin_link("task", flag.task_id)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail: nobody adds, edits or deletes a row here, superusers included."""

    list_display = ("created_at", "actor_name", "act", "team", "target", "reason")
    list_select_related = ("team",)
    list_filter = ("act", "team", "actor", ("created_at", admin.DateFieldListFilter))
    search_fields = ("target_repr", "reason")
    search_help_text = "Words of what was acted on, or of the reason."
    readonly_fields = ("target", "pretty_details")
    exclude = ("details",)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="target")
    def target(self, entry: AuditEntry) -> str:
        if entry.target_id is None:
            return entry.target_repr or "–"
        try:
            return _admin_link(entry.target_type, entry.target_id, entry.target_repr or entry.target_id)
        except NoReverseMatch:  # a kind of row the admin does not show
            return entry.target_repr

    @admin.display(description="details")
    def pretty_details(self, entry: AuditEntry) -> str:
        return _pretty_json(entry.details)


# --- The blocklist, and who is in which team with which role (each change audited) -----------------------------


class BlockedTermAdminForm(forms.ModelForm):
    class Meta:
        model = BlockedTerm
        fields = ("team", "text", "is_regex")

    def clean(self) -> dict:
        data = super().clean()  # the model's clean() refuses a bad pattern, with RE2's reason
        if "text" in data and not self.has_error("text"):
            team = data.get("team", self.instance.team if self.instance.pk else None)
            try:
                data["text"] = blocklist.term_clean(
                    team=team, text=data["text"], is_regex=data.get("is_regex", False), exclude=self.instance.pk
                )
            except blocklist.BlocklistError as exc:
                self.add_error("text", str(exc))
        return data


class TermListFilter(admin.SimpleListFilter):
    title = "list"
    parameter_name = "list"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("site", "Site-wide"), ("team", "A team's")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BlockedTerm]) -> QuerySet[BlockedTerm]:
        if self.value() in ("site", "team"):
            return queryset.filter(team__isnull=self.value() == "site")
        return queryset


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    """Site-wide terms (no team) and every team's; written through services.blocklist, so each change is audited."""

    form = BlockedTermAdminForm
    list_display = ("__str__", "is_regex", "scope", "created_by", "created_at")
    list_filter = (TermListFilter, "is_regex", "team")
    search_fields = ("text",)
    list_select_related = ("team", "created_by")
    autocomplete_fields = ("team",)

    @admin.display(description="applies to", ordering="team__name")
    def scope(self, term: BlockedTerm) -> str:
        return term.team.name if term.team_id else "every team (site-wide)"

    def get_readonly_fields(self, request: HttpRequest, obj: BlockedTerm | None = None) -> tuple[str, ...]:
        return ("team",) if obj is not None else ()  # a term moves by removing it here and adding it there

    def save_model(self, request: HttpRequest, obj: BlockedTerm, form: forms.ModelForm, change: bool) -> None:
        if change:
            stored = BlockedTerm.objects.get(pk=obj.pk)
            blocklist.term_change(actor=request.user, term=stored, text=obj.text, is_regex=obj.is_regex)
            obj.refresh_from_db()
        else:
            saved = blocklist.term_add(actor=request.user, team=obj.team, text=obj.text, is_regex=obj.is_regex)
            obj.pk, obj.created_by, obj.created_at = saved.pk, saved.created_by, saved.created_at

    def delete_model(self, request: HttpRequest, obj: BlockedTerm) -> None:
        blocklist.term_remove(actor=request.user, term=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[BlockedTerm]) -> None:
        for term in queryset.select_related("team"):
            blocklist.term_remove(actor=request.user, term=term)


class OwnedMembershipFormSet(BaseInlineFormSet):
    """A team that has an owner keeps one: demoting or removing the last is refused with the site's message."""

    def clean(self) -> None:
        super().clean()
        had_owner = any(f.initial.get("role") == Membership.Role.OWNER for f in self.initial_forms)
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if had_owner and not any(f.cleaned_data.get("role") == Membership.Role.OWNER for f in kept):
            raise forms.ValidationError(members.LAST_OWNER)


class AuditedMembershipInline(MembershipInline):
    formset = OwnedMembershipFormSet


class AuditedTeamAdmin(TeamAdmin):
    """The Team admin, its members inline: adding, removing and changing a role are audited like on the site."""

    inlines = (AuditedMembershipInline,)

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        roles_before = {f.instance.pk: f.initial.get("role") for f in formset.initial_forms}
        team, actor = form.instance, request.user
        with transaction.atomic():
            formset.save(commit=False)
            for membership in formset.deleted_objects:
                audit_record(
                    actor=actor,
                    act=AuditEntry.Act.MEMBER_REMOVE,
                    team=team,
                    target=membership,
                    user=membership.user.get_username(),
                    role=membership.role,
                )
                membership.delete()
            for membership in formset.new_objects:
                membership.save()
                audit_record(
                    actor=actor,
                    act=AuditEntry.Act.MEMBER_ADD,
                    team=team,
                    target=membership,
                    user=membership.user.get_username(),
                    role=membership.role,
                )
            for membership, changed in formset.changed_objects:
                membership.save()
                if "role" in changed:
                    audit_record(
                        actor=actor,
                        act=AuditEntry.Act.ROLE_CHANGE,
                        team=team,
                        target=membership,
                        user=membership.user.get_username(),
                        before=roles_before.get(membership.pk),
                        after=membership.role,
                    )
            formset.save_m2m()


admin.site.unregister(Team)
admin.site.register(Team, AuditedTeamAdmin)


class RefusedUpstreamFilter(admin.SimpleListFilter):
    title = "refused upstream"
    parameter_name = "refused"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "At least once"), ("no", "Never")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> QuerySet[Membership]:
        if self.value() == "yes":
            return queryset.filter(refused_upstream__gt=0)
        if self.value() == "no":
            return queryset.filter(refused_upstream=0)
        return queryset


def _count(queryset: QuerySet, by: str) -> Coalesce:
    """A count of `queryset`'s rows per membership, as one correlated subquery (no per-row query)."""
    counted = queryset.order_by().values(by).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class MembershipRoleForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("role",)

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        demoting_owner = self.instance.role == Membership.Role.OWNER and role != Membership.Role.OWNER
        others = Membership.objects.filter(team_id=self.instance.team_id, role=Membership.Role.OWNER)
        if demoting_owner and not others.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(members.LAST_OWNER)
        return role


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who is in which team, with which role, and how often each member's prompts were refused: by Apiframe
    (failed tasks whose submit it refused) or by our blocklist (audited attempts)."""

    list_display = ("user", "team", "role", "joined_at", "refused_upstream", "blocked_prompts")
    list_filter = ("role", RefusedUpstreamFilter, "team")
    search_fields = ("user__username", "team__name")
    list_select_related = ("user", "team")
    readonly_fields = ("team", "user")
    form = MembershipRoleForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        refused = Task.objects.filter(
            created_by=OuterRef("user"),
            team=OuterRef("team"),
            status=Task.Status.FAILED,
            error__startswith=submitting.UPSTREAM_REFUSED,
        )
        blocked = AuditEntry.objects.filter(
            actor=OuterRef("user"), team=OuterRef("team"), act=AuditEntry.Act.PROMPT_BLOCKED
        )
        return (
            super()
            .get_queryset(request)
            .annotate(refused_upstream=_count(refused, "created_by"), blocked_prompts=_count(blocked, "actor"))
        )

    @admin.display(description="refused by Apiframe", ordering="refused_upstream")
    def refused_upstream(self, membership: Membership) -> int:
        return membership.refused_upstream

    @admin.display(description="refused by the blocklist", ordering="blocked_prompts")
    def blocked_prompts(self, membership: Membership) -> int:
        return membership.blocked_prompts

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # added and removed in the Team admin's inline (or the team's page), where it is audited

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        with transaction.atomic():
            before = Membership.objects.select_for_update().get(pk=obj.pk).role
            super().save_model(request, obj, form, change)
            if obj.role != before:
                audit_record(
                    actor=request.user,
                    act=AuditEntry.Act.ROLE_CHANGE,
                    team=obj.team_id,
                    target=obj,
                    user=obj.user.get_username(),
                    before=before,
                    after=obj.role,
                )


# --- Login attempts (django-axes' own admin, its one action mended) --------------------------------------------


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """django-axes' list of login attempts. Its "Clean up expired attempts" reads `request.axes_attempt_time`,
    which axes sets only while it checks a login: from the admin the action raised AttributeError (a 500)."""

    @admin.action(description="Clean up expired attempts")
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        request.axes_attempt_time = None  # no login being checked: expired means older than the cool-off from now
        super().cleanup_expired_attempts(request, queryset)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
