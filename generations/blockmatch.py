"""Matching prompts against blocked terms: pure functions, no models (the model's clean() and the service share them).

A word or phrase matches whole words of the folded prompt (generations/text.py's `fold_for_blocking`: the
search fold, lower case without accents, đ as d, ø as o, after NFKC, so mathematical bold letters and halfwidth
ﾒﾛﾝ are the plain cafe and メロン, while ガ stays ガ): the prompt and the term are cut into runs of letters and
digits, and the term's runs must appear one after another. So "ca phe" blocks "Cà phê đen" and "ca-phê", "cafe"
does not block "cafeteria", and any spaces or punctuation may stand between a phrase's words.

A regex entry is RE2 syntax (google-re2), searched case-insensitively in the prompt without accents (the pattern
and the prompt go through the same fold, case kept). RE2 runs in time linear in the prompt for every pattern (no
backtracking), so no pattern can hang a submit and none needs a timeout; the price is that backreferences and
lookarounds are refused when the entry is saved, with RE2's reason. Linear, but not free: a pattern costs per
character of prompt about what its automaton weighs (`pattern_size`), which is why a list's total is capped.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import re2

from generations.text import fold_for_blocking, strip_for_blocking

TERM_MAX_LENGTH = 200
TERM_KEY_MAX_LENGTH = TERM_MAX_LENGTH + len("re:")  # term_key's prefix, and the term or its words at most that long
# RE2 compiles to an automaton: this caps its memory (a pattern over it is refused as "too complex").
REGEX_MAX_MEMORY = 1 << 20
# The memory of the one automaton a list's patterns are searched with together, beside what their program takes
# (RE2 keeps a third for the search). Small on purpose: when patterns make the fast search thrash, RE2 falls back
# to its slower one (still linear) the sooner, which is what costs least on the prompts that do that.
COMBINED_MAX_MEMORY = 1 << 18
_WORD_RUNS = re.compile(r"[^\W_]+")  # letters and digits; "_" separates words like any punctuation


def words_of(text: str) -> list[str]:
    """The folded runs of letters and digits, in order."""
    return _WORD_RUNS.findall(fold_for_blocking(text))


def _re2_options(*, max_mem: int = REGEX_MAX_MEMORY, case_sensitive: bool = False) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False  # a refused pattern is the user's mistake, answered with a message, not a log line
    options.max_mem = max_mem
    return options


def regex_compile(pattern: str) -> re2._Regexp:
    """The entry's pattern, accents stripped like the prompt's (case is ignored by RE2 instead: folding the
    case would turn \\D into \\d), in a group of its own, as it is searched beside the list's other patterns.
    Raises re2.error, with RE2's reason for the pattern as written (grouped, an unclosed \\Q swallows the ")")."""
    stripped = strip_for_blocking(pattern)
    re2.compile(stripped, _re2_options())
    return re2.compile(f"(?:{stripped})", _re2_options())


def pattern_size(pattern: str) -> int:
    """What searching for this pattern costs per character of prompt, at worst: its weight, RE2's program size,
    the instructions of the automaton it compiles to (`kill` 11, `\\bk[i1]ll(s|ing|er)?\\b` 25). Nothing for one
    RE2 refuses (saved before a rule changed: the Matcher skips it too)."""
    try:
        return regex_compile(pattern).programsize
    except re2.error:
        return 0


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
    words = words_of(text)
    if not words:
        return "A blocked word needs at least one letter or digit."
    if (written_out := len(" ".join(words))) > TERM_MAX_LENGTH:  # NFKC lengthens some letters: "ﬃ" is "ffi"
        return f"Keep a blocked term to {TERM_MAX_LENGTH} characters once written out (it has {written_out})."
    return None


def term_key(text: str, *, is_regex: bool) -> str:
    """What makes two terms the same one: "Cà Phê" and "ca  phe" are. A key too long for its column (a word term
    saved before folded length counted: NFKC writes "ﷺ" out in 18 letters) is its digest, still one per term."""
    key = f"re:{text.strip()}" if is_regex else "w:" + " ".join(words_of(text))
    if len(key) > TERM_KEY_MAX_LENGTH:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


