"""Limits on abuse: a per-user submission rate, a per-team cap on tasks in flight, login lockouts (django-axes).
Every limit answers with a clear message and changes nothing else. (Webhook refusals: tests/test_webhook.py.)"""

from __future__ import annotations

import html
import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import F
from django.test import Client, RequestFactory
from django.utils import timezone

from generations.models import AuditEntry, Prompt, Task
from generations.services import blocklist, limits

HTMX = {"HX-Request": "true"}


def _imagine(client, *, prompt="a lighthouse in fog", key=None, htmx=True):
    data = {"prompt": prompt, "mode": "fast", "aspect_ratio": "16:9", "idempotency_key": str(key or uuid.uuid4())}
    return client.post("/tasks/", data, headers=HTMX if htmx else {})


def _act(client, task, *, action="vary:subtle", index=2, key=None, htmx=True, **extra):
    data = {"action": action, "index": index, "idempotency_key": str(key or uuid.uuid4())}
    return client.post(f"/tasks/{task.pk}/act/", data, headers=HTMX if htmx else {}, **extra)


def _counts() -> tuple[int, int]:
    return Prompt.objects.count(), Task.objects.count()


@pytest.fixture
def rate(settings):
    """Alice may send 3 tasks in any 10 minutes; the team cap is out of the way."""
    settings.MJSTUDIO_SUBMIT_MAX, settings.MJSTUDIO_SUBMIT_WINDOW = 3, 600
    settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT = 0


@pytest.fixture
def cap(settings):
    """A team may have 2 tasks in flight; the rate is out of the way."""
    settings.MJSTUDIO_SUBMIT_MAX = 0
    settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT = 2


@pytest.fixture
def sent_three(make_task):
    """Alice's three finished tasks of the last 10 minutes, the oldest 4 minutes ago."""
    now = timezone.now()
    return [
        make_task(status="finished", upstream_id=f"up-{minutes}", created_at=now - timedelta(minutes=minutes))
        for minutes in (4, 2, 1)
    ]


# --- The per-user submission rate ---------------------------------------------------------------------------


def test_it_refuses_an_imagine_over_the_rate_and_says_when_to_try_again(alice_client, rate, sent_three):
    before = _counts()
    response = _imagine(alice_client)
    assert response.status_code == 422
    page = html.unescape(response.content.decode())
    assert "You have sent 3 tasks in the last 10 minutes: try again in 6 minutes." in page
    assert 'id="composer"' in page and "a lighthouse in fog" in page  # the prompt is kept for later
    assert 355 <= int(response["Retry-After"]) <= 360  # the oldest of the three leaves the window in 6 minutes
    assert _counts() == before


def test_without_htmx_a_refused_imagine_shows_the_page_with_the_message_and_the_prompt(alice_client, rate, sent_three):
    before = _counts()
    response = _imagine(alice_client, htmx=False)
    assert response.status_code == 429
    page = html.unescape(response.content.decode())
    assert "<html" in page and "try again in 6 minutes." in page and "a lighthouse in fog" in page
    assert response["Retry-After"]
    assert _counts() == before


def test_tasks_older_than_the_window_do_not_count(alice_client, rate, make_task):
    for minutes in (11, 12, 13):
        make_task(status="finished", created_at=timezone.now() - timedelta(minutes=minutes))
    assert _imagine(alice_client).status_code == 200
    assert Task.objects.count() == 4


def test_the_rate_is_per_user(client, rate, sent_three, bob):
    client.force_login(bob)
    assert _imagine(client).status_code == 200
    assert Task.objects.filter(created_by=bob).count() == 1


def test_a_replayed_submit_returns_its_task_even_at_the_limit(alice_client, rate, make_task):
    key = uuid.uuid4()
    assert _imagine(alice_client, key=key).status_code == 200
    first = Task.objects.get()
    make_task(status="finished")
    make_task(status="finished")  # now at the limit
    again = _imagine(alice_client, key=key)
    assert again.status_code == 200
    assert f'id="task-{first.pk}"' in again.content.decode()
    assert Task.objects.count() == 3


