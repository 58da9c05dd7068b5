"""The webhook log in the admin: every delivery Apiframe sent, what it did, how often staff replayed it, and the
Replay action (the body applied again through services.operations, audited)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from generations.admin.base import BOTH, ReadOnlyAdmin, admin_link, plural, pretty_json
from generations.models import AuditEntry, WebhookDelivery
from generations.services import operations


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
        replayed = plural(sum(outcomes.values()), "delivery", "deliveries")
        modeladmin.message_user(request, f"Replayed {replayed}: {said}.")


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
        return admin_link("task", delivery.task_id)

    @admin.display(description="replays")
    def replays(self, delivery: WebhookDelivery) -> int:
        return delivery.replay_count

    @admin.display(description="body")
    def pretty_body(self, delivery: WebhookDelivery) -> str:
        return pretty_json(delivery.body)
