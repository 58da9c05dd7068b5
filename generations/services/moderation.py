"""Flagging, hiding, restoring and clearing flags: the one place these writes happen, each act audited.

Items are images or tasks, passed as a queryset of either model (the admin's bulk actions, an owner's review
queue and a single click all come through here). Every change bumps the affected tasks' `updated_at`, so open
studios redraw (or drop) those cards on their next refresh.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from generations.models import AuditEntry, Flag, Image, Task, Team
from generations.services import queue
from generations.services.audit import audit_entry, audit_record

REASON_MAX_LENGTH = 300


class ModerationError(ValueError):
    """A moderation request that changes nothing: the message says why, for the user."""


class FlagAlreadyOpen(ModerationError):
    """The member's own flag on this item is still open: nothing new is made."""


def _team_id(item: Image | Task) -> int:
    return item.task.team_id if isinstance(item, Image) else item.team_id


def _task_ids(items: list[Image | Task]) -> set[int]:
    return {item.task_id if isinstance(item, Image) else item.pk for item in items}


def reason_clean(reason: str) -> str:
    """The reason stripped, or ModerationError if it is missing or too long: the rule for every audited reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ModerationError("Give a reason: it is kept in the audit trail.")
    if len(reason) > REASON_MAX_LENGTH:
        raise ModerationError(f"Keep the reason under {REASON_MAX_LENGTH} characters.")
    return reason


def flag_create(
    *,
    user: AbstractBaseUser,
    team: Team,
    reason: str,
    note: str = "",
    image: Image | None = None,
    task: Task | None = None,
) -> Flag:
    """A member's report. The item must be the team's (the caller looked it up within the team)."""
    if (image is None) == (task is None):
        raise ValueError("flag exactly one image or one task")
    if reason not in Flag.Reason.values:
        raise ModerationError("Choose a reason from the list.")
    note = (note or "").strip()
    if len(note) > Flag.NOTE_MAX_LENGTH:
        raise ModerationError(f"Keep the note under {Flag.NOTE_MAX_LENGTH} characters.")
    item = image if image is not None else task
    if _team_id(item) != team.pk:
        raise ValueError(f"{item} is not team {team.pk}'s")
    already = FlagAlreadyOpen("You have already flagged this: the team's owners will review it.")
    if Flag.objects.filter(image=image, task=task, created_by=user, resolved_at=None).exists():
        raise already
    now = timezone.now()
    # The audit's "why": the reason's label, and the member's note after it.
    why = f"{Flag.Reason(reason).label}: {note}" if note else Flag.Reason(reason).label
    try:
        with transaction.atomic():
            flag = Flag.objects.create(
                team=team, image=image, task=task, reason=reason, note=note, created_by=user, created_at=now
            )
            type(item).objects.filter(pk=item.pk, flagged_at=None).update(flagged_at=now)
            audit_record(actor=user, act=AuditEntry.Act.FLAG, team=team, target=item, reason=why, flag_reason=reason)
    except IntegrityError:  # the same member's other request got there first (flag_*_open_once)
        raise already from None
    return flag


def _flags_of(items: list[Image | Task]) -> QuerySet[Flag]:
    images = [i.pk for i in items if isinstance(i, Image)]
    tasks = [t.pk for t in items if isinstance(t, Task)]
    return Flag.objects.filter(resolved_at=None).filter(**({"image__in": images} if images else {"task__in": tasks}))


def _apply(
    *, actor: AbstractBaseUser, items: QuerySet, act: str, reason: str, now: datetime, only: dict, changes: dict
) -> int:
    """Change the items that need it (`only` picks them), resolve their flags when asked, bump their cards and
    audit each one, in one transaction. Returns how many items changed."""
    model = items.model
    if model not in (Image, Task):
        raise TypeError(f"cannot moderate {model.__name__}")
    with transaction.atomic():
        targets = list(items.filter(**only).select_related("task") if model is Image else items.filter(**only))
        if not targets:
            return 0
        model.objects.filter(pk__in=[t.pk for t in targets]).update(**changes)
        if act in (AuditEntry.Act.HIDE, AuditEntry.Act.CLEAR_FLAGS):
            _flags_of(targets).update(resolved_at=now, resolved_by=actor)
        Task.objects.filter(pk__in=_task_ids(targets)).update_visibly(at=now)
        AuditEntry.objects.bulk_create(
            audit_entry(actor=actor, act=act, team=_team_id(t), target=t, reason=reason, at=now) for t in targets
        )
    return len(targets)


def items_hide(*, actor: AbstractBaseUser, items: QuerySet, reason: str) -> int:
    """Hide images or tasks: gone for everyone but staff, their files included. Resolves their open flags.
    A hidden task still waiting in the fair queue is withdrawn (failed, never sent, never charged)."""
    reason, now = reason_clean(reason), timezone.now()
    changes = {"hidden_at": now, "hidden_by": actor, "hidden_reason": reason, "flagged_at": None}
    with transaction.atomic():
        changed = _apply(
            actor=actor,
            items=items,
            act=AuditEntry.Act.HIDE,
            reason=reason,
            now=now,
            only={"hidden_at": None},
            changes=changes,
        )
        if changed and items.model is Task:
            withdrawn = queue.waiting().filter(pk__in=items.values("pk"), hidden_at__isnull=False)
            if withdrawn.update_visibly(
                at=now, status=Task.Status.FAILED, error=WITHDRAWN, finished_at=now, queue_position=None
            ):
                queue.queue_dispatch_after_commit()  # the line behind it moves up
    return changed


WITHDRAWN = "Hidden by a moderator before it was sent: nothing was sent to Apiframe or charged."


def items_restore(*, actor: AbstractBaseUser, items: QuerySet, reason: str) -> int:
    """Bring hidden images or tasks back."""
    reason, now = reason_clean(reason), timezone.now()
    return _apply(
        actor=actor,
        items=items,
        act=AuditEntry.Act.RESTORE,
        reason=reason,
        now=now,
        only={"hidden_at__isnull": False},
        changes={"hidden_at": None, "hidden_by": None, "hidden_reason": ""},
    )


def flags_clear(*, actor: AbstractBaseUser, items: QuerySet, reason: str) -> int:
    """Dismiss the open flags of images or tasks: they leave the review queue and stay visible."""
    reason, now = reason_clean(reason), timezone.now()
    return _apply(
        actor=actor,
        items=items,
        act=AuditEntry.Act.CLEAR_FLAGS,
        reason=reason,
        now=now,
        only={"flagged_at__isnull": False},
        changes={"flagged_at": None},
    )
