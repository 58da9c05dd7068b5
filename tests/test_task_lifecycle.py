"""Services against the real sandbox over HTTP: submit, webhooks or polling alone, mirroring, deadlines."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.core.files.storage import default_storage
from django.utils import timezone

from generations.models import Image, Task
from generations.services import applying, mirroring, polling, submitting

pytestmark = pytest.mark.django_db(transaction=True)


def imagine(team, user, text="a red kite over dunes", **kwargs) -> Task:
    task, _ = submitting.task_create_imagine(
        team=team, user=user, text=text, mode="fast", aspect_ratio="1:1", idempotency_key=uuid.uuid4(), **kwargs
    )
    return task


def poll_until_settled(*task_pks: int, seconds: float = 15.0) -> list[Task]:
    """Run the poller's rounds (as `pollapiframe` does) until every task has left flight."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        polling.tasks_poll()
        tasks = list(Task.objects.filter(pk__in=task_pks))
        if not any(t.is_in_flight for t in tasks):
            return tasks
        time.sleep(0.2)
    raise AssertionError(f"still in flight: {[(t.pk, t.status) for t in Task.objects.filter(pk__in=task_pks)]}")


@pytest.fixture
def no_quiet_period(settings):
    settings.MJSTUDIO_POLL_AFTER = settings.MJSTUDIO_POLL_AFTER_NO_WEBHOOKS = 0


@pytest.mark.sandbox(task_seconds=0.3, faults={"webhook_drop": 1.0})
def test_polling_alone_finishes_tasks_when_every_webhook_is_lost(studio_upstream, alice, team, no_quiet_period):
    tasks = [imagine(team, alice, text=f"a red kite over dunes {i}") for i in range(5)]
    # Three sent at once by the immediate queue (APIFRAME_CONCURRENCY); two wait their turn, sent as slots free.
    assert sorted(Task.objects.values_list("status", "queue_position")) == [
        ("pending", None),
        ("pending", None),
        ("pending", None),
        ("queued", 1),
        ("queued", 2),
    ]
    finished = poll_until_settled(*(t.pk for t in tasks))
    assert {t.status for t in finished} == {"finished"}
    for task in finished:
        images = list(task.images.order_by("index"))
        assert [i.index for i in images] == [1, 2, 3, 4]
        assert all(i.is_mirrored and default_storage.exists(i.file.name) for i in images)
        assert all((i.width, i.height) == (512, 512) for i in images)
        assert all(default_storage.exists(i.thumbnail.name) and i.thumbnail.name.endswith(".webp") for i in images)


@pytest.mark.sandbox(task_seconds=0.3)
def test_webhooks_finish_a_task_without_polling(studio_upstream, alice, team, live_server, settings):
    settings.APIFRAME_WEBHOOK_URL = f"{live_server.url}/webhooks/apiframe/"
    task = imagine(team, alice)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and task.images.filter(mirrored_at__isnull=False).count() < 4:
        time.sleep(0.1)
    task.refresh_from_db()
    assert task.status == "finished"
    assert task.images.filter(mirrored_at__isnull=False).count() == 4
    assert task.webhook_deliveries.filter(outcome="applied").exists()
    assert studio_upstream.engine.request_counts["/fetch-many"] == 0


@pytest.mark.sandbox(task_seconds=0.2, faults={"webhook_drop": 1.0})
def test_children_reach_apiframe_with_the_parents_upstream_id(studio_upstream, alice, team, no_quiet_period):
    grid = imagine(team, alice)
    (grid,) = poll_until_settled(grid.pk)
    children = [
        submitting.task_create_child(
            parent=grid, user=alice, action=action, option=option, index=index, idempotency_key=uuid.uuid4()
        )[0]
        for action, option, index in [("pan", "left", 2), ("zoom", "1.5", 1), ("upscale", "subtle", 4)]
    ]
    settled = {t.action: t for t in poll_until_settled(*(c.pk for c in children))}
    assert {t.status for t in settled.values()} == {"finished"}
    (upscaled,) = settled["upscale"].images.all()
    assert (upscaled.width, upscaled.height) == (1024, 1024)
    pan_widths = {(i.width, i.height) for i in settled["pan"].images.all()}
    assert pan_widths == {(768, 512)}


@pytest.mark.sandbox(task_seconds=0.2, faults={"submit_429": 1.0})
def test_a_rate_limited_submit_is_queued_again_and_not_failed(studio_upstream, alice, team, settings):
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    task = imagine(team, alice)
    submitting.task_submit(task_id=task.pk)
    task.refresh_from_db()
    assert (task.status, task.submit_attempts, task.apiframe_task_id) == ("queued", 1, None)
    from django.tasks import default_task_backend

    retry = default_task_backend.results[-1]
    assert retry.task.name == "submit_task" and retry.task.run_after > timezone.now()


