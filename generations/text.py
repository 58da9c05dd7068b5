"""Folding text for comparison: the library's search and the blocklist compare prompts the same way."""

from __future__ import annotations

import unicodedata


def strip_accents(text: str) -> str:
    """Without diacritics (đ has no decomposition: mapped by hand), case kept."""
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_for_search(text: str) -> str:
    """Lower case without diacritics, so "ca phe" finds "cà phê"."""
    return strip_accents(text).casefold()