def test_it_refuses_an_action_over_the_rate_in_the_cards_error_slot(alice_client, rate, sent_three):
    parent = sent_three[-1]
    before = _counts()
    response = _act(alice_client, parent, index=2)
    assert response.status_code == 422
    page = html.unescape(response.content.decode())
    assert f'id="task-{parent.pk}-feedback"' in page and f'id="task-{parent.pk}-2-feedback"' in page
    assert "You have sent 3 tasks in the last 10 minutes: try again in" in page
    assert response["Retry-After"]
    assert _counts() == before


def test_without_htmx_a_refused_action_comes_back_as_a_message(alice_client, rate, sent_three):
    before = _counts()
    response = _act(alice_client, sent_three[-1], htmx=False, follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert "You have sent 3 tasks in the last 10 minutes" in html.unescape(response.content.decode())
    assert _counts() == before


def test_it_refuses_a_retry_over_the_rate(alice_client, rate, sent_three, make_task):
    failed = make_task(status="failed", created_at=timezone.now() - timedelta(hours=1))
    before = _counts()
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", {"idempotency_key": str(uuid.uuid4())}, headers=HTMX)
    assert response.status_code == 422
    assert "try again in 6 minutes." in html.unescape(response.content.decode())
    assert response["Retry-After"]
    assert _counts() == before


def test_prompts_the_blocklist_refused_count_in_the_rate(alice_client, alice, team, rate):
    blocklist.term_add(actor=alice, team=None, text="ca phe")
    for _ in range(3):
        assert _imagine(alice_client, prompt="Cà phê đen").status_code == 422
    refusals = AuditEntry.objects.filter(act=AuditEntry.Act.PROMPT_BLOCKED).count()
    before = _counts()
    response = _imagine(alice_client)  # a prompt the list lets through, but the fourth submit in the window
    assert response.status_code == 422
    page = html.unescape(response.content.decode())
    assert (
        "You have sent 3 tasks in the last 10 minutes, counting prompts the blocklist refused: try again in 10 minutes."
        in page
    )
    assert 595 <= int(response["Retry-After"]) <= 600
    assert _counts() == before == (0, 0)
    assert AuditEntry.objects.filter(act=AuditEntry.Act.PROMPT_BLOCKED).count() == refusals == 3


def test_a_refusal_at_send_time_is_its_tasks_and_not_counted_again(alice, team, rate, make_task):
    task = make_task(status="failed")
    blocklist.term_add(actor=alice, team=None, text="ca phe")
    for _ in range(2):
        with pytest.raises(blocklist.PromptBlocked):  # the worker's check: the task is named
            blocklist.prompt_check(team=team, user=alice, text="ca phe", action="imagine", task=task)
    assert limits.submission_refusal(user=alice, team=team) is None  # one task so far, of three


# --- The per-team cap on tasks in flight ---------------------------------------------------------------------


def test_it_refuses_an_imagine_while_the_team_is_at_its_cap(alice_client, cap, make_task, bob):
    make_task(user=bob, status="processing")
    make_task(user=bob, status="queued")
    make_task(status="finished")  # finished tasks are not in flight
    before = _counts()
    response = _imagine(alice_client)
    assert response.status_code == 422
    page = html.unescape(response.content.decode())
    assert "Your team has 2 tasks in flight (the limit): try again when one finishes." in page
    assert 1 <= int(response["Retry-After"]) <= limits.TEAM_CAP_RETRY_AFTER
    assert _counts() == before


def test_the_cap_is_per_team(client, cap, make_task, alice, charlie):
    make_task(status="processing")
    make_task(status="pending")
    client.force_login(charlie)
    assert _imagine(client).status_code == 200
    assert Task.objects.filter(created_by=charlie).count() == 1


def test_a_slot_frees_when_a_task_finishes(alice_client, cap, make_task):
    make_task(status="processing")
    running = make_task(status="pending")
    assert _imagine(alice_client).status_code == 422
    Task.objects.filter(pk=running.pk).update(status="finished")
    assert _imagine(alice_client).status_code == 200
    assert Task.objects.count() == 3


def test_it_refuses_an_action_while_the_team_is_at_its_cap(alice_client, cap, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    make_task(status="processing")
    make_task(status="submitting")
    before = _counts()
    response = _act(alice_client, parent)
    assert response.status_code == 422
    assert "Your team has 2 tasks in flight" in html.unescape(response.content.decode())
    assert _counts() == before


def test_the_rule_costs_three_indexed_queries(alice, team, settings):
    settings.MJSTUDIO_SUBMIT_MAX, settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT = 30, 12
    executed = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert limits.submission_refusal(user=alice, team=team) is None
    assert len(executed) == 3
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            from tests.planner import history_for_the_planner

            history_for_the_planner(team, alice)  # PostgreSQL plans by statistics: give it a real history
            _audit_history(alice)
            cursor.execute("SET LOCAL enable_seqscan = off")
        explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        for sql, params in executed:  # as sent, parameters bound: the plan the database really uses
            cursor.execute(explain + sql, params)
            plans.append(" ".join(str(column) for row in cursor.fetchall() for column in row))
    assert "task_user_recent" in plans[0]
    assert "audit_actor_act_recent" in plans[1]  # the user's refused prompts in the window
    if connection.vendor == "sqlite":
        assert "COVERING INDEX task_team_status" in plans[2]  # the count and the first deadline from the index
    else:  # an index of the rows in flight (the planner picks which by statistics), never the team's history
        assert any(index in plans[2] for index in ("task_team_status", "task_status_deadline", "task_status_heard"))


def _audit_history(user) -> None:
    """A year of audit rows, the user's refusals a few among them, with statistics gathered (as for the tasks)."""
    now = timezone.now()
    acts = [AuditEntry.Act.REVIEW, AuditEntry.Act.BLOCKLIST_ADD, AuditEntry.Act.PROMPT_BLOCKED]
    AuditEntry.objects.bulk_create(
        AuditEntry(actor=user if i % 50 == 0 else None, act=acts[i % 3], created_at=now - timedelta(hours=i))
        for i in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE generations_auditentry")


# --- Login (django-axes) --------------------------------------------------------------------------------------

ADDRESS = "203.0.113.7"  # documentation addresses (RFC 5737): only ever strings in request.META
OTHER_ADDRESS = "198.51.100.9"
LOCKED = "Too many failed logins for this account or from this address. Try again in 15 minutes"


@pytest.fixture
def login_limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.MJSTUDIO_LOGIN_IP_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def _login(username, password, *, address=ADDRESS, client=None, **meta):
    client = client or Client()
    response = client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **meta
    )
    return response, client


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_it_locks_an_account_after_the_limit_even_with_the_right_password(login_limits, alice):
    for _ in range(2):
        response, _ = _login("alice", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    response, _ = _login("alice", "wrong")
    assert response.status_code == 429
    assert LOCKED in html.unescape(response.content.decode())
    assert response["Retry-After"] == "900"
    response, client = _login("alice", "pw-alice")
    assert response.status_code == 429
    page = html.unescape(response.content.decode())
    assert LOCKED in page and 'name="password"' in page  # the login page itself, ready for later
    assert not _logged_in(client)


def test_a_locked_account_stays_locked_from_another_address(login_limits, alice):
    for _ in range(3):
        _login("alice", "wrong")
    response, client = _login("alice", "pw-alice", address=OTHER_ADDRESS)
    assert response.status_code == 429
    assert not _logged_in(client)


def test_an_address_is_locked_at_its_own_limit_across_accounts(login_limits, alice, bob, charlie):
    for username in ("alice", "alice", "bob", "bob"):  # no account reaches 3
        assert _login(username, "wrong")[0].status_code == 200
    response, _ = _login("charlie", "wrong")  # the address's 5th failure
    assert response.status_code == 429
    assert LOCKED in html.unescape(response.content.decode())
    response, client = _login("bob", "pw-bob")
    assert response.status_code == 429 and not _logged_in(client)
    # The accounts themselves are not locked: from elsewhere bob gets in.
    response, client = _login("bob", "pw-bob", address=OTHER_ADDRESS)
    assert response.status_code == 302 and _logged_in(client)


def test_the_lockout_says_how_long_is_left_and_lifts_after_the_cool_off(login_limits, alice):
    for _ in range(3):
        _login("alice", "wrong")
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=10))
    response, client = _login("alice", "pw-alice")  # refused, and not counted: the cool-off does not restart
    assert "Try again in 5 minutes, or ask an admin to unlock it." in html.unescape(response.content.decode())
    assert 295 <= int(response["Retry-After"]) <= 300
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=6))
    response, client = _login("alice", "pw-alice")
    assert response.status_code == 302 and _logged_in(client)


