"""An open live stream lasts only as long as its access, on a real redis-server under uvicorn (test_live.py's
server): a stream whose session logged out, whose user changed password elsewhere, was deactivated or removed from
the team ends with a `reload` event and sends no new card, busy or quiet; a reconnect to a team the session left
reloads the page; and one user holds at most LIVE_MAX_STREAMS_PER_USER streams, counted in Redis."""

from __future__ import annotations

import http.client
import time
from urllib.parse import quote

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from generations.live import access
from generations.models import Membership, Task
from generations.services import members
from tests import test_live
from tests.test_live import Events, card_ids

pytestmark = pytest.mark.django_db(transaction=True)

redis_url, live, server = test_live.redis_url, test_live.live, test_live.server  # the fixtures


def logged_in(user) -> tuple[Client, str]:
    """A browser's session: its client (to log out with) and its cookie (to open streams with)."""
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


def change(task) -> None:
    assert Task.objects.filter(pk=task.pk).update_visibly(percentage=50) == 1


# --- A stream ends when its access does ------------------------------------------------------------------


def test_a_removed_members_open_stream_ends_and_gets_no_new_card(server, live, alice, bob, team, make_task):
    Membership.objects.filter(user=alice, team=team).update(role=Membership.Role.OWNER)
    _, bobs_cookie = logged_in(bob)
    alices, bobs = Events(server, logged_in(alice)[1]), Events(server, bobs_cookie)
    members.member_remove(actor=alice, membership=Membership.objects.get(user=bob, team=team))
    task = make_task()
    change(task)
    assert card_ids(alices.next()["data"]) == {task.pk}  # the team's stream goes on for its members
    assert bobs.until_end() == ["reload"]  # no card: the page loads itself again, in the team bob is in now
    assert not Membership.objects.filter(user=bob, team=team).exists()
    alices.close()


def test_a_logged_out_sessions_open_stream_ends_and_gets_no_new_card(server, live, alice, make_task):
    browser, cookie = logged_in(alice)
    events = Events(server, cookie)
    other_browser = Events(server, logged_in(alice)[1])  # alice on another machine stays logged in there
    browser.logout()
    task = make_task()
    change(task)
    assert events.until_end() == ["reload"]
    assert card_ids(other_browser.next()["data"]) == {task.pk}
    assert Session.objects.count() == 1
    other_browser.close()


def test_a_quiet_stream_of_a_logged_out_session_ends_at_its_next_heartbeat(server, live, alice):
    browser, cookie = logged_in(alice)
    events = Events(server, cookie)
    time.sleep(0.3)  # the stream is waiting on Redis
    browser.logout()
    started = time.monotonic()
    assert events.until_end(seconds=5) == ["reload"]  # nothing changed in the team: the heartbeat asked
    assert time.monotonic() - started < 2  # a heartbeat is 0.5 s here (15 s in production)


def test_a_password_changed_elsewhere_ends_the_stream(server, live, alice, make_task):
    events = Events(server, logged_in(alice)[1])
    alice.set_password("a new passphrase for alice")
    alice.save()
    change(make_task())
    assert events.until_end() == ["reload"]


def test_a_deactivated_users_stream_ends(server, live, alice):
    events = Events(server, logged_in(alice)[1])
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert events.until_end(seconds=5) == ["reload"]


def test_a_stream_that_stays_allowed_keeps_its_session_untouched(server, live, alice, make_task):
    events = Events(server, logged_in(alice)[1])
    change(make_task())
    events.next()
    before = Session.objects.get().session_data  # with the team the stream's request chose, saved as it opened
    for _ in range(3):
        task = make_task()
        change(task)
        assert card_ids(events.next()["data"]) == {task.pk}
    assert Session.objects.get().session_data == before  # checked, never saved, flushed or given a new key
    events.close()


def test_a_session_hashed_under_a_fallback_key_is_allowed_and_left_as_it_is(settings, alice, team):
    _, cookie = logged_in(alice)
    key = cookie.removeprefix("sessionid=")
    before = Session.objects.get(pk=key).session_data
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a key rotated in since alice logged in, long enough to pass"
    grant = access.Grant(session_key=key, user_id=alice.pk, team_id=team.pk)
    assert access.allowed(grant).user == alice
    # django.contrib.auth.get_user would give the session a new key here, which alice's browser would never get.
    assert Session.objects.get(pk=key).session_data == before


def test_a_stream_renders_for_the_user_as_they_are_now_not_as_they_opened_it(server, live, alice, bob, make_task):
    from generations.services import moderation

    bob.is_staff = True
    bob.save(update_fields=["is_staff"])
    bobs = Events(server, logged_in(bob)[1])
    time.sleep(0.3)  # the stream is open, with bob as staff
    bob.is_staff = False
    bob.save(update_fields=["is_staff"])
    task = make_task()
    moderation.items_hide(actor=alice, items=Task.objects.filter(pk=task.pk), reason="off brief")
    event = bobs.next()
    assert card_ids(event["data"]) == set()  # staff no more: the hidden card leaves his page, as a member's does
    assert f'<div id="task-{task.pk}" hx-swap-oob="delete">' in event["data"]
    assert Task.objects.get(pk=task.pk).hidden_at is not None
    bobs.close()


