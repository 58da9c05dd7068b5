"""The blocklist check's cost at the caps, against the worst lists the caps allow: a team's list and the site's,
each MJSTUDIO_BLOCKLIST_MAX_TERMS terms whose patterns weigh MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE together, the
costliest RE2 allows per weight (patterns that make its automaton thrash), and 200-character phrases sharing
their first words. Prompts of 4,000 characters written to keep those patterns busy, a new one each run (so the
automaton meets states it has not cached).

Printed, as medians of many runs: the check a submit makes in the web process (`prompt_check`: the fingerprint
query and the match), the worker's send check (`_blocked_at_send` on a queued task), a refused prompt's check
(the match, which pattern, the audit row), the first check after a change (load and compile), and the match
alone on prompts of 60 to 4,000 characters.

    .venv/bin/python bench/blocklist.py
    DATABASE_URL=postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_bench .venv/bin/python bench/blocklist.py

The database is Django's test database for DATABASE_URL (SQLite: a temporary file; PostgreSQL: test_<name>),
created, migrated and dropped by the run. Another team's 1,000 terms are there too and must not count.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No q, z, x, j or k, which end the costly patterns: the prompts keep them busy without finishing one.
SYLLABLES = ("lo", "mi", "ra", "tu", "phe", "nga", "dao", "sen", "vy", "hoa", "ten", "bi", "mu", "ne", "go")
PROMPT_LETTERS = "aăâeêioôơuưyđ "  # accented vowels strip to the vowels the patterns wait for
TARGET_MS = 20.0


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def _costly(vowel: str, end: str, span: int) -> str:
    """A pattern RE2 cannot keep as a small automaton: a vowel, then `span` letters or spaces, then `end`, anywhere
    (the automaton must remember every vowel of the last `span` characters); repeated up to 200 characters."""
    one = f"[a-z ]*{vowel}[a-z ]{{{span}}}{end}"
    return "|".join([one] * (200 // (len(one) + 1))) or one


def costly_patterns(budget: int, *, span: int, shift: int) -> list[str]:
    """Costly patterns of at most `span`, each as heavy as fits, until the list's pattern weight is spent."""
    from generations.blockmatch import pattern_size

    patterns, left, i = [], budget, shift
    while True:
        vowel, end = "aeiouy"[i % 6], "qzxjk"[i % 5]
        fitting = [p for n in range(span, 0, -1) if pattern_size(p := _costly(vowel, end, n)) <= left]
        if not fitting:
            return patterns
        patterns.append(fitting[0])
        left -= pattern_size(fitting[0])
        i += 1


def _phrase(rng: random.Random, first: str, i: int) -> str:
    words = [first]
    while len(" ".join(words)) < 190:
        words.append(_word(rng))
    return f"{' '.join(words)} {i}"[:200]


def seed(rng: random.Random, *, span: int):
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from generations.blockmatch import term_key
    from generations.models import BlockedTerm, Team

    team, other = Team.objects.create(name="Bench"), Team.objects.create(name="Other")
    user = get_user_model().objects.create_user("bench", password="bench-pw")
    terms = []
    for owner, shift in ((team, 0), (None, 3)):  # the team's list and the site's, both at the caps
        patterns = costly_patterns(settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE, span=span, shift=shift)
        terms += [BlockedTerm(team=owner, text=p, is_regex=True) for p in patterns]
        first = _word(rng)  # one first word for all: the old matcher tried every phrase at each of its places
        phrases = settings.MJSTUDIO_BLOCKLIST_MAX_TERMS - len(patterns)
        terms += [BlockedTerm(team=owner, text=_phrase(rng, first, i)) for i in range(phrases)]
    terms += [BlockedTerm(team=other, text=f"{_word(rng)}{i}") for i in range(1000)]
    for term in terms:  # bulk_create skips save(), which sets the key
        term.key = term_key(term.text, is_regex=term.is_regex)
    BlockedTerm.objects.bulk_create(terms)
    return team, user


def adversarial_prompt(rng: random.Random, length: int, phrase_words: list[str]) -> str:
    """Runs of the letters the patterns wait for, and the phrases' words (each phrase begun, none finished)."""
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < length:
        if rng.random() < 0.3:
            parts.append(" ".join(phrase_words[: rng.randint(1, 6)]))
        else:
            parts.append("".join(rng.choice(PROMPT_LETTERS) for _ in range(rng.randint(20, 120))))
    return " ".join(parts)[:length]


def median_ms(samples: list[tuple[float, float]], column: int = 0) -> float:
    return statistics.median(sample[column] for sample in samples) * 1000


def timed(calls) -> list[tuple[float, float]]:
    """Each call's wall-clock time and this thread's CPU time: on a shared machine the second is the check's own
    cost, the first adds the waits for a core (and, with PostgreSQL, for the server's answer)."""
    samples = []
    for call in calls:
        wall, cpu = time.perf_counter(), time.thread_time()
        call()
        samples.append((time.perf_counter() - wall, time.thread_time() - cpu))
    return samples


