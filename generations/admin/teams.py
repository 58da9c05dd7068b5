"""Teams and memberships in the admin: a team's page with its members inline, and the Memberships list (roles,
and how often each member's prompts were refused). Adding, removing and changing a role are audited as on the
site, and a team that has an owner keeps one."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from generations.models import AuditEntry, Membership, Task, Team
from generations.services import members, submitting

# --- Teams ----------------------------------------------------------------------------------------------------


class OwnedMembershipFormSet(BaseInlineFormSet):
    """A team that has an owner keeps one: demoting or removing the last is refused with the site's message."""

    def clean(self) -> None:
        super().clean()
        had_owner = any(f.initial.get("role") == Membership.Role.OWNER for f in self.initial_forms)
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if had_owner and not any(f.cleaned_data.get("role") == Membership.Role.OWNER for f in kept):
            raise forms.ValidationError(members.LAST_OWNER)


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = OwnedMembershipFormSet
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams, their members inline: adding, removing and changing a role are audited like on the site."""

    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = (MembershipInline,)

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        roles_before = {f.instance.pk: f.initial.get("role") for f in formset.initial_forms}
        actor, audit = request.user, members.membership_audit
        with transaction.atomic():
            formset.save(commit=False)
            for membership in formset.deleted_objects:
                audit(actor=actor, act=AuditEntry.Act.MEMBER_REMOVE, membership=membership, role=membership.role)
                membership.delete()
            for membership in formset.new_objects:
                membership.save()
                audit(actor=actor, act=AuditEntry.Act.MEMBER_ADD, membership=membership, role=membership.role)
            for membership, changed in formset.changed_objects:
                membership.save()
                if "role" in changed:
                    before = roles_before.get(membership.pk)
                    audit(
                        actor=actor,
                        act=AuditEntry.Act.ROLE_CHANGE,
                        membership=membership,
                        before=before,
                        after=membership.role,
                    )
            formset.save_m2m()


# --- Memberships ----------------------------------------------------------------------------------------------


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
        # The site's own service: the same last-owner rule and the same audit row (the form checked the rule).
        saved = Membership.objects.select_related("user").get(pk=obj.pk)
        members.member_role_change(actor=request.user, membership=saved, role=obj.role)
