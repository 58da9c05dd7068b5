"""The admin index's moderation box: how many flagged items wait in the review queue."""

from __future__ import annotations

from django import template

from generations.models import Image, Task

register = template.Library()


@register.simple_tag
def review_queue() -> dict[str, int]:
    # Two counts over the partial flagged_at indexes: a few rows however large the tables.
    return {
        "images": Image.objects.filter(flagged_at__isnull=False).count(),
        "tasks": Task.objects.filter(flagged_at__isnull=False).count(),
    }
