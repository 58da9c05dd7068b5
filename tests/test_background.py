"""Background work that never piles up, hangs or leaks: downloads with a wall clock, mirror retries that keep
their cap, jobs and files a killed worker left behind, race-safe first requests, idempotency scope, retention."""

from __future__ import annotations

import http.server
import io
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image as PILImage

from generations.models import Image, Task
from generations.services import mirroring, polling

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
