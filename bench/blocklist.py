"""The blocklist check's cost with 1,000 terms: the median of the check a submit makes (the fingerprint query and
the match, terms already compiled), the first check after a change (loading and compiling them), and the match
alone on prompts of 60 to 4,000 characters.

    .venv/bin/python bench/blocklist.py
    DATABASE_URL=postgres://mjstudio:mjstudio@127.0.0.1:5432/mjstudio_bench .venv/bin/python bench/blocklist.py

The database is Django's test database for DATABASE_URL (SQLite: a temporary file; PostgreSQL: test_<name>),
created, migrated and dropped by the run. 1,000 terms: 600 of the team's words and two- to four-word phrases (a
tenth with Vietnamese accents) and 50 patterns, plus 350 site-wide words; another team's 1,000 terms must not count.
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
SYLLABLES = ("ka", "lo", "mi", "ra", "tu", "phe", "nga", "dao", "sen", "vy", "quo", "ten", "bi", "xu", "hoa")
ACCENTED = ("cà", "phê", "đen", "sữa", "trà", "đá", "bánh", "mì", "phở", "bò")
PATTERNS = (r"\bk[i1]ll(s|ing|er)?\b", r"\bn[u\*]d[e3]s?\b", r"\d{3}[-. ]?\d{4}", r"\bg[o0]r[e3]\w*", r"blood\s*bath")


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mjstudio.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def _prompt(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(ACCENTED) if rng.random() < 0.2 else _word(rng))
    return " ".join(words)[:length]


def seed(rng: random.Random):
    from generations.models import BlockedTerm, Team

    team, other = Team.objects.create(name="Bench"), Team.objects.create(name="Other")
    terms = []
    for i in range(600):  # unique: a word or phrase's last word carries its number
        words = [_word(rng) for _ in range(rng.choice((1, 1, 2, 3)))]
        words[-1] += str(i)
        if i % 10 == 0:
            words.insert(0, rng.choice(ACCENTED))
        terms.append(BlockedTerm(team=team, text=" ".join(words)))
    terms += [BlockedTerm(team=team, text=f"{p}|zz{i}", is_regex=True) for p in PATTERNS for i in range(10)]
    terms += [BlockedTerm(team=None, text=f"{_word(rng)}{i}") for i in range(350)]
    terms += [BlockedTerm(team=other, text=f"{_word(rng)}{i}") for i in range(1000)]
    BlockedTerm.objects.bulk_create(terms)
    return team


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(*, repeats: int) -> None:
    from django.db.models import Q

    from generations.blockmatch import Matcher
    from generations.models import BlockedTerm
    from generations.services import blocklist

    rng = random.Random(8)
    team = seed(rng)
    counted = BlockedTerm.objects.filter(Q(team=team) | Q(team=None)).count()
    prompts = [_prompt(rng, 200) for _ in range(repeats)]

    cold = []
    for _ in range(max(5, repeats // 20)):
        blocklist._cache.clear()  # as after a change: load and compile
        started = time.perf_counter()
        blocklist.prompt_blocked(team=team, text=prompts[0])
        cold.append(time.perf_counter() - started)

    warm = []
    for prompt in prompts:
        started = time.perf_counter()
        blocklist.prompt_blocked(team=team, text=prompt)
        warm.append(time.perf_counter() - started)

    matcher: Matcher = blocklist._matcher(team.pk)
    terms = len(matcher.words) + sum(len(p) for p in matcher.phrases.values()) + len(matcher.regexes)
    print(
        f"{terms} terms compiled ({counted} rows: the team's and the site's), {len(matcher.regexes)} of them patterns"
    )
    print(f"check a submit makes (fingerprint query + match, 200-char prompt): median {median_ms(warm):.3f} ms")
    print(f"first check after a change (load + compile {terms} terms): median {median_ms(cold):.1f} ms")
    for length in (60, 200, 1000, 4000):
        sample = [_prompt(rng, length) for _ in range(repeats)]
        timings = []
        for prompt in sample:
            started = time.perf_counter()
            matcher.find(prompt)
            timings.append(time.perf_counter() - started)
        print(f"match alone, {length}-char prompts: median {median_ms(timings):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1000, help="checks measured per figure (default 1,000)")
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False  # as in production: no query log
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(f"database: {connection.vendor}")
        run(repeats=args.repeats)
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