def test_a_success_resets_the_failures(login_limits, alice):
    _login("alice", "wrong")
    _login("alice", "wrong")
    response, client = _login("alice", "pw-alice")
    assert response.status_code == 302 and _logged_in(client)
    assert not AccessAttempt.objects.exists()
    _login("alice", "wrong")
    assert _login("alice", "wrong")[0].status_code == 200  # counting from zero again: not locked at 2


def test_another_accounts_success_from_the_same_address_does_not_forget_the_failures(login_limits, alice, bob):
    _login("alice", "wrong")
    _login("alice", "wrong")
    response, _ = _login("bob", "pw-bob")  # someone with a login of their own, at the same address
    assert response.status_code == 302
    assert _login("alice", "wrong")[0].status_code == 429
    assert _login("alice", "pw-alice")[0].status_code == 429


def test_staff_unlock_an_account_in_the_admin(login_limits, alice):
    for _ in range(3):
        _login("alice", "wrong")
    assert _login("alice", "pw-alice")[0].status_code == 429
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("ada", "ada@example.com", "pw-ada"))
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    attempts = list(AccessAttempt.objects.filter(username="alice").values_list("pk", flat=True))
    response = staff.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    response, client = _login("alice", "pw-alice")
    assert response.status_code == 302 and _logged_in(client)


