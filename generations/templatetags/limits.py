from __future__ import annotations

from django import template
from django.conf import settings

from generations.services import limits

register = template.Library()


@register.simple_tag
def webhook_refusals() -> dict[str, object]:
    """Deliveries refused for their secret, for the admin's index: read from the cache, no query."""
    this_hour, hour_before = limits.webhook_refusals()
    per_process = settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")  # each process counts its own
    return {"this_hour": this_hour, "hour_before": hour_before, "per_process": per_process}
