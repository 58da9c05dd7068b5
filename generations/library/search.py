"""Prompt search: every term of the query must occur in the prompt, ignoring case and accents.

Both sides are folded by `normalize_for_search` (the prompt once, when saved, into `Prompt.search_text`; the
query here), so "ca phe" finds "Cà phê" and "dang" finds "Đăng" on any database, and a term matches as a
substring ("phe" finds "phê", "coff" finds "coffee"). How each database finds the substrings fast differs:

- SQLite: an FTS5 table with the trigram tokenizer over `search_text` (migration 0006) answers terms of three
  characters or more; shorter terms (which a trigram index cannot hold) fall back to LIKE on the prompt.
- PostgreSQL: LIKE on `search_text`, which a pg_trgm GIN index (migration 0006) answers.

Same folding, same substring rule: the same results on both (tests/test_library.py runs one table on each,
and checks on SQLite that the FTS path agrees with plain LIKE).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL

from generations.services.submitting import normalize_for_search

# Terms at least this long go through the trigram index (FTS5 cannot match a shorter phrase).
TRIGRAM = 3
MAX_TERMS = 12
MAX_QUERY_LENGTH = 200
FTS_TABLE = "generations_prompt_fts"


@dataclass(frozen=True)
class SearchTerms:
    terms: tuple[str, ...]

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
    folded = normalize_for_search(query[:MAX_QUERY_LENGTH])
    terms = tuple(dict.fromkeys(folded.split()))[:MAX_TERMS]
    # A term inside another adds nothing ("ca" within "cafe"): dropped, so there are fewer LIKE scans.
    kept = tuple(t for t in terms if not any(t != other and t in other for other in terms))
    return SearchTerms(terms=kept)


def fts_phrase(terms: tuple[str, ...]) -> str:
    """An FTS5 query requiring every term as a phrase: a substring, with the trigram tokenizer."""
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


def matching_prompts(terms: SearchTerms, *, like_only: bool = False) -> Q:
    """A condition on prompts: every term occurs in the prompt's search text.

    On SQLite, terms of three characters or more are looked up in the FTS index, once per query (a list
    subquery, not a lookup per row); `like_only` uses LIKE for every term instead: the reference the FTS path
    must agree with, and what PostgreSQL always runs (its trigram index answers LIKE)."""
    condition = Q()
    like_terms = terms.terms
    if connection.vendor == "sqlite" and terms.long_terms and not like_only:
        # The table name is a constant; the query is a bound parameter.
        sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"  # noqa: S608
        fts = RawSQL(sql, [fts_phrase(terms.long_terms)])  # noqa: S611
        condition &= Q(id__in=fts)
        like_terms = terms.short_terms
    for term in like_terms:
        condition &= Q(search_text__contains=term)
    return condition


def matching_tasks(terms: SearchTerms) -> Q:
    """The same condition on tasks (through their prompt), with LIKE only: checked row by row while walking
    the newest tasks, for a search that matches many prompts."""
    condition = Q()
    for term in terms.terms:
        condition &= Q(prompt__search_text__contains=term)
    return condition