@pytest.mark.sandbox(task_seconds=0.2)
def test_a_refused_prompt_fails_with_apiframes_reason(studio_upstream, alice, team):
    banned = studio_upstream.engine.config.banned_words[0]
    task = imagine(team, alice, text=f"a portrait, {banned}")
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error.startswith("Apiframe refused the request:") and banned in task.error
    assert task.can_retry


@pytest.mark.sandbox(task_seconds=0.2)
def test_a_submit_runs_once_even_if_the_job_runs_twice(studio_upstream, alice, team):
    task = imagine(team, alice)
    submitting.task_submit(task_id=task.pk)  # a duplicate job delivery
    assert studio_upstream.engine.request_counts["/pro/imagine"] == 1


def test_overdue_tasks_time_out_with_a_reason(make_task):
    past = timezone.now() - timedelta(seconds=1)
    never_sent = make_task(status="queued", deadline=past, dispatched_at=past)  # let go, but no worker sent it
    silent = make_task(status="processing", upstream_id="up-1", deadline=past)
    on_time = make_task(status="processing", upstream_id="up-2")
    assert polling.tasks_expire_overdue() == 2
    for task in (never_sent, silent, on_time):
        task.refresh_from_db()
    assert (never_sent.status, silent.status, on_time.status) == ("timed_out", "timed_out", "processing")
    assert "Never reached Apiframe" in never_sent.error
    assert "no result before the deadline" in silent.error


@pytest.mark.sandbox(task_seconds=0.2, faults={"cdn_error": 1.0, "webhook_drop": 1.0})
def test_a_failed_download_keeps_no_half_file_and_is_tried_again(studio_upstream, alice, team, settings):
    settings.MJSTUDIO_POLL_AFTER_NO_WEBHOOKS = 0
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    task = imagine(team, alice)
    submitting.task_submit(task_id=task.pk)
    time.sleep(1.0)
    polling.tasks_poll()
    task.refresh_from_db()
    assert task.status == "finished"
    mirroring.task_mirror_images(task_id=task.pk)
    images = list(task.images.all())
    assert len(images) == 4
    assert all(not i.is_mirrored and i.mirror_attempts == 1 and "500" in i.mirror_error for i in images)
    assert not default_storage.exists("images") or not default_storage.listdir("images")[1]
    from django.tasks import default_task_backend

    assert default_task_backend.results[-1].task.name == "mirror_task_images"  # tried again later

    studio_upstream.engine.config.faults.clear()  # the CDN recovers
    mirroring.task_mirror_images(task_id=task.pk)  # a duplicate job, before the backoff is over: no try
    assert Image.objects.filter(task=task, mirrored_at=None, mirror_attempts=1).count() == 4
    Image.objects.filter(task=task).update(mirror_next_at=timezone.now())  # the retry is due
    mirroring.task_mirror_images(task_id=task.pk)
    assert Image.objects.filter(task=task, mirrored_at__isnull=False, mirror_attempts=2).count() == 4


def test_images_come_only_from_apiframe_hosts(settings):
    settings.APIFRAME_IMAGE_HOSTS = ["cdn.apiframe.pro"]
    with pytest.raises(mirroring.MirrorError, match="not an Apiframe image host"):
        mirroring._download_image("http://169.254.169.254/latest/meta-data", session=requests.Session())
    with pytest.raises(mirroring.MirrorError, match="not an Apiframe image host"):
        mirroring._download_image("file:///etc/passwd", session=requests.Session())


def test_a_file_that_is_not_an_image_is_refused():
    with pytest.raises(mirroring.MirrorError, match="not a valid image"):
        mirroring._verify_image(b"<html>not an image</html>")


def test_the_poller_waits_longer_while_webhooks_arrive(make_task, settings):
    settings.APIFRAME_WEBHOOK_URL = "https://studio.example.com/webhooks/apiframe/"
    settings.MJSTUDIO_POLL_AFTER, settings.MJSTUDIO_POLL_AFTER_NO_WEBHOOKS = 30, 2
    now = timezone.now()
    assert polling._poll_quiet_period(now) == 2  # no webhook for a minute: they may be broken, poll soon
    applying.webhook_record(body={"task_id": "x"}, state=None, outcome="unknown_task", task=None)
    assert polling._poll_quiet_period(now) == 30
    settings.APIFRAME_WEBHOOK_URL = ""
    assert polling._poll_quiet_period(now) == 2


