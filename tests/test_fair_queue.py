"""The fair queue (services/queue.py): at most APIFRAME_CONCURRENCY tasks upstream, members take turns, positions on
the waiting cards, owners pause and resume, and the dispatcher holds the limit when several run it at once."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.tasks import default_task_backend
from django.utils import timezone

from generations.apiframe import RateLimited, TaskState
from generations.models import AuditEntry, Membership, Task
from generations.services import applying, polling, queue, submitting
from tests.support.teams import join

CONCURRENCY = 3


@pytest.fixture(autouse=True)
def _queue_settings(settings):
    """Three slots; the per-user rate and the team cap out of the way (a batch of 40 is the point)."""
    settings.APIFRAME_CONCURRENCY = CONCURRENCY
    settings.MJSTUDIO_SUBMIT_MAX = 0
    settings.MJSTUDIO_TEAM_MAX_IN_FLIGHT = 0


@pytest.fixture
def carol(team):
    user = get_user_model().objects.create_user(username="carol", password="pw-carol")
    join(team, user)
    return user


@pytest.fixture
def owner(alice, team):
    Membership.objects.filter(user=alice, team=team).update(role=Membership.Role.OWNER)
    return alice


class FakeApiframe:
    """Takes tasks like Apiframe, counting how many run at once: more than the limit fails the test on the spot."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.sent: list[int] = []  # task pks, in the order they reached "Apiframe"
        self.most = 0
        self._ids = itertools.count(1)

    def imagine(self, *, prompt: str, **options: object) -> str:
        upstream_id = f"up-{next(self._ids)}"
        self.running.add(upstream_id)
        self.most = max(self.most, len(self.running))
        assert len(self.running) <= CONCURRENCY, f"{len(self.running)} tasks upstream at once"
        return upstream_id

    def finish(self, upstream_id: str) -> None:
        """Apiframe's webhook for a finished grid, through the one apply function."""
        urls = [f"https://cdn.apiframe.pro/{upstream_id}/{i}.png" for i in range(1, 5)]
        applying.task_apply_state(
            state=TaskState.from_payload({"task_id": upstream_id, "status": "finished", "image_urls": urls})
        )
        self.running.discard(upstream_id)


class Worker:
    """The default queue's worker: runs the submit jobs the dispatcher queued (the dummy backend records them)."""

    def __init__(self, upstream: FakeApiframe) -> None:
        self.upstream = upstream
        self.done = 0

    def run(self) -> None:
        while self.done < len(default_task_backend.results):
            job = default_task_backend.results[self.done]
            self.done += 1
            if job.task.run_after and job.task.run_after > timezone.now():
                continue  # a retry for later (after a 429): not this round
            if job.task.name == "submit_task":
                (task_id,) = job.args
                submitting.task_submit(task_id=task_id, client=self.upstream)
                task = Task.objects.get(pk=task_id)
                if task.apiframe_task_id:
                    self.upstream.sent.append(task_id)


def imagine(user, text: str) -> Task:
    team = user.memberships.first().team
    task, _ = submitting.task_create_imagine(
        team=team, user=user, text=text, mode="fast", aspect_ratio="1:1", idempotency_key=uuid.uuid4()
    )
    return task


def positions() -> dict[int, int | None]:
    return dict(queue.waiting().values_list("pk", "queue_position"))


def expected_positions() -> dict[int, int]:
    """The line worked out from its definition, independently of the dispatcher: a member's k-th oldest waiting
    task is in turn (their tasks holding slots) + k; by turn, then age, then id."""
    held: dict[int, int] = {}
    for member in queue.occupying().values_list("created_by_id", flat=True):
        held[member] = held.get(member, 0) + 1
    rank: dict[int, int] = {}
    keys = []
    for pk, member, created_at in (
        queue.waiting().order_by("created_at", "pk").values_list("pk", "created_by", "created_at")
    ):
        rank[member] = rank.get(member, 0) + 1
        keys.append((held.get(member, 0) + rank[member], created_at, pk))
    return {pk: position for position, (_, _, pk) in enumerate(sorted(keys), start=1)}


def upstream_now() -> int:
    count = queue.occupying().count()
    assert count <= CONCURRENCY
    return count


