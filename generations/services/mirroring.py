"""Mirroring a finished task's images: downloaded once from Apiframe's hosts, verified, stored with a thumbnail.

Each image is claimed before it is downloaded, by a conditional update that counts the attempt: duplicate jobs
never download one image at the same time, nor pass the attempt cap. A job downloads several images at once:
its own task's, and, while those are still coming, other tasks' new ones, so one slow host never holds
up everyone else's grids.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, router, transaction
from django.db.models import F, Q
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
from django.utils import timezone
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult
from PIL import Image as PILImage

from generations import jobs
from generations.models import Image, Task

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (640, 640)
READ_SIZE = 64 * 1024  # at most this much per read; a read returns whatever has arrived
CLAIM_MARGIN = timedelta(seconds=60)  # beyond the download limit, for storing the file and its thumbnail
LOOK_FOR_WORK_EVERY = 0.5  # seconds between looks for other tasks' new images while threads are busy
# Statuses no try can change: a redirect (never followed), or a refusal. 404 is not among them: a CDN may
# not have the file yet a moment after the task finished.
TRANSIENT_STATUSES = frozenset({404, 408, 425, 429})


class MirrorError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # no later try could succeed: give up at once


@dataclass(frozen=True)
class _Downloaded:
    data: bytes
    extension: str
    width: int
    height: int
    thumbnail: bytes


def task_mirror_images(*, task_id: int) -> None:
    """Download, verify and store each image of a finished task once, with a WebP thumbnail."""
    pending = Image.objects.mirror_pending().filter(task_id=task_id)
    own = list(pending.values_list("pk", flat=True))
    if not own:
        return
    threads = max(settings.MJSTUDIO_MIRROR_THREADS, 1)
    # Taking other work stops after one download limit, so a job always ends within about two.
    take_work_until = time.monotonic() + settings.MJSTUDIO_DOWNLOAD_SECONDS
    tried = set(own)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mirror") as pool:
        running = {pool.submit(image_mirror_once, image_id=pk) for pk in own}
        # Threads our own images leave idle take other tasks' new images: a job stuck on one slow host must
        # not leave the grids queued behind it at "Saving…".
        while running and time.monotonic() < take_work_until:
            for image_id in _images_due(exclude=tried, limit=threads - len(running)):
                tried.add(image_id)
                running.add(pool.submit(image_mirror_once, image_id=image_id))
            running = wait(running, timeout=LOOK_FOR_WORK_EVERY, return_when=FIRST_COMPLETED).not_done
    images_retry_schedule(image_ids=tried)


def _images_due(*, exclude: set[int], limit: int) -> list[int]:
    """Other grids' images never tried yet, oldest first. Retries are left to their own jobs: a slow host's
    retries must not take the threads that new grids are waiting for."""
    if limit <= 0:
        return []
    fresh = Image.objects.filter(mirrored_at=None, mirror_attempts=0).exclude(pk__in=exclude).order_by("pk")
    return list(fresh.values_list("pk", flat=True)[:limit])


def image_mirror_once(*, image_id: int) -> None:
    """Claim one image and try once to mirror it (in a pool thread)."""
    try:
        now = timezone.now()
        # One attempt, counted now: a worker killed mid-download has spent it too. Until the claim runs out
        # nobody else takes the image; after that, it is due again.
        claimed = (
            Image.objects.mirror_pending()
            .filter(pk=image_id)
            .filter(Q(mirror_next_at=None) | Q(mirror_next_at__lte=now))
            .update(
                mirror_attempts=F("mirror_attempts") + 1,
                mirror_next_at=now + timedelta(seconds=settings.MJSTUDIO_DOWNLOAD_SECONDS) + CLAIM_MARGIN,
            )
        )
        if claimed != 1:
            return  # mirrored, given up, backing off, or another worker has it
        image = Image.objects.get(pk=image_id)
        try:
            with requests.Session() as session:
                image_mirror(image=image, session=session)
        except Exception as exc:  # a CDN error, a bad file, a full disk: each counts as one attempt
            _image_failed(image=image, exc=exc)
        # Tell live refresh the card changed (an image arrived, or an error to show).
        Task.objects.filter(pk=image.task_id).update_visibly()
    except Exception:  # a locked database, a bug: the claim runs out and the image is due again
        logger.exception("image %s: mirroring stopped", image_id)
    finally:
        connection.close()  # this pool thread's own connection


def _image_failed(*, image: Image, exc: Exception) -> None:
    permanent = isinstance(exc, MirrorError) and exc.permanent
    reason = str(exc) if isinstance(exc, MirrorError) else exc.__class__.__name__
    logger.warning("image %s of task %s not mirrored: %s", image.index, image.task_id, reason)
    # image.mirror_attempts already counts this try (the claim).
    attempts = Image.MIRROR_MAX_ATTEMPTS if permanent else image.mirror_attempts
    changes: dict[str, object] = {"mirror_error": reason[:300], "mirror_next_at": None}
    if permanent:
        changes["mirror_attempts"] = attempts
    if attempts < Image.MIRROR_MAX_ATTEMPTS:
        changes["mirror_next_at"] = timezone.now() + timedelta(seconds=min(2**attempts, 300))
    Image.objects.filter(pk=image.pk, mirrored_at=None).update(**changes)


def images_retry_schedule(*, image_ids: set[int]) -> None:
    """Queue one retry per task for these images backing off, unless a queued job will already run by then."""
    waiting: dict[int, list[Image]] = {}
    backing_off = (
        Image.objects.mirror_pending()
        .filter(pk__in=image_ids, mirror_next_at__gt=timezone.now())
        .only("pk", "task_id", "mirror_next_at", "mirror_job_id")
    )
    for image in backing_off:
        waiting.setdefault(image.task_id, []).append(image)
    for task_id, images in waiting.items():
        due = min(i.mirror_next_at for i in images)
        if not any(job_waits(job_id, by=due) for job_id in {i.mirror_job_id for i in images}):
            task_mirror_enqueue(task_id=task_id, run_after=due)


def task_mirror_enqueue(*, task_id: int, run_after: datetime | None = None) -> None:
    """Queue the task's mirror job and note it on its images, so that nobody queues another while it waits."""
    job = jobs.mirror_task_images.using(run_after=run_after) if run_after else jobs.mirror_task_images
    result = job.enqueue(task_id)
    Image.objects.filter(task_id=task_id, mirrored_at=None).update(mirror_job_id=str(result.id))


