"""Library search parity: one table of queries and the exact prompts each must find, over one fixed corpus, run on
whichever database runs the suite (SQLite by default; CI runs the suite on SQLite and on PostgreSQL), so passing
on both proves they return the same results. SQLite answers from its FTS5 trigram index over the prompt folded by
Python; PostgreSQL from a trigram index over the prompt folded by unaccent (migration 0016). Also: each index path
agrees with plain LIKE on the stored folded copy, a walk finds what the list finds, the index follows prompts as
they are written, and at realistic size the search reads its index."""

from __future__ import annotations

import importlib
import unicodedata
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection

from generations.library import queries
from generations.library.queries import Filters, Library
from generations.library.search import FTS_TABLE, matching_prompts, search_terms
from generations.models import Prompt
from generations.text import normalize_for_search
from generations.unaccent_table import UNACCENT
from tests.library_data import add_task, image_tile, tile_ids

LIBRARY = "/library/"
PG_INDEX = "generations_prompt_search_fold"


def nfd(text: str) -> str:
    """As typed on some keyboards: letters followed by combining accents."""
    return unicodedata.normalize("NFD", text)


CORPUS = {
    "cafe": "Cà phê sữa đá trên bàn gạch",
    "egg": "CÀ PHÊ TRỨNG, Hà Nội",
    "nfd": nfd("cà phê muối"),
    "crown": "Đăng quang, golden crown",
    "waiting": "đang chờ mưa",
    "dalat": "ĐÀ LẠT in spring",
    "coffee": "a quiet coffee shop at dawn",
    "pho": "Phở bò at night",
    "street": "phố cổ in the rain",
    "cotton": "100% cotton_candy, “quoted”",
    "hyphen": "black-and-white portrait, 35mm film",
    "emoji": "sunrise ☕🌅 over Hạ Long bay",
    "syntax": 'C:\\art\\*.png "NEAR" OR -dark: col*',
    "sql": "Ngô's kitchen; DROP TABLE prompts; --",
    "digits": "4K render, v6.1 --ar 16:9",
    "german": "Straße im Regen",
    "wide": "ＴＯＫＹＯ night ﬁreworks",  # fullwidth letters, a ligature
    "nordic": "Ørsted wind farm by Łódź",
    "japanese": "ガラスの花瓶",
    "melon": "ﾒﾛﾝ soda",  # halfwidth katakana
    "french": "Crème brûlée – œuvre d’art",  # an en dash, a curly apostrophe
    "thai": "กาแฟเย็น",  # a Thai mark (U+0E47) that is not an accent
    "arabic": "قهوة أمريكية",  # alef with hamza above
}
EVERY = set(CORPUS)