# --- 40, 5 and 5 with a concurrency of 3 -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_lets_everyones_first_task_start_before_the_big_batchs_fourth(alice, bob, carol, client):
    upstream = FakeApiframe()
    worker = Worker(upstream)
    batches = {alice: 40, bob: 5, carol: 5}
    tasks = {user: [imagine(user, f"{user.username} {i}") for i in range(n)] for user, n in batches.items()}
    worker.run()
    a, b, c = tasks[alice], tasks[bob], tasks[carol]
    assert upstream.sent == [t.pk for t in a[:3]]  # alice came first: the three slots are hers
    assert upstream_now() == 3

    # The line: bob's and carol's tasks take turns, alice's fourth comes after their first three each.
    line = [b[0], c[0], b[1], c[1], b[2], c[2], a[3], b[3], c[3], a[4], b[4], c[4], *a[5:]]
    assert positions() == {t.pk: n for n, t in enumerate(line, start=1)} == expected_positions()
    client.force_login(bob)
    page = client.get("/").content.decode()
    card = page.split(f'id="task-{b[1].pk}"')[1].split("</article>")[0]
    assert "3rd in line" in card
    assert "1st in line" in page.split(f'id="task-{b[0].pk}"')[1].split("</article>")[0]

    moments = 0
    while upstream.running:
        cursor = timezone.now()
        upstream.finish(min(upstream.running, key=lambda up: int(up.split("-")[1])))  # the oldest ends first
        worker.run()
        assert upstream_now() <= CONCURRENCY
        assert positions() == expected_positions()  # at every moment, not just the first
        moved = {pk for pk, n in positions().items() if n is not None}
        if moved and moments < 3:  # the live refresh resends the cards whose place changed, with the new place
            moments += 1
            pulse = client.get("/studio/pulse/", {"since": cursor.isoformat()}).content.decode()
            for task in Task.objects.filter(pk__in=moved, created_by=bob):
                card = pulse.split(f'id="task-{task.pk}"')[1].split("</article>")[0]
                assert f"{task.queue_position}{ordinal_suffix(task.queue_position)} in line" in card

    assert Task.objects.filter(status="finished").count() == 50
    assert upstream.most == CONCURRENCY
    sent = upstream.sent
    assert sent.index(b[0].pk) < sent.index(a[3].pk) and sent.index(c[0].pk) < sent.index(a[3].pk)
    # bob's and carol's whole batches are out among the first 17 of 50 (first come, first served: the last 10)
    assert max(sent.index(t.pk) for t in b + c) <= 16


def ordinal_suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def test_fair_order_puts_a_newcomer_before_a_member_holding_slots():
    now = timezone.now()
    waiters = [
        queue.Waiter(pk=1, member=10, created_at=now),
        queue.Waiter(pk=2, member=10, created_at=now + timedelta(seconds=1)),
        queue.Waiter(pk=3, member=20, created_at=now + timedelta(seconds=2)),
        queue.Waiter(pk=4, member=30, created_at=now + timedelta(seconds=3)),
        queue.Waiter(pk=5, member=20, created_at=now + timedelta(seconds=4)),
    ]
    line = queue.fair_order(waiters, {10: 2, 30: 1})
    # member 20: turns 1, 2; member 30: turn 2; member 10: turns 3, 4
    assert [w.pk for w in line] == [3, 4, 5, 1, 2]


# --- Deadlines and 429 ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_waiting_task_does_not_time_out_and_its_clock_starts_when_it_is_let_go(alice, bob):
    upstream = FakeApiframe()
    worker = Worker(upstream)
    first = [imagine(alice, f"a {i}") for i in range(3)]
    waiting = imagine(bob, "b")
    worker.run()
    Task.objects.filter(pk=waiting.pk).update(deadline=timezone.now() - timedelta(hours=1))
    assert polling.tasks_expire_overdue() == 0
    waiting.refresh_from_db()
    assert (waiting.status, waiting.queue_position, waiting.dispatched_at) == ("queued", 1, None)

    upstream.finish(Task.objects.get(pk=first[0].pk).apiframe_task_id)
    worker.run()
    waiting.refresh_from_db()
    assert waiting.status == "pending" and waiting.dispatched_at is not None
    expected = waiting.dispatched_at + timedelta(seconds=300)
    assert abs((waiting.deadline - expected).total_seconds()) < 1


