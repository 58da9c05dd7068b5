"""Images in the admin: the review queue's main list (thumbnail, review state, moderation, mirror; searched like
tasks), an image's page at full preview, and the bulk Hide, Restore, Clear flags and Retry mirror."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

from generations.admin.base import ReadOnlyAdmin, admin_link, moderation_badge, search_by_task, thumbnail
from generations.admin.moderation import ModerationFilter, clear_flags, hide_items, restore_items
from generations.admin.tasks import retry_mirror
from generations.models import Image, Team


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
                return queryset.mirror_gave_up()
        return queryset


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
    search_fields = ("task__apiframe_task_id",)  # answered by search_by_task: exact id, task number, prompt index
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
        return search_by_task(queryset, search_term, task="task__"), False

    @admin.display(description="preview")
    def thumb(self, image: Image) -> str:
        return thumbnail(image)

    @admin.display(description="preview")
    def large(self, image: Image) -> str:
        return thumbnail(image, size=320)

    @admin.display(description="image", ordering="pk")
    def label(self, image: Image) -> str:
        return f"{image.index} of #{image.task_id}"

    @admin.display(description="task")
    def task_link(self, image: Image) -> str:
        return admin_link("task", image.task_id, str(image.task))

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
        return moderation_badge(image)

    @admin.display(description="mirror")
    def mirror(self, image: Image) -> str:
        if image.is_mirrored:
            return "saved"
        return "gave up" if image.mirror_gave_up else "trying"

    @admin.display(description="created", ordering="task__created_at")
    def created(self, image: Image) -> object:
        return image.task.created_at