def task_mirror_enqueue_with_commit(*, task_id: int) -> str:
    """Queue the mirror of the images the current transaction is writing, to run once they are committed.

    A queue kept in this database (django-tasks-db) takes the job inside the transaction: the job and its
    images commit together, in one commit, and no crash can fall between the two. Its id is returned, for the
    images to carry (task_mirror_enqueue notes it on images already written). Any other queue (RQ) takes the job
    after the commit, so that no worker looks for the images before they exist: "" is returned.
    """
    backend = jobs.mirror_task_images.get_backend()
    if isinstance(backend, DatabaseBackend) and router.db_for_write(DBTaskResult) == connection.alias:
        return str(jobs.mirror_task_images.enqueue(task_id).id)
    transaction.on_commit(lambda: task_mirror_enqueue(task_id=task_id))
    return ""


def job_waits(job_id: str, *, by: datetime | None = None) -> bool:
    """Whether a queued mirror job has yet to run (by then): a worker that is down runs it when it is back."""
    if not job_id:
        return False
    try:
        result = jobs.mirror_task_images.get_result(job_id)
    except (NotImplementedError, TaskResultDoesNotExist, TaskResultMismatch):
        return False  # a backend that cannot tell, or a job that is gone
    run_after = result.task.run_after
    waits = result.status == TaskResultStatus.READY and (by is None or run_after is None or run_after <= by)
    if waits and settings.TASKS["default"]["BACKEND"].startswith("django_tasks_rq"):
        from generations.workers import rq_job_is_held

        return rq_job_is_held(job_id)  # RQ says "queued" of a job a killed worker popped: found in no queue
    return waits