# (query, the prompts it must find: no more, no fewer). Every term must occur in the prompt, anywhere (a part of
# a word counts), case and accents ignored (đ is d); whitespace separates terms and nothing else is syntax.
SEARCHES = [
    # Vietnamese: accents, case, đ, combining marks, order, repeats
    ("ca phe", {"cafe", "egg", "nfd"}),
    ("CA PHE", {"cafe", "egg", "nfd"}),
    ("cà phê", {"cafe", "egg", "nfd"}),
    (nfd("Cà Phê"), {"cafe", "egg", "nfd"}),
    ("phe ca", {"cafe", "egg", "nfd"}),
    ("phe phe cà", {"cafe", "egg", "nfd"}),
    ("ca\u00a0phe", {"cafe", "egg", "nfd"}),  # a no-break space separates terms too
    ("dang", {"crown", "waiting"}),
    ("Đăng", {"crown", "waiting"}),
    ("ĐĂNG QUANG", {"crown"}),
    ("đà lạt", {"dalat"}),
    ("da lat", {"dalat"}),
    ("pho", {"pho", "street"}),
    ("phở", {"pho", "street"}),
    ("ha noi", {"egg"}),
    ("trứng", {"egg"}),
    ("trứng,", {"egg"}),  # punctuation is part of the term
    ("phê,", set()),
    ("muối", {"nfd"}),
    # Shorter than a trigram (LIKE on both databases)
    ("ca", {"cafe", "egg", "nfd", "cotton"}),
    ("ng", {"egg", "crown", "waiting", "dalat", "emoji", "syntax", "sql"}),
    ("đá", {"cafe", "dalat", "coffee", "crown", "waiting", "syntax", "melon"}),  # "-dark:", "soda"
    ("a", EVERY - {"wide", "japanese", "thai", "arabic"}),
    # Parts of words, several terms
    ("coffee dawn", {"coffee"}),
    ("dawn quiet", {"coffee"}),
    ("coff", {"coffee"}),
    ("ffee", {"coffee"}),
    ("caf", set()),
    ("zzz", set()),
    ("night", {"pho", "wide"}),
    # Nothing to search: everything
    ("", EVERY),
    ("   ", EVERY),
    ("\t\n", EVERY),
    # LIKE's wildcards and escape are plain characters
    ("%", {"cotton"}),
    ("_", {"cotton"}),
    ("0% cotton_", {"cotton"}),
    ("%_", set()),
    ("\\", {"syntax"}),
    ("c:\\art", {"syntax"}),
    ("\\*", {"syntax"}),
    # FTS5 syntax is plain characters too: quotes, *, :, -, NEAR, OR
    ("quoted", {"cotton"}),
    ('"dang', set()),
    ('"near"', {"syntax"}),
    ("NEAR", {"syntax"}),
    ("near OR", {"syntax"}),
    ("OR", {"syntax", "hyphen", "wide", "nordic"}),  # "portrait", "fireworks", "Ørsted": a term, not an operator
    ("*", {"syntax"}),
    ("*.png", {"syntax"}),
    ("col*", {"syntax"}),
    (":", {"syntax", "digits"}),
    ("-dark:", {"syntax"}),
    ("-", {"syntax", "hyphen", "sql", "digits", "french"}),  # and the en dash
    ("--", {"sql", "digits"}),
    ("--ar", {"digits"}),
    # SQL in a prompt or a query is text
    ("drop table", {"sql"}),
    ("'s", {"sql"}),
    ("ngô's", {"sql"}),
    ("ngo", {"sql"}),
    # Hyphens and digits
    ("black-and-white", {"hyphen"}),
    ("and-white", {"hyphen"}),
    ("black white", {"hyphen"}),
    ("black_white", set()),
    ("35mm", {"hyphen"}),
    ("16:9", {"digits"}),
    ("v6.1", {"digits"}),
    ("6.1", {"digits"}),
    ("4k", {"digits"}),
    # Emoji, ß, fullwidth letters and ligatures fold alike
    ("☕", {"emoji"}),
    ("☕🌅", {"emoji"}),
    ("🌅 hạ long", {"emoji"}),
    ("ha long bay", {"emoji"}),
    ("strasse", {"german"}),
    ("straße", {"german"}),
    ("tokyo", {"wide"}),
    ("ＴＯＫＹＯ", {"wide"}),
    ("fireworks", {"wide"}),
    ("ﬁre", {"wide"}),
    # Letters without a decomposition, and marks that are not accents, found as written
    ("ørsted", {"nordic"}),
    ("łódź", {"nordic"}),
    ("ガラス", {"japanese"}),
    ("花瓶", {"japanese"}),
    ("ﾒﾛﾝ", {"melon"}),
    # Both databases fold as PostgreSQL's unaccent does: letters without a decomposition, curly quotes and dashes
    # become plain ones; marks that are not accents, and compatibility forms it leaves, stay as written
    ("orsted", {"nordic"}),
    ("lodz", {"nordic"}),
    ('"quoted"', {"cotton"}),  # the prompt has curly quotes
    ("oeuvre", {"french"}),
    ("œuvre", {"french"}),
    ("d'art", {"french"}),  # the prompt has a curly apostrophe
    ("brulee -", {"french"}),  # the prompt has an en dash
    ("カラス", set()),  # ガ keeps its mark
    ("メロン", set()),  # halfwidth ﾒﾛﾝ is not the fullwidth メロン
    ("เย็น", {"thai"}),
    ("เยน", set()),  # without its Thai mark
    ("أمريكية", {"arabic"}),
    ("امريكية", set()),  # without its hamza
]

# Folds as PostgreSQL's generations_search_fold() gives them (PostgreSQL 15, LC_CTYPE C.UTF-8): Python must agree.
FOLDS = [
    ("Tiếng Việt: Ở ĐÂY CÓ PHỞ NGON", "tieng viet: o day co pho ngon"),
    (nfd("cà phê muối, Đà Lạt"), "ca phe muoi, da lat"),
    ("Ørsted Łódź", "orsted lodz"),
    ("Æsir Œuvre Straße ẞ", "aesir oeuvre strasse ss"),
    ("“quoted” – ‘x’ — … ‹›", "\"quoted\" - 'x' - ... <>"),
    ("ＴＯＫＹＯ ﬁre", "tokyo fire"),
    ("ΟΔΟΣ Ἀθῆναι", "οδοσ αθηναι"),  # no final sigma, as PostgreSQL's lower() maps one character at a time
    ("İstanbul Iğdır", "istanbul igdir"),
    ("Ёлка йод", "елка йод"),  # ё has a rule, й has none
    ("½ © ™ ① ² ㎏", "1/2 (c) ™ ① ² kg"),
    ("ガラス ﾒﾛﾝ", "ガラス ﾒﾛﾝ"),
    ("กาแฟเย็น أمريكية", "กาแฟเย็น أمريكية"),
]