def test_a_locked_address_does_not_touch_the_webhook_or_the_health_check(login_limits, alice, settings, payload):
    for n in range(5):
        _login(f"nobody-{n}", "wrong", address="127.0.0.1")
    assert _login("alice", "pw-alice", address="127.0.0.1")[0].status_code == 429
    client = Client(REMOTE_ADDR="127.0.0.1")
    assert client.get("/health/").status_code == 200
    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"
    response = client.post(
        "/webhooks/apiframe/",
        payload("unknown_task.json"),
        content_type="application/json",
        headers={"x-webhook-secret": "whsec_test"},
    )
    assert response.status_code == 200


def test_x_forwarded_for_picks_no_address_unless_proxies_are_trusted(login_limits, alice):
    for n in range(3):
        _login("nobody", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    _login("somebody", "wrong", HTTP_X_FORWARDED_FOR="192.0.2.99")
    # Five failures from one REMOTE_ADDR, whatever the header claimed: the address is locked.
    response, _ = _login("anybody", "wrong", HTTP_X_FORWARDED_FOR="192.0.2.100")
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ADDRESS}


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "192.0.2.1", ADDRESS),  # not configured: the header is anyone's to write
        (1, "192.0.2.66, 192.0.2.1", "192.0.2.1"),  # the proxy appended the address it saw; the rest is the client's
        (2, "192.0.2.66, 192.0.2.1, 198.51.100.2", "192.0.2.1"),
        (1, "", ADDRESS),  # a request that did not come through the proxy
        (1, "not-an-address", ADDRESS),
    ],
)
def test_the_client_address_comes_from_trusted_proxies_only(settings, proxies, forwarded, expected):
    settings.MJSTUDIO_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=ADDRESS, HTTP_X_FORWARDED_FOR=forwarded)
    assert limits.client_ip(request) == expected


# --- Staff see the webhook refusals cheaply ------------------------------------------------------------------


def test_the_admin_index_shows_refused_webhooks(client, settings, db):
    cache.clear()
    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"
    for _ in range(3):
        client.post("/webhooks/apiframe/", b"{}", content_type="application/json", headers={"x-webhook-secret": "no"})
    client.force_login(get_user_model().objects.create_superuser("ada", "ada@example.com", "pw-ada"))
    page = client.get("/admin/").content.decode()
    assert "Webhook deliveries refused" in page
    assert '<th scope="row">This hour</th><td>3</td>' in page
    cache.clear()
