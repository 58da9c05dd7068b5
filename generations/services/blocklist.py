"""The blocklist: a team's terms and the site's, checked before any prompt goes upstream; adding, changing and
removing terms, each audited.

Matching rules are in generations/blockmatch.py. The compiled terms are kept per process and per team: a check
costs one aggregate query (count, newest id, sum of revisions of the team's and the site's terms), which changes
with any add, edit or removal in any process, and reloads the rows only then.

What a check costs is bounded where terms are saved: each list (a team's, the site's) holds at most
MJSTUDIO_BLOCKLIST_MAX_TERMS terms and MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE of patterns (RE2 program size, what
a pattern costs per character of prompt). A prompt meets two lists, its team's and the site's: the same caps for
both keep the pair within the budget bench/blocklist.py measures, in the web submit and the worker's send check.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum

from generations import blockmatch
from generations.models import AuditEntry, BlockedTerm, Task, Team
from generations.services.audit import audit_record

logger = logging.getLogger(__name__)

CACHED_TEAMS = 256  # compiled matchers kept per process, least recently used dropped first
# A refusal's audit row keeps the prompt's start, not all of it: refusals are cheap to send, rows are kept for long.
AUDIT_EXCERPT = 200


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
    rows = _terms(team_id).order_by(F("team_id").desc(nulls_last=True), "pk").values_list("text", "is_regex", "team_id")
    # The team's own first: a term in both lists is named as the team's. Each list at most to the caps, oldest
    # terms first, so that no check, the worker's included, costs more than the caps allow.
    matcher = blockmatch.Matcher(
        (
            blockmatch.Term(text, is_regex=is_regex, scope="team" if term_team else "site")
            for text, is_regex, term_team in rows
        ),
        max_terms=settings.MJSTUDIO_BLOCKLIST_MAX_TERMS,
        max_weight=settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE,
    )
    for scope, count in matcher.skipped.items():
        logger.warning(
            "%s blocklist holds %s terms past its caps (saved before them): they are not checked until it is trimmed",
            f"team {team_id}'s" if scope == "team" else "the site-wide",
            count,
        )
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
        term=blocked.term,
        scope=blocked.scope,
        action=action,
        excerpt=text if len(text) <= AUDIT_EXCERPT else text[: AUDIT_EXCERPT - 1] + "…",
        length=len(text),
    )
    raise PromptBlocked(blocked)


# --- Editing the list --------------------------------------------------------------------------------------


def term_clean(*, team: Team | None, text: str, is_regex: bool, exclude: int | None = None) -> str:
    """The term as it will be saved, or BlocklistError saying why it cannot be: a bad term, one already on the
    list, or one that would take the list past its caps. `exclude`: the term being changed."""
    text = (text or "").strip()
    if problem := blockmatch.term_problem(text, is_regex=is_regex):
        raise BlocklistError(problem)
    same_list = BlockedTerm.objects.filter(team=team).exclude(pk=exclude)
    if same_list.filter(key=blockmatch.term_key(text, is_regex=is_regex)).exists():
        raise _already_listed(text)
    most = settings.MJSTUDIO_BLOCKLIST_MAX_TERMS
    if exclude is None and same_list.count() >= most:
        whose = "This team's blocklist" if team is not None else "The site-wide blocklist"
        raise BlocklistError(f"{whose} holds {most} terms, the most it may: remove one first.")
    if is_regex:
        size = blockmatch.pattern_size(text)
        patterns = same_list.filter(is_regex=True).values_list("text", flat=True)
        total = size + sum(blockmatch.pattern_size(pattern) for pattern in patterns)
        if total > (most_size := settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE):
            whose = "this team's patterns" if team is not None else "the site-wide patterns"
            raise BlocklistError(
                f"Patterns cost every prompt a check: with this one, {whose} would weigh {total:,} (this one "
                f"weighs {size:,}; “kill” weighs {blockmatch.pattern_size('kill')}), over the {most_size:,} allowed. "
                "Write it more simply (fewer alternatives, shorter {n,m} repeats) or remove a pattern first."
            )
    return text


def _already_listed(text: str) -> BlocklistError:
    return BlocklistError(f"“{text}” is already on the list.")


def _list_locked(team: Team | None) -> None:
    """Hold the team's row until the transaction ends: two owners adding at once are counted one after the other,
    so neither passes the cap on a count that misses the other's term. (The site's list is staff's, in the admin.)"""
    if team is not None:
        Team.objects.select_for_update().filter(pk=team.pk).exists()


def _state(term: BlockedTerm) -> dict:
    return {"text": term.text, "is_regex": term.is_regex}


def term_add(*, actor: AbstractBaseUser, team: Team | None, text: str, is_regex: bool = False) -> BlockedTerm:
    """A new term on the team's list (or the site's, team None). Raises BlocklistError, changing nothing."""
    try:
        with transaction.atomic():
            _list_locked(team)
            text = term_clean(team=team, text=text, is_regex=is_regex)
            term = BlockedTerm.objects.create(team=team, text=text, is_regex=is_regex, created_by=actor)
            audit_record(actor=actor, act=AuditEntry.Act.BLOCKLIST_ADD, team=team, target=term, after=_state(term))
    except IntegrityError:
        # The same term added at the same moment (the site's list takes no lock): the unique key let one in.
        if BlockedTerm.objects.filter(team=team, key=blockmatch.term_key(text, is_regex=is_regex)).exists():
            raise _already_listed(text) from None
        raise
    return term


def term_change(*, actor: AbstractBaseUser, term: BlockedTerm, text: str, is_regex: bool) -> BlockedTerm:
    """Edit a term in place; an unchanged one is left alone (and not audited). Raises BlocklistError, changing
    nothing."""
    before = _state(term)
    try:
        with transaction.atomic():
            _list_locked(term.team)
            text = term_clean(team=term.team, text=text, is_regex=is_regex, exclude=term.pk)
            if before == {"text": text, "is_regex": is_regex}:
                return term
            key = blockmatch.term_key(text, is_regex=is_regex)
            BlockedTerm.objects.filter(pk=term.pk).update(
                text=text, is_regex=is_regex, key=key, revision=F("revision") + 1
            )
            term.refresh_from_db()
            audit_record(
                actor=actor,
                act=AuditEntry.Act.BLOCKLIST_CHANGE,
                team=term.team,
                target=term,
                before=before,
                after=_state(term),
            )
    except IntegrityError:  # the same term added or changed to at the same moment
        same = BlockedTerm.objects.filter(team=term.team, key=blockmatch.term_key(text, is_regex=is_regex))
        if same.exclude(pk=term.pk).exists():
            raise _already_listed(text) from None
        raise
    return term


def term_remove(*, actor: AbstractBaseUser, term: BlockedTerm) -> None:
    with transaction.atomic():
        audit_record(actor=actor, act=AuditEntry.Act.BLOCKLIST_REMOVE, team=term.team, target=term, before=_state(term))
        term.delete()