@pytest.mark.django_db(transaction=True)
def test_a_rate_limited_task_keeps_its_slot_and_is_tried_again(alice, bob):
    class Busy(FakeApiframe):
        def imagine(self, **kwargs: object) -> str:
            raise RateLimited("Too many jobs", retry_after=5)

    tasks = [imagine(alice, f"a {i}") for i in range(4)]
    Worker(Busy()).run()
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert [statuses[t.pk] for t in tasks] == ["queued"] * 4
    held = Task.objects.filter(dispatched_at__isnull=False)
    assert held.count() == 3 and all(t.error.startswith("Apiframe is busy (") for t in held)
    assert positions() == {tasks[3].pk: 1}  # still behind the three holding slots
    assert queue.queue_dispatch() == []
    retries = [r for r in default_task_backend.results if r.task.name == "submit_task" and r.task.run_after]
    assert len(retries) == 3 and all(r.task.run_after > timezone.now() for r in retries)
    # Apiframe has room again: the retries go through and nothing else was let go meanwhile.
    upstream = FakeApiframe()
    for task in held:
        submitting.task_submit(task_id=task.pk, client=upstream)
    assert Task.objects.filter(status="pending").count() == 3 and positions() == {tasks[3].pk: 1}


@pytest.mark.django_db(transaction=True)
def test_the_pollers_round_lets_waiting_tasks_go_when_a_dispatch_was_lost(make_task):
    from django.core.management import call_command

    waiting = [make_task(status="queued") for _ in range(4)]  # created while every dispatch failed, say
    call_command("pollapiframe", "--once")
    sent = [t.pk for t in waiting if Task.objects.get(pk=t.pk).dispatched_at]
    assert sent == [t.pk for t in waiting[:3]]
    assert positions() == {waiting[3].pk: 1}
    assert [r.args for r in default_task_backend.results if r.task.name == "submit_task"] == [[pk] for pk in sent]


def test_a_job_for_a_task_not_let_go_sends_nothing(make_task):
    task = make_task(status="queued")  # waiting its turn, or a job left from before the queue
    upstream = FakeApiframe()
    submitting.task_submit(task_id=task.pk, client=upstream)
    task.refresh_from_db()
    assert (task.status, task.submit_attempts, upstream.sent, upstream.running) == ("queued", 0, [], set())


# --- Pause and resume ------------------------------------------------------------------------------------------


def _pause(client, team, *, htmx=False):
    return client.post(f"/team/{team.pk}/queue/pause/", headers={"HX-Request": "true"} if htmx else {})


def test_it_lets_an_owner_pause_and_resume_the_team_queue_with_an_audit_row(client, owner, team):
    client.force_login(owner)
    response = _pause(client, team)
    assert response.status_code == 302 and response["Location"] == "/"
    team.refresh_from_db()
    assert team.queue_paused_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.actor, entry.team, entry.target_id) == ("queue_pause", owner, team, team.pk)
    page = client.get("/").content.decode()
    assert "Queue paused by alice" in page and "Resume queue" in page

    again = _pause(client, team)  # already paused: no second row
    assert again.status_code == 302 and AuditEntry.objects.count() == 1

    response = client.post(f"/team/{team.pk}/queue/resume/", headers={"HX-Request": "true"})
    assert response.status_code == 200 and "<html" not in response.content.decode()
    assert "Pause queue" in response.content.decode() and "Queue paused" not in response.content.decode()
    team.refresh_from_db()
    assert team.queue_paused_at is None
    assert list(AuditEntry.objects.order_by("pk").values_list("act", flat=True)) == ["queue_pause", "queue_resume"]


def test_it_refuses_a_member_with_403_and_changes_nothing(client, owner, bob, team):
    client.force_login(bob)
    assert _pause(client, team).status_code == 403
    assert client.post(f"/team/{team.pk}/queue/resume/").status_code == 403
    team.refresh_from_db()
    assert team.queue_paused_at is None and not AuditEntry.objects.exists()
    assert "Pause queue" not in client.get("/").content.decode()


def test_it_lets_staff_pause_the_team_they_work_in(client, bob, team):
    bob.is_staff = True
    bob.save()
    client.force_login(bob)  # a plain member of the team, but staff
    assert _pause(client, team).status_code == 302
    team.refresh_from_db()
    assert team.queue_paused_at is not None
    assert AuditEntry.objects.get().actor == bob


