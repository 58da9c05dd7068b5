"""Where image files live: Django's storage API, plus the three things a bucket does differently from a folder.

- A browser fetches a bucket's private object through a short-lived signed URL, issued by the image view only after
  its team and hidden checks (a folder's file is streamed by the view itself).
- Exports read an object as a stream of chunks (S3File would download it whole before the first byte).
- The orphan sweep lists a folder page by page, with each object's date from the listing (no request per file).
"""

from __future__ import annotations

import posixpath
import sys
import time
from collections.abc import Iterator
from datetime import datetime

from django.core.cache import cache
from django.core.files.storage import default_storage, storages
from django.utils.http import content_disposition_header

# A browser may keep a redirect to a signed URL until this many seconds before the URL expires (clock skew, a slow
# download).
URL_MARGIN = 30


def in_bucket() -> bool:
    """Whether media is in an S3 bucket (AWS_STORAGE_BUCKET_NAME): then files are signed URLs, not streams."""
    backend = type(storages["default"])  # default_storage's object: created (its module imported) if not yet
    # Asked of the loaded modules, not by importing storages' S3 backend: that import loads boto3, ~0.25 s that a
    # site keeping media in a folder paid on the first image each web worker served. No S3Storage exists unless
    # its module is loaded.
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and issubclass(backend, s3.S3Storage)


def signed_url(name: str, *, filename: str, as_attachment: bool = False) -> tuple[str, int]:
    """A signed GET URL for a stored object and how long a browser may reuse it (call only after the team and
    hidden checks). The bucket answers it under `filename`, shown inline or as a download: never under the stored
    name. The same URL is handed out for half its lifetime, so a page redrawn every pulse points at one URL the
    browser has cached, instead of a new one per request; it stays valid for the other half at least."""
    lifetime = int(default_storage.querystring_expire)
    key = f"media-url:{name}:{filename}:{as_attachment}"
    now = time.time()
    if (hit := cache.get(key)) is None:
        parameters = {
            "ResponseCacheControl": f"private, max-age={lifetime}",  # the file never changes
            "ResponseContentDisposition": content_disposition_header(as_attachment, filename),
        }
        hit = (default_storage.url(name, parameters=parameters, expire=lifetime), now + lifetime)
        cache.set(key, hit, timeout=lifetime // 2)
    url, expires_at = hit
    return url, max(0, int(expires_at - now) - URL_MARGIN)


def file_chunks(name: str, *, size: int) -> Iterator[bytes]:
    """A stored file, read `size` bytes at a time; FileNotFoundError (an OSError) before the first one if it is gone."""
    if in_bucket():
        from botocore.exceptions import ClientError  # only installed with the scale extras

        try:
            body = default_storage.bucket.Object(_key(name)).get()["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"File does not exist: {name}") from exc
            raise
        return _closing(body, body.iter_chunks(size))
    opened = default_storage.open(name, "rb")
    return _closing(opened, iter(lambda: opened.read(size), b""))


def files_listed(folder: str) -> Iterator[tuple[str, datetime | None]]:
    """Every file stored directly in `folder` as (storage name, last change when the listing tells it), streamed
    a page at a time from a bucket. Only `folder` under the storage's own prefix (AWS_LOCATION) is listed: a bucket
    shared with other data is never swept outside it."""
    if in_bucket():
        prefix = _key(folder).rstrip("/") + "/"
        client = default_storage.connection.meta.client
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=default_storage.bucket_name, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for entry in page.get("Contents", ()):
                if entry["Key"] != prefix:
                    yield f"{folder}/{posixpath.relpath(entry['Key'], prefix)}", entry["LastModified"]
        return
    try:
        _, files = default_storage.listdir(folder)
    except FileNotFoundError:  # nothing stored there yet
        return
    for file_name in files:
        yield f"{folder}/{file_name}", None


def _key(name: str) -> str:
    """The object key of a storage name (under AWS_LOCATION, when one is set)."""
    location = default_storage.location.strip("/")
    return f"{location}/{name}" if location else name


def _closing(resource, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        resource.close()
