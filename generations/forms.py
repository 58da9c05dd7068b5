from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils.text import Truncator

from generations import actions, params
from generations.models import Collection, Flag, Membership, Prompt, Task, Team
from generations.services.collections import collection_name_clean

# The `action` values an image's buttons may send, "action:option", from the one table in actions.py.
GRID_IMAGE_ACTIONS = actions.values_valid_on(actions.GRID)
UPSCALE_IMAGE_ACTIONS = actions.values_valid_on(actions.UPSCALE)


class CollectionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Collection) -> str:
        # Beside "1:1" and Imagine, a bare name would not say what it is for; kept short for a phone's width.
        return f"Into “{Truncator(obj.name).chars(24)}”"


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
    # Where the new task's images go when they arrive; only the team's own collections are offered or accepted.
    collection = CollectionChoiceField(
        queryset=Collection.objects.none(),
        required=False,
        empty_label="No collection",
        widget=forms.Select(attrs={"id": "id_collection"}),
        error_messages={"invalid_choice": "Choose one of your team's collections (that one may have been deleted)."},
    )

    def __init__(self, *args: object, team: Team | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if team is not None:
            self.fields["collection"].queryset = Collection.objects.filter(team=team).order_by("name_key")


class CollectionForm(forms.Form):
    """A collection's name, for creating or renaming one: the rules are collection_name_clean's."""

    name = forms.CharField(error_messages={"required": "Give the collection a name."})

    def __init__(self, *args: object, team: Team, collection: Collection | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.team, self.collection = team, collection

    def clean_name(self) -> str:
        return collection_name_clean(team=self.team, name=self.cleaned_data["name"], collection=self.collection)


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
            option = _custom_zoom(data.get("zoom_factor", ""))
        data["task_action"], data["task_option"] = name, option
        return data


ZOOM_RANGE = "Custom zoom must be more than 1 and at most 2 (for example 1.25)"


def _custom_zoom(typed: str) -> str:
    """The factor as sent upstream, with two decimals. What was typed and what is sent must both lie in (1, 2]:
    2.005 is over 2 though it rounds to 2, and 1.004 would be sent as 1."""
    typed = typed.strip()
    try:
        factor = Decimal(typed) if 0 < len(typed) <= 16 else None
    except InvalidOperation:
        factor = None
    if factor is None or not factor.is_finite():
        raise forms.ValidationError(f"{ZOOM_RANGE}: write a number with at most two decimals.")
    if not (1 < factor <= 2):
        raise forms.ValidationError(f"{ZOOM_RANGE}: {typed} is outside that range.")
    sent = factor.quantize(Decimal("0.01"))
    if not (1 < sent <= 2):
        raise forms.ValidationError(f"{ZOOM_RANGE}: {typed} would be sent as {sent} (two decimals at most).")
    return format(sent.normalize(), "f")


class FlagForm(forms.Form):
    """A member's report of an image or a task: a reason from the short list, and a note if they like."""

    reason = forms.ChoiceField(
        choices=Flag.Reason.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose a reason from the list.",
            "invalid_choice": "Choose a reason from the list.",
        },
    )
    note = forms.CharField(
        required=False,
        max_length=Flag.NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"max_length": f"Keep the note under {Flag.NOTE_MAX_LENGTH} characters."},
    )


class ModerationActForm(forms.Form):
    """An owner's bulk act on the moderation page. The reason's rules (given, not too long) are the service's; a
    CharField here refuses what no database could store (NUL)."""

    act = forms.ChoiceField(
        choices=(("hide", "Hide"), ("restore", "Restore"), ("clear", "Clear flag")),
        error_messages={
            "required": "Choose Hide, Restore or Clear flag.",
            "invalid_choice": "Choose Hide, Restore or Clear flag.",
        },
    )
    reason = forms.CharField(required=False, strip=False)


class TeamSwitchForm(forms.Form):
    """The header's team menu: which of the user's teams to work in, by id."""

    team = forms.CharField(strip=False)

    def clean_team(self) -> int:
        # ASCII digits only, within the database's range: IntegerField would take " 1" and "٣" (Arabic three).
        if (team_id := params.positive_int(self.cleaned_data["team"])) is None:
            raise forms.ValidationError("Choose one of your teams.")
        return team_id


# --- The team settings page: every POST through one of these, so that what no database can store (NUL) is
# refused with the field's message before a service sees it.


class BlockedTermForm(forms.Form):
    """A term of the team's blocklist, added or edited. Its rules (given, not too long, a pattern that compiles,
    not on the list twice) are the blocklist service's."""

    text = forms.CharField(required=False, strip=False)
    is_regex = forms.BooleanField(required=False)


ROLE_ERRORS = {"required": "Choose a role: member or owner.", "invalid_choice": "Choose a role: member or owner."}


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices, error_messages=ROLE_ERRORS)


class InvitationForm(forms.Form):
    """Whom an owner invites, by username, and as what."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator(message="A username has only letters, digits and @ . + - _ in it.")],
        error_messages={
            "required": "Write the username of the person to invite.",
            "max_length": "A username has at most %(limit_value)d characters.",
        },
    )
    role = forms.ChoiceField(
        choices=Membership.Role.choices, initial=Membership.Role.MEMBER, error_messages=ROLE_ERRORS
    )
