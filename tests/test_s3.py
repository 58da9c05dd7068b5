"""Media in an S3 bucket, against a real S3-compatible server: moto in server mode on a free port, started here.

moto stores, lists and refuses anonymous reads like S3, but accepts any presigned URL, however old or forged. So
the server here fronts moto with S3's own check of a presigned URL (SigV4 signature, X-Amz-Date + X-Amz-Expires,
recomputed with botocore from the real keys): a URL the studio issues must be one real S3 would accept, and stop
working when it expires. Its clock can be moved forward, so "after it expired" needs no sleep.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from generations.models import Image, Task, Team
from generations.services import housekeeping, mirroring
from tests.support.teams import join

ACCESS_KEY, SECRET_KEY, REGION = "studio-test-key", "studio-test-secret", "eu-west-1"
ROOT = Path(__file__).resolve().parent.parent


def _moto():
    """moto's WSGI app and werkzeug's server, or a failure (never a skip: `make install` installs them)."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
    except ImportError as exc:
        pytest.fail(f"moto's server is not installed ({exc}): run `make install` (the dev group has moto, flask)")
    return DomainDispatcherApplication, MotoRequestHandler, create_backend_app, make_server


class PresignedCheck:
    """What S3 does with a presigned GET and moto does not: refuse a wrong signature or an expired URL (403)."""

    def __init__(self, app) -> None:
        self.app = app
        self.clock_offset = 0.0  # seconds the server's clock runs ahead of the real one
        self.signed_gets: list[str] = []  # the paths of presigned GETs, as a browser makes them

    def __call__(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "X-Amz-Signature" in query and (problem := self._problem(environ, query)):
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [f"<Error><Code>AccessDenied</Code><Message>{problem}</Message></Error>".encode()]
        if "X-Amz-Signature" in query:
            self.signed_gets.append(environ["PATH_INFO"])
        return self.app(environ, start_response)

    def _problem(self, environ, query: dict[str, list[str]]) -> str | None:
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(query["X-Amz-Expires"][0])
        if time.time() + self.clock_offset > signed_at.timestamp() + expires:
            return "Request has expired"
        # Sign the same request again, at the URL's own time, and compare.
        rest = [(k, v) for k, values in query.items() if not k.startswith("X-Amz-") for v in values]
        path = quote(environ.get("RAW_URI", environ["PATH_INFO"]).split("?", 1)[0], safe="/%~")
        url = f"http://{environ['HTTP_HOST']}{path}" + (f"?{urlencode(rest, quote_via=quote)}" if rest else "")
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, headers={"host": environ["HTTP_HOST"]})
        request.context["timestamp"] = query["X-Amz-Date"][0]
        auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION, expires=expires)
        auth._modify_request_before_signing(request)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        return None if expected == query["X-Amz-Signature"][0] else "SignatureDoesNotMatch"


class S3Server:
    def __init__(self) -> None:
        dispatcher, handler, backend_app, make_server = _moto()
        self.check = PresignedCheck(dispatcher(backend_app))
        self.server = make_server("127.0.0.1", 0, self.check, threaded=True, request_handler=handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )


@pytest.fixture(scope="module")
def s3_server():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
    server = S3Server()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=10)


@pytest.fixture
def bucket(s3_server, settings):
    """A fresh private bucket as the default storage, configured as settings.py does from AWS_* variables."""
    name = f"media-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings.STORAGES = {**settings.STORAGES, "default": _s3_storage(name, s3_server.endpoint)}
    s3_server.check.clock_offset = 0.0
    s3_server.check.signed_gets.clear()
    cache.clear()  # signed URLs are cached per object
    yield name
    cache.clear()


def _s3_storage(bucket: str, endpoint: str, **options) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "location": "",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "signature_version": "s3v4",
            "addressing_style": "path",
            "file_overwrite": True,
            **options,
        },
    }


