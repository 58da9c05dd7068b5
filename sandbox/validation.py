"""Checking a create request's JSON body the way Apiframe does: each problem is one clear 400 message."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_PROMPT = 4000
TYPES = {
    "vary": ("strong", "subtle"),
    "upscale": ("subtle", "creative"),
    "pan": ("up", "down", "left", "right"),
}
ASPECT = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
PROMPT_ASPECT = re.compile(r"--(?:ar|aspect)\s+(\d{1,3}\s*:\s*\d{1,3})")


class Invalid(Exception):
    """A create request Apiframe would refuse with 400; the message says why."""


@dataclass(frozen=True)
class Spec:
    """A valid create request. For child actions, `option` is the type: a word, or the zoom factor."""

    action: str
    prompt: str = ""
    mode: str = "fast"
    aspect: tuple[int, int] = (1, 1)
    parent_task_id: str = ""
    index: int = 0
    option: str | float = ""
    webhook_url: str = ""
    webhook_secret: str = ""


def parse_create(action: str, body: dict, banned_words: tuple[str, ...]) -> Spec:
    webhook_url, webhook_secret = _webhook(body)
    if action == "imagine":
        prompt = _prompt(body, banned_words)
        return Spec(
            action,
            prompt=prompt,
            mode=_mode(body),
            aspect=_aspect(body, prompt),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
    parent = body.get("parent_task_id")
    if not isinstance(parent, str) or not parent.strip():
        raise Invalid("parent_task_id is required")
    return Spec(
        action,
        parent_task_id=parent.strip(),
        index=_index(body),
        option=_option(action, body),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )


def _prompt(body: dict, banned_words: tuple[str, ...]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Invalid("prompt is required")
    if len(prompt) > MAX_PROMPT:
        raise Invalid(f"prompt is too long: {len(prompt)} characters, the limit is {MAX_PROMPT}")
    for word in banned_words:
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt, re.IGNORECASE):
            raise Invalid(f'Banned prompt detected: the word "{word}" is not allowed')
    return prompt.strip()


def _mode(body: dict) -> str:
    mode = body.get("mode") or "fast"
    if mode not in ("fast", "turbo"):
        raise Invalid('mode must be "fast" or "turbo"')
    return mode


def _aspect(body: dict, prompt: str) -> tuple[int, int]:
    """From `aspect_ratio`, else from a Midjourney `--ar 16:9` inside the prompt, else square."""
    value = body.get("aspect_ratio")
    if value is None:
        found = PROMPT_ASPECT.search(prompt)
        value = found.group(1) if found else "1:1"
    match = ASPECT.match(value) if isinstance(value, str) else None
    a, b = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not a or not b or not 0.25 <= a / b <= 4:
        raise Invalid('aspect_ratio must look like "16:9", between 1:4 and 4:1')
    return a, b


def _index(body: dict) -> int:
    index = body.get("index")
    if isinstance(index, str) and index.strip() in ("1", "2", "3", "4"):
        return int(index)
    if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= 4:
        return index
    raise Invalid('index must be "1", "2", "3" or "4"')


def _option(action: str, body: dict) -> str | float:
    value = body.get("type")
    if action == "zoom":
        return _zoom(value)
    if value not in TYPES[action]:
        choices = " or ".join(f'"{t}"' for t in TYPES[action])
        raise Invalid(f"type must be {choices} for {action}")
    return value


def _zoom(value: object) -> float:
    """1 makes the image square; any factor in (1, 2] zooms out. A number or a numeric string."""
    factor = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        factor = float(value)
    elif isinstance(value, str):
        try:
            factor = float(value.strip())
        except ValueError:
            factor = math.nan
    if factor == 1 or 1 < factor <= 2:
        return factor
    raise Invalid("type must be 1 (make square) or a zoom-out factor in (1, 2], such as 1.5 or 2")


def _webhook(body: dict) -> tuple[str, str]:
    url, secret = body.get("webhook_url") or "", body.get("webhook_secret") or ""
    if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
        raise Invalid("webhook_url must be an http(s) URL")
    if not isinstance(secret, str):
        raise Invalid("webhook_secret must be a string")
    return url, secret
