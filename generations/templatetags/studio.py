from __future__ import annotations

import uuid

from django import template

register = template.Library()


@register.simple_tag
def new_idempotency_key() -> str:
    """A fresh key for a form: the server turns a repeat of the same submission into the same task."""
    return str(uuid.uuid4())