def _png(colour: str = "teal") -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def stored_image(make_task):
    """A finished task of alice's team with one image whose file and thumbnail are in the bucket."""
    task = make_task(status="finished", finished_at=timezone.now())
    data = _png()
    file_name = default_storage.save(f"images/{uuid.uuid4().hex}.png", ContentFile(data))
    thumb_name = default_storage.save(f"thumbs/{uuid.uuid4().hex}.webp", ContentFile(b"RIFF-thumb"))
    image = Image.objects.create(
        task=task,
        index=1,
        source_url="https://cdn.apiframe.pro/1.png",
        file=file_name,
        thumbnail=thumb_name,
        content_hash=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        mirrored_at=timezone.now(),
    )
    image.data = data
    return image


# --- The mirror stores into the bucket, privately --------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the mirror downloads in its own threads
def test_the_mirror_stores_the_full_image_and_its_thumbnail_in_the_bucket(
    bucket, s3_server, studio_upstream, make_task, settings
):
    upstream_id = studio_upstream.engine.create("imagine", {"prompt": "a lighthouse"})
    deadline = time.monotonic() + 30
    while (upstream := studio_upstream.engine.fetch(upstream_id))["status"] != "finished":
        assert time.monotonic() < deadline, "the sandbox did not finish its task"
        time.sleep(0.05)
    task = make_task(status="finished", upstream_id=upstream_id, finished_at=timezone.now())
    for index, url in enumerate(upstream["image_urls"], start=1):
        Image.objects.create(task=task, index=index, source_url=url)

    mirroring.task_mirror_images(task_id=task.pk)

    images = list(task.images.order_by("index"))
    assert all(image.is_mirrored for image in images), [image.mirror_error for image in images]
    keys = {o["Key"]: o for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert set(keys) == {i.file.name for i in images} | {i.thumbnail.name for i in images}
    for image in images:
        assert image.file.name.startswith("images/") and image.thumbnail.name.startswith("thumbs/")
        stored = s3_server.client().get_object(Bucket=bucket, Key=image.file.name)
        assert hashlib.sha256(stored["Body"].read()).hexdigest() == image.content_hash
        assert stored["ContentType"] == "image/png"
        thumb = s3_server.client().get_object(Bucket=bucket, Key=image.thumbnail.name)
        assert thumb["ContentType"] == "image/webp" and thumb["Body"].read()[:4] == b"RIFF"
    assert not (settings.MEDIA_ROOT / "images").exists()  # nothing went to the local folder


def test_a_stored_object_is_private(bucket, s3_server, stored_image):
    anonymous = requests.get(f"{s3_server.endpoint}/{bucket}/{stored_image.file.name}", timeout=10)
    assert anonymous.status_code == 403
    grants = s3_server.client().get_object_acl(Bucket=bucket, Key=stored_image.file.name)["Grants"]
    assert [g["Grantee"].get("URI") for g in grants if g["Grantee"].get("Type") == "Group"] == []


# --- The image view: team and hidden checks first, then a short-lived signed URL ----------------------------


def test_a_member_is_redirected_to_a_signed_url_that_works_then_expires(alice_client, bucket, s3_server, stored_image):
    response = alice_client.get(f"/images/{stored_image.pk}/full/")

    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(f"{s3_server.endpoint}/{bucket}/images/")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["300"]
    max_age = int(response["Cache-Control"].removeprefix("private, max-age="))
    assert 240 <= max_age <= 270  # the URL's lifetime, less a margin

    fetched = requests.get(url, timeout=10)
    assert (fetched.status_code, fetched.content) == (200, stored_image.data)
    assert fetched.headers["Cache-Control"] == "private, max-age=300"
    forged = url.replace(query["X-Amz-Signature"][0], "0" * 64)
    assert requests.get(forged, timeout=10).status_code == 403
    other_key = url.replace(stored_image.file.name, stored_image.thumbnail.name)
    assert requests.get(other_key, timeout=10).status_code == 403

    s3_server.check.clock_offset = 301  # five minutes later
    assert requests.get(url, timeout=10).status_code == 403


def test_the_thumbnail_url_stays_the_same_between_pulses(alice_client, bucket, stored_image):
    first = alice_client.get(f"/images/{stored_image.pk}/thumb/")
    second = alice_client.get(f"/images/{stored_image.pk}/thumb/")

    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert f"/{bucket}/thumbs/" in first["Location"]
    fetched = requests.get(first["Location"], timeout=10)
    assert fetched.content == b"RIFF-thumb"
    # Shown inline, and named as its download is: never by its stored (unguessable) name.
    name = f"a-quiet-harbour-{stored_image.task_id}-1.webp"
    assert fetched.headers["Content-Disposition"] == f'inline; filename="{name}"'


def test_a_download_keeps_its_file_name(alice_client, bucket, stored_image):
    response = alice_client.get(f"/images/{stored_image.pk}/full/?download=1")

    assert response.status_code == 302
    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.status_code == 200
    name = f"a-quiet-harbour-{stored_image.task_id}-1.png"
    assert fetched.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    # The page's own link gets a different URL: no download header on it.
    assert response["Location"] != alice_client.get(f"/images/{stored_image.pk}/full/")["Location"]


def test_another_team_gets_404_and_no_url(client, charlie, bucket, stored_image):
    client.force_login(charlie)
    for variant in ("full", "thumb"):
        response = client.get(f"/images/{stored_image.pk}/{variant}/")
        assert response.status_code == 404
        assert "Location" not in response


def test_a_hidden_image_or_one_of_a_hidden_task_is_404_before_any_url(
    alice_client, bucket, stored_image, django_user_model
):
    Image.objects.filter(pk=stored_image.pk).update(hidden_at=timezone.now(), hidden_reason="not for clients")
    assert alice_client.get(f"/images/{stored_image.pk}/full/").status_code == 404
    assert alice_client.get(f"/images/{stored_image.pk}/thumb/?download=1").status_code == 404
    assert cache.get(f"media-url:{stored_image.file.name}:") is None  # nothing was signed

    Image.objects.filter(pk=stored_image.pk).update(hidden_at=None)
    Task.objects.filter(pk=stored_image.task_id).update(hidden_at=timezone.now())
    assert alice_client.get(f"/images/{stored_image.pk}/full/").status_code == 404

    staff = django_user_model.objects.create_user("mona", password="pw", is_staff=True)
    alice_client.force_login(staff)
    assert alice_client.get(f"/images/{stored_image.pk}/full/").status_code == 302  # moderators still see it


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_studio_shows_a_grid_from_the_bucket_and_a_second_visit_fetches_no_image_again(
    page, live_server, studio_upstream, bucket, s3_server, settings, django_user_model, artifacts
):
    from tests.test_browser_studio import log_in, newest_card, wait_finished, watch_errors

    settings.APIFRAME_WEBHOOK_URL = f"{live_server.url}/webhooks/apiframe/"  # the sandbox reports back
    team = Team.objects.create(name="Moonlight Agency")
    join(team, django_user_model.objects.create_user("alice", password="a-long-test-password"))
    # As settings.py allows a bucket's origin (AWS_S3_ENDPOINT_URL here) to show images under the strict CSP.
    settings.SECURE_CSP = {**settings.SECURE_CSP, "img-src": [*settings.SECURE_CSP["img-src"], s3_server.endpoint]}
    errors = watch_errors(page, [])
    log_in(page, live_server.url)

    page.get_by_role("textbox", name="Prompt").fill("a lighthouse in fog, seen from the bucket")
    page.get_by_role("button", name="Imagine").click()
    wait_finished(newest_card(page))
    # Each thumbnail came from the bucket, through the view's redirect to a signed URL (the CSP allowed it).
    thumbs = [f"/{bucket}/{image.thumbnail.name}" for image in Image.objects.all()]
    assert len(thumbs) == 4 and sorted(s3_server.check.signed_gets) == sorted(thumbs)
    page.screenshot(path=artifacts / "s3-studio-grid.png")

    page.goto(f"{live_server.url}/")  # the same page again, as after a navigation: redirects and images are cached
    wait_finished(newest_card(page))
    assert sorted(s3_server.check.signed_gets) == sorted(thumbs)
    assert errors == []


# --- Exports read their images from the bucket -------------------------------------------------------------


def _zip(response) -> zipfile.ZipFile:
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_the_lineage_export_reads_its_images_from_the_bucket(alice_client, bucket, stored_image):
    bundle = _zip(alice_client.get(f"/tasks/{stored_image.task_id}/export/"))

    entry = f"images/{stored_image.task_id}-1.png"
    assert bundle.read(entry) == stored_image.data
    (task,) = json.loads(bundle.read("metadata.json"))["tasks"]
    assert task["images"][0]["file"] == entry


def test_the_collection_export_reads_its_images_from_the_bucket(alice_client, alice, team, bucket, stored_image):
    from generations.services import collections

    board = collections.collection_create(team=team, user=alice, name="Harbour board")
    collections.collection_add_image(collection=board, image=stored_image, user=alice)

    bundle = _zip(alice_client.get(f"/collections/{board.pk}/export/"))

    assert bundle.read(f"images/{stored_image.task_id}-1.png") == stored_image.data


def test_the_approved_export_reads_from_the_bucket_and_marks_a_missing_object(
    alice_client, bucket, s3_server, stored_image, make_task
):
    Image.objects.filter(pk=stored_image.pk).update(review_state=Image.Review.APPROVED)
    lost = make_task(status="finished", finished_at=timezone.now())
    gone = Image.objects.create(
        task=lost,
        index=1,
        source_url="https://cdn.apiframe.pro/2.png",
        file="images/deleted-meanwhile.png",
        mirrored_at=timezone.now(),
        review_state=Image.Review.APPROVED,
    )

    bundle = _zip(alice_client.get("/library/approved/export/"))

    assert bundle.read(f"images/{stored_image.task_id}-1.png") == stored_image.data
    files = {i["id"]: i["file"] for t in json.loads(bundle.read("metadata.json"))["tasks"] for i in t["images"]}
    assert files == {stored_image.pk: f"images/{stored_image.task_id}-1.png", gone.pk: None}


# --- The orphan sweep lists the bucket through its prefix ----------------------------------------------------


def test_the_orphan_sweep_deletes_old_unnamed_objects_under_its_prefix_only(
    bucket, s3_server, settings, make_task, monkeypatch
):
    settings.STORAGES = {**settings.STORAGES, "default": _s3_storage(bucket, s3_server.endpoint, location="studio")}
    monkeypatch.setattr(housekeeping, "BATCH", 2)
    client = s3_server.client()
    for outside in ("images/other-app.png", "studio-old/images/x.png", "studio/notes/x.txt"):
        client.put_object(Bucket=bucket, Key=outside, Body=b"not ours")
    task = make_task(status="finished")
    kept = [default_storage.save(f"images/kept-{i}.png", ContentFile(b"png")) for i in range(3)]
    kept.append(default_storage.save("thumbs/kept.webp", ContentFile(b"webp")))
    for index, name in enumerate(kept[:3], start=1):
        Image.objects.create(task=task, index=index, source_url="https://cdn.apiframe.pro/x.png", file=name)
    Image.objects.create(task=task, index=4, source_url="https://cdn.apiframe.pro/y.png", thumbnail=kept[3])
    orphans = [default_storage.save(f"images/orphan-{i}.png", ContentFile(b"png")) for i in range(3)]
    orphans.append(default_storage.save("thumbs/orphan.webp", ContentFile(b"webp")))
    time.sleep(1.2)  # S3 dates objects to the second
    young = default_storage.save("images/being-recorded.png", ContentFile(b"png"))
    young_at = client.head_object(Bucket=bucket, Key=f"studio/{young}")["LastModified"]

    # An hour after the young file was stored, less half a second: the others are past the grace period.
    swept = housekeeping.files_sweep_orphans(now=young_at + housekeeping.ORPHAN_GRACE - timedelta(seconds=0.5))

    assert swept == 4
    left = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert left == {f"studio/{n}" for n in [*kept, young]} | {
        "images/other-app.png",
        "studio-old/images/x.png",
        "studio/notes/x.txt",
    }
    assert housekeeping.files_sweep_orphans(now=young_at + housekeeping.ORPHAN_GRACE * 2) == 1  # now the young one


# --- Configuration from the environment alone --------------------------------------------------------------

_SHOW_SETTINGS = """
import django, json
django.setup()
from django.conf import settings
from django.core.files.storage import default_storage as s
print(json.dumps({"url": s.url("images/a.png"), "img_src": settings.SECURE_CSP["img-src"], "acl": s.default_acl,
    "expire": s.querystring_expire, "auth": s.querystring_auth, "location": s.location}))
"""


@pytest.mark.parametrize(
    ("variables", "origin"),
    [
        ({"AWS_S3_REGION_NAME": "eu-west-1"}, "https://studio-media.s3.eu-west-1.amazonaws.com"),
        ({"AWS_S3_REGION_NAME": "us-east-1"}, "https://studio-media.s3.amazonaws.com"),
        ({"AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_LOCATION": "mjstudio"}, "http://127.0.0.1:9000"),
    ],
)
def test_the_bucket_is_configured_from_the_environment_and_its_origin_is_allowed_to_show_images(variables, origin):
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "DJANGO_SETTINGS_MODULE": "mjstudio.settings",
        "AWS_STORAGE_BUCKET_NAME": "studio-media",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_QUERYSTRING_EXPIRE": "120",
        **variables,
    }
    shown = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _SHOW_SETTINGS], env=environment, cwd=ROOT, capture_output=True, text=True, check=True
    )
    found = json.loads(shown.stdout.strip().splitlines()[-1])

    assert found["url"].startswith(f"{origin}/")
    assert origin in found["img_src"]
    assert (found["acl"], found["expire"], found["auth"]) == (None, 120, True)
    assert "X-Amz-Signature=" in found["url"] and "X-Amz-Expires=120" in found["url"]
    assert found["location"] == variables.get("AWS_LOCATION", "")


