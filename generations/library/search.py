"""Prompt search: every term of the query must occur in the prompt, ignoring case and accents.

A query is cut into terms by `normalize_for_search` (lower case, accents stripped, đ -> d: PostgreSQL's
lower(unaccent()), done in Python from a copy of its rules), so "ca phe" finds "Cà phê" and "dang" finds "Đăng"
on either database, with the same hits, and a term matches as a substring anywhere in the prompt ("phe" finds
"phê", "ffee" finds "coffee"); quotes, `*`, `:`, `-`, `%`, `_`, `\\`, NEAR and OR are plain characters, never
syntax. How each database finds the substrings fast differs:

- SQLite: an FTS5 table with the trigram tokenizer over `Prompt.search_text` (the prompt folded by Python when
  saved; migration 0009) answers terms of three characters or more.
- PostgreSQL: its own tools (migration 0016): `generations_search_fold()`, lower(unaccent()), the fold
  Python does too, folds the prompt and the word as typed, and a pg_trgm GIN index on the folded prompt answers
  LIKE '%term%' for the same terms.

Terms shorter than three characters, which no trigram index can hold, are compared with LIKE on `search_text`
on both (a scan of a stored column: folding every prompt in the query costs 5 to 10 times as much).
tests/test_search_parity.py runs one table of queries and expected hits on each database.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce

from django.db import connection
from django.db.models import F, Func, Q, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Contains

from generations.text import normalize_for_search

# Terms at least this long go through the trigram index (neither index can match a shorter one).
TRIGRAM = 3
MAX_TERMS = 12
MAX_QUERY_LENGTH = 200
FTS_TABLE = "generations_prompt_fts"


@dataclass(frozen=True)
class SearchTerms:
    terms: tuple[str, ...]
    # (term, the word it was folded from): PostgreSQL folds the word itself, as it folds the prompt.
    typed: tuple[tuple[str, str], ...] = ()

    def as_typed(self, term: str) -> str:
        return dict(self.typed).get(term, term)

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def long_terms(self) -> tuple[str, ...]:
        return tuple(t for t in self.terms if len(t) >= TRIGRAM)

    @property
    def short_terms(self) -> tuple[str, ...]:
        return tuple(t for t in self.terms if len(t) < TRIGRAM)


def search_terms(query: str) -> SearchTerms:
    """The folded, distinct terms of a query, in order ("Cà  phê cà" -> ("ca", "phe"))."""
    typed: dict[str, str] = {}
    for word in query[:MAX_QUERY_LENGTH].split():
        # One term per word (unaccent puts no space in a word), or none for a word of marks it drops.
        if term := normalize_for_search(word):
            typed.setdefault(term, word)
    terms = tuple(typed)[:MAX_TERMS]
    # A term inside another adds nothing ("ca" within "cafe"): dropped, so there are fewer LIKE scans.
    kept = tuple(t for t in terms if not any(t != other and t in other for other in terms))
    return SearchTerms(terms=kept, typed=tuple((t, typed[t]) for t in kept))


def fts_phrase(terms: tuple[str, ...]) -> str:
    """An FTS5 query requiring every term as a phrase: a substring, with the trigram tokenizer."""
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


class SearchFold(Func):
    """PostgreSQL's fold for search (migration 0016): the expression its trigram index holds."""

    function = "generations_search_fold"
    output_field = TextField()


def _term_condition(prefix: str, terms: SearchTerms, term: str) -> Q:
    """The prompt (through `prefix`) holds the term: on PostgreSQL, the word as typed and the prompt both folded
    by the database, for a term its index can answer; otherwise the folded term in the stored folded copy.
    LIKE's wildcards in the term are escaped either way."""
    if connection.vendor == "postgresql" and len(term) >= TRIGRAM:
        return Q(Contains(SearchFold(F(f"{prefix}text")), SearchFold(Value(terms.as_typed(term)))))
    return Q(**{f"{prefix}search_text__contains": term})


def matching_prompts(terms: SearchTerms, *, like_only: bool = False) -> Q:
    """A condition on prompts: every term occurs in the prompt.

    On SQLite, terms of three characters or more are looked up in the FTS index, once per query (a list
    subquery, not a lookup per row); on PostgreSQL they are compared folded by the database, which its trigram
    index answers. `like_only` uses LIKE on the stored folded copy for every term instead: the reference both
    index paths must agree with."""
    if like_only:
        return _every(Q(search_text__contains=term) for term in terms.terms)
    if connection.vendor == "sqlite" and terms.long_terms:
        # The table name is a constant; the query is a bound parameter.
        sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"  # noqa: S608
        fts = RawSQL(sql, [fts_phrase(terms.long_terms)])  # noqa: S611
        return Q(id__in=fts) & _every(Q(search_text__contains=term) for term in terms.short_terms)
    return _every(_term_condition("", terms, term) for term in terms.terms)


def matching_tasks(terms: SearchTerms) -> Q:
    """The same condition on tasks (through their prompt), without the FTS table: checked row by row while
    walking the newest tasks, for a search that matches many prompts."""
    return _every(_term_condition("prompt__", terms, term) for term in terms.terms)


def _every(conditions: Iterable[Q]) -> Q:
    """All the conditions at once (none: no condition)."""
    return reduce(operator.and_, conditions, Q())
