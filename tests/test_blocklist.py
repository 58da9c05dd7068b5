"""The blocklist: folding, whole words, phrases and RE2 patterns; the compiled-terms cache; refusals in the composer,
on Reroll and Retry, and at send time, each audited and none reaching the sandbox."""

from __future__ import annotations

import threading
import time
import uuid
from importlib import import_module
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from generations.blockmatch import Matcher, Term, regex_compile, term_key, term_problem, words_of
from generations.models import AuditEntry, BlockedTerm, Membership, Prompt, Task, Team
from generations.services import blocklist, submitting
from generations.text import strip_for_blocking

HTMX = {"HX-Request": "true"}


def matcher(*terms: str, regex: tuple[str, ...] = ()) -> Matcher:
    words = [Term(text, is_regex=False, scope="team") for text in terms]
    patterns = [Term(text, is_regex=True, scope="team") for text in regex]
    return Matcher([*words, *patterns], max_terms=1000, max_weight=100_000)


# --- Matching ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "prompt", "found"),
    [
        ("ca phe", "Cà phê đen, morning light", True),  # accents and case folded
        ("ca phe", "CÀ PHÊ", True),
        ("Cà Phê", "ca phe sua da", True),  # the term's own accents are folded too
        ("ca phe", "cà-phê", True),  # a phrase matches across punctuation...
        ("ca phe", "cà\n\t  phê", True),  # ...and any whitespace
        ("ca phe", "ca_phe", True),  # "_" separates words like punctuation
        ("ca phe", "cacao phe", False),
        ("ca phe", "phe ca", False),  # in order
        ("cafe", "cafeteria at noon", False),  # whole words only
        ("cafe", "a cafe at noon", True),
        ("cafe", "the café", True),
        ("cafe", "cafe.", True),
        ("dang", "Đăng in the rain", True),  # đ folds to d
        ("dang", "Dangerous", False),
        ("blood moon", "a blood  moon rising", True),
        ("blood moon", "a blood red moon", False),
        ("r2d2", "R2-D2", False),  # "r2d2" is one word; "r2 d2" would be the phrase
        ("r2 d2", "R2-D2", True),
        # The search's fold (PostgreSQL's unaccent): letters without a decomposition become plain ones...
        ("orsted", "Ørsted wind farm", True),
        ("lodz", "Łódź at dusk", True),
        ("oeuvre", "une Œuvre", True),
        ("strasse", "STRAẞE", True),
        # ...marks that are not accents stay (ガ is not カ, й is not и, a Thai vowel sign is kept)...
        ("カラス", "ガラス 花瓶", False),
        ("ガラス", "ガラス 花瓶", True),
        ("иод", "йод", False),
        ("เยน", "เย็น", False),
        # ...and, for the blocklist only (NFKC first), styled and compatibility letters are the letters they show
        ("cafe", "a 𝐜𝐚𝐟𝐞 at noon", True),
        ("cafe", "ＣＡＦＥ", True),
        ("メロン", "ﾒﾛﾝ soda", True),
        ("ca phe", "Ⓒⓐ phê", True),
    ],
)
def test_it_matches_whole_words_ignoring_case_and_accents(term, prompt, found):
    assert (matcher(term).find(prompt) == term) is found


def test_it_names_the_first_blocked_term_in_the_prompt():
    m = matcher("moon", "ca phe")
    assert m.find("cà phê under the moon") == "ca phe"


@pytest.mark.parametrize(
    ("pattern", "prompt", "found"),
    [
        (r"k[i1]ll(ing|s)?\b", "KILLING time", True),  # case ignored
        (r"k[i1]ll(ing|s)?\b", "k1lls", True),
        (r"\bkill\b", "skill", False),  # word edges only where written
        (r"kill", "skill", True),
        (r"ca\s*phe", "Cà   phê", True),  # searched without accents
        (r"ca\s*phe", "caphe", True),
        (r"\d{3}-\d{4}", "call 555-1234", True),
        (r"\D+", "1234", False),  # not folded: \D stays "not a digit"
        (r"\borsted\b", "Ørsted", True),  # ø is o, as in words
        (r"k[i1]ll", "𝐤𝐢𝐥𝐥", True),  # styled letters are letters
        (r"カラス", "ガラス", False),  # dakuten kept
    ],
)
def test_regex_entries_are_searched_without_accents_ignoring_case(pattern, prompt, found):
    assert (matcher(regex=(pattern,)).find(prompt) is not None) is found


