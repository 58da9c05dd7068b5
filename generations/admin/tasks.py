"""Prompts, tasks and stuck work in the admin: the task list (thumbnail, lineage, moderation; searched by exact id,
number or prompt words), a task's page with its images and children inline, the stuck-work list, and the operations
that act on them (refresh from Apiframe, retry mirror, fail with a reason), each through services.operations."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from generations.admin.base import (
    BOTH,
    ReadOnlyAdmin,
    admin_link,
    moderation_badge,
    plural,
    pretty_json,
    search_by_task,
    thumbnail,
    with_reason,
)
from generations.admin.moderation import ModerationFilter, clear_flags, hide_items, restore_items
from generations.apiframe import ApiframeError
from generations.library.search import matching_prompts, search_terms
from generations.models import Image, Prompt, StuckTask, Task
from generations.services import operations

# --- Prompts --------------------------------------------------------------------------------------------------


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ("short_text", "team", "author", "mode", "aspect_ratio", "created_at")
    list_select_related = ("team", "author")
    list_filter = ("mode", "team", "author", ("created_at", admin.DateFieldListFilter))
    search_fields = ("text",)  # answered by get_search_results (the library's index), not by LIKE on the column
    search_help_text = "Words of the prompt, accents and case ignored."

    @admin.display(description="text")
    def short_text(self, prompt: Prompt) -> str:
        return Truncator(prompt.text).chars(90)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        terms = search_terms(search_term)
        return (queryset.filter(matching_prompts(terms)) if terms else queryset), False


# --- Operations on stuck work (the task, stuck-work and image lists share them) -------------------------------


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
        f"Asked Apiframe about {plural(counts['asked'], 'task')}: {counts['answered']} answered, "
        f"{counts['applied']} moved forward, {counts['stale']} unchanged."
    )
    if counts["not_sent"]:
        message += f" {plural(counts['not_sent'], 'task')} never reached Apiframe (no id to ask about)."
    if counts["more"]:
        message += f" More were selected: run it again for the next {operations.REFRESH_MAX}."
    modeladmin.message_user(request, message, messages.SUCCESS)


@admin.action(description="Retry mirror", permissions=["change"], location=BOTH)
def retry_mirror(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    queued = operations.images_mirror_retry(actor=request.user, tasks=_tasks_of(queryset))
    if queued:
        modeladmin.message_user(request, f"Queued the mirror again for {plural(queued, 'task')}.", messages.SUCCESS)
    else:
        modeladmin.message_user(request, "No image of these had given up: nothing to retry.", messages.WARNING)


@admin.action(description="Fail with reason", permissions=["change"], location=BOTH)
def fail_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    def run(reason: str) -> str:
        failed = operations.tasks_fail(actor=request.user, tasks=_tasks_of(queryset), reason=reason)
        return f"Failed {plural(failed, 'task')} (finished and failed tasks are left as they are)."

    return with_reason(modeladmin, request, queryset, title="Fail these tasks", button="Fail", run=run)


# --- Tasks: their list, lineage and images --------------------------------------------------------------------


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
        return thumbnail(image, size=96)

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
        return moderation_badge(image)


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
        return admin_link("task", task.pk, f"#{task.pk} {task.describe()}")


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
    search_fields = ("apiframe_task_id",)  # answered by search_by_task: exact id, number, or the prompt index

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return _tasks_for_list(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return search_by_task(queryset, search_term), False

    @admin.display(description="task", ordering="pk")
    def number(self, task: Task) -> str:
        return f"#{task.pk}"

    @admin.display(description="preview")
    def thumb(self, task: Task) -> str:
        images = getattr(task, "listed_images", None) or [None]
        return thumbnail(images[0])

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
        return format_html("of {} (root {})", admin_link("task", task.parent_id), admin_link("task", task.root_id))

    @admin.display(description="moderation")
    def moderation(self, task: Task) -> str:
        return moderation_badge(task)


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
            admin_link("task", task.parent_id),
            admin_link("task", task.root_id),
        )

    @admin.display(description="result")
    def pretty_result(self, task: Task) -> str:
        return pretty_json(task.result)


# --- Stuck work -----------------------------------------------------------------------------------------------


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
                gave_up = Image.objects.mirror_gave_up()
                return queryset.filter(pk__in=gave_up.values("task_id"))
        return queryset


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
        return admin_link("task", task.pk)

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
