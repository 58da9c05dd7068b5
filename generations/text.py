"""Folding text for comparison: the library's search and the blocklist compare prompts the same way.

The fold is PostgreSQL's own, `lower(unaccent(text))` (migration 0016's `generations_search_fold`), done in Python
from a copy of unaccent's rules, so that the prompt folded when saved (`Prompt.search_text`, which SQLite's FTS5
table and every database's short terms read) equals what PostgreSQL's index holds, character for character:
accents and other diacritics go (precomposed or typed as combining marks), as do the marks unaccent drops, and
letters such as đ, ø, ł, æ, œ, ß, curly quotes, dashes, fullwidth letters and ligatures become plain ones; marks
that are not accents (Japanese dakuten, Thai tone marks, Arabic hamza) and compatibility forms unaccent leaves
(halfwidth katakana, circled digits, superscripts) stay as written.
"""

from __future__ import annotations

import unicodedata

from generations.unaccent_table import UNACCENT

# PostgreSQL's lower() maps one character at a time; Python's gives a word-final capital sigma the final form.
_SIGMA = str.maketrans({"Σ": "σ"})


def strip_accents(text: str) -> str:
    """Without diacritics, as PostgreSQL's unaccent() leaves it; case kept."""
    return text.translate(UNACCENT)


def normalize_for_search(text: str) -> str:
    """Lower case without diacritics, so "ca phe" finds "cà phê": PostgreSQL's generations_search_fold()."""
    return strip_accents(text).translate(_SIGMA).lower()


def fold_for_blocking(text: str) -> str:
    """The search fold after NFKC, for the blocklist only: compatibility forms (mathematical bold letters, ﾒﾛﾝ,
    ①) are the letters they stand for there, so that styling a blocked word's letters does not get it through."""
    return normalize_for_search(unicodedata.normalize("NFKC", text))


def strip_for_blocking(text: str) -> str:
    """`fold_for_blocking` with case kept: what blocklist patterns and the prompts they search are compared as."""
    return strip_accents(unicodedata.normalize("NFKC", text))