def test_a_catastrophic_pattern_runs_in_linear_time():
    m = matcher(regex=(r"(a+)+$", r"(x+x+)+y", r"(.*a){12}"))
    started = time.perf_counter()
    assert m.find("a" * 4000 + "!") is not None  # (.*a){12} matches; the point is that it returns at once
    assert m.find("x" * 4000) is None
    assert time.perf_counter() - started < 0.5  # Python's re takes longer than the universe on the second one


@pytest.mark.parametrize(
    ("text", "is_regex", "problem"),
    [
        ("(a", True, "This is not a pattern we can use: missing ): (a."),
        (r"(a)\1", True, r"This is not a pattern we can use: invalid escape sequence: \1."),
        ("(?=x)y", True, "This is not a pattern we can use: invalid perl operator: (?=."),
        ("a{1000}{1000}", True, "This is not a pattern we can use: bad repetition operator: {1000}{1000}."),
        ("x" * 201, False, "Keep a blocked term to 200 characters (it has 201)."),
        ("  ", False, "Write the word, phrase or pattern to block."),
        ("?!", False, "A blocked word needs at least one letter or digit."),
        ("ca phe", False, None),
        (r"\bk[i1]ll\b", True, None),
    ],
)
def test_it_says_why_a_term_cannot_be_saved(text, is_regex, problem):
    assert term_problem(text, is_regex=is_regex) == problem


def test_the_models_clean_refuses_a_bad_pattern():
    with pytest.raises(ValidationError) as info:
        BlockedTerm(text="(a", is_regex=True).clean()
    assert info.value.message_dict == {"text": ["This is not a pattern we can use: missing ): (a."]}


def test_terms_that_fold_alike_are_the_same_term():
    assert term_key("Cà  Phê", is_regex=False) == term_key("ca-phe", is_regex=False)
    assert term_key("ca phe", is_regex=True) != term_key("ca phe", is_regex=False)


@settings(deadline=None)  # a loaded machine is no failure
@given(st.text(max_size=300))
def test_it_never_raises_on_any_prompt(prompt):
    m = matcher("ca phe", "cafe", "x", regex=(r"\bk[i1]ll", r"(a+)+$", r"\pL{3}\d"))
    m.find(prompt)


LETTERS = st.sampled_from(list("abcdeđĐăâêôơưàáảãạèéẹìíòóùúỳýAEIOUXYZ019 ,.-_!?\n"))


@settings(deadline=None)
@given(st.text(LETTERS, min_size=1, max_size=60), st.data())
def test_any_run_of_a_prompts_words_blocks_it(prompt, data):
    words = words_of(prompt)
    if not words:
        assert matcher("anything").find(prompt) is None
        return
    start = data.draw(st.integers(0, len(words) - 1))
    end = data.draw(st.integers(start + 1, min(len(words), start + 4)))
    term = " ".join(words[start:end])
    assert matcher(term).find(prompt) == term


# --- The service and its cache -----------------------------------------------------------------------------------


@pytest.fixture
def owner(alice, team):
    Membership.objects.filter(user=alice, team=team).update(role=Membership.Role.OWNER)
    return alice


