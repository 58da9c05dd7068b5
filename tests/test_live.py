"""Live push against a real redis-server and a real ASGI server (uvicorn, in this process so that the database
queries it makes can be counted): changes are published on commit only, a stream sends a team's changes to that
team only, with the pulse's visibility rules, resumes after Last-Event-ID, frees its Redis connection when the tab
closes, and 500 idle streams read no card (only, once a heartbeat, whether their user may still see them)."""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from bench.stack import free_port, redis_server
from generations.live import stream
from generations.models import Task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of our own on a free port (Debian's package). Missing, it is a failure, never a skip."""
    try:
        with redis_server() as url:
            yield url
    except RuntimeError as exc:  # missing or not starting (a test's own errors never reach a fixture's generator)
        pytest.fail(str(exc))


@pytest.fixture
def live(settings, redis_url):
    import redis

    settings.LIVE_REDIS_URL = redis_url
    settings.LIVE_PUSH = True
    settings.LIVE_HEARTBEAT_SECONDS = 0.5
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def server(live) -> Iterator[str]:
    """The site under uvicorn (ASGI), as gunicorn's uvicorn workers serve it, in a thread of this process."""
    import uvicorn

    from mjstudio.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=15)
        # The streams' connect step ran in asgiref's one shared thread, which outlives the server: its database
        # connection goes now (PostgreSQL would refuse to drop the test database while it is open).
        from asgiref.sync import SyncToAsync
        from django.db import connections

        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
        gc.collect()  # and those of the server's ended threads, which only the collector closes


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class Events:
    """One open event stream, read as a browser's EventSource would."""

    def __init__(self, address: str, cookie: str, *, query: str = "", last_event_id: str | None = None) -> None:
        host, port = address.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Cookie": cookie, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", f"/studio/events/{query}", headers=headers)
        self.response = self.connection.getresponse()
        self.buffer = ""

    def next(self, *, seconds: float = 10, name: str = "cards") -> dict:
        """The next event called `name` (comments and others skipped): its id and data."""
        deadline = time.monotonic() + seconds
        while True:
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                fields: dict[str, list[str]] = {}
                for line in block.split("\n"):
                    key, _, value = line.partition(": ")
                    fields.setdefault(key, []).append(value)
                if fields.get("event") == [name]:
                    return {"id": fields.get("id", [None])[0], "data": "\n".join(fields.get("data", []))}
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name!r} event within {seconds} s")
            self.connection.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.response.read1(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("the stream ended")
            self.buffer += chunk.decode()

    def until_end(self, *, seconds: float = 10) -> list[str]:
        """The names of the events left until the server ends the stream (comments skipped)."""
        names: list[str] = []
        deadline = time.monotonic() + seconds
        while True:
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                names += [line.removeprefix("event: ") for line in block.split("\n") if line.startswith("event: ")]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream still open after {seconds} s (events: {names})")
            self.connection.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.response.read1(65536)
            except TimeoutError:
                continue
            if not chunk:
                return names
            self.buffer += chunk.decode()

    def nothing_for(self, seconds: float) -> bool:
        """No cards event within `seconds` (heartbeats only)."""
        try:
            self.next(seconds=seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.connection.close()


def card_ids(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'<article id="task-(\d+)"', html)}


def entries(client, team) -> list[str]:
    return [fields[b"tasks"].decode() for _, fields in client.xrange(stream.stream_key(team.pk))]


# --- Publishing ---------------------------------------------------------------------------------------------


def test_it_publishes_a_change_once_its_transaction_commits(live, make_task, team):
    task = make_task()
    with transaction.atomic():
        assert Task.objects.filter(pk=task.pk).update_visibly(percentage=40) == 1
        assert entries(live, team) == []  # not before the commit: a reader could not see the change yet
    assert entries(live, team) == [str(task.pk)]
    task.refresh_from_db()
    assert task.percentage == 40


def test_it_publishes_nothing_when_the_transaction_rolls_back(live, make_task, team):
    task = make_task()
    with contextlib.suppress(RuntimeError), transaction.atomic():
        Task.objects.filter(pk=task.pk).update_visibly(percentage=40)
        raise RuntimeError("rolled back")
    assert entries(live, team) == []
    task.refresh_from_db()
    assert task.percentage == 0


def test_it_publishes_only_rows_it_changed_and_names_each_team(live, make_task, team, charlie):
    ours, theirs, done = make_task(), make_task(user=charlie), make_task(status="finished")
    changed = Task.objects.filter(status="pending").update_visibly(percentage=5)
    assert changed == 2
    assert entries(live, team) == [str(ours.pk)]
    assert entries(live, charlie.memberships.get().team) == [str(theirs.pk)]
    assert str(done.pk) not in entries(live, team)
    assert Task.objects.filter(pk=done.pk, percentage=0).exists()


def test_it_publishes_a_new_task_and_an_applied_webhook(live, alice, team, make_task, payload):
    from generations.services import applying, submitting

    task, created = submitting.task_create_imagine(
        team=team, user=alice, text="a lighthouse in fog", mode="fast", aspect_ratio="1:1", idempotency_key=uuid.uuid4()
    )
    assert created
    assert entries(live, team)[0] == str(task.pk)  # then its place in the queue, given on commit
    upstream = make_task(upstream_id=json.loads(payload("processing.json"))["task_id"])
    outcome, _ = applying.webhook_receive(body=json.loads(payload("processing.json")))
    assert outcome == "applied"
    assert entries(live, team)[-1] == str(upstream.pk)
    assert Task.objects.get(pk=upstream.pk).percentage == 40


def test_without_live_push_nothing_is_published_and_the_page_keeps_its_pulse(settings, alice_client, make_task):
    settings.LIVE_PUSH = False
    task = make_task()
    assert Task.objects.filter(pk=task.pk).update_visibly(percentage=10) == 1
    page = alice_client.get("/")
    assert page.status_code == 200
    assert b'id="pulse"' in page.content and b"sse-connect" not in page.content


def test_a_wsgi_server_keeps_the_pulse_even_with_redis(live, alice_client):
    page = alice_client.get("/")  # the test client is WSGI: a thread per open stream would not scale
    assert b'id="pulse"' in page.content and b"sse-connect" not in page.content
    assert alice_client.get("/studio/events/").status_code == 404


# --- The stream ---------------------------------------------------------------------------------------------


def test_the_page_under_asgi_opens_a_stream_from_its_position_instead_of_the_pulse(server, live, alice, make_task):
    task = make_task()
    Task.objects.filter(pk=task.pk).update_visibly(percentage=3)
    position = live.xrevrange(stream.stream_key(task.team_id), count=1)[0][0].decode()
    connection = http.client.HTTPConnection(*server.split(":"), timeout=10)
    connection.request("GET", "/", headers={"Cookie": session_cookie(alice)})
    page = connection.getresponse().read().decode()
    assert f'sse-connect="/studio/events/?team={task.team_id}&amp;after={position}"' in page
    assert 'id="pulse"' not in page
    assert "hx-sse-2" in page


def test_it_sends_a_changed_card_to_the_team_only(server, live, alice, bob, charlie, make_task):
    alices, charlies = Events(server, session_cookie(alice)), Events(server, session_cookie(charlie))
    assert alices.response.status == 200
    assert alices.response.getheader("Content-Type").startswith("text/event-stream")
    task = make_task(user=bob)
    Task.objects.filter(pk=task.pk).update_visibly(percentage=55)
    event = alices.next()
    assert card_ids(event["data"]) == {task.pk}
    assert 'value="55"' in event["data"] and 'hx-swap-oob="true"' in event["data"]
    assert event["id"] == live.xrevrange(stream.stream_key(task.team_id), count=1)[0][0].decode()
    assert charlies.nothing_for(1.5)  # another team's change never reaches charlie
    alices.close()
    charlies.close()


def test_a_hidden_task_leaves_members_streams_and_stays_marked_for_staff(server, live, alice, bob, make_task):
    from generations.services import moderation

    bob.is_staff = True
    bob.save()
    task = make_task()
    members, staff = Events(server, session_cookie(alice)), Events(server, session_cookie(bob))
    moderation.items_hide(actor=bob, items=Task.objects.filter(pk=task.pk), reason="off brief")
    for_member, for_staff = members.next(), staff.next()
    assert card_ids(for_member["data"]) == set()
    assert f'<div id="task-{task.pk}" hx-swap-oob="delete">' in for_member["data"]
    assert card_ids(for_staff["data"]) == {task.pk} and "badge--hidden" in for_staff["data"]
    members.close()
    staff.close()


def test_a_hidden_image_leaves_its_card_for_members_only(server, live, alice, bob):
    from generations.models import Image
    from generations.services import moderation
    from tests.library_data import add_task

    bob.is_staff = True
    bob.save()
    task = add_task(user=alice, text="a lighthouse in fog")
    hidden = task.images.get(index=2)
    members, staff = Events(server, session_cookie(alice)), Events(server, session_cookie(bob))
    moderation.items_hide(actor=bob, items=Image.objects.filter(pk=hidden.pk), reason="off brief")
    for_member, for_staff = members.next(), staff.next()
    assert card_ids(for_member["data"]) == {task.pk} and card_ids(for_staff["data"]) == {task.pk}
    assert f"/images/{hidden.pk}/" not in for_member["data"]  # three images left on the member's card
    assert f"/images/{hidden.pk}/" in for_staff["data"] and "shot__hidden" in for_staff["data"]
    members.close()
    staff.close()


def test_mine_only_streams_leave_out_teammates_cards(server, live, alice, bob, make_task):
    mine = Events(server, session_cookie(alice), query="?mine=1")
    theirs, ours = make_task(user=bob), make_task(user=alice)
    Task.objects.filter(pk=theirs.pk).update_visibly(percentage=10)
    Task.objects.filter(pk=ours.pk).update_visibly(percentage=20)
    seen: set[int] = set()
    while ours.pk not in seen:
        seen |= card_ids(mine.next()["data"])
    assert theirs.pk not in seen
    mine.close()


def test_a_reconnect_resumes_after_its_last_event_and_misses_nothing(server, live, alice, make_task):
    first, second, third = make_task(), make_task(), make_task()
    events = Events(server, session_cookie(alice))
    Task.objects.filter(pk=first.pk).update_visibly(percentage=1)
    last = events.next()
    assert card_ids(last["data"]) == {first.pk}
    events.close()  # the tab loses its connection; meanwhile two more changes
    Task.objects.filter(pk=second.pk).update_visibly(percentage=2)
    Task.objects.filter(pk=third.pk).update_visibly(percentage=3)
    again = Events(server, session_cookie(alice), query="?after=0-0", last_event_id=last["id"])  # the header wins
    seen: set[int] = set()
    while third.pk not in seen:
        seen |= card_ids(again.next()["data"])
    assert seen == {second.pk, third.pk}
    again.close()


def test_a_page_away_longer_than_the_stream_keeps_gets_its_newest_cards(server, live, settings, alice, make_task):
    settings.LIVE_STREAM_MAXLEN = 1
    tasks = [make_task() for _ in range(3)]
    first_id = live.xadd(stream.stream_key(tasks[0].team_id), {"tasks": str(tasks[0].pk)})
    for task in tasks[1:]:  # exact trimming: the entries right after first_id are gone
        live.xadd(stream.stream_key(task.team_id), {"tasks": str(task.pk)}, maxlen=1, approximate=False)
    events = Events(server, session_cookie(alice), last_event_id=first_id.decode())
    assert card_ids(events.next()["data"]) == {t.pk for t in tasks}
    events.close()


def test_a_closed_tab_frees_its_redis_connection(server, live, alice):
    def clients() -> int:
        return live.info("clients")["connected_clients"]

    before = clients()
    events = Events(server, session_cookie(alice))
    deadline = time.monotonic() + 5
    while clients() != before + 1:
        assert time.monotonic() < deadline, "the stream never opened its Redis connection"
        time.sleep(0.05)
    events.close()
    deadline = time.monotonic() + 5
    while clients() != before:
        assert time.monotonic() < deadline, f"{clients() - before} Redis connection(s) left after the tab closed"
        time.sleep(0.05)


def test_a_visitor_without_a_session_gets_no_stream(server, live):
    connection = http.client.HTTPConnection(*server.split(":"), timeout=10)
    connection.request("GET", "/studio/events/")
    response = connection.getresponse()
    assert response.status == 302 and "/accounts/login/" in response.getheader("Location")


# --- Cost of idle streams -----------------------------------------------------------------------------------


@contextlib.contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every SQL statement run in this process, from any thread, while the block runs."""
    from django.db.backends import utils

    seen: list[str] = []
    original = utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        seen.append(sql)
        return original(self, sql, params, many, executor)

    utils.CursorWrapper._execute_with_wrappers = counting
    try:
        yield seen
    finally:
        utils.CursorWrapper._execute_with_wrappers = original


def rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def test_500_idle_streams_read_no_card_only_their_access_and_stay_cheap(
    server, live, settings, alice, charlie, make_task
):
    settings.LIVE_MAX_STREAMS_PER_USER = 500  # one user's 500 tabs here: the cap has its own test
    settings.LIVE_HEARTBEAT_SECONDS = 3  # 15 s in production: each beat asks whether alice may still see the team
    cookie = session_cookie(alice)
    host, port = server.split(":")
    other = make_task(user=charlie)
    Task.objects.filter(pk=other.pk).update_visibly(percentage=1)  # this process's publishing connection, opened
    before_clients, before_rss = live.info("clients")["connected_clients"], rss_kib()
    sockets = []
    request = f"GET /studio/events/ HTTP/1.1\r\nHost: {server}\r\nCookie: {cookie}\r\n\r\n".encode()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    try:
        for _ in range(500):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(request)
            sockets.append(sock)
        for sock in sockets:  # each one answered, and its stream open: its first bytes arrived
            assert b"200 OK" in sock.recv(4096)
        deadline = time.monotonic() + 60
        while live.info("clients")["connected_clients"] < before_clients + 500:
            assert time.monotonic() < deadline, "not every stream reached Redis"
            time.sleep(0.1)
        connected_rss = rss_kib()
        cpu_before, wall_before = time.process_time(), time.monotonic()
        with counted_queries() as queries:
            # Another team's change: idle for alice's tabs.
            Task.objects.filter(pk=other.pk).update_visibly(percentage=9)
            queries.clear()
            time.sleep(3)
        wall = time.monotonic() - wall_before
        cpu = (time.process_time() - cpu_before) / wall
        tables = {table for sql in queries for table in re.findall(r'FROM "(\w+)"', sql)}
        assert tables <= {"django_session", "generations_membership", "auth_user", "generations_team"}, queries[:3]
        checks = sum('FROM "django_session"' in sql for sql in queries)
        # The session, then the membership (with its user and team), and no card; checks under way at the window's
        # edges (a pool thread's each) count one query of the two.
        assert abs(len(queries) - 2 * checks) <= 32, f"{len(queries)} queries for {checks} access checks"
        assert 400 <= checks <= 1000, f"{checks} access checks of 500 streams in {wall:.1f} s: not one per beat"
        per_stream_kib = (connected_rss - before_rss) / 500
        print(
            f"\n500 idle streams: {per_stream_kib:.0f} KiB each, {cpu:.0%} of a core with a heartbeat every 3 s"
            f" ({checks / wall:.0f} access checks/s, {cpu / (checks / wall) * 1e6:.0f} µs of CPU each at most)"
        )
        assert per_stream_kib < 160, f"{per_stream_kib:.0f} KiB per idle stream"
        assert cpu < 0.5 * (os.cpu_count() or 1), f"idle streams take {cpu:.0%} of a core"
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 30
    while live.info("clients")["connected_clients"] > before_clients:
        left = live.info("clients")["connected_clients"] - before_clients
        assert time.monotonic() < deadline, f"closed streams kept {left} Redis connections"
        time.sleep(0.1)


def test_it_reads_cards_once_per_batch_whatever_the_batch(server, live, alice, make_task):
    tasks = [make_task() for _ in range(30)]
    events = Events(server, session_cookie(alice))
    time.sleep(0.3)  # the stream is waiting on Redis
    with counted_queries() as queries:
        Task.objects.filter(pk__in=[t.pk for t in tasks]).update_visibly(at=timezone.now(), percentage=7)
        written = len(queries)
        assert card_ids(events.next()["data"]) == {t.pk for t in tasks}
    # The team, the cards (with prompts, users and parents), their images, the queue line: not one per card.
    assert len(queries) - written <= 8, queries[written:]
    events.close()


def test_live_push_on_postgresql_pools_connections_per_process():
    # Under ASGI a connection kept by a request's own thread is never reused: a pool instead (read at startup).
    import sys

    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['CONN_MAX_AGE'], d['OPTIONS'])"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mjstudio.settings", "DATABASE_URL": "postgres://u:p@127.0.0.1/db"}
    pooled = subprocess.run(  # noqa: S603
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env={**env, "REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pooled.startswith("0 ") and "'pool': {" in pooled and "'max_size': 16" in pooled
    plain = subprocess.run(  # noqa: S603
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env={k: v for k, v in env.items() if k != "REDIS_URL"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pool" not in plain and not plain.startswith("0 ")
