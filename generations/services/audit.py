"""The audit trail: every moderation and operations act, who did it, to what, when and why."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from generations.models import AuditEntry, Team


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    act: str,
    team: Team | int | None = None,
    target: models.Model | None = None,
    reason: str = "",
    **details: object,
) -> AuditEntry:
    """One row of the trail. Call it inside the transaction of the act itself, so neither exists without the
    other. `details` must be JSON: ids, names, before and after values."""
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor is not None and actor.is_authenticated else "",
        team_id=team.pk if isinstance(team, Team) else team,
        act=act,
        target_type=target._meta.model_name if target is not None else "",
        target_id=target.pk if target is not None else None,
        target_repr=str(target)[:200] if target is not None else "",
        reason=reason,
        details=details,
    )