def test_a_teams_terms_and_the_sites_apply_and_no_other_teams(owner, team, charlie):
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    blocklist.term_add(actor=owner, team=None, text="nsfw")
    blocklist.term_add(actor=charlie, team=charlie.memberships.get(chosen_at__isnull=False).team, text="harbour")
    assert blocklist.prompt_blocked(team=team, text="Cà phê") == blocklist.Blocked("ca phe", "team")
    assert blocklist.prompt_blocked(team=team, text="NSFW art") == blocklist.Blocked("nsfw", "site")
    assert blocklist.prompt_blocked(team=team, text="a quiet harbour") is None
    assert blocklist.Blocked("nsfw", "site").message == "Your prompt contains “nsfw”, which this studio does not allow."


def test_a_check_costs_one_query_until_the_terms_change(owner, team, django_assert_num_queries):
    term = blocklist.term_add(actor=owner, team=team, text="ca phe")
    for i in range(90):
        BlockedTerm.objects.create(team=team, text=f"word{i}")
    assert blocklist.prompt_blocked(team=team, text="word89") is not None  # loads and compiles
    with django_assert_num_queries(1):  # the fingerprint only
        assert blocklist.prompt_blocked(team=team, text="Cà phê").term == "ca phe"
    blocklist.term_change(actor=owner, term=term, text="tra da", is_regex=False)  # an edit keeps count and ids
    assert blocklist.prompt_blocked(team=team, text="Cà phê") is None
    assert blocklist.prompt_blocked(team=team, text="Trà đá").term == "tra da"
    new = blocklist.term_add(actor=owner, team=team, text="moon")
    assert blocklist.prompt_blocked(team=team, text="moon").term == "moon"
    blocklist.term_remove(actor=owner, term=new)
    assert blocklist.prompt_blocked(team=team, text="moon") is None


def test_adding_changing_and_removing_a_term_is_audited_with_before_and_after(owner, team):
    term = blocklist.term_add(actor=owner, team=team, text=" ca phe ")
    pk = term.pk
    blocklist.term_change(actor=owner, term=term, text=r"\bca\s*phe\b", is_regex=True)
    blocklist.term_remove(actor=owner, term=term)
    rows = list(AuditEntry.objects.order_by("pk").values_list("act", "actor", "team", "target_id", "details"))
    assert rows == [
        ("blocklist_add", owner.pk, team.pk, pk, {"after": {"text": "ca phe", "is_regex": False}}),
        (
            "blocklist_change",
            owner.pk,
            team.pk,
            pk,
            {"before": {"text": "ca phe", "is_regex": False}, "after": {"text": r"\bca\s*phe\b", "is_regex": True}},
        ),
        ("blocklist_remove", owner.pk, team.pk, pk, {"before": {"text": r"\bca\s*phe\b", "is_regex": True}}),
    ]
    assert not BlockedTerm.objects.exists()


def test_a_duplicate_or_a_bad_term_is_refused_and_changes_nothing(owner, team):
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    with pytest.raises(blocklist.BlocklistError, match=r"“Cà-Phê” is already on the list\."):
        blocklist.term_add(actor=owner, team=team, text="Cà-Phê")
    with pytest.raises(blocklist.BlocklistError, match="missing"):
        blocklist.term_add(actor=owner, team=team, text="(a", is_regex=True)
    assert BlockedTerm.objects.count() == 1
    assert AuditEntry.objects.count() == 1
    blocklist.term_add(actor=owner, team=None, text="ca phe")  # the site's list is another list


# --- Refusals on the site ------------------------------------------------------------------------------------------


@pytest.fixture
def ca_phe(owner, team):
    return blocklist.term_add(actor=owner, team=team, text="ca phe")


