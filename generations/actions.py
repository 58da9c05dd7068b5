"""The action vocabulary, defined once: every button of an image's menu, its label and accessible name, its
price, where it is valid, and how a task it made is described. ActionForm validates against this table, the
menu (studio.html#image-menu) is rendered from it, Task.describe() words tasks with it, and prices come from
settings.MJSTUDIO_CREDIT_PRICES under its price keys. Plain data: it imports no model."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

# The kinds of image an action applies to: an image of a 2x2 grid, or a single upscaled image.
GRID = "grid"
UPSCALE = "upscale"


@dataclass(frozen=True)
class ImageAction:
    action: str  # Task.action of the task it makes
    option: str  # Task.option ("custom": the zoom factor typed in the menu)
    label: str  # the button's text
    name: str  # its accessible name without the image: "Pan right" -> "Pan right, image 3"
    done: str  # how a task it made is described, with {option} and {index}
    valid_on: frozenset[str]

    @property
    def value(self) -> str:
        """What the button sends as `action`: "pan:right"."""
        return f"{self.action}:{self.option}"

    @property
    def is_custom(self) -> bool:
        return self.option == "custom"

    def accessible_name(self, index: int | str) -> str:
        return f"{self.name}, image {index}"


@dataclass(frozen=True)
class MenuRow:
    label: str
    price_key: str
    valid_on: frozenset[str]
    choices: tuple[ImageAction, ...]

    @property
    def price(self) -> int:
        return price(self.price_key)

    @property
    def valid_on_names(self) -> str:
        """For the menu's markup: studio.js shows a row only for the kinds it names."""
        return " ".join(sorted(self.valid_on))

    @property
    def is_custom(self) -> bool:
        return any(choice.is_custom for choice in self.choices)


def _row(label: str, action: str, valid_on: set[str], *choices: tuple[str, str, str, str]) -> MenuRow:
    """A menu row of one action: each choice is (option, label, accessible name, description)."""
    where = frozenset(valid_on)
    return MenuRow(
        label=label,
        price_key=action,
        valid_on=where,
        choices=tuple(ImageAction(action, option, text, name, done, where) for option, text, name, done in choices),
    )


# The image menu, top to bottom. An upscaled image can only be varied again.
MENU: tuple[MenuRow, ...] = (
    _row(
        "Vary",
        "vary",
        {GRID, UPSCALE},
        ("strong", "Strong", "Vary (Strong)", "Vary (strong) of image {index}"),
        ("subtle", "Subtle", "Vary (Subtle)", "Vary (subtle) of image {index}"),
    ),
    _row(
        "Upscale",
        "upscale",
        {GRID},
        ("subtle", "Subtle", "Upscale (Subtle)", "Upscale (subtle) of image {index}"),
        ("creative", "Creative", "Upscale (Creative)", "Upscale (creative) of image {index}"),
    ),
    _row(
        "Pan",
        "pan",
        {GRID},
        ("left", "←", "Pan left", "Pan left of image {index}"),
        ("right", "→", "Pan right", "Pan right of image {index}"),
        ("up", "↑", "Pan up", "Pan up of image {index}"),
        ("down", "↓", "Pan down", "Pan down of image {index}"),
    ),
    _row(
        "Zoom out",
        "zoom",
        {GRID},
        ("1.5", "1.5×", "Zoom Out 1.5×", "Zoom out 1.5× of image {index}"),
        ("2", "2×", "Zoom Out 2×", "Zoom out 2× of image {index}"),
        ("1", "Make square", "Make Square", "Make square of image {index}"),
    ),
    _row("Custom", "zoom", {GRID}, ("custom", "Zoom", "Custom Zoom", "Zoom out {option}× of image {index}")),
)
IMAGE_ACTIONS: dict[str, ImageAction] = {choice.value: choice for row in MENU for choice in row.choices}

# Actions on a whole task rather than on one of its images, by label; each is its own price key. Reroll
# applies to an imagined grid only (ActionForm says so).
TASK_ACTIONS: dict[str, str] = {"imagine": "Imagine", "reroll": "Reroll"}


def values_valid_on(kind: str) -> frozenset[str]:
    """Every `action` value a button may send for an image of this kind."""
    return frozenset(value for value, choice in IMAGE_ACTIONS.items() if kind in choice.valid_on)


def describe(action: str, option: str, index: int | None) -> str | None:
    """How a task is named in its card and its lineage: "Pan right of image 3"; None for an unknown action."""
    if action in TASK_ACTIONS:
        return TASK_ACTIONS[action]
    choice = IMAGE_ACTIONS.get(f"{action}:{option}") or IMAGE_ACTIONS.get(f"{action}:custom")
    return choice.done.format(option=option, index=index) if choice else None


def price(price_key: str) -> int:
    """Credits Apiframe charges for an action (settings.MJSTUDIO_CREDIT_PRICES; 0 when it does not say)."""
    return settings.MJSTUDIO_CREDIT_PRICES.get(price_key, 0)
