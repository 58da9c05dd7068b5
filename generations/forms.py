from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms

from generations import actions
from generations.models import Prompt, Task

# The `action` values an image's buttons may send, "action:option", from the one table in actions.py.
GRID_IMAGE_ACTIONS = actions.values_valid_on(actions.GRID)
UPSCALE_IMAGE_ACTIONS = actions.values_valid_on(actions.UPSCALE)


class ImagineForm(forms.Form):
    prompt = forms.CharField(
        max_length=Prompt.MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Describe an image…"}),
        error_messages={
            "required": "Write a prompt first.",
            "max_length": "Keep the prompt to %(limit_value)d characters at most (it has %(show_value)d).",
        },
    )
    mode = forms.ChoiceField(choices=Prompt.Mode, initial=Prompt.Mode.FAST)
    aspect_ratio = forms.ChoiceField(choices=[(r, r) for r in Prompt.ASPECT_RATIOS], initial="1:1")
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)


class ActionForm(forms.Form):
    """One click on an image's button: which action, which image, and the custom zoom factor if any."""

    action = forms.CharField(max_length=32, error_messages={"required": "Choose an action."})
    index = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=4,
        error_messages={
            "required": "Say which image (1 to 4).",
            "invalid": "The image number must be 1, 2, 3 or 4.",
            "min_value": "The image number must be 1, 2, 3 or 4.",
            "max_value": "The image number must be 1, 2, 3 or 4.",
        },
    )
    # Read only for "zoom:custom" (see clean): what sits in that box must not block another button.
    zoom_factor = forms.CharField(required=False)
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: object, parent: Task, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.parent = parent

    def clean(self) -> dict:
        data = super().clean()
        action = data.get("action")
        if action is None or self.errors:
            return data
        if self.parent.status != Task.Status.FINISHED:
            raise forms.ValidationError("That task has not finished yet: wait for its images.")
        if action == "reroll":
            if self.parent.action != Task.Action.IMAGINE:
                raise forms.ValidationError("Only an imagined grid can be rerolled.")
            data.update(task_action=Task.Action.REROLL, task_option="", index=None)
            return data
        if data.get("index") is None:
            raise forms.ValidationError("Say which image (1 to 4).")
        allowed = GRID_IMAGE_ACTIONS if self.parent.is_grid else UPSCALE_IMAGE_ACTIONS
        if action not in allowed:
            name, _, option = action.partition(":")
            if action in GRID_IMAGE_ACTIONS:
                raise forms.ValidationError("An upscaled image can only be varied (Strong or Subtle).")
            if name == "pan":
                raise forms.ValidationError(f"Unknown pan direction {option!r}: use left, right, up or down.")
            raise forms.ValidationError(f"Unknown action {action!r}.")
        if not self.parent.is_grid and data.get("index") != 1:
            raise forms.ValidationError("An upscale has a single image: use image 1.")
        name, _, option = action.partition(":")
        if option == "custom":
            try:
                factor = Decimal(data.get("zoom_factor", "").strip()[:16]).quantize(Decimal("0.01"))
            except InvalidOperation:  # not a number, NaN, or out of any sane range
                factor = None
            if factor is None or not factor.is_finite() or not (Decimal(1) < factor <= Decimal(2)):
                raise forms.ValidationError("Custom zoom must be more than 1 and at most 2 (for example 1.25).")
            option = format(factor.normalize(), "f")
        data["task_action"], data["task_option"] = name, option
        return data