def _imagine(client, text, **headers):
    body = {"prompt": text, "mode": "fast", "aspect_ratio": "1:1", "idempotency_key": str(uuid.uuid4())}
    return client.post("/tasks/", body, headers=headers)


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_the_composer_refuses_a_blocked_prompt_naming_the_term(alice_client, alice, team, ca_phe, headers):
    response = _imagine(alice_client, "Cà phê đen, morning light", **headers)
    assert response.status_code == 422
    body = response.content.decode()
    assert "Your prompt contains “ca phe”, which this team does not allow." in body
    assert "Cà phê đen, morning light</textarea>" in body  # kept, to be reworded
    assert ("<html" in body) is not bool(headers)
    assert not Task.objects.exists() and not Prompt.objects.exists()
    entry = AuditEntry.objects.get(act=AuditEntry.Act.PROMPT_BLOCKED)
    assert (entry.actor, entry.team_id, entry.target_id) == (alice, team.pk, None)
    assert entry.details == {
        "term": "ca phe",
        "scope": "team",
        "action": "imagine",
        "excerpt": "Cà phê đen, morning light",
        "length": 25,
    }


def test_the_composer_lets_a_prompt_through_that_only_looks_alike(alice_client, ca_phe):
    assert _imagine(alice_client, "a cafeteria, capheine").status_code == 302
    assert Task.objects.count() == 1
    assert not AuditEntry.objects.filter(act=AuditEntry.Act.PROMPT_BLOCKED).exists()


def test_a_member_is_refused_by_the_teams_list_too(client, bob, ca_phe):
    client.force_login(bob)
    assert _imagine(client, "ca phe", **HTMX).status_code == 422
    assert AuditEntry.objects.get(act=AuditEntry.Act.PROMPT_BLOCKED).actor == bob


def test_another_teams_term_does_not_refuse(client, charlie, ca_phe):
    client.force_login(charlie)
    assert _imagine(client, "ca phe").status_code == 302
    assert Task.objects.get().team == charlie.memberships.get(chosen_at__isnull=False).team


def _grid(make_task, text):
    grid = make_task(status="finished", upstream_id="up-grid", finished_at=timezone.now())
    Prompt.objects.filter(pk=grid.prompt_id).update(text=text)
    grid.refresh_from_db()
    return grid


def test_reroll_of_a_prompt_blocked_since_is_refused(alice_client, make_task, owner, team):
    grid = _grid(make_task, "Cà phê at dawn")
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    body = {"action": "reroll", "idempotency_key": str(uuid.uuid4())}
    response = alice_client.post(f"/tasks/{grid.pk}/act/", body, headers=HTMX)
    assert response.status_code == 422
    assert "Your prompt contains “ca phe”, which this team does not allow." in response.content.decode()
    assert Task.objects.count() == 1
    entry = AuditEntry.objects.get(act=AuditEntry.Act.PROMPT_BLOCKED)
    assert entry.details["action"] == "reroll" and entry.details["excerpt"] == "Cà phê at dawn"


def test_an_action_that_sends_no_prompt_is_not_checked(alice_client, make_task, owner, team):
    grid = _grid(make_task, "Cà phê at dawn")
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    body = {"action": "upscale:subtle", "index": "2", "idempotency_key": str(uuid.uuid4())}
    assert alice_client.post(f"/tasks/{grid.pk}/act/", body, headers=HTMX).status_code == 200
    assert Task.objects.filter(parent=grid, action="upscale").exists()  # Apiframe gets the parent's id only


@pytest.mark.parametrize("action", ["imagine", "reroll"])
def test_retry_of_a_blocked_prompt_is_refused(alice_client, make_task, owner, team, action):
    failed = make_task(status="failed", action=action, error="Apiframe did not confirm this task")
    Prompt.objects.filter(pk=failed.prompt_id).update(text="more ca phe")
    blocklist.term_add(actor=owner, team=team, text="ca phe")
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", {"idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 302  # without htmx: back to the studio, the message as a flash
    page = alice_client.get("/").content.decode()
    assert "Your prompt contains “ca phe”, which this team does not allow." in page
    assert Task.objects.count() == 1


def test_a_remix_goes_through_the_composer_and_is_refused_there(alice_client, ca_phe):
    page = alice_client.get("/?prompt=C%C3%A0+ph%C3%AA+%C4%91en&remix=1").content.decode()
    assert "Cà phê đen</textarea>" in page  # prefilled from a task page
    response = _imagine(alice_client, "Cà phê đen", **HTMX)
    assert response.status_code == 422
    assert "Your prompt contains “ca phe”, which this team does not allow." in response.content.decode()
    assert not Task.objects.exists()