def _start_with(variables: dict[str, str], *, code: str = "pass") -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "mjstudio.settings", **variables}
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", f"import sys; {code}; import django; django.setup()"],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_a_bucket_without_django_storages_stops_the_studio_with_one_line():
    started = _start_with({"AWS_STORAGE_BUCKET_NAME": "media"}, code="sys.modules['storages'] = None")

    assert started.returncode == 1
    assert started.stderr.strip() == (
        "mjstudio will not start: AWS_STORAGE_BUCKET_NAME is set but django-storages[s3] is not installed "
        "(pip install '.[scale]')."
    )


@pytest.mark.parametrize("lifetime", ["5 minutes", "0", "604801"])
def test_a_signed_url_lifetime_out_of_range_stops_the_studio_with_one_line(lifetime):
    started = _start_with({"AWS_STORAGE_BUCKET_NAME": "media", "AWS_QUERYSTRING_EXPIRE": lifetime})

    assert started.returncode == 1
    assert started.stderr.strip() == (
        f"mjstudio will not start: AWS_QUERYSTRING_EXPIRE={lifetime!r} is not whole seconds from 10 to 604800 (7 days)."
    )


def test_it_streams_a_folder_image_without_loading_boto3_and_takes_a_bucket_for_one():
    # The first image a web worker served used to import boto3 (~0.25 s) just to learn media is not in a bucket.
    ask = "from generations.services import media; print(media.in_bucket(), 'boto3' in sys.modules)"
    in_folder = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", f"import sys, django; django.setup(); {ask}"],
        env={k: v for k, v in os.environ.items() if k != "AWS_STORAGE_BUCKET_NAME"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    in_bucket = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", f"import sys, django; django.setup(); {ask}"],
        env={**os.environ, "AWS_STORAGE_BUCKET_NAME": "media"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert in_folder.stdout.split() == ["False", "False"]
    assert in_bucket.stdout.split() == ["True", "True"]
