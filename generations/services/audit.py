"""The audit trail: every moderation and operations act, who did it, to what, when and why."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.utils import timezone

from generations.models import AuditEntry, Team


def audit_entry(
    *,
    actor: AbstractBaseUser | None,
    act: str,
    team: Team | int | None = None,
    target: models.Model | None = None,
    reason: str = "",
    at: datetime | None = None,
    **details: object,
) -> AuditEntry:
    """One row of the trail, not saved yet (acts on many items save theirs with one bulk_create).
    `details` must be JSON: ids, names, before and after values."""
    known = actor is not None and actor.is_authenticated
    return AuditEntry(
        created_at=at or timezone.now(),
        actor=actor if known else None,
        actor_name=actor.get_username() if known else "",
        team_id=team.pk if isinstance(team, Team) else team,
        act=act,
        target_type=target._meta.model_name if target is not None else "",
        target_id=target.pk if target is not None else None,
        target_repr=str(target)[:200] if target is not None else "",
        reason=reason,
        details=details,
    )


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    act: str,
    team: Team | int | None = None,
    target: models.Model | None = None,
    reason: str = "",
    **details: object,
) -> AuditEntry:
    """One row of the trail, saved. Call it inside the transaction of the act itself, so neither exists without
    the other."""
    entry = audit_entry(actor=actor, act=act, team=team, target=target, reason=reason, **details)
    entry.save()
    return entry