# --- Against the sandbox: nothing reaches Apiframe -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox(task_seconds=0.2)
def test_a_blocked_prompt_makes_no_upstream_call(studio_upstream, alice, team, client):
    Membership.objects.filter(user=alice).update(role=Membership.Role.OWNER)
    blocklist.term_add(actor=alice, team=team, text="ca phe")
    client.force_login(alice)
    credits = studio_upstream.engine.credits
    assert _imagine(client, "Cà phê sữa đá").status_code == 422
    assert _imagine(client, "cà phê", **HTMX).status_code == 422
    assert studio_upstream.engine.request_counts["/pro/imagine"] == 0
    assert studio_upstream.engine.stats()["tasks"] == {}
    assert studio_upstream.engine.credits == credits
    assert _imagine(client, "trà đá").status_code == 302  # the same path, unblocked, does reach it
    assert studio_upstream.engine.request_counts["/pro/imagine"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox(task_seconds=0.2)
def test_a_task_queued_before_its_term_was_added_fails_at_send_time(studio_upstream, alice, team, settings):
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    task, _ = submitting.task_create_imagine(
        team=team, user=alice, text="Cà phê, film grain", mode="fast", aspect_ratio="1:1", idempotency_key=uuid.uuid4()
    )
    blocklist.term_add(actor=alice, team=None, text="ca phe")  # a site-wide term, added while the task waited
    submitting.task_submit(task_id=task.pk)
    task.refresh_from_db()
    assert (task.status, task.apiframe_task_id) == ("failed", None)
    assert task.error == "Your prompt contains “ca phe”, which this studio does not allow."
    assert task.finished_at is not None and task.can_retry
    assert studio_upstream.engine.request_counts["/pro/imagine"] == 0
    entry = AuditEntry.objects.get(act=AuditEntry.Act.PROMPT_BLOCKED)
    assert (entry.actor, entry.target_type, entry.target_id) == (alice, "task", task.pk)
    assert entry.details["term"] == "ca phe" and entry.details["scope"] == "site"


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox(task_seconds=0.2)
def test_apiframes_own_refusal_shows_on_the_card(studio_upstream, alice, team, client):
    client.force_login(alice)
    banned = studio_upstream.engine.config.banned_words[0]
    assert _imagine(client, f"a portrait, {banned}").status_code == 302
    task = Task.objects.get()
    assert task.status == "failed" and task.error.startswith(submitting.UPSTREAM_REFUSED)
    page = client.get("/").content.decode()
    assert '<p class="card__error">Apiframe refused the request: Banned prompt detected: the word' in page
    assert f"&quot;{banned}&quot; is not allowed" in page
    assert not AuditEntry.objects.exists()  # Apiframe's refusal, not ours: counted in the admin from the task


def test_teams_have_no_terms_by_default(team):
    assert blocklist.prompt_blocked(team=team, text="anything at all") is None
    assert blocklist.prompt_blocked(team=Team.objects.create(name="Empty").pk, text="x") is None


# --- Bounds: what one list may hold, so that a check costs what the bench measures -------------------------------


@pytest.fixture
def caps(settings):
    settings.MJSTUDIO_BLOCKLIST_MAX_TERMS = 3
    settings.MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE = 35  # "kill" weighs 11


def _rows() -> list[tuple]:
    return sorted(BlockedTerm.objects.values_list("team_id", "text", "is_regex"), key=str)


def test_a_list_holds_at_most_its_cap_of_terms(owner, team, caps):
    for text in ("moon", "tra da", "ca phe"):
        blocklist.term_add(actor=owner, team=team, text=text)
    before = (_rows(), AuditEntry.objects.count())
    with pytest.raises(blocklist.BlocklistError) as info:
        blocklist.term_add(actor=owner, team=team, text="harbour")
    assert str(info.value) == "This team's blocklist holds 3 terms, the most it may: remove one first."
    with pytest.raises(blocklist.BlocklistError, match="holds 3 terms"):
        blocklist.term_add(actor=owner, team=team, text="kill", is_regex=True)
    assert (_rows(), AuditEntry.objects.count()) == before
    blocklist.term_change(actor=owner, term=BlockedTerm.objects.get(text="moon"), text="sun", is_regex=False)
    blocklist.term_add(actor=owner, team=None, text="harbour")  # the site's list has a cap of its own


def test_the_site_wide_list_has_the_same_cap(owner, caps):
    for text in ("moon", "tra da", "ca phe"):
        blocklist.term_add(actor=owner, team=None, text=text)
    with pytest.raises(blocklist.BlocklistError) as info:
        blocklist.term_add(actor=owner, team=None, text="harbour")
    assert str(info.value) == "The site-wide blocklist holds 3 terms, the most it may: remove one first."
    assert BlockedTerm.objects.count() == 3


def test_patterns_past_the_lists_size_are_refused_on_add_and_on_change(owner, team, caps):
    blocklist.term_add(actor=owner, team=team, text="kill", is_regex=True)  # 11
    word = blocklist.term_add(actor=owner, team=team, text="moon")
    before = (_rows(), AuditEntry.objects.count())
    with pytest.raises(blocklist.BlocklistError) as info:
        blocklist.term_add(actor=owner, team=team, text=r"\bk[i1]ll(s|ing|er)?\b", is_regex=True)  # 25
    assert str(info.value) == (
        "Patterns cost every prompt a check: with this one, this team's patterns would weigh 36 (this one weighs "
        "25; “kill” weighs 11), over the 35 allowed. Write it more simply (fewer alternatives, shorter {n,m} "
        "repeats) or remove a pattern first."
    )
    with pytest.raises(blocklist.BlocklistError, match="would weigh 36"):  # a word turned into that pattern
        blocklist.term_change(actor=owner, term=word, text=r"\bk[i1]ll(s|ing|er)?\b", is_regex=True)
    assert (_rows(), AuditEntry.objects.count()) == before
    blocklist.term_add(actor=owner, team=team, text=r"k[i1]ll(s|er)?", is_regex=True)  # 20 more: 31, within


def test_one_costly_pattern_is_refused_however_short(owner, team):
    with pytest.raises(blocklist.BlocklistError, match=r"would weigh 59,854 \(this one weighs 59,854;.* 600 allowed"):
        blocklist.term_add(
            actor=owner, team=team, text=r"\pL{50}", is_regex=True
        )  # 7 characters: 50 letters, any script
    assert not BlockedTerm.objects.exists()


def test_the_settings_page_says_how_full_the_list_is(client, owner, team, caps):
    blocklist.term_add(actor=owner, team=team, text="kill", is_regex=True)
    blocklist.term_add(actor=owner, team=team, text="moon")
    client.force_login(owner)
    page = client.get("/team/settings/").content.decode()
    assert "room for 3 terms, and for patterns weighing 35 together" in page
    assert '<span id="blocklist-room">2 terms, patterns weighing 11</span>' in page


def test_the_admin_shows_a_cap_on_the_form_and_saves_nothing(client, django_user_model, caps):
    staff = django_user_model.objects.create_superuser("ada", "ada@example.com", "pw-ada")
    for text in ("moon", "tra da", "ca phe"):
        blocklist.term_add(actor=staff, team=None, text=text)
    client.force_login(staff)
    response = client.post("/admin/generations/blockedterm/add/", {"text": "harbour", "is_regex": ""})
    assert response.status_code == 200
    assert "The site-wide blocklist holds 3 terms, the most it may: remove one first." in response.content.decode()
    assert BlockedTerm.objects.count() == 3 and AuditEntry.objects.count() == 3


def test_a_list_saved_past_the_caps_is_checked_only_up_to_them(owner, team, caps, caplog):
    for text in ("moon", "tra da", "ca phe", "harbour"):  # saved before the caps (a bulk load, an older version)
        BlockedTerm.objects.create(team=team, text=text)
    for text in (r"k[i1]ll", r"\bblood\s*(bath|moon)\b"):  # weighing 12, then 24: over the 35 together
        BlockedTerm.objects.create(team=None, text=text, is_regex=True)
    assert blocklist.prompt_blocked(team=team, text="ca phe") == blocklist.Blocked("ca phe", "team")  # the oldest 3
    assert blocklist.prompt_blocked(team=team, text="the harbour") is None
    assert blocklist.prompt_blocked(team=team, text="k1ll") == blocklist.Blocked(r"k[i1]ll", "site")
    assert blocklist.prompt_blocked(team=team, text="a blood bath") is None
    past = "past its caps (saved before them): they are not checked until it is trimmed"
    assert {(r.levelname, r.getMessage()) for r in caplog.records} == {
        ("WARNING", f"team {team.pk}'s blocklist holds 1 terms {past}"),
        ("WARNING", f"the site-wide blocklist holds 1 terms {past}"),
    }


def test_an_unclosed_quote_is_refused_as_it_would_swallow_the_other_patterns():
    assert term_problem(r"\Qa.b", is_regex=True) == r"This is not a pattern we can use: missing ): (?:\Qa.b)."


def test_a_term_longer_than_the_limit_once_written_out_is_refused():
    assert term_problem("ﷺ" * 12, is_regex=False) == (
        "Keep a blocked term to 200 characters once written out (it has 216)."
    )


def test_a_word_is_named_by_its_place_in_the_prompt_and_a_pattern_by_the_lists_order():
    m = matcher("moon", "ca phe", "sun", regex=(r"k[i1]ll", r"\d{3}"))
    assert m.find("sun, moon") == "sun"
    assert m.find("ca phe phe ca moon") == "ca phe"
    assert m.find("555 kill") == r"k[i1]ll"
    assert m.find("a quiet harbour") is None


def _reference_find(prompt: str, words: list[str], patterns: list[str]) -> bool:
    """The matching rule spelled out, one term at a time, as the matcher compiled them all at once must agree."""
    prompt_words = words_of(prompt)
    for term in words:
        term_words = words_of(term)
        if any(prompt_words[i : i + len(term_words)] == term_words for i in range(len(prompt_words))):
            return True
    return any(regex_compile(p).search(strip_for_blocking(prompt)) for p in patterns)


@settings(deadline=None)
@given(
    st.lists(st.text(LETTERS, min_size=1, max_size=12), max_size=8),
    st.lists(st.sampled_from([r"\bk[i1]ll", r"a\d", r"(x+x+)+y", r"đ[aă]", r"^\s*z", r"[^\w\s]{2}"]), max_size=4),
    st.text(LETTERS, max_size=80),
)
def test_the_compiled_list_finds_a_term_exactly_when_one_of_its_terms_matches(words, patterns, prompt):
    words = [w for w in words if words_of(w)]
    terms = [*(Term(w, is_regex=False, scope="team") for w in words), *(Term(p, True, "site") for p in patterns)]
    m = Matcher(terms, max_terms=100, max_weight=10_000)
    found = m.find(prompt)
    assert (found is not None) == _reference_find(prompt, words, patterns)
    if found is not None:
        assert found in words or found in patterns


# --- One row per term, however the adds arrive --------------------------------------------------------------------


@pytest.mark.parametrize("site", [False, True], ids=["team", "site"])
def test_the_database_refuses_a_term_twice_on_one_list(owner, team, site):
    on = None if site else team
    BlockedTerm.objects.create(team=on, text="Cà phê")
    with pytest.raises(IntegrityError), transaction.atomic():
        BlockedTerm.objects.create(team=on, text="ca  PHE")
    BlockedTerm.objects.create(team=team if site else None, text="ca phe")  # the other list
    assert BlockedTerm.objects.count() == 2


@pytest.mark.parametrize("site", [False, True], ids=["team", "site"])
def test_an_add_that_raced_past_the_check_is_told_the_term_is_listed(owner, team, monkeypatch, site):
    on = None if site else team
    other = blocklist.term_add(actor=owner, team=on, text="ca phe")
    clean = blocklist.term_clean
    # The other add commits between this one's check and its insert: the check does not see its row.
    monkeypatch.setattr(blocklist, "term_clean", lambda **given: clean(**given, exclude=other.pk))
    with pytest.raises(blocklist.BlocklistError, match=r"“Cà-Phê” is already on the list\."):
        blocklist.term_add(actor=owner, team=on, text="Cà-Phê")
    assert BlockedTerm.objects.count() == 1 and AuditEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("site", [False, True], ids=["team", "site"])
def test_simultaneous_adds_of_one_term_make_one_row(alice, team, site):
    on = None if site else team
    ready, outcomes = threading.Barrier(8), []

    def add():
        try:
            ready.wait(timeout=5)
            blocklist.term_add(actor=alice, team=on, text="ca phe")
            outcomes.append("added")
        except blocklist.BlocklistError as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] + ["“ca phe” is already on the list."] * 7
    assert BlockedTerm.objects.count() == 1
    assert AuditEntry.objects.filter(act=AuditEntry.Act.BLOCKLIST_ADD).count() == 1