def run(*, repeats: int, span: int) -> None:
    from django.conf import settings
    from django.db.models import Q
    from django.utils import timezone

    from generations.blockmatch import pattern_size, words_of
    from generations.models import AuditEntry, BlockedTerm, Prompt, Task
    from generations.services import blocklist, submitting

    rng = random.Random(8)
    team, user = seed(rng, span=span)
    rows = BlockedTerm.objects.filter(Q(team=team) | Q(team=None))
    weight = sum(pattern_size(text) for text in rows.filter(is_regex=True).values_list("text", flat=True))
    phrase_words = words_of(rows.filter(is_regex=False, team=team).values_list("text", flat=True)[0])
    print(
        f"caps: {settings.MJSTUDIO_BLOCKLIST_MAX_TERMS} terms and {settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE:,} "
        f"of pattern weight per list; checked: {rows.count()} terms (the team's and the site's), "
        f"{rows.filter(is_regex=True).count()} of them patterns weighing {weight:,}"
    )

    prompts = [adversarial_prompt(rng, 4000, phrase_words) for _ in range(repeats)]
    assert all(blocklist.prompt_blocked(team=team, text=p) is None for p in prompts[:5]), "a bench prompt is blocked"

    cold = []
    for prompt in prompts[: max(5, repeats // 20)]:
        blocklist._cache.clear()  # as after a change: load and compile
        cold += timed([lambda prompt=prompt: blocklist.prompt_blocked(team=team, text=prompt)])

    web = timed(
        lambda prompt=prompt: blocklist.prompt_check(team=team, user=user, text=prompt, action="imagine")
        for prompt in prompts
    )

    now = timezone.now()
    queued = []
    for prompt in prompts:
        row = Prompt.objects.create(team=team, author=user, text=prompt)
        queued.append(Task(prompt=row, team=team, created_by=user, action="imagine", status="submitting", deadline=now))
    Task.objects.bulk_create(queued)
    tasks = list(Task.objects.select_related("prompt", "created_by").filter(team=team))
    worker = timed(lambda task=task: submitting._blocked_at_send(task) for task in tasks)
    assert not AuditEntry.objects.exists(), "the worker's check refused a bench prompt"

    # Caught by the team's first pattern ("a", `span` letters or fewer, "q"), at the end: the whole prompt is searched.
    refused_prompts = [p[:3900] + " " + "a" * (span + 1) + "q" for p in prompts[: max(20, repeats // 10)]]

    def refused_check(prompt: str) -> None:
        try:
            blocklist.prompt_check(team=team, user=user, text=prompt, action="imagine")
        except blocklist.PromptBlocked:
            return
        raise AssertionError("a prompt meant to be refused went through")

    refused = timed(lambda prompt=prompt: refused_check(prompt) for prompt in refused_prompts)

    def line(label: str, samples: list[tuple[float, float]]) -> str:
        wall, cpu = median_ms(samples), median_ms(samples, 1)
        p95 = sorted(wall for wall, _ in samples)[int(len(samples) * 0.95)] * 1000
        if wall <= TARGET_MS:
            verdict = f"within the {TARGET_MS:g} ms target"
        else:
            verdict = (
                f"CPU within the {TARGET_MS:g} ms target, wall time over it at this load"
                if cpu <= TARGET_MS
                else "OVER"
            )
        return f"{label}: median {wall:.2f} ms ({cpu:.2f} ms CPU), p95 {p95:.2f} ms: {verdict}"

    print(line("check a submit makes in the web process (fingerprint query + match, 4,000 chars)", web))
    print(line("the worker's send check (the same, on a queued task's 4,000-char prompt)", worker))
    print(line("a refused prompt's check (match, which term, audit row)", refused))
    print(f"first check after a change (load + compile both lists): median {median_ms(cold):.1f} ms")
    matcher = blocklist._matcher(team.pk)
    for length in (60, 200, 1000, 4000):
        sample = [adversarial_prompt(rng, length, phrase_words) for _ in range(repeats)]
        alone = timed(lambda prompt=prompt: matcher.find(prompt) for prompt in sample)
        print(
            f"match alone, {length}-char prompts: median {median_ms(alone):.3f} ms ({median_ms(alone, 1):.3f} ms CPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300, help="checks measured per figure (default 300)")
    parser.add_argument(
        "--span",
        type=int,
        default=4,
        help="how far the costly patterns look (default 4: of 2, 4, 8, 15 and 60, 4 to 15 cost the most at the "
        "default caps, about evenly)",
    )
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False  # as in production: no query log
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(f"database: {connection.vendor}")
        run(repeats=args.repeats, span=args.span)
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