# --- A reconnect to a team the session left ---------------------------------------------------------------


def test_a_reconnect_to_a_team_the_member_left_reloads_the_page(server, live, alice, bob, team):
    Membership.objects.filter(user=alice, team=team).update(role=Membership.Role.OWNER)
    _, cookie = logged_in(bob)
    members.member_remove(actor=alice, membership=Membership.objects.get(user=bob, team=team))
    again = Events(server, cookie, query=f"?team={team.pk}&after=0-0", last_event_id="1-0")
    assert again.response.status == 200
    assert again.until_end() == ["reload"]  # the page then opens the stream of bob's team now, his own
    own = bob.memberships.get().team
    assert own.personal_for_id == bob.pk
    fresh = Events(server, cookie, query=f"?team={own.pk}")
    assert fresh.response.status == 200 and fresh.nothing_for(0.8)  # open, heartbeats only
    fresh.close()


@pytest.mark.parametrize("page_team", ["", "abc", "²", "-1", "9" * 40])
def test_a_malformed_page_team_is_ignored_and_the_stream_opens(server, live, alice, make_task, page_team):
    events = Events(server, logged_in(alice)[1], query=f"?team={quote(page_team)}")
    assert events.response.status == 200
    task = make_task()
    change(task)
    assert card_ids(events.next()["data"]) == {task.pk}
    events.close()


def test_a_reconnect_of_a_logged_out_session_is_sent_to_log_in(server, live, alice, team):
    browser, cookie = logged_in(alice)
    browser.logout()
    connection = http.client.HTTPConnection(*server.split(":"), timeout=10)
    connection.request("GET", f"/studio/events/?team={team.pk}", headers={"Cookie": cookie, "Last-Event-ID": "1-0"})
    response = connection.getresponse()
    assert response.status == 302 and "/accounts/login/" in response.getheader("Location")


# --- Streams per user -------------------------------------------------------------------------------------


def test_a_user_over_the_cap_is_refused_until_a_stream_ends(server, live, settings, alice, bob):
    settings.LIVE_MAX_STREAMS_PER_USER = 2
    _, cookie = logged_in(alice)
    first, second = Events(server, cookie), Events(server, cookie)
    assert first.response.status == second.response.status == 200
    refused = Events(server, cookie)
    assert refused.response.status == 429
    assert refused.response.getheader("Retry-After") == str(access.retry_after())
    assert "Too many studio tabs are open" in refused.response.read().decode()
    bobs = Events(server, logged_in(bob)[1])  # the cap is per user
    assert bobs.response.status == 200
    first.close()  # its slot is given back as the stream ends
    deadline = time.monotonic() + 5
    while live.zcard(access.slots_key(alice.pk)) != 1:
        assert time.monotonic() < deadline, "a closed tab kept its slot"
        time.sleep(0.05)
    third = Events(server, cookie)
    assert third.response.status == 200
    for events in (second, third, bobs):
        events.close()


def test_the_cap_counts_every_process_slots_and_drops_lapsed_ones(server, live, settings, alice):
    settings.LIVE_MAX_STREAMS_PER_USER = 2
    key = access.slots_key(alice.pk)
    now = float(live.time()[0])
    live.zadd(key, {"another-worker": now + 60, "a-crashed-worker": now - 1})  # one alive, one lapsed
    _, cookie = logged_in(alice)
    opened = Events(server, cookie)
    assert opened.response.status == 200  # the lapsed slot no longer counts
    assert Events(server, cookie).response.status == 429  # the other worker's stream does
    slots = live.zrange(key, 0, -1)
    assert len(slots) == 2 and b"another-worker" in slots and b"a-crashed-worker" not in slots
    opened.close()


def test_an_open_stream_keeps_its_slot_alive_on_each_beat(server, live, alice):
    events = Events(server, logged_in(alice)[1])
    key = access.slots_key(alice.pk)
    deadline = time.monotonic() + 5
    while not live.zcard(key):
        assert time.monotonic() < deadline, "the stream took no slot"
        time.sleep(0.05)
    (_, first), *_ = live.zrange(key, 0, -1, withscores=True)
    time.sleep(1.2)  # two heartbeats of 0.5 s
    (_, later), *_ = live.zrange(key, 0, -1, withscores=True)
    assert later > first
    assert 0 < live.ttl(key) <= access.retry_after()
    events.close()


def test_a_worker_that_stops_gives_its_open_streams_slots_back(redis_url):
    """Under gunicorn's uvicorn workers (runstudio), as deployed: a reload or a stop ends the streams still open
    after LIVE_SHUTDOWN_SECONDS, and their slots go back, or every tab reconnecting to the new workers would count
    twice for a minute."""
    import redis

    from bench.stack import running_stack

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with running_stack(REDIS_URL=redis_url) as stack:
        stream = stack.logged_in_session().get(f"{stack.url}/studio/events/", stream=True, timeout=30)
        assert stream.status_code == 200
        deadline = time.monotonic() + 5
        while not client.keys(f"{access.SLOTS_PREFIX}*"):
            assert time.monotonic() < deadline, "the stream took no slot"
            time.sleep(0.05)
    assert client.keys(f"{access.SLOTS_PREFIX}*") == []
    client.close()
