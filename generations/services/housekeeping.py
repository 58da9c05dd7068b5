"""The poller's chores: jobs a killed worker left "running", files it stored but never recorded, and old rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models
from django.db.models import Q
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from generations.models import AuditEntry, Chore, Image, WebhookDelivery
from generations.services import media

logger = logging.getLogger(__name__)

MEDIA_DIRS = ("images", "thumbs")
# A file younger than this may belong to a download being recorded right now: never swept.
ORPHAN_GRACE = timedelta(hours=1)
BATCH = 500


def chores_run_due(*, now: datetime | None = None) -> None:
    """The rare chores, each when its period has passed (the first time: at once)."""
    if chore_claim(name="prune_old_rows", every=timedelta(days=1), now=now):
        rows_prune_old(now=now)
    if chore_claim(name="sweep_orphan_files", every=timedelta(hours=1), now=now):
        files_sweep_orphans(now=now)


def chore_claim(*, name: str, every: timedelta, now: datetime | None = None) -> bool:
    """True once per period across restarts and pollers: whoever moves `last_run_at` runs the chore."""
    now = now or timezone.now()
    Chore.objects.get_or_create(name=name, defaults={"last_run_at": now - every})  # the first time: due at once
    return Chore.objects.filter(name=name, last_run_at__lte=now - every).update(last_run_at=now) == 1


def jobs_reap_running(*, now: datetime | None = None) -> int:
    """Mark failed the job rows still "running" long after any job could (their worker was killed).

    Their work is not lost: a submit left `submitting` ends at its deadline with a Retry button, and an image
    left unmirrored is queued again by `images_requeue_unmirrored` once its claim runs out.
    """
    now = now or timezone.now()
    seconds = settings.MJSTUDIO_JOB_TIMEOUT
    return DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, started_at__lt=now - timedelta(seconds=seconds)
    ).update(
        status=TaskResultStatus.FAILED,
        finished_at=now,
        exception_class_path="generations.services.housekeeping.WorkerLost",
        traceback=f"Still running after {seconds:g} s: its worker died. Marked failed by the poller.",
    )


def files_sweep_orphans(*, now: datetime | None = None) -> int:
    """Delete stored images and thumbnails that no Image row names and that are older than the grace period:
    a worker killed between storing a file and recording it leaves them behind. Only images/ and thumbs/ are
    looked at (in a bucket: under its AWS_LOCATION prefix), a batch of names at a time."""
    now = now or timezone.now()
    deleted = 0
    for listed in _stored_files_in_batches():
        names = [name for name, _ in listed]
        recorded = set(Image.objects.filter(file__in=names).values_list("file", flat=True))
        recorded |= set(Image.objects.filter(thumbnail__in=names).values_list("thumbnail", flat=True))
        for name, modified in sorted(listed):
            if name in recorded:
                continue
            try:  # a bucket's listing dates each object; a folder's file is asked (only orphans are)
                modified = modified or default_storage.get_modified_time(name)
            except FileNotFoundError:  # its worker removed it meanwhile
                continue
            if modified < now - ORPHAN_GRACE:
                default_storage.delete(name)
                deleted += 1
    if deleted:
        logger.info("swept %s stored files that no image names", deleted)
    return deleted


def _stored_files_in_batches() -> Iterator[list[tuple[str, datetime | None]]]:
    for folder in MEDIA_DIRS:
        listed = media.files_listed(folder)
        while batch := list(islice(listed, BATCH)):
            yield batch


def rows_prune_old(*, now: datetime | None = None) -> int:
    """Delete webhook deliveries and finished job rows older than MJSTUDIO_RETENTION_DAYS, and audit rows older
    than MJSTUDIO_AUDIT_RETENTION_DAYS (0: kept), in batches."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MJSTUDIO_RETENTION_DAYS)
    finished = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    pruned = _delete_in_batches(WebhookDelivery.objects.filter(received_at__lt=cutoff))
    pruned += _delete_in_batches(DBTaskResult.objects.filter(Q(status__in=finished), finished_at__lt=cutoff))
    if audit_days := settings.MJSTUDIO_AUDIT_RETENTION_DAYS:  # index audit_recent
        pruned += _delete_in_batches(AuditEntry.objects.filter(created_at__lt=now - timedelta(days=audit_days)))
    if pruned:
        logger.info(
            "pruned %s old rows (retention: %s days, audit %s)", pruned, settings.MJSTUDIO_RETENTION_DAYS, audit_days
        )
    return pruned


def _delete_in_batches(rows: models.QuerySet) -> int:
    """Short transactions: a big first prune never holds the write lock for long."""
    deleted = 0
    while pks := list(rows.values_list("pk", flat=True)[:BATCH]):
        deleted += rows.model.objects.filter(pk__in=pks).delete()[0]
    return deleted
