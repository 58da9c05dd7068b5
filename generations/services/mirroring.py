"""Mirroring a finished task's images: downloaded once from Apiframe's hosts, verified, stored with a thumbnail."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from generations import jobs
from generations.models import Image, Task

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (640, 640)
DOWNLOAD_SECONDS = 60  # for one image, however slowly the host drips it


class MirrorError(Exception):
    pass


@dataclass(frozen=True)
class _Downloaded:
    data: bytes
    extension: str
    width: int
    height: int
    thumbnail: bytes


def task_mirror_images(*, task_id: int) -> None:
    """Download, verify and store each image of a finished task once, with a WebP thumbnail."""
    pending = list(Image.objects.filter(task_id=task_id, mirrored_at=None))
    if not pending:
        return
    retry_in = None
    with requests.Session() as session:
        for image in pending:
            try:
                image_mirror(image=image, session=session)
            except Exception as exc:  # a CDN error, a bad file, a full disk: each counts as one attempt
                logger.warning("image %s of task %s not mirrored: %s", image.index, task_id, exc)
                attempts = image.mirror_attempts + 1
                delay = timedelta(seconds=min(2**attempts, 300))
                Image.objects.filter(pk=image.pk).update(
                    mirror_attempts=attempts,
                    mirror_error=(str(exc) if isinstance(exc, MirrorError) else exc.__class__.__name__)[:300],
                    mirror_next_at=timezone.now() + delay if attempts < Image.MIRROR_MAX_ATTEMPTS else None,
                )
                if attempts < Image.MIRROR_MAX_ATTEMPTS:
                    retry_in = min(retry_in or delay, delay)
    # Tell live refresh the card changed (images arrived, or an error to show).
    Task.objects.filter(pk=task_id).update(updated_at=timezone.now())
    if retry_in:
        jobs.mirror_task_images.using(run_after=timezone.now() + retry_in).enqueue(task_id)


def image_mirror(*, image: Image, session: requests.Session) -> None:
    downloaded = _download_image(image.source_url, session=session)
    stem = uuid.uuid4().hex  # unguessable: files are only ever served through permission-checking views
    file_name = default_storage.save(f"images/{stem}.{downloaded.extension}", ContentFile(downloaded.data))
    try:
        thumb_name = default_storage.save(f"thumbs/{stem}.webp", ContentFile(downloaded.thumbnail))
    except Exception:
        default_storage.delete(file_name)
        raise
    stored = Image.objects.filter(pk=image.pk, mirrored_at=None).update(
        file=file_name,
        thumbnail=thumb_name,
        width=downloaded.width,
        height=downloaded.height,
        content_hash=hashlib.sha256(downloaded.data).hexdigest(),
        size_bytes=len(downloaded.data),
        mirror_error="",
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
        raise MirrorError(f"refusing to download from {urlsplit(url).netloc or url!r}: not an Apiframe image host")
    limit = settings.MJSTUDIO_MAX_IMAGE_BYTES
    deadline = time.monotonic() + DOWNLOAD_SECONDS
    try:
        # No redirects: a redirect could lead past the host check to anywhere (our own network included).
        with session.get(url, stream=True, timeout=(5, 15), allow_redirects=False) as response:
            if response.status_code != 200:
                raise MirrorError(f"image host answered {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise MirrorError(f"image larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise MirrorError(f"download took longer than {DOWNLOAD_SECONDS} s")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise MirrorError(f"download failed: {exc.__class__.__name__}") from exc
    return _verify_image(b"".join(chunks))


def _verify_image(data: bytes) -> _Downloaded:
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > settings.MJSTUDIO_MAX_IMAGE_PIXELS:
                raise MirrorError(f"image of {probe.width}×{probe.height} pixels is too large")
            if probe.format not in ("PNG", "JPEG", "WEBP"):
                raise MirrorError(f"unexpected image format {probe.format}")
            probe.verify()
        with PILImage.open(io.BytesIO(data)) as picture:
            picture.load()
            width, height, extension = picture.width, picture.height, picture.format.lower().replace("jpeg", "jpg")
            thumb = picture.convert("RGB")
            thumb.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            thumb.save(out, "WEBP", quality=82, method=4)
    except MirrorError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise MirrorError(f"not a valid image: {exc.__class__.__name__}") from exc
    return _Downloaded(data=data, extension=extension, width=width, height=height, thumbnail=out.getvalue())