def image_mirror(*, image: Image, session: requests.Session) -> None:
    downloaded = _download_image(image.source_url, session=session)
    stem = uuid.uuid4().hex  # unguessable: files are only ever served through permission-checking views
    file_name = default_storage.save(f"images/{stem}.{downloaded.extension}", ContentFile(downloaded.data))
    try:
        thumb_name = default_storage.save(f"thumbs/{stem}.webp", ContentFile(downloaded.thumbnail))
    except Exception:
        default_storage.delete(file_name)
        raise
    # (A worker killed right here leaves files no row names: the poller's orphan sweep removes them.)
    stored = Image.objects.filter(pk=image.pk, mirrored_at=None).update(
        file=file_name,
        thumbnail=thumb_name,
        width=downloaded.width,
        height=downloaded.height,
        content_hash=hashlib.sha256(downloaded.data).hexdigest(),
        size_bytes=len(downloaded.data),
        mirror_error="",
        mirror_next_at=None,
        mirrored_at=timezone.now(),
    )
    if not stored:  # another worker stored it first: drop our copy
        default_storage.delete(file_name)
        default_storage.delete(thumb_name)


def _is_image_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = hostname if parts.port is None else f"{hostname}:{parts.port}"
    return host in settings.APIFRAME_IMAGE_HOSTS


def _download_image(url: str, *, session: requests.Session) -> _Downloaded:
    if not _is_image_host(url):
        raise MirrorError(
            f"refusing to download from {urlsplit(url).netloc or url!r}: not an Apiframe image host", permanent=True
        )
    seconds = settings.MJSTUDIO_DOWNLOAD_SECONDS
    deadline = time.monotonic() + seconds
    try:
        # No redirects: a redirect could lead past the host check to anywhere (our own network included).
        # Identity encoding: the size cap counts what arrives, and no decoder sits between reads and the clock.
        with session.get(
            url,
            stream=True,
            timeout=(min(5.0, seconds), seconds),
            allow_redirects=False,
            headers={"Accept-Encoding": "identity"},
        ) as response:
            if response.status_code != 200:
                permanent = response.status_code not in TRANSIENT_STATUSES and response.status_code < 500
                raise MirrorError(f"image host answered {response.status_code}", permanent=permanent)
            data = _read_body(response.raw, deadline=deadline, seconds=seconds)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise MirrorError(f"download failed: {exc.__class__.__name__}") from exc
    return _verify_image(data)


def _read_body(raw: urllib3.HTTPResponse, *, deadline: float, seconds: float) -> bytes:
    """The body, read as it arrives; every read may wait only for the time left, so a host dripping a byte at a
    time is cut off at the deadline, not after its next chunk."""
    limit = settings.MJSTUDIO_MAX_IMAGE_BYTES
    sock = raw.connection.sock if raw.connection else None
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MirrorError(f"download took longer than {seconds:g} s")
        if sock is not None:
            sock.settimeout(left)
        try:
            chunk = raw.read1(READ_SIZE)  # one receive at most: what has arrived, never waiting for a full chunk
        except urllib3.exceptions.ReadTimeoutError as exc:  # waited all the time that was left
            raise MirrorError(f"download took longer than {seconds:g} s") from exc
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise MirrorError(f"image larger than {limit} bytes", permanent=True)
        chunks.append(chunk)


def _verify_image(data: bytes) -> _Downloaded:
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > settings.MJSTUDIO_MAX_IMAGE_PIXELS:
                raise MirrorError(f"image of {probe.width}×{probe.height} pixels is too large", permanent=True)
            if probe.format not in ("PNG", "JPEG", "WEBP"):
                raise MirrorError(f"unexpected image format {probe.format}", permanent=True)
            probe.verify()
        with PILImage.open(io.BytesIO(data)) as picture:
            picture.load()
            width, height, extension = picture.width, picture.height, picture.format.lower().replace("jpeg", "jpg")
            thumb = picture.convert("RGB")
            thumb.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            # Method 0, WebP's fastest: a quarter of method 4's time for the same size and quality (PSNR within
            # 0.2 dB on the sandbox's grain), and encoding holds the GIL, so the job's threads wait on it in turn.
            thumb.save(out, "WEBP", quality=82, method=0)
    except MirrorError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise MirrorError(f"not a valid image: {exc.__class__.__name__}", permanent=True) from exc
    return _Downloaded(data=data, extension=extension, width=width, height=height, thumbnail=out.getvalue())