def test_it_answers_404_for_another_team_even_to_its_owner(client, owner, charlie, team):
    Membership.objects.filter(user=charlie).update(role=Membership.Role.OWNER)
    client.force_login(charlie)
    assert _pause(client, team).status_code == 404
    assert client.post(f"/team/{team.pk}/queue/resume/").status_code == 404
    team.refresh_from_db()
    assert team.queue_paused_at is None and not AuditEntry.objects.exists()


def test_it_sends_an_anonymous_visitor_to_log_in(client, team):
    response = _pause(client, team)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    team.refresh_from_db()
    assert team.queue_paused_at is None


def test_it_refuses_get(client, owner, team):
    client.force_login(owner)
    assert client.get(f"/team/{team.pk}/queue/pause/").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_pausing_takes_the_teams_waiting_tasks_out_of_line_and_moves_the_others_up(owner, bob, charlie, team):
    worker = Worker(FakeApiframe())
    theirs = [imagine(charlie, f"theirs {i}") for i in range(4)]  # three go, one waits
    ours = [imagine(bob, f"ours {i}") for i in range(2)]
    worker.run()
    assert positions() == {ours[0].pk: 1, ours[1].pk: 2, theirs[3].pk: 3}
    seen = dict(Task.objects.values_list("pk", "updated_at"))
    assert queue.team_queue_pause(team=team, actor=owner)
    assert positions() == {ours[0].pk: None, ours[1].pk: None, theirs[3].pk: 1}
    changed = {pk for pk, at in Task.objects.values_list("pk", "updated_at") if at != seen[pk]}
    assert changed == {ours[0].pk, ours[1].pk, theirs[3].pk}  # what live refresh resends: the moved cards only
    assert not queue.team_queue_pause(team=team, actor=owner)  # paused already: no change, no second audit row
    assert AuditEntry.objects.filter(act="queue_pause").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_paused_teams_tasks_wait_while_other_teams_flow(client, owner, bob, charlie, team):
    upstream = FakeApiframe()
    worker = Worker(upstream)
    assert queue.team_queue_pause(team=team, actor=owner)
    ours = [imagine(bob, f"ours {i}") for i in range(2)]
    theirs = [imagine(charlie, f"theirs {i}") for i in range(5)]
    worker.run()
    assert set(upstream.sent) == {t.pk for t in theirs[:3]}
    assert positions() == {ours[0].pk: None, ours[1].pk: None, theirs[3].pk: 1, theirs[4].pk: 2}
    client.force_login(bob)
    page = client.get("/").content.decode()
    assert "Queue paused by alice" in page
    assert "Queue paused</span>" in page.split(f'id="task-{ours[0].pk}"')[1].split("</article>")[0]

    cursor = timezone.now()
    assert queue.team_queue_resume(team=team, actor=owner)
    # bob has nothing upstream and charlie three: bob's two come before charlie's fourth
    assert positions() == {ours[0].pk: 1, ours[1].pk: 2, theirs[3].pk: 3, theirs[4].pk: 4}
    pulse = client.get("/studio/pulse/", {"since": cursor.isoformat()}).content.decode()
    assert "1st in line" in pulse and "2nd in line" in pulse and 'id="queue-state"' in pulse
    assert "Queue paused by" not in pulse
    upstream.finish(Task.objects.get(pk=theirs[0].pk).apiframe_task_id)
    worker.run()
    assert upstream.sent[-1] == ours[0].pk


