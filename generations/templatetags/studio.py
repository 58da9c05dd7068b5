from __future__ import annotations

import calendar
import uuid
from datetime import datetime

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from generations import actions
from generations.models import Image
from generations.templatetags.review import review_button_html

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


@register.simple_tag(takes_context=True)
def card_image(
    context: template.Context, image: Image, *, aspect_ratio: str, actions: bool, hidden_task: object = None
) -> SafeString:
    """One image of a card: its thumbnail linking to the full file, or how its download is going; and, once the
    card is ready, its Actions button (studio.js opens the page's one menu for it; without JS it opens the image's
    own menu page, through the card's form). Written here rather than in studio.html: a page shows ~100 images,
    and a dozen template nodes per image cost several times what this does."""
    index = int(image.index)
    review = ""
    if image.mirrored_at is not None:
        full = pk_url(context, "generations:image_file", image.pk, "full")
        thumb = pk_url(context, "generations:image_file", image.pk, "thumb")
        size = f' width="{int(image.width)}" height="{int(image.height)}"' if image.width and image.height else ""
        body = f'<a class="shot__link" href="{full}" target="_blank"><img src="{thumb}"{size} alt="Image {index}"></a>'
        # In the card's image form, like the Actions button: shown once that form works (every image saved).
        review = review_button_html(index, image.review_state) + "\n" if actions else ""
    else:
        if image.mirror_gave_up:
            status = escape(f"Could not save this image: {image.mirror_error}")
        else:
            status = "Saving failed, trying again…" if image.mirror_error else "Saving…"
        body = f'<div class="shot__placeholder ar-{slugify(aspect_ratio)}">{status}</div>'
    # Only staff are shown a hidden image (or one of a hidden task): marked, and never offered for new work.
    mark = ""
    if image.hidden_at is not None:
        reason = escape(image.hidden_reason)
        mark = f'<span class="shot__hidden" title="{reason}">Hidden · {reason}</span>\n'
    button = ""
    if actions and image.hidden_at is None and hidden_task is None:
        button = f'<button class="shot__actions" name="index" value="{index}" aria-label="Actions for image {index}">'
        button += "Actions</button>\n"
    # Safe as it is: ints, URLs reversed from ints and fixed words, a slug, and the texts escaped above.
    # (format_html would escape a dozen values per image that cannot need it: a tenth of the page's time.)
    return mark_safe(f'<figure class="shot" data-index="{index}">\n{body}\n{mark}{review}{button}</figure>')  # noqa: S308


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
