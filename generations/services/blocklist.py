"""The blocklist: a team's terms and the site's, checked before any prompt goes upstream; adding, changing and
removing terms, each audited.

Matching rules are in generations/blockmatch.py. The compiled terms are kept per process and per team: a check
costs one aggregate query (count, newest id, sum of revisions of the team's and the site's terms), which changes
with any add, edit or removal in any process, and reloads the rows only then.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum

from generations import blockmatch
from generations.models import AuditEntry, BlockedTerm, Task, Team
from generations.services.audit import audit_record

CACHED_TEAMS = 256  # compiled matchers kept per process, least recently used dropped first


class BlocklistError(ValueError):
    """A term that cannot be saved: the message says why, for the user."""


@dataclass(frozen=True)
class Blocked:
    term: str  # as its owner wrote it
    scope: str  # "team" or "site"

    @property
    def message(self) -> str:
        whose = "this team" if self.scope == "team" else "this studio"
        return f"Your prompt contains “{self.term}”, which {whose} does not allow."


class PromptBlocked(Exception):
    """A prompt refused by the blocklist: nothing was created or sent. The attempt is audited."""

    def __init__(self, blocked: Blocked) -> None:
        super().__init__(blocked.message)
        self.blocked = blocked
        self.message = blocked.message


_cache: OrderedDict[int | None, tuple[tuple, blockmatch.Matcher]] = OrderedDict()
_cache_lock = threading.Lock()


def _terms(team_id: int | None) -> QuerySet[BlockedTerm]:
    return BlockedTerm.objects.filter(Q(team=None) | Q(team_id=team_id) if team_id else Q(team=None))


def _matcher(team_id: int | None) -> blockmatch.Matcher:
    """The team's terms and the site's, compiled; rebuilt only when the fingerprint query says they changed."""
    stamp = _terms(team_id).aggregate(n=Count("pk"), top=Max("pk"), revisions=Sum("revision"))
    fingerprint = (stamp["n"], stamp["top"], stamp["revisions"])
    with _cache_lock:
        cached = _cache.get(team_id)
        if cached is not None and cached[0] == fingerprint:
            _cache.move_to_end(team_id)
            return cached[1]
    matcher = blockmatch.Matcher()
    rows = _terms(team_id).order_by(F("team_id").desc(nulls_last=True), "pk").values_list("text", "is_regex", "team_id")
    for text, is_regex, term_team in rows:  # the team's own first: a term in both lists is named as the team's
        matcher.add(text, is_regex=is_regex, scope="team" if term_team else "site")
    with _cache_lock:
        _cache[team_id] = (fingerprint, matcher)
        _cache.move_to_end(team_id)
        while len(_cache) > CACHED_TEAMS:
            _cache.popitem(last=False)
    return matcher


def prompt_blocked(*, team: Team | int | None, text: str) -> Blocked | None:
    """The blocked term this prompt contains (the team's or the site's), or None."""
    team_id = team.pk if isinstance(team, Team) else team
    matcher = _matcher(team_id)
    term = matcher.find(text)
    return Blocked(term=term, scope=matcher.scopes.get(term, "site")) if term is not None else None


def prompt_check(*, team: Team | int, user: AbstractBaseUser, text: str, action: str, task: Task | None = None) -> None:
    """Refuse a prompt that holds a blocked term: audit the attempt (for the admins) and raise PromptBlocked."""
    blocked = prompt_blocked(team=team, text=text)
    if blocked is None:
        return
    audit_record(
        actor=user,
        act=AuditEntry.Act.PROMPT_BLOCKED,
        team=team,
        target=task,
        reason=blocked.message,
        prompt=text,
        term=blocked.term,
        scope=blocked.scope,
        action=action,
    )
    raise PromptBlocked(blocked)


# --- Editing the list --------------------------------------------------------------------------------------


def term_clean(*, team: Team | None, text: str, is_regex: bool, exclude: int | None = None) -> str:
    """The term as it will be saved, or BlocklistError saying why it cannot be."""
    text = (text or "").strip()
    if problem := blockmatch.term_problem(text, is_regex=is_regex):
        raise BlocklistError(problem)
    key = blockmatch.term_key(text, is_regex=is_regex)
    same_list = BlockedTerm.objects.filter(team=team, is_regex=is_regex).exclude(pk=exclude)
    if any(blockmatch.term_key(t, is_regex=is_regex) == key for t in same_list.values_list("text", flat=True)):
        raise BlocklistError(f"“{text}” is already on the list.")
    return text


def _state(term: BlockedTerm) -> dict:
    return {"text": term.text, "is_regex": term.is_regex}


def term_add(*, actor: AbstractBaseUser, team: Team | None, text: str, is_regex: bool = False) -> BlockedTerm:
    """A new term on the team's list (or the site's, team None). Raises BlocklistError, changing nothing."""
    text = term_clean(team=team, text=text, is_regex=is_regex)
    with transaction.atomic():
        term = BlockedTerm.objects.create(team=team, text=text, is_regex=is_regex, created_by=actor)
        audit_record(actor=actor, act=AuditEntry.Act.BLOCKLIST_ADD, team=team, target=term, after=_state(term))
    return term


def term_change(*, actor: AbstractBaseUser, term: BlockedTerm, text: str, is_regex: bool) -> BlockedTerm:
    """Edit a term in place; an unchanged one is left alone (and not audited)."""
    text = term_clean(team=term.team, text=text, is_regex=is_regex, exclude=term.pk)
    before = _state(term)
    if before == {"text": text, "is_regex": is_regex}:
        return term
    with transaction.atomic():
        BlockedTerm.objects.filter(pk=term.pk).update(text=text, is_regex=is_regex, revision=F("revision") + 1)
        term.refresh_from_db()
        audit_record(
            actor=actor,
            act=AuditEntry.Act.BLOCKLIST_CHANGE,
            team=term.team,
            target=term,
            before=before,
            after=_state(term),
        )
    return term


def term_remove(*, actor: AbstractBaseUser, term: BlockedTerm) -> None:
    with transaction.atomic():
        audit_record(actor=actor, act=AuditEntry.Act.BLOCKLIST_REMOVE, team=term.team, target=term, before=_state(term))
        term.delete()
