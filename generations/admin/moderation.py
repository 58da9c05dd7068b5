"""Moderation in the admin: the review queue (the Moderation filter and the bulk Hide, Restore and Clear flags
that the image and task lists share, each asking for a reason), members' flags and the audit trail (read-only
history), and the blocklist (site-wide and every team's terms, each change audited)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch

from generations.admin.base import BOTH, ReadOnlyAdmin, admin_link, plural, pretty_json, with_reason
from generations.models import AuditEntry, BlockedTerm, Flag
from generations.services import blocklist, moderation

# --- The review queue (images and tasks) ----------------------------------------------------------------------


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


@admin.action(description="Hide (asks for a reason)", permissions=["change"], location=BOTH)
def hide_items(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.items_hide(actor=request.user, items=queryset, reason=reason)
        return f"Hid {plural(changed, noun)}."

    return with_reason(modeladmin, request, queryset, title=f"Hide these {noun}s", button="Hide", run=run)


@admin.action(description="Restore (asks for a reason)", permissions=["change"], location=BOTH)
def restore_items(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.items_restore(actor=request.user, items=queryset, reason=reason)
        return f"Restored {plural(changed, noun)}."

    return with_reason(modeladmin, request, queryset, title=f"Restore these {noun}s", button="Restore", run=run)


@admin.action(description="Clear flags (asks for a reason)", permissions=["change"], location=BOTH)
def clear_flags(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    noun = modeladmin.model._meta.verbose_name

    def run(reason: str) -> str:
        changed = moderation.flags_clear(actor=request.user, items=queryset, reason=reason)
        return f"Cleared the flags of {plural(changed, noun)}."

    return with_reason(
        modeladmin, request, queryset, title=f"Clear the flags of these {noun}s", button="Clear flags", run=run
    )


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
            return admin_link("image", flag.image_id, f"image {flag.image_id}")
        return admin_link("task", flag.task_id)


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
            return admin_link(entry.target_type, entry.target_id, entry.target_repr or entry.target_id)
        except NoReverseMatch:  # a kind of row the admin does not show
            return entry.target_repr

    @admin.display(description="details")
    def pretty_details(self, entry: AuditEntry) -> str:
        return pretty_json(entry.details)


# --- The blocklist (each change audited) ----------------------------------------------------------------------


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