@pytest.mark.sandbox(task_seconds=0.2, faults={"webhook_drop": 1.0})
def test_a_late_result_lands_on_a_timed_out_task_by_polling(studio_upstream, alice, team, no_quiet_period):
    task = imagine(team, alice)
    Task.objects.filter(pk=task.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    polling.tasks_expire_overdue()
    task.refresh_from_db()
    assert task.status == "timed_out"
    time.sleep(0.8)  # meanwhile Apiframe finishes it
    polling.tasks_poll()
    assert Task.objects.get(pk=task.pk).status == "timed_out"  # asked again only every few minutes
    Task.objects.filter(pk=task.pk).update(last_heard_at=timezone.now() - polling.LATE_RESULT_POLL_EVERY)
    polling.tasks_poll()
    task.refresh_from_db()
    assert (task.status, task.error) == ("finished", "")
    assert task.images.count() == 4


def test_a_webhook_that_beats_the_submit_answer_is_applied_after_it(alice, team, payload):
    from generations.apiframe import TaskState

    early = TaskState.from_json(payload("processing.json"))
    assert applying.task_apply_state(state=early) == ("unknown_task", None)
    applying.webhook_record(body=early.raw, state=early, outcome="unknown_task", task=None)

    class Upstream:  # Apiframe answering the submit a moment after its first webhook
        def imagine(self, **kwargs):
            return early.task_id

    task = imagine(team, alice)
    submitting.task_submit(task_id=task.pk, client=Upstream())
    task.refresh_from_db()
    assert (task.status, task.percentage, task.apiframe_task_id) == ("processing", 40, early.task_id)


def test_a_task_being_sent_at_its_deadline_is_not_told_it_never_reached_apiframe(make_task):
    past = timezone.now() - timedelta(seconds=1)
    sending = make_task(status="submitting", deadline=past)
    polling.tasks_expire_overdue()
    sending.refresh_from_db()
    assert sending.status == "timed_out"
    assert "may still run there" in sending.error


def test_a_redirect_from_the_image_host_is_not_followed(settings):
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.APIFRAME_IMAGE_HOSTS = [f"127.0.0.1:{server.server_port}"]
        with pytest.raises(mirroring.MirrorError, match="answered 302"):
            mirroring._download_image(f"http://127.0.0.1:{server.server_port}/1.png", session=requests.Session())
    finally:
        server.shutdown()


def test_host_checks_ignore_userinfo_tricks(settings):
    settings.APIFRAME_IMAGE_HOSTS = ["cdn.apiframe.pro"]
    assert mirroring._is_image_host("https://cdn.apiframe.pro/a.png")
    assert not mirroring._is_image_host("https://cdn.apiframe.pro@evil.example/a.png")
    assert not mirroring._is_image_host("https://user:pw@cdn.apiframe.pro/a.png")
    assert not mirroring._is_image_host("https://cdn.apiframe.pro.evil.example/a.png")


def test_an_unexpected_storage_error_counts_as_an_attempt_and_is_retried_later(make_task, monkeypatch):
    task = make_task(status="finished")
    Image.objects.create(task=task, index=1, source_url="https://cdn.apiframe.pro/1.png")

    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mirroring, "image_mirror", broken)
    mirroring.task_mirror_images(task_id=task.pk)
    image = task.images.get()
    assert (image.mirror_attempts, image.mirror_error, image.is_mirrored) == (1, "OSError", False)
    assert image.mirror_next_at > timezone.now()
    from django.tasks import default_task_backend

    assert default_task_backend.results[-1].task.name == "mirror_task_images"
    # The sweep leaves a retry that is on schedule alone, and one whose job still waits in the queue (a worker
    # that is down runs it when it is back); it queues it again once that job is lost.
    later = image.mirror_next_at + timedelta(minutes=5)
    assert polling.images_requeue_unmirrored() == 0
    assert polling.images_requeue_unmirrored(now=later) == 0
    default_task_backend.clear()
    assert polling.images_requeue_unmirrored(now=later) == 1


def test_a_timed_out_task_never_heard_of_is_still_asked_about(make_task):
    # Timed out while a worker was still sending it; the id arrived after the deadline.
    make_task(status="timed_out", upstream_id="up-late", finished_at=timezone.now())
    asked = []

    class Upstream:
        def fetch_many(self, ids):
            asked.extend(ids)
            return []

    polling.tasks_poll(client=Upstream())
    assert asked == ["up-late"]


@pytest.mark.sandbox(task_seconds=0.2, faults={"submit_429": 1.0})
def test_a_busy_apiframe_is_said_on_the_card_and_in_the_timeout(studio_upstream, alice, team, settings):
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": settings.TASK_QUEUES}
    }
    task = imagine(team, alice)
    submitting.task_submit(task_id=task.pk)
    task.refresh_from_db()
    assert task.status == "queued" and task.error.startswith("Apiframe is busy (")
    Task.objects.filter(pk=task.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    polling.tasks_expire_overdue()
    task.refresh_from_db()
    assert task.status == "timed_out"
    assert task.error.startswith("Never reached Apiframe before the deadline. Last answer: Apiframe is busy")
