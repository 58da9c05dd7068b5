"""Background work that never piles up, hangs or leaks: downloads with a wall clock, mirror retries that keep
their cap, jobs and files a killed worker left behind, race-safe first requests, idempotency scope, retention."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image as PILImage

from generations import jobs
from generations.models import AuditEntry, Chore, Image, Membership, Task, Team, WebhookDelivery
from generations.services import housekeeping, mirroring, polling, submitting, teams

pytestmark = pytest.mark.django_db(transaction=True)


def _png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), "teal").save(out, "PNG")
    return out.getvalue()


class ImageHost(http.server.ThreadingHTTPServer):
    """A local image host: /fast/… serves a PNG, /slow/… drips a byte every 0.1 s, /silent/… sends headers and
    then nothing, /status/<code>/… answers that status, /text/… a web page. Counts the requests per path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHostHandler)
        self.requests: Counter[str] = Counter()
        self.png = _png()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"


class _ImageHostHandler(http.server.BaseHTTPRequestHandler):
    server: ImageHost

    def do_GET(self) -> None:
        self.server.requests[self.path] += 1
        kind = self.path.split("/")[1]
        if kind == "fast":
            self._send(200, self.server.png, "image/png")
        elif kind == "text":
            self._send(200, b"<html>a web page</html>", "text/html")
        elif kind == "status":
            code = int(self.path.split("/")[2])
            self.send_response(code)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind in ("slow", "silent"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            stop = time.monotonic() + 8
            try:
                while time.monotonic() < stop:
                    time.sleep(0.1)
                    if kind == "slow":
                        self.wfile.write(b"x")
                        self.wfile.flush()
            except OSError:  # the client hung up: what the test wants
                pass

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host(settings):
    server = ImageHost()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.APIFRAME_IMAGE_HOSTS = [server.netloc]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grid(make_task):
    """A finished task whose four images come from `paths` on the image host."""

    def make(host: ImageHost, *paths: str, **fields) -> Task:
        task = make_task(status="finished", finished_at=timezone.now(), **fields)
        for index, path in enumerate(paths, start=1):
            Image.objects.create(task=task, index=index, source_url=host.url(f"{path}/{task.pk}-{index}.png"))
        return task

    return make


def _in_thread(target, *args, **kwargs) -> threading.Thread:
    def run() -> None:
        try:
            target(*args, **kwargs)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- Downloads have a real wall-clock limit ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slow/1.png", "/silent/1.png"])
def test_it_cuts_a_dripping_or_silent_host_off_at_the_limit(image_host, settings, path):
    settings.MJSTUDIO_DOWNLOAD_SECONDS = 1.0
    started = time.monotonic()
    with pytest.raises(mirroring.MirrorError, match="took longer than 1 s") as refused:
        mirroring._download_image(image_host.url(path), session=requests.Session())
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.6  # the limit, plus a small margin: not one read (or one 64 KiB chunk) later
    assert not refused.value.permanent  # a slow host may be fast next time


def test_a_slow_image_counts_one_attempt_and_backs_off(image_host, grid, settings):
    settings.MJSTUDIO_DOWNLOAD_SECONDS = 1.0
    task = grid(image_host, "/slow")
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert (image.is_mirrored, image.mirror_attempts, image.mirror_gave_up) == (False, 1, False)
    assert image.mirror_error == "download took longer than 1 s"
    assert image.mirror_next_at > timezone.now()


def test_a_slow_host_does_not_hold_up_another_tasks_images(image_host, grid, settings):
    settings.MJSTUDIO_DOWNLOAD_SECONDS = 3.0
    slow = grid(image_host, "/slow", "/slow", "/slow", "/slow")
    fast = grid(image_host, "/fast", "/fast", "/fast", "/fast")
    # One mirror worker: it runs the slow task's job first; the fast task's job waits behind it in the queue.
    worker = _in_thread(mirroring.task_mirror_images, task_id=slow.pk)
    started = time.monotonic()
    while time.monotonic() - started < 2.0 and fast.images.filter(mirrored_at=None).exists():
        time.sleep(0.05)
    fast_took = time.monotonic() - started
    assert worker.is_alive()  # the slow task is still downloading...
    assert not fast.images.filter(mirrored_at=None).exists()  # ...and the fast one's images are all saved
    assert fast_took < 1.5
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert set(slow.images.values_list("mirror_error", flat=True)) == {"download took longer than 3 s"}
    mirroring.task_mirror_images(task_id=fast.pk)  # its own job, when it comes: nothing left to do
    assert image_host.requests.total() == 8


def test_a_job_takes_other_grids_new_images_but_leaves_retries_to_their_own_jobs(image_host, grid):
    own, waiting = grid(image_host, "/fast"), grid(image_host, "/fast")
    retrying = grid(image_host, "/slow")  # a slow host's image, due for its second try
    Image.objects.filter(task=retrying).update(mirror_attempts=1, mirror_next_at=timezone.now())
    mirroring.task_mirror_images(task_id=own.pk)
    assert not Image.objects.filter(task__in=[own, waiting], mirrored_at=None).exists()
    assert retrying.images.get().mirror_attempts == 1
    assert image_host.requests.total() == 2


# --- Mirror retries respect their cap and don't multiply ---------------------------------------------------


@pytest.fixture
def db_queue(settings):
    """The real database queue, with no worker running (a worker that is down)."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": settings.TASK_QUEUES}}


def test_the_sweep_queues_a_lost_mirror_once_while_the_worker_is_down(grid, image_host, db_queue):
    task = grid(image_host, "/fast", "/fast", "/fast", "/fast")
    Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(minutes=5))  # its job was lost
    now = timezone.now()
    queued = [polling.images_requeue_unmirrored(now=now + timedelta(seconds=30 * i)) for i in range(5)]
    assert queued == [1, 0, 0, 0, 0]
    (job,) = DBTaskResult.objects.all()
    assert (job.status, job.args_kwargs["args"]) == (TaskResultStatus.READY, [task.pk])
    assert set(task.images.values_list("mirror_job_id", flat=True)) == {str(job.id)}


def test_a_retry_waiting_for_a_worker_that_is_down_is_not_queued_again(grid, image_host, db_queue):
    task = grid(image_host, "/status/503")
    mirroring.task_mirror_images(task_id=task.pk)
    (retry,) = DBTaskResult.objects.all()
    assert retry.run_after > timezone.now()
    later = timezone.now() + timedelta(minutes=10)  # long overdue: the worker is down
    assert [polling.images_requeue_unmirrored(now=later + timedelta(seconds=30 * i)) for i in range(5)] == [0] * 5
    assert DBTaskResult.objects.count() == 1
    # Once that job is gone (run by a worker that was then killed, and reaped), the sweep queues it again.
    DBTaskResult.objects.filter(pk=retry.pk).update(status=TaskResultStatus.FAILED)
    assert polling.images_requeue_unmirrored(now=later) == 1


def test_duplicate_jobs_download_an_image_once_and_never_pass_the_cap(grid, image_host, settings):
    task = grid(image_host, "/status/500")
    (image,) = task.images.all()
    for _round in range(12):  # more rounds than the cap, each with three copies of the job at once
        copies = [_in_thread(mirroring.task_mirror_images, task_id=task.pk) for _ in range(3)]
        for copy in copies:
            copy.join(timeout=10)
        Image.objects.filter(pk=image.pk).update(mirror_next_at=timezone.now())  # the backoff is over
    image.refresh_from_db()
    assert image.mirror_attempts == Image.MIRROR_MAX_ATTEMPTS
    assert image_host.requests[f"/status/500/{task.pk}-1.png"] == Image.MIRROR_MAX_ATTEMPTS
    assert image.mirror_gave_up and image.mirror_error == "image host answered 500"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/status/302", "image host answered 302"),
        ("/status/403", "image host answered 403"),
        ("/text", "not a valid image: UnidentifiedImageError"),
    ],
)
def test_a_permanent_error_gives_up_at_once(grid, image_host, path, reason, alice_client):
    task = grid(image_host, path)
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert (image.mirror_gave_up, image.mirror_error, image.mirror_next_at) == (True, reason, None)
    assert image_host.requests.total() == 1
    from django.tasks import default_task_backend

    assert default_task_backend.results == []  # no retry queued
    assert polling.images_requeue_unmirrored(now=timezone.now() + timedelta(hours=1)) == 0
    page = alice_client.get("/")
    assert page.status_code == 200
    assert f"Could not save this image: {reason}" in page.content.decode()


def test_an_image_from_a_host_not_allowed_gives_up_at_once(make_task, settings):
    settings.APIFRAME_IMAGE_HOSTS = ["cdn.apiframe.pro"]
    task = make_task(status="finished", finished_at=timezone.now())
    Image.objects.create(task=task, index=1, source_url="http://169.254.169.254/latest/meta-data")
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert image.mirror_gave_up and "not an Apiframe image host" in image.mirror_error


def test_an_image_too_large_gives_up_at_once(grid, image_host, settings):
    settings.MJSTUDIO_MAX_IMAGE_BYTES = 100
    task = grid(image_host, "/fast")
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert image.mirror_gave_up and image.mirror_error == "image larger than 100 bytes"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/status/500", "image host answered 500"),
        ("/status/503", "image host answered 503"),
        ("/status/404", "image host answered 404"),  # a CDN may not have it yet
        ("/status/429", "image host answered 429"),
    ],
)
def test_a_transient_error_backs_off(grid, image_host, path, reason):
    task = grid(image_host, path)
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert (image.mirror_gave_up, image.mirror_attempts, image.mirror_error) == (False, 1, reason)
    assert timezone.now() < image.mirror_next_at < timezone.now() + timedelta(seconds=3)
    from django.tasks import default_task_backend

    (retry,) = default_task_backend.results
    assert retry.task.run_after == image.mirror_next_at
    assert image.mirror_job_id == str(retry.id)


def test_a_host_that_refuses_connections_backs_off(make_task, settings):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.APIFRAME_IMAGE_HOSTS = [f"127.0.0.1:{port}"]
    task = make_task(status="finished", finished_at=timezone.now())
    Image.objects.create(task=task, index=1, source_url=f"http://127.0.0.1:{port}/1.png")
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert (image.mirror_gave_up, image.mirror_attempts, image.mirror_error) == (
        False,
        1,
        "download failed: ConnectionError",
    )


# --- Jobs and files a killed worker left behind --------------------------------------------------------------


def test_it_reaps_jobs_left_running_by_a_killed_worker(settings, db_queue):
    settings.MJSTUDIO_JOB_TIMEOUT = 600
    now = timezone.now()
    dead, alive, waiting = (jobs.mirror_task_images.enqueue(n).id for n in (1, 2, 3))
    DBTaskResult.objects.filter(pk__in=[dead, alive]).update(status=TaskResultStatus.RUNNING)
    DBTaskResult.objects.filter(pk=dead).update(started_at=now - timedelta(minutes=11))
    DBTaskResult.objects.filter(pk=alive).update(started_at=now - timedelta(minutes=9))
    assert housekeeping.jobs_reap_running(now=now) == 1
    status = dict(DBTaskResult.objects.values_list("id", "status"))
    assert (status[uuid.UUID(dead)], status[uuid.UUID(alive)], status[uuid.UUID(waiting)]) == (
        "FAILED",
        "RUNNING",
        "READY",
    )
    reaped = DBTaskResult.objects.get(pk=dead)
    assert reaped.finished_at == now and "its worker died" in reaped.traceback
    assert housekeeping.jobs_reap_running(now=now) == 0


def test_an_image_claimed_by_a_killed_worker_is_mirrored_again(grid, image_host, db_queue, settings):
    task = grid(image_host, "/fast")
    (image,) = task.images.all()
    now = timezone.now()
    # A worker claimed it (as `image_mirror_once` does) and was killed mid-download.
    Image.objects.filter(pk=image.pk).update(mirror_attempts=1, mirror_next_at=now + timedelta(seconds=120))
    assert polling.images_requeue_unmirrored(now=now + timedelta(seconds=60)) == 0  # its claim still holds
    assert polling.images_requeue_unmirrored(now=now + timedelta(seconds=190)) == 1
    Image.objects.filter(pk=image.pk).update(mirror_next_at=now)  # the claim ran out
    mirroring.task_mirror_images(task_id=task.pk)
    image.refresh_from_db()
    assert (image.is_mirrored, image.mirror_attempts) == (True, 2)


def _stored(name: str, *, age: timedelta) -> str:
    name = default_storage.save(name, ContentFile(b"bytes"))
    then = (timezone.now() - age).timestamp()
    os.utime(default_storage.path(name), (then, then))
    return name


def test_it_sweeps_old_files_no_image_names(make_task):
    task = make_task(status="finished")
    old = timedelta(hours=2)
    recorded_file, recorded_thumb = _stored("images/kept.png", age=old), _stored("thumbs/kept.webp", age=old)
    Image.objects.create(task=task, index=1, source_url="https://cdn.apiframe.pro/1.png", file=recorded_file)
    Image.objects.create(task=task, index=2, source_url="https://cdn.apiframe.pro/2.png", thumbnail=recorded_thumb)
    orphans = [_stored("images/orphan.png", age=old), _stored("thumbs/orphan.webp", age=old)]
    young = _stored("images/being-recorded.png", age=timedelta(minutes=5))
    assert housekeeping.files_sweep_orphans() == 2
    assert [default_storage.exists(n) for n in orphans] == [False, False]
    assert all(default_storage.exists(n) for n in (recorded_file, recorded_thumb, young))
    assert housekeeping.files_sweep_orphans() == 0


def test_the_orphan_sweep_works_in_batches(make_task, monkeypatch):
    monkeypatch.setattr(housekeeping, "BATCH", 2)
    task = make_task(status="finished")
    names = [_stored(f"images/{i}.png", age=timedelta(hours=2)) for i in range(5)]
    for index, name in enumerate(names[:3], start=1):
        Image.objects.create(task=task, index=index, source_url="https://cdn.apiframe.pro/x.png", file=name)
    assert housekeeping.files_sweep_orphans() == 2
    assert [default_storage.exists(n) for n in names] == [True, True, True, False, False]


# --- Retention --------------------------------------------------------------------------------------------


def _job_row(*, status: str, finished_days_ago: float | None) -> DBTaskResult:
    finished_at = timezone.now() - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
    return DBTaskResult.objects.create(
        status=status,
        args_kwargs={"args": [1], "kwargs": {}},
        task_path="generations.jobs.mirror_task_images",
        backend_name="default",
        run_after=timezone.now(),
        finished_at=finished_at,
    )


def _delivery(days_ago: float) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        received_at=timezone.now() - timedelta(days=days_ago), outcome="applied", body={"task_id": "x"}
    )


def test_the_poller_prunes_old_rows_only_and_once_a_day(settings):
    settings.MJSTUDIO_RETENTION_DAYS = 30
    old_deliveries, recent_delivery = [_delivery(31), _delivery(40)], _delivery(29)
    old_jobs = [_job_row(status=s, finished_days_ago=31) for s in ("SUCCESSFUL", "FAILED")]
    kept_jobs = [_job_row(status="SUCCESSFUL", finished_days_ago=1), _job_row(status="READY", finished_days_ago=None)]
    call_command("pollapiframe", "--once")  # no cron: the poller does it
    assert list(WebhookDelivery.objects.all()) == [recent_delivery]
    assert set(DBTaskResult.objects.all()) == set(kept_jobs)
    assert not any(DBTaskResult.objects.filter(pk=j.pk).exists() for j in old_jobs)
    assert not any(WebhookDelivery.objects.filter(pk=d.pk).exists() for d in old_deliveries)

    newly_old = _delivery(35)
    call_command("pollapiframe", "--once")  # a restart the same day: not again
    housekeeping.chores_run_due(now=timezone.now() + timedelta(hours=23))
    assert WebhookDelivery.objects.filter(pk=newly_old.pk).exists()
    housekeeping.chores_run_due(now=timezone.now() + timedelta(days=1, minutes=1))  # the next day
    assert not WebhookDelivery.objects.filter(pk=newly_old.pk).exists()
    assert Chore.objects.get(name="prune_old_rows").last_run_at > timezone.now() + timedelta(days=1)


def test_audit_rows_are_kept_for_their_own_longer_retention(settings):
    settings.MJSTUDIO_RETENTION_DAYS, settings.MJSTUDIO_AUDIT_RETENTION_DAYS = 30, 730
    now = timezone.now()
    kept = [AuditEntry.objects.create(act="prompt_blocked", created_at=now - timedelta(days=d)) for d in (31, 729)]
    for days in (731, 900):
        AuditEntry.objects.create(act="prompt_blocked", created_at=now - timedelta(days=days))
    assert housekeeping.rows_prune_old() == 2
    assert set(AuditEntry.objects.all()) == set(kept)
    settings.MJSTUDIO_AUDIT_RETENTION_DAYS = 0  # kept for good
    assert housekeeping.rows_prune_old(now=now + timedelta(days=3650)) == 0
    assert AuditEntry.objects.count() == 2


def test_the_prune_deletes_in_batches(monkeypatch, settings):
    monkeypatch.setattr(housekeeping, "BATCH", 3)
    for _ in range(7):
        _delivery(45)
    assert housekeeping.rows_prune_old() == 7
    assert not WebhookDelivery.objects.exists()


# --- Concurrency: simultaneous first requests -------------------------------------------------------------


@pytest.fixture
def all_six_looked_first(monkeypatch):
    """Hold each request's team creation until all six have looked for a team: the race, every time."""
    looked = threading.Barrier(6)
    create = Team.objects.create

    def create_once_all_looked(**fields):
        with contextlib.suppress(threading.BrokenBarrierError):
            looked.wait(timeout=1.5)  # on SQLite the first holds the write lock: the others wait there
        return create(**fields)

    monkeypatch.setattr(Team.objects, "create", create_once_all_looked)


def test_six_simultaneous_first_requests_make_one_personal_team(django_user_model, all_six_looked_first):
    user = django_user_model.objects.create_user(username="dana", password="pw-dana")
    start = threading.Barrier(6)
    teams_seen: list[int] = []

    def first_request() -> None:
        start.wait()
        teams_seen.append(teams.team_for_session(user=user).pk)

    requests_ = [_in_thread(first_request) for _ in range(6)]
    for request in requests_:
        request.join(timeout=20)
    (team,) = Team.objects.all()
    assert teams_seen == [team.pk] * 6
    assert team.personal_for == user
    assert list(Membership.objects.values_list("team_id", "user_id")) == [(team.pk, user.pk)]


def test_six_simultaneous_first_page_loads_make_one_personal_team(live_server, django_user_model, all_six_looked_first):
    django_user_model.objects.create_user(username="erin", password="pw-erin")
    sessions = []
    for _ in range(6):  # six tabs, each logged in, none has loaded a page yet
        session = requests.Session()
        login = session.get(f"{live_server.url}/accounts/login/")
        token = session.cookies["csrftoken"]
        assert login.status_code == 200
        session.post(
            f"{live_server.url}/accounts/login/",
            {"username": "erin", "password": "pw-erin", "csrfmiddlewaretoken": token},
            allow_redirects=False,
        )
        sessions.append(session)
    assert not Team.objects.exists()  # logged in, but no page loaded yet
    start = threading.Barrier(6)
    statuses: list[int] = []

    def load(session: requests.Session) -> None:
        start.wait()
        statuses.append(session.get(f"{live_server.url}/").status_code)

    loads = [threading.Thread(target=load, args=(s,)) for s in sessions]
    for thread in loads:
        thread.start()
    for thread in loads:
        thread.join(timeout=30)
    assert statuses == [200] * 6
    assert Team.objects.count() == 1


def test_a_user_has_one_personal_team_in_the_database():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="finn")
    Team.objects.create(name="one", personal_for=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Team.objects.create(name="two", personal_for=user)


# --- Idempotency keys: scoped to the team and the parent ---------------------------------------------------


def _act(client, task, *, action="pan:left", index=1, key):
    return client.post(f"/tasks/{task.pk}/act/", {"action": action, "index": index, "idempotency_key": str(key)})


def test_a_key_reused_on_another_parent_makes_a_task_there(alice_client, make_task):
    first, second = (make_task(status="finished", upstream_id=f"up-{n}") for n in (1, 2))
    key = uuid.uuid4()
    assert _act(alice_client, first, key=key).status_code == 302
    assert _act(alice_client, second, key=key).status_code == 302
    assert _act(alice_client, second, key=key).status_code == 302  # a double click there: still one
    assert Task.objects.filter(parent=first).count() == 1
    assert Task.objects.filter(parent=second).count() == 1


def test_a_key_reused_after_switching_teams_makes_a_task_in_the_new_team(alice_client, alice, team):
    other = Team.objects.create(name="Night Shift")
    Membership.objects.create(team=other, user=alice)
    data = {"prompt": "a lighthouse in fog", "mode": "fast", "aspect_ratio": "16:9", "idempotency_key": uuid.uuid4()}
    assert alice_client.post("/tasks/", data).status_code == 302
    assert alice_client.post("/team/", {"team": other.pk}).status_code == 302
    assert alice_client.post("/tasks/", data).status_code == 302
    assert alice_client.post("/tasks/", data).status_code == 302  # repeated in the new team: still one there
    assert Task.objects.filter(team=team).count() == 1
    assert Task.objects.filter(team=other).count() == 1


def test_one_key_on_two_retry_buttons_makes_two_retries(alice_client, make_task):
    failed = [make_task(status="failed", upstream_id=f"up-{n}") for n in (1, 2)]
    key = uuid.uuid4()
    for task in failed:
        assert alice_client.post(f"/tasks/{task.pk}/retry/", {"idempotency_key": str(key)}).status_code == 302
    retries = Task.objects.exclude(pk__in=[t.pk for t in failed])
    assert retries.count() == 2
    assert sorted(r.prompt_id for r in retries) == sorted(t.prompt_id for t in failed)


def test_the_database_refuses_a_second_task_for_one_key_even_without_a_parent(alice, team):
    key = uuid.uuid4()
    task, created = submitting.task_create_imagine(
        team=team, user=alice, text="a kite", mode="fast", aspect_ratio="1:1", idempotency_key=key
    )
    assert created
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.create(
            team=team,
            prompt=task.prompt,
            created_by=alice,
            action="imagine",
            idempotency_key=key,
            deadline=task.deadline,
        )
    again, created = submitting.task_create_imagine(
        team=team, user=alice, text="a kite", mode="fast", aspect_ratio="1:1", idempotency_key=key
    )
    assert (again, created) == (task, False)


def test_a_finished_tasks_first_mirror_job_is_noted_so_the_sweep_adds_none(
    make_task, db_queue, django_capture_on_commit_callbacks
):
    from generations.apiframe import TaskState
    from generations.services import applying

    task = make_task(status="processing", upstream_id="first-job")
    state = TaskState.from_payload(
        {
            "task_id": "first-job",
            "status": "finished",
            "image_urls": [f"https://cdn.apiframe.pro/{i}.png" for i in "1234"],
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        applying.task_apply_state(state=state)
    (job,) = DBTaskResult.objects.all()
    assert set(task.images.values_list("mirror_job_id", flat=True)) == {str(job.id)}
    Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(minutes=5))  # the worker is down
    assert polling.images_requeue_unmirrored(now=timezone.now() + timedelta(minutes=10)) == 0


# --- A submit job a killed worker took is sent again ----------------------------------------------------------


def test_a_task_whose_submit_job_was_lost_is_queued_again_once_per_grace(make_task, db_queue):
    """The chaos run's finding: a worker SIGKILLed after taking a submit job and before claiming its task left the
    task in its slot until the deadline timed it out."""
    now = timezone.now()
    dispatched = now - timedelta(minutes=3)
    lost = make_task(status="queued", dispatched_at=dispatched, updated_at=dispatched)
    busy = make_task(status="queued", dispatched_at=dispatched, updated_at=now - timedelta(seconds=5), error="429")
    fresh = make_task(status="queued", dispatched_at=now, updated_at=now)
    waiting = make_task(status="queued", dispatched_at=None, updated_at=dispatched)
    sending = make_task(status="submitting", dispatched_at=dispatched, updated_at=dispatched)
    assert polling.tasks_requeue_unsent(now=now) == 1
    (job,) = DBTaskResult.objects.all()
    assert (job.status, job.args_kwargs["args"]) == (TaskResultStatus.READY, [lost.pk])
    assert polling.tasks_requeue_unsent(now=now + timedelta(seconds=30)) == 0  # the new job gets its own grace
    assert DBTaskResult.objects.count() == 1
    for task in (busy, fresh, waiting, sending):
        task.refresh_from_db()
    assert [t.status for t in (busy, fresh, waiting, sending)] == ["queued", "queued", "queued", "submitting"]
    # The job sends it as any submit would; the first job, had it only been slow, finds it taken and sends nothing.
    calls = []

    class Api:
        def imagine(self, **kwargs):
            calls.append(kwargs)
            return "upstream-1"

    submitting.task_submit(task_id=lost.pk, client=Api())
    submitting.task_submit(task_id=lost.pk, client=Api())
    lost.refresh_from_db()
    assert (lost.status, lost.apiframe_task_id, len(calls)) == ("pending", "upstream-1", 1)