# --- Refusals: after the cheap limits, counted, and kept short ------------------------------------------------------


def test_a_submit_over_the_rate_is_refused_before_the_blocklist_is_checked(alice_client, ca_phe, make_task, settings):
    settings.MJSTUDIO_SUBMIT_MAX = 1
    make_task(status="finished")
    response = _imagine(alice_client, "Cà phê đen", **HTMX)
    assert response.status_code == 422
    assert "You have sent 1 tasks in the last 10 minutes" in response.content.decode()
    assert not AuditEntry.objects.filter(act=AuditEntry.Act.PROMPT_BLOCKED).exists()  # never checked
    assert Task.objects.count() == 1


def test_a_refusals_audit_row_keeps_an_excerpt_not_the_whole_prompt(alice_client, ca_phe):
    prompt = "ca phe " + "x" * 3993
    assert _imagine(alice_client, prompt, **HTMX).status_code == 422
    details = AuditEntry.objects.get(act=AuditEntry.Act.PROMPT_BLOCKED).details
    assert details["excerpt"] == prompt[:199] + "…" and details["length"] == 4000
    assert "prompt" not in details and details["term"] == "ca phe"


def test_the_key_migration_keeps_one_row_per_term_and_fits_every_key(owner, team):
    """0018 fills the keys of rows saved before them: a term listed twice (adds that raced) keeps its first row,
    and a word term that NFKC writes out past the column (saved when only its raw length counted) gets a digest."""
    from django.apps import apps

    fill_keys = import_module("generations.migrations.0018_blocklist_term_key_audit_actor_index").fill_keys
    saved_before = [("Cà Phê", team), ("ca  phe", team), ("ﷺ" * 12, team), ("ca phe", None)]
    first, _, long_one, site = BlockedTerm.objects.bulk_create(  # as rows were, with no key (save() sets one)
        BlockedTerm(team=list_team, text=text, key=f"before-{n}", created_by=owner)
        for n, (text, list_team) in enumerate(saved_before)
    )
    fill_keys(apps, SimpleNamespace(connection=connection))
    rows = dict(BlockedTerm.objects.values_list("pk", "key"))
    assert set(rows) == {first.pk, long_one.pk, site.pk}  # the same term on another list is another row
    assert rows[first.pk] == rows[site.pk] == "w:ca phe"
    assert (
        rows[long_one.pk].startswith("sha256:")
        and len(rows[long_one.pk]) <= BlockedTerm._meta.get_field("key").max_length
    )