# --- The dispatcher under concurrency ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_let_more_than_the_limit_go(alice, bob, carol):
    """Two threads (two connections, as two workers or pollers would be) dispatch and end tasks at random while a
    third watches the count of tasks holding slots: it never passes 3, and everything ends."""
    for user in (alice, bob, carol):
        for i in range(8):
            submitting.task_create_imagine(
                team=user.memberships.first().team,
                user=user,
                text=f"{user.username} {i}",
                mode="fast",
                aspect_ratio="1:1",
                idempotency_key=uuid.uuid4(),
            )
    Task.objects.update(status="queued", dispatched_at=None, queue_position=None)  # undo the creations' dispatch
    stop, seen, errors = threading.Event(), [], []
    start = threading.Barrier(3)

    def watch() -> None:
        try:
            start.wait()
            while not stop.is_set():
                seen.append(queue.occupying().count())
        finally:
            connection.close()

    def dispatch(worker: int) -> None:
        try:
            start.wait()
            for _ in range(60):
                granted = queue.queue_dispatch()
                seen.append(queue.occupying().count())
                for pk in granted[: worker + 1]:  # end some of what this one let go, as webhooks would
                    Task.objects.filter(pk=pk).update_visibly(status="finished", finished_at=timezone.now())
                if not queue.waiting().exists():
                    Task.objects.filter(status="queued").update_visibly(status="finished")
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=dispatch, args=(n,)) for n in range(2)]
    watcher = threading.Thread(target=watch)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    watcher.join(timeout=10)
    assert not errors, errors
    assert seen and max(seen) <= CONCURRENCY
    assert max(seen) == CONCURRENCY  # the limit was reached, so it was tested
    granted_ever = Task.objects.exclude(dispatched_at=None).count()
    assert granted_ever >= 12  # slots were freed and handed out again, many times over


# --- The usage page: each member's median wait ---------------------------------------------------------------


def test_the_usage_page_shows_each_members_median_wait(client, alice, bob, carol, charlie, make_task):
    now = timezone.now()
    for user, waits in [(alice, [10, 20, 30]), (bob, [60, 120, 1, 3600]), (charlie, [999])]:
        for seconds in waits:
            created = now - timedelta(hours=2)
            make_task(
                user=user, status="finished", created_at=created, dispatched_at=created + timedelta(seconds=seconds)
            )
    make_task(user=carol, status="queued")  # still waiting: no wait measured yet
    client.force_login(alice)
    response = client.get("/usage/")
    assert response.status_code == 200
    table = response.content.decode().split('id="member-totals"')[1].split("</table>")[0]
    rows = {row.split("</th>")[0].split("<")[0]: row for row in table.split('<th scope="row">')[1:]}
    assert '<td class="wait">20 s</td>' in rows["alice"]
    assert '<td class="wait">1 min 30 s</td>' in rows["bob"]  # (60 + 120) / 2
    assert '<td class="wait">–</td>' in rows["carol"]
    assert "charlie" not in rows


def test_median_waits_are_counted_in_one_group_by_and_exact_to_the_second(
    alice, bob, make_task, django_assert_num_queries
):
    from generations.services.usage import median_waits, wait_counts

    now = timezone.now()
    for seconds in (5, 1, 3, 2, 3600 * 5 + 1):
        make_task(user=alice, dispatched_at=now + timedelta(seconds=seconds, milliseconds=200), created_at=now)
    make_task(user=bob, dispatched_at=now + timedelta(seconds=7), created_at=now)
    make_task(user=bob, status="queued")  # not let go yet: no wait
    with django_assert_num_queries(1):
        counts = wait_counts(tasks=Task.objects.all())
    assert counts == {alice.pk: {1: 1, 2: 1, 3: 1, 5: 1, 18001: 1}, bob.pk: {7: 1}}
    assert median_waits(counts) == {alice.pk: timedelta(seconds=3), bob.pk: timedelta(seconds=7)}
    assert median_waits({alice.pk: {1: 1, 2: 1, 3: 1, 5: 1}}) == {alice.pk: timedelta(seconds=2.5)}


@pytest.mark.django_db
def test_hiding_a_waiting_task_withdraws_it_and_moves_the_line_up(settings, owner, django_capture_on_commit_callbacks):
    from generations.services import moderation

    settings.APIFRAME_CONCURRENCY = 1
    with django_capture_on_commit_callbacks(execute=True):
        first, second, third = (imagine(owner, f"harbour {n}") for n in range(3))
    assert positions() == {second.pk: 1, third.pk: 2}

    with django_capture_on_commit_callbacks(execute=True):
        moderation.items_hide(actor=owner, items=Task.objects.filter(pk=second.pk), reason="off brief")
    second.refresh_from_db()
    assert (second.status, second.error, second.dispatched_at) == ("failed", moderation.WITHDRAWN, None)
    assert positions() == {third.pk: 1}  # moved up into the withdrawn task's place
    assert Task.objects.get(pk=first.pk).dispatched_at is not None  # the one already let go runs on