def blocks(*ranges: tuple[int, int]) -> list[str]:
    """Each range of code points as one string (so a character's neighbours are there too)."""
    return ["".join(chr(i) for i in range(first, last + 1)) for first, last in ranges]


# Text for the comparison with PostgreSQL: whole Unicode blocks, and alphabets as written.
SAMPLE = [
    *blocks(
        (0x20, 0x7E),  # ASCII
        (0xA0, 0xFF),  # Latin-1 Supplement
        (0x100, 0x24F),  # Latin Extended-A and B
        (0x250, 0x2FF),  # IPA, spacing modifiers
        (0x300, 0x36F),  # combining diacritical marks
        (0x370, 0x3FF),  # Greek
        (0x400, 0x4FF),  # Cyrillic
        (0x590, 0x5FF),  # Hebrew
        (0x600, 0x6FF),  # Arabic
        (0x900, 0x97F),  # Devanagari
        (0xE00, 0xE7F),  # Thai
        (0x1E00, 0x1EFF),  # Latin Extended Additional (Vietnamese)
        (0x1F00, 0x1FFF),  # Greek Extended
        (0x2000, 0x206F),  # General Punctuation
        (0x2100, 0x218F),  # letterlike symbols, number forms
        (0x2460, 0x24FF),  # enclosed alphanumerics
        (0x3000, 0x30FF),  # CJK punctuation, hiragana, katakana
        (0x3300, 0x33FF),  # CJK compatibility
        (0x4E00, 0x4EFF),  # CJK ideographs
        (0xAC00, 0xACFF),  # Hangul syllables
        (0xFB00, 0xFB4F),  # ligatures
        (0xFF00, 0xFFEF),  # fullwidth and halfwidth forms
        (0x1D400, 0x1D4FF),  # mathematical letters
        (0x1F300, 0x1F3FF),  # emoji
    ),
    "AĂÂBCDĐEÊGHIKLMNOÔƠPQRSTUƯVXY aăâbcdđeêghiklmnoôơpqrstuưvxy",
    "À Á Ả Ã Ạ Ằ Ắ Ẳ Ẵ Ặ Ầ Ấ Ẩ Ẫ Ậ È É Ẻ Ẽ Ẹ Ề Ế Ể Ễ Ệ Ì Í Ỉ Ĩ Ị Ò Ó Ỏ Õ Ọ Ồ Ố Ổ Ỗ Ộ",
    "Ờ Ớ Ở Ỡ Ợ Ù Ú Ủ Ũ Ụ Ừ Ứ Ử Ữ Ự Ỳ Ý Ỷ Ỹ Ỵ",
    nfd("à á ả ã ạ ằ ắ ẳ ẵ ặ ầ ấ ẩ ẫ ậ ề ế ể ễ ệ ồ ố ổ ỗ ộ ờ ớ ở ỡ ợ ừ ứ ử ữ ự ỳ ý ỷ ỹ ỵ"),
    "ガギグゲゴ パピプペポ ﾊﾞﾋﾞﾌﾞ " + nfd("ガギグゲゴ"),
    "ΣΟΦΟΣ ΟΔΟΣ. Σ Ἀθῆναι",
    *(text for text, _ in FOLDS),
]


def test_it_folds_as_postgresql_does():
    for text, folded in FOLDS:
        assert normalize_for_search(text) == folded, text


def test_a_word_is_one_term_or_none():
    """No rule puts a space in a word, so a query's word is one term; a word of marks unaccent drops is none."""
    assert not any(char.isspace() for folded in UNACCENT.values() for char in folded)
    assert search_terms("Phở\u0301 \u0301\u0302 ½").terms == ("pho", "1/2")


