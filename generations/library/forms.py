"""The library's URL as a form: every filter lives in the query string, so a view can be shared or bookmarked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.functional import cached_property

from generations.library.queries import Filters, Position
from generations.library.search import MAX_QUERY_LENGTH, search_terms
from generations.models import Collection, Image, Prompt, Task, Team

# The status filter speaks of what a reader sees, not of the queue's stages.
STATUS_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "finished": ("Finished", (Task.Status.FINISHED,)),
    "in_progress": ("In progress", Task.IN_FLIGHT),
    "failed": ("Failed", (Task.Status.FAILED,)),
    "timed_out": ("Timed out", (Task.Status.TIMED_OUT,)),
}
# An image's review state, by the URL's word for it ("none": not reviewed), with its chip's label.
REVIEW_STATES: dict[str, tuple[str, str]] = {
    "none": ("Not reviewed", Image.Review.NONE),
    "shortlisted": ("☆ Shortlisted", Image.Review.SHORTLISTED),
    "approved": ("✓ Approved", Image.Review.APPROVED),
    "rejected": ("✕ Rejected", Image.Review.REJECTED),
}
# The filters, in the order of their chips. `cursor` and `until` are positions, not filters.
FILTER_NAMES = (
    "q", "author", "action", "status", "from", "to", "mode", "ratio", "review", "fav", "collection", "lineage",
)  # fmt: skip
URL_NAMES = (*FILTER_NAMES, "stacks", "cursor", "until")
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)


class PositionField(forms.Field):
    """A place in the listing (queries.Position), as `cursor` and `until` write it."""

    default_error_messages = {"invalid": "This link's place in the library is damaged: start again from the top."}

    def to_python(self, value: str | None) -> Position | None:
        if not value:
            return None
        try:
            return Position.decode(value)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class LibraryFiltersForm(forms.Form):
    """Bound to request.GET. Choices are the team's own (members, collections, tasks): another team's id is
    simply not a choice."""

    q = forms.CharField(
        required=False,
        max_length=MAX_QUERY_LENGTH,
        strip=True,
        error_messages={"max_length": "Search for at most %(limit_value)d characters (this has %(show_value)d)."},
    )
    author = forms.ModelChoiceField(
        queryset=None,
        required=False,
        to_field_name="username",
        empty_label="Anyone",
        error_messages={"invalid_choice": "No member of this team is called that."},
    )
    action = forms.ChoiceField(choices=[("", "Any action"), *Task.Action.choices], required=False)
    status = forms.ChoiceField(
        choices=[("", "Any status"), *((k, label) for k, (label, _) in STATUS_GROUPS.items())], required=False
    )
    mode = forms.ChoiceField(choices=[("", "Any mode"), *Prompt.Mode.choices], required=False)
    ratio = forms.ChoiceField(choices=[("", "Any ratio"), *((r, r) for r in Prompt.ASPECT_RATIOS)], required=False)
    review = forms.ChoiceField(
        choices=[("", "Any review"), *((k, label) for k, (label, _) in REVIEW_STATES.items())], required=False
    )
    fav = forms.ChoiceField(choices=[("", "Everything"), ("1", "My favourites")], required=False)
    collection = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Any collection",
        error_messages={"invalid_choice": "This team has no such collection."},
    )
    lineage = forms.ModelChoiceField(
        queryset=None,
        required=False,
        error_messages={"invalid_choice": "This team has no such task."},
    )
    stacks = forms.ChoiceField(choices=[("", "Stacked"), ("0", "Every image")], required=False)
    cursor = PositionField(required=False)
    until = PositionField(required=False)

    def __init__(self, data: object, *, team: Team) -> None:
        super().__init__(data)
        self.team = team
        date_errors = {"invalid": "Enter a date as YYYY-MM-DD."}
        # "from" and "to" are Python keywords: declared here, under the names the URL uses.
        self.fields["from"] = forms.DateField(required=False, error_messages=date_errors)
        self.fields["to"] = forms.DateField(required=False, error_messages=date_errors)
        self.fields["author"].queryset = get_user_model().objects.filter(memberships__team=team).order_by("username")
        self.fields["collection"].queryset = Collection.objects.filter(team=team)
        self.fields["lineage"].queryset = Task.objects.filter(team=team).only("pk", "root_id")

    def clean(self) -> dict:
        data = super().clean()
        for name in ("from", "to"):
            # Far dates would overflow on their way to UTC (or a day further), and mean nothing here anyway.
            if data.get(name) and not (EARLIEST <= data[name] <= LATEST):
                self.add_error(name, f"Pick a date between {EARLIEST:%Y} and {LATEST:%Y}.")
        start, end = data.get("from"), data.get("to")
        if start and end and end < start:
            self.add_error("to", "The end date is before the start date.")
        if data.get("cursor") and data.get("until") and data["until"].created_at > data["cursor"].created_at:
            self.add_error("until", "This link's place in the library is damaged: start again from the top.")
        return data

    @cached_property
    def menus(self) -> dict[str, list[tuple[str, str]]]:
        """Each select's options as (value, label), one query each for the team's members and collections,
        and only when a page shows the form (not for a page that arrives by scrolling)."""
        names = ("author", "action", "status", "mode", "ratio", "review", "collection")
        return {name: [(str(value), str(label)) for value, label in self.fields[name].choices] for name in names}

    @property
    def curated(self) -> bool:
        """One lineage, favourites, a collection or a review state: images someone picked (or one stack already,
        or images to pick from), listed every one, never stacked."""
        data = self.cleaned_data
        return bool(data.get("lineage") or data.get("fav") or data.get("collection") or data.get("review"))

    @property
    def not_found(self) -> bool:
        """An error names another team's (or no) collection or task: the page answers 404, as for any object
        of another team."""
        return any(
            error.code == "invalid_choice"
            for name in ("collection", "lineage")
            for error in self.errors.as_data().get(name, [])
        )

    def filters(self) -> Filters:
        """What the valid form asks for, as the query takes it."""
        data = self.cleaned_data
        lineage = data.get("lineage")
        return Filters(
            terms=search_terms(data.get("q") or ""),
            author_id=data["author"].pk if data.get("author") else None,
            action=data.get("action") or "",
            statuses=STATUS_GROUPS[data["status"]][1] if data.get("status") else (),
            created_from=_day_start(data["from"]) if data.get("from") else None,
            created_before=_day_start(data["to"] + timedelta(days=1)) if data.get("to") else None,
            mode=data.get("mode") or "",
            aspect_ratio=data.get("ratio") or "",
            favourites=data.get("fav") == "1",
            review=REVIEW_STATES[data["review"]][1] if data.get("review") else None,
            collection_id=data["collection"].pk if data.get("collection") else None,
            root_id=(lineage.root_id or lineage.pk) if lineage else None,
            stacked=data.get("stacks") != "0" and not self.curated,
        )

    def params(self, **changes: str | None) -> dict[str, str]:
        """The URL's parameters (filters and view, never the position) that are set, with `changes` applied."""
        raw = {name: self.data.get(name, "") for name in (*FILTER_NAMES, "stacks")}
        raw.update({k: v for k, v in changes.items()})
        return {k: v for k, v in raw.items() if v}

    def url(self, **changes: str | None) -> str:
        query = urlencode(self.params(**changes))
        return f"?{query}" if query else "?"

    def chips(self) -> list[Chip]:
        """The filters in use, each with the link that removes it (back to the top of the listing)."""
        data = self.cleaned_data
        chips = []
        for name in FILTER_NAMES:
            value = data.get(name)
            if not value:
                continue
            chips.append(Chip(name=name, label=self._chip_label(name, value), remove_url=self.url(**{name: None})))
        return chips

    def _chip_label(self, name: str, value: object) -> str:
        match name:
            case "q":
                return f"“{value}”"
            case "author":
                return f"By {value.get_username()}"
            case "action":
                return Task.Action(value).label
            case "status":
                return STATUS_GROUPS[value][0]
            case "from":
                return f"From {value:%b %-d, %Y}"
            case "to":
                return f"To {value:%b %-d, %Y}"
            case "mode":
                return Prompt.Mode(value).label
            case "ratio":
                return value
            case "review":
                return REVIEW_STATES[value][0]
            case "fav":
                return "My favourites"
            case "collection":
                return f"Collection: {value.name}"
            case "lineage":
                return f"Lineage of #{value.root_id or value.pk}"
        return str(value)


@dataclass(frozen=True)
class Chip:
    name: str
    label: str
    remove_url: str


def _day_start(day: date) -> datetime:
    """Midnight starting `day`, in the studio's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))
