"""Review: an image's way from many to the chosen few. Any member shortlists (or takes an image off the shortlist);
the team's owners (and staff) approve, reject, or set any state. Every change is audited and redraws the card."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from generations.models import AuditEntry, Image, Task, Team
from generations.services.audit import audit_record
from generations.services.teams import is_team_owner

# What a member may do: move an image between these two states, and only from one of them.
MEMBER_STATES = frozenset({Image.Review.NONE, Image.Review.SHORTLISTED})


class ReviewRefused(ValueError):
    """A review change that changes nothing. `message` says why, for the user; `forbidden` means it is the role
    that is missing (a 403), not the request that is wrong (a 400)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.message, self.forbidden = message, forbidden


def image_review_set(*, user: AbstractBaseUser, team: Team, image: Image, state: str) -> bool:
    """Set the image's review state. The caller found the image within `team`. Returns whether anything changed
    (setting the state it already has changes nothing and writes no audit row).

    Raises ReviewRefused when the state is unknown, or when a member asks for more than shortlisting, or to
    change an image an owner has approved or rejected."""
    if state not in Image.Review.values:
        raise ReviewRefused("Choose a review state: none, shortlisted, approved or rejected.")
    owner = is_team_owner(user=user, team=team)
    if not owner and state not in MEMBER_STATES:
        raise ReviewRefused("Only the team's owners can approve or reject an image.", forbidden=True)
    with transaction.atomic():
        # Locked and read again: the role rule is about the state as it is now, not as the page showed it.
        current = (
            Image.objects.select_for_update(of=("self",))
            .only("pk", "review_state", "task_id")
            .get(pk=image.pk, task__team=team)  # never another team's, whatever the caller passed
        )
        before = current.review_state
        if not owner and before not in MEMBER_STATES:
            label = Image.Review(before).label.lower()
            raise ReviewRefused(f"An owner has {label} this image: only an owner can change that.", forbidden=True)
        if before == state:
            return False
        now = timezone.now()
        reviewer = None if state == Image.Review.NONE else user
        Image.objects.filter(pk=image.pk).update(
            review_state=state, reviewed_by=reviewer, reviewed_at=now if reviewer else None
        )
        # The card shows the state: open studios redraw it on their next refresh.
        Task.objects.filter(pk=current.task_id).update_visibly(at=now)
        audit_record(actor=user, act=AuditEntry.Act.REVIEW, team=team, target=image, before=before, after=state)
    image.review_state, image.reviewed_by, image.reviewed_at = state, reviewer, now if reviewer else None
    return True