def postgresql_folds(texts: list[str]) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generations_search_fold(t) FROM unnest(%s::text[]) WITH ORDINALITY AS s(t, n) ORDER BY n", [texts]
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_the_python_fold_is_postgresql_s_over_a_broad_sample():
    """Whole Unicode blocks and alphabets, each folded as one string: PostgreSQL's function gives what Python
    stores (on SQLite: the fold changes a character only through unaccent's table or lower case)."""
    if connection.vendor == "postgresql":
        assert postgresql_folds(SAMPLE) == [normalize_for_search(text) for text in SAMPLE]
        return
    for text in SAMPLE:
        for char in text:
            assert normalize_for_search(char) in {char, char.lower(), UNACCENT.get(ord(char), "").lower()}, char


@pytest.mark.django_db
def test_the_python_fold_is_postgresql_s_on_every_code_point():
    """Every code point PostgreSQL's fold changes, it changes to what Python's does, and no other one changes in
    Python (on SQLite: it changes those unaccent's 1,650 rules name, and those with a lower case, no others)."""
    points = [i for i in range(1, 0x110000) if not 0xD800 <= i <= 0xDFFF]
    python = {i: normalize_for_search(chr(i)) for i in points}
    python = {i: folded for i, folded in python.items() if folded != chr(i)}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i, generations_search_fold(chr(i)) FROM generate_series(1, 1114111) AS i "
                "WHERE i NOT BETWEEN 55296 AND 57343 AND generations_search_fold(chr(i)) <> chr(i)"
            )
            assert dict(cursor.fetchall()) == python
        return
    assert len(UNACCENT) == 1650
    assert set(python) == set(UNACCENT) | {i for i in points if chr(i).lower() != chr(i)}


@pytest.fixture
def corpus(alice):
    """The corpus, one task and one image per prompt, newest last."""
    return {key: add_task(user=alice, text=text, minutes=n, images=1) for n, (key, text) in enumerate(CORPUS.items())}


def found(client, query: str) -> set[str]:
    """The tiles the library shows for a query (an empty `q` is redirected away: followed)."""
    response = client.get(LIBRARY, {"q": query, "stacks": "0"}, follow=True)
    assert response.status_code == 200, response.content[:2000]
    return set(tile_ids(response.content.decode()))


@pytest.mark.django_db
@pytest.mark.parametrize(("query", "expected"), SEARCHES)
def test_it_finds_exactly_the_expected_prompts(alice_client, corpus, query, expected):
    assert found(alice_client, query) == {image_tile(corpus[key]) for key in expected}


def test_the_table_covers_every_kind_of_query():
    """The table cannot shrink into proving little: every kind of query stays in it."""
    queries_ = [query for query, _ in SEARCHES]
    for needle in ("đ", "Đ", "%", "_", "\\", '"', "*", ":", "-", "NEAR", "OR", "☕", "16:9"):
        assert any(needle in query for query in queries_), needle
    assert any(not query.strip() for query in queries_)
    assert any(query != unicodedata.normalize("NFC", query) for query in queries_)
    assert len(set(queries_)) == len(SEARCHES)


@pytest.mark.django_db
def test_the_index_path_agrees_with_plain_like_on_the_stored_fold(corpus):
    """SQLite's FTS5 path, and PostgreSQL's unaccent fold through its trigram index, find what LIKE on the
    prompt folded by Python finds, query by query."""
    for query, expected in SEARCHES:
        terms = search_terms(query)
        indexed = set(Prompt.objects.filter(matching_prompts(terms)).values_list("pk", flat=True))
        plain = set(Prompt.objects.filter(matching_prompts(terms, like_only=True)).values_list("pk", flat=True))
        assert indexed == plain == {corpus[key].prompt_id for key in expected}, query


@pytest.mark.django_db
def test_a_walk_finds_what_the_few_matches_find(alice, corpus, monkeypatch, team):
    """A rare search starts from its few prompts; a common one walks the newest tasks: the same rows."""
    for query, _ in SEARCHES:
        filters = Filters(terms=search_terms(query), stacked=False)
        few = Library(team_id=team.pk, user_id=alice.pk, filters=filters).page().tiles
        monkeypatch.setattr(queries, "FEW_PROMPTS", 0)
        walked = Library(team_id=team.pk, user_id=alice.pk, filters=filters).page().tiles
        monkeypatch.undo()
        assert [t.dom_id for t in few] == [t.dom_id for t in walked], query