@dataclass(frozen=True)
class Term:
    text: str  # as its owner wrote it
    is_regex: bool
    scope: str  # "team" or "site"


class Matcher:
    """A list of terms compiled for matching, in the order to report (team terms first); `find` names a hit.

    Two searches whatever the number of terms: the words and phrases as one alternation of literals over the
    prompt's words, spaced (" ca phe " in " uong ca phe den "), and the patterns as one alternation over the
    prompt. Both are RE2 automata, linear in the prompt, and their size, the cost per character, is held to the
    caps given. Not an re2.Set: a Set's automaton never falls back to RE2's slower search when it thrashes
    (20 patterns took 0.3 s on a 4,000-character prompt) and answers "no match" when it runs out of memory.
    """

    def __init__(self, terms: Iterable[Term], *, max_terms: int, max_weight: int) -> None:
        """`max_terms` and `max_weight` (of patterns) per scope: a list saved past them (before the caps were
        set or lowered) is matched only that far, in the order given; `skipped` counts the rest per scope."""
        self.phrases: dict[str, str] = {}  # a term's folded words, spaced round (" ca phe ") -> the term as written
        self.regexes: list[tuple[re2._Regexp, str]] = []
        self.scopes: dict[str, str] = {}  # the term as written -> "team" or "site"
        self.skipped: Counter[str] = Counter()
        taken: Counter[str] = Counter()
        weighed: Counter[str] = Counter()
        for term in terms:
            if taken[term.scope] >= max_terms:  # before compiling: a list saved past its cap costs no more
                self.skipped[term.scope] += 1
                continue
            if term.is_regex:
                try:
                    compiled: re2._Regexp | list[str] = regex_compile(term.text)
                except re2.error:
                    continue  # saved before a rule changed: validated once; skipped rather than refuse every prompt
            elif not (compiled := words_of(term.text)):
                continue
            weight = compiled.programsize if isinstance(compiled, re2._Regexp) else 0
            if weighed[term.scope] + weight > max_weight:
                self.skipped[term.scope] += 1
                continue
            taken[term.scope] += 1
            weighed[term.scope] += weight
            if isinstance(compiled, re2._Regexp):
                self.regexes.append((compiled, term.text))
            else:
                self.phrases.setdefault(f" {' '.join(compiled)} ", term.text)
            self.scopes.setdefault(term.text, term.scope)
        # The words are folded already, the prompt's too: an exact match, as a dict lookup would be.
        literals = [re2.escape(spaced) for spaced in self.phrases]
        self._any_phrase = _alternation(literals, size=sum(len(s.encode()) for s in literals), case_sensitive=True)
        weight = sum(regex.programsize for regex, _ in self.regexes)
        self._any_regex = _alternation([regex.pattern for regex, _ in self.regexes], size=weight, case_sensitive=False)

    def find(self, prompt: str) -> str | None:
        """A blocked term in the prompt (as its owner wrote it), or None: the word or phrase that comes first in
        the prompt, else the first pattern of the list that matches."""
        if self._any_phrase is not None:
            found = self._any_phrase.search(f" {' '.join(words_of(prompt))} ")
            if found is not None:
                return self.phrases[found.group()]
        if self._any_regex is not None and self._any_regex.search(folded := strip_for_blocking(prompt)):
            # Which one: the alternation matched, so one of its patterns does (a second pass, for refusals only).
            return next(text for regex, text in self.regexes if regex.search(folded))
        return None


def _alternation(patterns: list[str], *, size: int, case_sensitive: bool) -> re2._Regexp | None:
    """One automaton for all of them (no captures: only whether, and where, one matches). `size`: about the
    number of its instructions (8 bytes each), for which room is made whatever the lists hold."""
    if not patterns:
        return None
    options = _re2_options(max_mem=COMBINED_MAX_MEMORY + 16 * size, case_sensitive=case_sensitive)
    options.never_capture = True
    return re2.compile("|".join(patterns), options)
