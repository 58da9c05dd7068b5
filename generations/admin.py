from __future__ import annotations

from django.contrib import admin

from generations.models import Image, Membership, Prompt, Task, Team, WebhookDelivery


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = (MembershipInline,)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("text", "team", "author", "mode", "aspect_ratio", "created_at")
    list_filter = ("mode", "team")
    search_fields = ("text", "search_text")


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    fields = ("index", "width", "height", "mirrored_at", "mirror_attempts", "mirror_error")
    readonly_fields = fields
    can_delete = False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("pk", "action", "option", "status", "percentage", "team", "created_by", "created_at")
    list_filter = ("status", "action", "team")
    search_fields = ("apiframe_task_id", "prompt__text")
    raw_id_fields = ("prompt", "parent", "root")
    readonly_fields = ("apiframe_task_id", "result", "created_at", "submitted_at", "started_at", "finished_at")
    inlines = (ImageInline,)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("received_at", "apiframe_task_id", "reported_status", "outcome")
    list_filter = ("outcome",)
    search_fields = ("apiframe_task_id",)
    readonly_fields = ("received_at", "apiframe_task_id", "task", "reported_status", "outcome", "body")