@pytest.mark.django_db
def test_it_keeps_the_search_index_in_step_with_prompts(alice_client, alice):
    """SQLite's FTS table is kept by triggers, PostgreSQL's index by itself: a prompt written any way (here in
    bulk) is found, a changed one by its new words only, a deleted one is gone."""
    task = add_task(user=alice, text="lighthouse", images=1)
    Prompt.objects.bulk_create([Prompt(team=task.team, author=alice, text="Phố", search_text="pho")])
    bulk = Prompt.objects.get(text="Phố")
    assert Prompt.objects.filter(matching_prompts(search_terms("pho"))).get() == bulk
    Prompt.objects.filter(pk=task.prompt_id).update(text="Moon harbour", search_text="moon harbour")
    response = alice_client.get(LIBRARY, {"q": "lighthouse"})
    assert response.status_code == 200 and tile_ids(response.content.decode()) == []
    assert found(alice_client, "harbour") == {image_tile(task)}
    bulk.delete()
    assert not Prompt.objects.filter(matching_prompts(search_terms("pho"))).exists()


@pytest.mark.django_db
def test_it_searches_only_the_team_s_prompts(alice_client, alice, charlie):
    add_task(user=charlie, text="cà phê of another team", images=1)
    mine = add_task(user=alice, text="cà phê of ours", images=1)
    assert found(alice_client, "ca phe") == {image_tile(mine)}


@pytest.mark.django_db
def test_a_rare_term_is_looked_up_in_the_search_index_at_realistic_size(alice, team):
    """The library's first search query (its few matching prompts), planned over 6,000 prompts with statistics:
    SQLite reads its FTS5 table, PostgreSQL its trigram index on the unaccent fold (not a scan folding each
    prompt)."""
    words = ("lighthouse in fog", "cà phê sữa đá", "neon alley", "Đăng quang", "a kite over the dunes")
    texts = [f"{words[i % len(words)]} {i}" for i in range(6000)] + ["Zéphyrine light"] * 3
    Prompt.objects.bulk_create(
        Prompt(team=team, author=alice, text=text, search_text=normalize_for_search(text)) for text in texts
    )
    rare = Prompt.objects.filter(matching_prompts(search_terms("zephyrine")), team_id=team.pk)
    assert rare.count() == 3
    sql, params = rare.values_list("id", flat=True)[:201].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert "VIRTUAL TABLE INDEX" in plan and FTS_TABLE in plan, plan
        else:
            # Rows earlier tests inserted and rolled back still sit in the GIN index's pending list, which the
            # planner prices in; autovacuum empties it in production, this does here.
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [PG_INDEX])
            cursor.execute("ANALYZE generations_prompt")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert f"Bitmap Index Scan on {PG_INDEX}" in plan, plan


@pytest.mark.django_db
def test_the_migration_refolds_the_stored_copies_saved_with_the_old_fold(alice, team, monkeypatch):
    """Migration 0017 rewrites the copies the NFKD fold saved, in batches, and the search finds them by the new
    fold (on SQLite through the FTS5 table's trigger); copies already right are left alone."""
    migration = importlib.import_module("generations.migrations.0017_fold_refold_search_text")
    old = {"Ørsted “wind”": "ørsted “wind”", "ガラスの花瓶": "カラスの花瓶", "ﾒﾛﾝ soda": "メロン soda"}
    Prompt.objects.bulk_create(Prompt(team=team, author=alice, text=text, search_text=old[text]) for text in old)
    Prompt.objects.bulk_create(
        Prompt(team=team, author=alice, text=f"cà phê {i}", search_text=f"ca phe {i}") for i in range(5)
    )
    right = set(Prompt.objects.filter(text__startswith="cà").values_list("pk", "search_text"))
    for query in ('orsted "wind"', "ガラス"):  # not in the stored copies (PostgreSQL's index, on the text, has them)
        assert not Prompt.objects.filter(matching_prompts(search_terms(query), like_only=True)).exists()
    monkeypatch.setattr(migration, "BATCH", 3)
    migration.refold(apps, SimpleNamespace(connection=connection))
    assert dict(Prompt.objects.filter(text__in=old).values_list("text", "search_text")) == {
        "Ørsted “wind”": 'orsted "wind"',
        "ガラスの花瓶": "ガラスの花瓶",
        "ﾒﾛﾝ soda": "ﾒﾛﾝ soda",
    }
    assert set(Prompt.objects.filter(text__startswith="cà").values_list("pk", "search_text")) == right
    for query, text in (('orsted "wind"', "Ørsted “wind”"), ("ガラス", "ガラスの花瓶"), ("ﾒﾛﾝ", "ﾒﾛﾝ soda")):
        assert [p.text for p in Prompt.objects.filter(matching_prompts(search_terms(query)))] == [text], query
        like = Prompt.objects.filter(matching_prompts(search_terms(query), like_only=True))
        assert [p.text for p in like] == [text], query
    assert not Prompt.objects.filter(matching_prompts(search_terms("カラス"))).exists()
