from __future__ import annotations

from functools import cache

from django import template
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# (state, glyph, what the button does, its key, the badge's word), in menu order; a button's glyph is the badge.
_BUTTONS = (
    ("shortlisted", "☆", "Shortlist", "S", "Shortlisted"),
    ("approved", "✓", "Approve", "A", "Approved"),
    ("rejected", "✕", "Reject", "R", "Rejected"),
)
_BADGES = {state: (glyph, word) for state, glyph, _, _, word in _BUTTONS}


@cache
def _url_pattern() -> str:
    return reverse("generations:image_review", args=[0]).replace("/0/", "/{}/")


def review_url(image_id: int) -> str:
    """POST here to set the image's review state (reversed once per process, then filled in)."""
    return _url_pattern().format(int(image_id))


def is_owner(context: template.Context) -> bool:
    request = context.get("request")
    return bool(getattr(request, "is_team_owner", False))


def review_control_html(image_id: int, state: str, *, owner: bool) -> SafeString:
    """An image's review state as a badge that is also its control: the pressed button shows the state's word;
    pressing it again clears the state. Members get the shortlist button (and, once an owner has decided, a
    plain badge); owners also get approve and reject. The buttons submit the page's one `#review-form` (its CSRF
    field), so they work without JS; review.js sends them with htmx instead. Written here, not in a template: a
    library window shows up to 240."""
    pk = int(image_id)
    url = review_url(pk)
    state = state if state in _BADGES else ""
    parts = [f'<div class="rv rv--{state or "none"}" id="rv{pk}">']
    for value, glyph, verb, key, word in _BUTTONS if owner else _BUTTONS[:1]:
        pressed = state == value
        title = f"{word}: press to clear (0)" if pressed else f"{verb} ({key})"
        parts.append(
            f'<button class="rv__btn rv__btn--{value}" id="rv{pk}{key.lower()}" form="review-form" formaction="{url}"'
            f' name="state" value="{"none" if pressed else value}" aria-pressed="{"true" if pressed else "false"}"'
            f' aria-label="{verb}" title="{title}">{glyph}<span class="rv__word"> {word}</span></button>'
        )
    if not owner and state in ("approved", "rejected"):
        glyph, word = _BADGES[state]
        parts.append(f'<span class="rv__badge rv__badge--{state}">{glyph}<span class="rv__word"> {word}</span></span>')
    parts.append("</div>")
    # Safe as it is: an int, a URL reversed from an int, and fixed words (state is one of the model's choices).
    return mark_safe("".join(parts))  # noqa: S308


# A studio card's image: one small button, its glyph and word drawn by review.css (a page shows ~100 images, so each
# costs ~70 bytes). Titles name them.
_CARD_TITLES = {
    "": "Shortlist (S)",
    "shortlisted": "Shortlisted: press to clear (0)",
    "approved": "Approved: change it in the image's menu",
    "rejected": "Rejected: change it in the image's menu",
}


def review_button_html(index: int, state: str) -> str:
    """A studio card image's review state and control. It sits in the card's image form, as the Actions button
    does: without JS it opens the image's own menu page (with its review row); review.js makes it shortlist or
    clear the shortlist, and open the image's menu on an owner's decision."""
    state = state if state in _BADGES else ""
    pressed = ' aria-pressed="true"' if state == "shortlisted" else ""
    classes = f"rv rv--{state}" if state else "rv"
    title = _CARD_TITLES[state]
    return f'<button class="{classes}" name="index" value="{int(index)}" title="{title}"{pressed}></button>'


@register.simple_tag(takes_context=True)
def review_control(context: template.Context, image_id: int, state: str) -> SafeString:
    return review_control_html(image_id, state, owner=is_owner(context))


@register.simple_tag(takes_context=True)
def review_owner(context: template.Context) -> bool:
    """Whether the page's viewer may approve and reject (a button hidden is a convenience; the server checks)."""
    return is_owner(context)


@register.simple_tag(takes_context=True)
def review_choices(context: template.Context) -> list[tuple[str, str, str, str]]:
    """The image menu's review buttons for this viewer: (value, glyph, verb, key), then "clear"."""
    buttons = _BUTTONS if is_owner(context) else _BUTTONS[:1]
    return [*((value, glyph, verb, key) for value, glyph, verb, key, _ in buttons), ("none", "", "Clear", "0")]


@register.simple_tag
def review_link(image_id: int) -> str:
    return review_url(image_id)
