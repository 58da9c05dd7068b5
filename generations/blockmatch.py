"""Matching prompts against blocked terms: pure functions, no models (the model's clean() and the service share them).

A word or phrase matches whole words of the folded prompt (generations/text.py's `fold_for_blocking`: the
search fold, lower case without accents, đ as d, ø as o, after NFKC, so mathematical bold letters and halfwidth
ﾒﾛﾝ are the plain cafe and メロン, while ガ stays ガ): the prompt and the term are cut into runs of letters and
digits, and the term's runs must appear one after another. So "ca phe" blocks "Cà phê đen" and "ca-phê", "cafe"
does not block "cafeteria", and any spaces or punctuation may stand between a phrase's words. A lookup in a dict
per word of the prompt: linear in the prompt, whatever the count.

A regex entry is RE2 syntax (google-re2), searched case-insensitively in the prompt without accents (the pattern
and the prompt go through the same fold, case kept). RE2 runs in time linear in the prompt for every pattern (no
backtracking), so no pattern can hang a submit and none needs a timeout; the price is that backreferences and
lookarounds are refused when the entry is saved, with RE2's reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import re2

from generations.text import fold_for_blocking, strip_for_blocking

TERM_MAX_LENGTH = 200
# RE2 compiles to an automaton: this caps its memory (a pattern over it is refused as "too complex").
REGEX_MAX_MEMORY = 1 << 20
_WORD_RUNS = re.compile(r"[^\W_]+")  # letters and digits; "_" separates words like any punctuation


def words_of(text: str) -> list[str]:
    """The folded runs of letters and digits, in order."""
    return _WORD_RUNS.findall(fold_for_blocking(text))


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is the user's mistake, answered with a message, not a log line
    options.max_mem = REGEX_MAX_MEMORY
    return options


def regex_compile(pattern: str) -> re2._Regexp:
    """The entry's pattern, accents stripped like the prompt's (case is ignored by RE2 instead: folding the
    case would turn \\D into \\d). Raises re2.error."""
    return re2.compile(strip_for_blocking(pattern), _re2_options())


def term_problem(text: str, *, is_regex: bool) -> str | None:
    """Why this term cannot be saved, for the person typing it; None when it can."""
    if not text.strip():
        return "Write the word, phrase or pattern to block."
    if len(text) > TERM_MAX_LENGTH:
        return f"Keep a blocked term to {TERM_MAX_LENGTH} characters (it has {len(text)})."
    if is_regex:
        try:
            regex_compile(text)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else "not a valid pattern"
            reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            return f"This is not a pattern we can use: {reason}."
        return None
    if not words_of(text):
        return "A blocked word needs at least one letter or digit."
    return None


def term_key(text: str, *, is_regex: bool) -> str:
    """What makes two terms the same one: "Cà Phê" and "ca  phe" are."""
    return f"re:{text.strip()}" if is_regex else "w:" + " ".join(words_of(text))


@dataclass
class Matcher:
    """Terms compiled for matching. `add` in the order to report (team terms first); `find` names the first hit."""

    words: dict[str, str] = field(default_factory=dict)  # a one-word term's word -> the term as written
    # a phrase's first word -> (its words, the term as written)
    phrases: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    regexes: list[tuple[re2._Regexp, str]] = field(default_factory=list)
    scopes: dict[str, str] = field(default_factory=dict)  # the term as written -> "team" or "site"

    def add(self, text: str, *, is_regex: bool, scope: str) -> None:
        if is_regex:
            try:
                self.regexes.append((regex_compile(text), text))
            except re2.error:
                return  # saved before a rule changed: it was validated once; skip it rather than refuse every prompt
        else:
            words = tuple(words_of(text))
            if not words:
                return
            if len(words) == 1:
                self.words.setdefault(words[0], text)
            else:
                self.phrases.setdefault(words[0], []).append((words, text))
        self.scopes.setdefault(text, scope)

    def find(self, prompt: str) -> str | None:
        """The first blocked term in the prompt (as its owner wrote it), or None."""
        words = words_of(prompt)
        for i, word in enumerate(words):
            if word in self.words:
                return self.words[word]
            for phrase, text in self.phrases.get(word, ()):
                if tuple(words[i : i + len(phrase)]) == phrase:
                    return text
        if self.regexes:
            folded = strip_for_blocking(prompt)
            for regex, text in self.regexes:
                if regex.search(folded):
                    return text
        return None
