from __future__ import annotations

import uuid
from functools import lru_cache

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse

from generations import actions

register = template.Library()

_PK = 2_147_483_647  # stands for an image's id in a URL reversed once


@register.simple_tag
def new_idempotency_key() -> str:
    """A fresh key for a form: the server turns a repeat of the same submission into the same task."""
    return str(uuid.uuid4())


@lru_cache(maxsize=32)
def _image_url_pattern(urlconf: str | None, prefix: str, variant: str) -> tuple[str, str]:
    """An image file's URL split around its id, reversed once per variant (and URL prefix)."""
    head, _, tail = reverse("generations:image_file", args=[_PK, variant], urlconf=urlconf).partition(str(_PK))
    return head, tail


@register.simple_tag
def image_url(pk: int, variant: str) -> str:
    """The URL of an image's file ("thumb" or "full"): a page shows ~100 images, so it is built, not reversed."""
    head, tail = _image_url_pattern(get_urlconf(), get_script_prefix(), variant)
    return f"{head}{pk}{tail}"


@register.simple_tag
def image_menu() -> tuple[actions.MenuRow, ...]:
    """The rows of an image's action menu, from the one table of actions."""
    return actions.MENU


@register.filter
def accessible_name(choice: actions.ImageAction, index: int | str) -> str:
    return choice.accessible_name(index)


@register.filter
def valid_on(row: actions.MenuRow, kind: str) -> bool:
    return kind in row.valid_on
