from __future__ import annotations

import calendar
import uuid
from datetime import datetime

from django import template
from django.urls import reverse

from generations import actions

register = template.Library()

_PK = 2_147_483_647  # stands for an id in a URL reversed once


@register.simple_tag
def new_idempotency_key() -> str:
    """A fresh key for a form: the server turns a repeat of the same submission into the same task."""
    return str(uuid.uuid4())


@register.simple_tag(takes_context=True)
def pk_url(context: template.Context, name: str, pk: int, *args: object) -> str:
    """{% url name pk *args %} for a page that shows many: reversed once per render with a stand-in id, then
    each id is put in its place (a card page makes a few hundred such URLs; reversing each costs)."""
    # The render's outermost scope (as {% include %} caches its templates): each partial rendered pushes its own.
    patterns = context.render_context.dicts[0].setdefault("pk_url_patterns", {})
    key = (name, args)
    if key not in patterns:
        head, _, tail = reverse(name, args=[_PK, *args]).partition(str(_PK))
        patterns[key] = (head, tail)
    head, tail = patterns[key]
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


# The card's moments, formatted without Django's date formatter (four per card, ~30 µs each there).
@register.filter
def epoch(value: datetime) -> str:
    """What date:"U.u" gives, "seconds.microseconds" since 1970: a card's version and age, for studio.js."""
    return f"{calendar.timegm(value.utctimetuple())}.{value.microsecond:06d}"


@register.filter(expects_localtime=True)
def isoformat(value: datetime) -> str:
    """What date:"c" gives: ISO 8601 in the current time zone, for <time datetime>."""
    return value.isoformat()


@register.filter(expects_localtime=True)
def moment(value: datetime) -> str:
    """A moment to the minute, for a tooltip: "2026-11-24 14:05 UTC"."""
    return value.strftime("%Y-%m-%d %H:%M %Z")
