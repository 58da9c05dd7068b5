"""The webhook at /webhooks/apiframe/, fed recorded Apiframe payloads."""

from __future__ import annotations

import json
import logging

import pytest

from generations.models import Image, Task, WebhookDelivery
from generations.services import limits

URL = "/webhooks/apiframe/"
UPSTREAM_ID = "8a6e2a3b-6f0c-4c5e-9a51-2f1d3c4b5a60"


@pytest.fixture
def post(client, settings):
    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"

    def send(body: bytes, *, secret: str | None = "whsec_test", task_reference: int | None = None):
        headers = {"x-webhook-secret": secret} if secret is not None else {}
        url = URL if task_reference is None else f"{URL}?task={task_reference}"  # as our create calls give it
        return client.post(url, data=body, content_type="application/json", headers=headers)

    return send


@pytest.fixture
def task(make_task):
    return make_task(status="pending", upstream_id=UPSTREAM_ID)


def test_it_applies_a_processing_update(post, payload, task):
    response = post(payload("processing.json"))
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.percentage, task.upstream_status) == ("processing", 40, "processing")
    assert task.started_at is not None
    delivery = WebhookDelivery.objects.get()
    assert (delivery.task, delivery.outcome, delivery.reported_status) == (task, "applied", "processing")


def test_it_stores_the_grid_and_queues_the_mirror(post, payload, task, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(payload("finished_grid.json"))
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.percentage, task.credits) == ("finished", 100, 4)
    assert task.finished_at is not None
    urls = list(task.images.order_by("index").values_list("index", "source_url"))
    assert urls == [(i, f"https://cdn.apiframe.pro/images/8a6e2a3b-{i}.png") for i in range(1, 5)]
    assert len(callbacks) == 2  # the fair queue's dispatch (a slot is free) and the mirror job


@pytest.fixture
def database_queue(settings):
    """The default queue (django-tasks-db): jobs are rows of this database."""
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": settings.TASK_QUEUES},
    }


def test_a_queue_in_this_database_takes_the_mirror_job_in_the_results_own_transaction(
    post, payload, task, database_queue, django_capture_on_commit_callbacks
):
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post(payload("finished_grid.json")).status_code == 200
    job = DBTaskResult.objects.get()
    assert (job.queue_name, job.args_kwargs["args"]) == ("mirror", [task.pk])
    assert set(task.images.values_list("mirror_job_id", flat=True)) == {str(job.id)}  # written with the images
    assert len(callbacks) == 1  # the fair queue's dispatch only: the job needed no commit hook


def test_a_result_whose_log_line_fails_leaves_no_mirror_job_behind(post, payload, task, database_queue, monkeypatch):
    from django.db import DataError
    from django_tasks_db.models import DBTaskResult

    from generations.services import applying

    def refuse(**kwargs):
        raise DataError("value refused by the database")

    monkeypatch.setattr(applying, "webhook_record", refuse)
    assert post(payload("finished_grid.json")).status_code == 422
    assert (Task.objects.get(pk=task.pk).status, Image.objects.count(), DBTaskResult.objects.count()) == (
        "pending",
        0,
        0,
    )


def test_images_written_by_the_apply_statement_match_the_ones_the_orm_writes(
    post, payload, task, make_task, django_capture_on_commit_callbacks
):
    from django.forms.models import model_to_dict

    with django_capture_on_commit_callbacks(execute=True):
        assert post(payload("finished_grid.json")).status_code == 200
    written = Image.objects.get(task=task, index=2)
    other = make_task(status="finished")
    made = Image.objects.create(task=other, index=2, source_url=written.source_url)
    fields = [f.name for f in Image._meta.concrete_fields if f.name not in ("id", "task", "mirror_job_id")]
    assert model_to_dict(written, fields=fields) == model_to_dict(made, fields=fields)
    assert written.mirror_job_id  # the dummy queue's job, noted after the commit


def test_it_stores_a_finished_upscale_as_one_image(post, payload, make_task):
    parent = make_task(status="finished", upstream_id="parent-1")
    upscale = make_task(
        status="processing",
        action="upscale",
        option="creative",
        parent=parent,
        parent_index=1,
        upstream_id="0f3c9d1e-2b7a-4e8f-8c6d-5a4b3c2d1e0f",
    )
    assert post(payload("finished_upscale.json")).status_code == 200
    upscale.refresh_from_db()
    assert upscale.status == "finished"
    assert list(upscale.images.values_list("index", "source_url")) == [
        (1, "https://cdn.apiframe.pro/images/0f3c9d1e-upscale.png")
    ]


def test_it_keeps_the_failure_reason(post, payload, task):
    assert post(payload("failed.json")).status_code == 200
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error == "Job failed: the prompt was blocked by Midjourney's moderation."
    assert task.can_retry


def test_a_duplicate_changes_nothing(post, payload, task):
    post(payload("finished_grid.json"))
    task.refresh_from_db()
    first = (task.status, task.updated_at, task.finished_at)
    response = post(payload("finished_grid.json"))
    assert response.status_code == 200 and response.json()["outcome"] == "stale"
    task.refresh_from_db()
    assert (task.status, task.updated_at, task.finished_at) == first
    assert Image.objects.filter(task=task).count() == 4


def test_an_out_of_order_update_never_moves_a_task_back(post, payload, task):
    post(payload("processing_late.json"))
    for older in ("processing.json", "starting.json"):
        assert post(payload(older)).json()["outcome"] == "stale"
    task.refresh_from_db()
    assert (task.status, task.percentage) == ("processing", 80)
    post(payload("finished_grid.json"))
    post(payload("processing.json"))
    post(payload("failed.json"))
    task.refresh_from_db()
    assert (task.status, task.percentage, task.error) == ("finished", 100, "")


def test_a_late_result_still_lands_on_a_timed_out_task(post, payload, make_task):
    task = make_task(status="timed_out", upstream_id=UPSTREAM_ID, error="no result before the deadline")
    post(payload("processing.json"))
    task.refresh_from_db()
    assert task.status == "timed_out"
    post(payload("finished_grid.json"))
    task.refresh_from_db()
    assert (task.status, task.error) == ("finished", "")


def test_an_unknown_task_is_acknowledged_and_logged(post, payload, db):
    response = post(payload("unknown_task.json"))
    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.apiframe_task_id, delivery.task) == (
        "unknown_task",
        "ffffffff-0000-4000-8000-000000000000",
        None,
    )


@pytest.fixture
def empty_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize("secret", [None, "", "whsec_wrong", "whsec_test "])
def test_it_rejects_a_wrong_or_missing_secret(post, payload, task, secret, empty_cache):
    response = post(payload("finished_grid.json"), secret=secret)
    assert response.status_code == 401
    task.refresh_from_db()
    assert task.status == "pending"
    assert not WebhookDelivery.objects.exists()
    assert limits.webhook_refusals() == (1, 0)


def test_a_flood_of_bad_secrets_costs_no_query_and_a_handful_of_log_lines(
    post, payload, task, empty_cache, django_assert_num_queries, caplog
):
    body = payload("finished_grid.json")
    with caplog.at_level("INFO"), django_assert_num_queries(0):
        statuses = {post(body, secret="whsec_wrong").status_code for _ in range(250)}
    assert statuses == {401}
    assert limits.webhook_refusals() == (250, 0)
    # The 1st, 10th and 100th refusals of the hour are logged, with the count so far; nothing else is.
    assert [(r.name, r.args[0]) for r in caplog.records] == [(limits.__name__, n) for n in (1, 10, 100)]
    task.refresh_from_db()
    assert task.status == "pending"
    assert not WebhookDelivery.objects.exists()


def test_the_web_servers_access_line_is_dropped_for_a_refused_webhook_only(caplog):
    server = logging.getLogger("django.server")
    with caplog.at_level("INFO"):
        server.warning('"%s" %s %s', "POST /webhooks/apiframe/ HTTP/1.1", "401", "23", extra={"status_code": 401})
        server.warning('"%s" %s %s', "GET /nowhere/ HTTP/1.1", "404", "0", extra={"status_code": 404})
        server.warning('"%s" %s %s', "POST /webhooks/apiframe/ HTTP/1.1", "400", "9", extra={"status_code": 400})
    assert [r.args[0] for r in caplog.records] == ["GET /nowhere/ HTTP/1.1", "POST /webhooks/apiframe/ HTTP/1.1"]


def test_a_good_secret_is_not_counted_as_refused(post, payload, task, empty_cache):
    assert post(payload("finished_grid.json")).status_code == 200
    assert limits.webhook_refusals() == (0, 0)


def test_it_rejects_malformed_json(post, payload, task):
    response = post(payload("malformed.json"))
    assert response.status_code == 400
    assert not WebhookDelivery.objects.exists()
    task.refresh_from_db()
    assert task.status == "pending"


def test_it_rejects_a_payload_without_task_id(post, payload, db):
    response = post(payload("no_task_id.json"))
    assert response.status_code == 400
    assert WebhookDelivery.objects.get().outcome == "invalid"


def test_it_rejects_an_oversized_body(post, task, settings):
    settings.MJSTUDIO_WEBHOOK_MAX_BYTES = 1024
    body = json.dumps({"task_id": UPSTREAM_ID, "status": "processing", "padding": "x" * 2048}).encode()
    assert post(body).status_code == 413
    task.refresh_from_db()
    assert task.status == "pending"
    assert not WebhookDelivery.objects.exists()


def test_it_never_stores_a_secret_echoed_in_the_body(post, task):
    body = {"task_id": UPSTREAM_ID, "status": "processing", "percentage": "5", "webhook_secret": "whsec_test"}
    post(json.dumps(body).encode())
    assert "webhook_secret" not in WebhookDelivery.objects.get().body


def test_it_rejects_get(client, db):
    assert client.get(URL).status_code == 405


def test_it_needs_no_login_and_no_csrf_token(post, payload, task):
    # The `client` fixture enforces no CSRF by default; Django's own client with checks on proves it.
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post(
        URL,
        data=payload("processing.json"),
        content_type="application/json",
        headers={"x-webhook-secret": "whsec_test"},
    )
    assert response.status_code == 200
    assert Task.objects.get(pk=task.pk).status == "processing"


def test_it_is_answered_ahead_of_the_session_user_and_page_layers(post, payload, task, client):
    response = post(payload("processing.json"))
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware, before it, still runs
    assert "Content-Security-Policy" not in response and "X-Frame-Options" not in response  # the page layers don't
    assert "Vary" not in response  # nor sessions
    assert response["Content-Length"] == str(len(response.content))  # as CommonMiddleware gives it: not chunked
    health = client.get("/health/")
    assert health.status_code == 200 and "X-Frame-Options" not in health
    assert "X-Frame-Options" in client.get("/accounts/login/")  # every other path goes through all of them


def test_the_machine_endpoints_are_found_at_the_paths_the_urlconf_gives_them():
    from django.urls import reverse

    from generations.middleware import _machine_views
    from generations.views import system

    assert _machine_views() == {
        reverse("generations:apiframe_webhook"): system.apiframe_webhook,
        reverse("generations:health"): system.health,
    }


def test_a_host_not_allowed_is_refused_before_anything_is_applied(post, payload, task, client, settings):
    settings.ALLOWED_HOSTS = ["studio.example.com"]
    response = client.post(
        URL,
        data=payload("processing.json"),
        content_type="application/json",
        headers={"x-webhook-secret": "whsec_test", "host": "evil.example.net"},
    )
    assert response.status_code == 400
    assert (Task.objects.get(pk=task.pk).status, WebhookDelivery.objects.count()) == ("pending", 0)
    assert client.get("/health/", headers={"host": "evil.example.net"}).status_code == 400


def test_finished_without_images_keeps_the_task_waiting_for_the_real_result(post, payload, task):
    body = json.loads(payload("finished_grid.json"))
    post(json.dumps({**body, "image_urls": [], "original_image_url": None}).encode())
    task.refresh_from_db()
    assert task.status == "processing" and not task.images.exists()
    post(payload("finished_grid.json"))
    task.refresh_from_db()
    assert task.status == "finished" and task.images.count() == 4


def test_no_secret_is_kept_in_the_task_result_either(post, payload, task):
    body = {**json.loads(payload("failed.json")), "webhook_secret": "whsec_test", "meta": {"x_secret": "s"}}
    post(json.dumps(body).encode())
    task.refresh_from_db()
    assert task.status == "failed"
    assert "whsec_test" not in json.dumps(task.result) and "x_secret" not in json.dumps(task.result)


def test_deeply_nested_json_is_refused_not_crashed_on(post, task):
    assert post(b"[" * 100_000 + b"]" * 100_000).status_code in (400, 413)


def test_an_unknown_task_whose_id_arrives_meanwhile_is_applied(post, payload, make_task, monkeypatch):
    from generations.services import applying

    task = make_task(status="pending")
    real_record = applying.webhook_record

    def record_after_the_submit_stored_the_id(**kwargs):
        Task.objects.filter(pk=task.pk).update(apiframe_task_id=UPSTREAM_ID)  # the race, made certain
        return real_record(**kwargs)

    monkeypatch.setattr(applying, "webhook_record", record_after_the_submit_stored_the_id)
    assert post(payload("processing.json")).status_code == 200
    task.refresh_from_db()
    assert (task.status, task.percentage) == ("processing", 40)
    assert WebhookDelivery.objects.get().outcome == "applied"


def test_a_task_whose_sender_died_before_saving_its_id_is_found_by_the_url_apiframe_was_given(post, payload, make_task):
    """A worker SIGKILLed between Apiframe's answer and saving the id: the task never learnt its id, but the webhook
    URL it gave Apiframe names it, so the first delivery adopts the id and applies; it does not time out."""
    task = make_task(status="submitting")
    response = post(payload("finished_grid.json"), task_reference=task.pk)
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    task.refresh_from_db()
    assert (task.apiframe_task_id, task.status, task.images.count()) == (UPSTREAM_ID, "finished", 4)
    assert WebhookDelivery.objects.get().task == task


@pytest.mark.parametrize("status", ["queued", "pending", "finished", "failed"])
def test_a_url_reference_never_repoints_a_task_that_is_not_being_sent(post, payload, make_task, status):
    other = make_task(status=status, upstream_id="aaaaaaaa-0000-4000-8000-000000000000" if status != "queued" else None)
    response = post(payload("finished_grid.json"), task_reference=other.pk)
    assert (response.status_code, response.json()["outcome"]) == (200, "unknown_task")
    other.refresh_from_db()
    assert other.status == status and other.apiframe_task_id != UPSTREAM_ID and not other.images.exists()


def test_a_grid_with_one_bad_url_keeps_apiframes_numbers(post, payload, task):
    body = json.loads(payload("finished_grid.json"))
    body["image_urls"][1] = "javascript:alert(1)"
    post(json.dumps(body).encode())
    assert list(task.images.order_by("index").values_list("index", flat=True)) == [1, 3, 4]


def test_moderately_nested_json_with_the_secret_is_refused_not_crashed_on(post, task):
    body = {"task_id": UPSTREAM_ID, "status": "failed", "meta": json.loads("[" * 1200 + "]" * 1200)}
    assert post(json.dumps(body).encode()).status_code == 400
    task.refresh_from_db()
    assert task.status == "pending"


# --- No body causes a 500, and nothing is half-applied ---------------------------------------------------------


def _body(**fields) -> bytes:
    return json.dumps({"task_id": UPSTREAM_ID, **fields}).encode()


def test_an_image_url_that_does_not_parse_is_left_out(post, payload, task):
    body = json.loads(payload("finished_grid.json"))
    body["image_urls"][0] = "http://[x/a.png"  # urlsplit raises ValueError on it
    body["image_urls"][2] = "https://cdn.apiframe.pro:port/a.png"
    response = post(json.dumps(body).encode())
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.status == "finished"
    assert list(task.images.order_by("index").values_list("index", flat=True)) == [2, 4]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["percentage", "extra"])
def test_nan_or_infinity_is_refused_before_anything_is_applied(post, task, number, where):
    fields = '"percentage": 40' if where == "extra" else f'"percentage": {number}'
    extra = f', "score": {number}' if where == "extra" else ""
    body = f'{{"task_id": "{UPSTREAM_ID}", "status": "processing", {fields}{extra}}}'.encode()
    response = post(body)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]
    task.refresh_from_db()
    assert (task.status, task.percentage) == ("pending", 0)
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("task_id", [UPSTREAM_ID + "\u0000", "a\u0000b", UPSTREAM_ID + "\ud800", "x" * 65, "a b"])
def test_a_task_id_that_cannot_be_apiframes_is_refused_and_logged(post, task, task_id):
    response = post(json.dumps({"task_id": task_id, "status": "failed", "error": "boom"}).encode())
    assert response.status_code == 400
    task.refresh_from_db()
    assert task.status == "pending"
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "invalid"
    assert "\x00" not in delivery.apiframe_task_id and len(delivery.apiframe_task_id) <= 64


def test_nul_characters_in_text_are_dropped_before_they_reach_the_database(post, task):
    body = _body(status="failed\u0000", error="Banned\u0000 prompt", note={"a\u0000": ["b\u0000c"]})
    response = post(body)
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.error, task.upstream_status) == ("failed", "Banned prompt", "failed")
    assert task.result["note"] == {"a": ["bc"]}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.reported_status) == ("applied", "failed")
    assert "\\u0000" not in json.dumps(delivery.body) and "\x00" not in json.dumps(delivery.body)


def test_a_lone_surrogate_in_text_is_replaced_not_crashed_on(post, task):
    assert post(_body(status="failed", error="bad \ud800 prompt")).status_code == 200
    task.refresh_from_db()
    assert (task.status, task.error) == ("failed", "bad ? prompt")


@pytest.mark.parametrize("percentage", ["9" * 400, 10**400, -(10**400), "1e999", ["40"], {"v": 40}, "²", True])
def test_a_percentage_of_any_shape_is_read_or_ignored(post, task, percentage):
    body = f'{{"task_id": "{UPSTREAM_ID}", "status": "processing", "percentage": {json.dumps(percentage)}}}'
    assert post(body.encode()).status_code == 200
    task.refresh_from_db()
    assert task.status == "processing" and 0 <= task.percentage <= 99


@pytest.mark.parametrize("error_class", ["DataError", "IntegrityError"])
def test_a_log_line_that_fails_takes_the_update_back_with_it(post, payload, task, monkeypatch, error_class):
    from django import db

    from generations.services import applying

    def refuse(**kwargs):
        raise getattr(db, error_class)("value refused by the database")

    monkeypatch.setattr(applying, "webhook_record", refuse)
    response = post(payload("processing.json"))
    assert response.status_code == 422
    assert response.json() == {"error": "this delivery could not be stored; nothing was applied"}
    task.refresh_from_db()
    assert (task.status, task.percentage, task.upstream_status, task.last_heard_at) == ("pending", 0, "", None)


def test_a_busy_database_asks_apiframe_to_deliver_again_later(post, payload, task, monkeypatch):
    from django.db import OperationalError

    from generations.services import applying

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(applying, "webhook_record", locked)
    response = post(payload("processing.json"))
    assert response.status_code == 503 and response["Retry-After"] == "30"
    task.refresh_from_db()
    assert task.status == "pending"
    monkeypatch.undo()
    assert post(payload("processing.json")).status_code == 200  # the retry lands
    task.refresh_from_db()
    assert task.status == "processing"


def test_no_value_holding_the_secret_is_logged_whatever_its_key(post, task):
    body = _body(
        status="failed",
        error="echo whsec_test",
        meta={"token": "whsec_test", "list": ["x whsec_tes\u0000t y"], "whsec_test": 1},
        echo="whsec_test",
    )
    assert post(body).status_code == 200
    stored = json.dumps(WebhookDelivery.objects.get().body)
    assert "whsec_test" not in stored and "[redacted]" in stored
    task.refresh_from_db()
    assert "whsec_test" not in task.error + json.dumps(task.result)


def test_a_secret_that_is_a_number_is_not_logged_either(post, task, settings):
    settings.APIFRAME_WEBHOOK_SECRET = "918273645"
    body = _body(status="processing", percentage=5, pin=918273645)
    assert post(body, secret="918273645").status_code == 200
    assert "918273645" not in json.dumps(WebhookDelivery.objects.get().body)


def test_the_webhook_views_locals_stay_out_of_error_reports(rf, task, settings, monkeypatch):
    from django.views.debug import ExceptionReporter

    from generations.services import applying
    from generations.views import system

    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"

    def crash(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(applying, "webhook_receive", crash)
    body = _body(status="processing", note="private-note")
    request = rf.post(URL, data=body, content_type="application/json", headers={"x-webhook-secret": "whsec_test"})
    with pytest.raises(RuntimeError) as crashed:
        system.apiframe_webhook(request)
    report = ExceptionReporter(request, crashed.type, crashed.value, crashed.tb)
    frames = [f for f in report.get_traceback_frames() if f["function"] == "apiframe_webhook"]
    assert frames, "the view's own frame is in the report"
    shown = repr(report.filter.get_traceback_frame_variables(request, frames[0]["tb"].tb_frame))
    assert "whsec_test" not in shown and "private-note" not in shown


def test_a_progress_update_costs_three_statements_in_one_transaction(post, payload, task, django_assert_num_queries):
    # The lookup, the update and the log line (bench/webhook_ingest.py: ingest must take 1,000 deliveries a
    # second on two cores); under pytest's own transaction the atomic block adds a savepoint and its release.
    with django_assert_num_queries(5) as captured:
        assert post(payload("processing.json")).status_code == 200
    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert statements == ["SELECT", "SAVEPOINT", "UPDATE", "INSERT", "RELEASE"]
    task.refresh_from_db()
    assert (task.status, task.percentage) == ("processing", 40)


def test_the_task_it_returns_reads_its_other_fields_when_asked(make_task):
    from generations.apiframe import TaskState
    from generations.services.applying import task_apply_state

    task = make_task(status="pending", upstream_id="lazy-1")
    _, applied = task_apply_state(state=TaskState.from_payload({"task_id": "lazy-1", "status": "processing"}))
    assert (applied.pk, applied.status, applied.team_id, applied.prompt_id, applied.collection_id) == (
        task.pk,
        "processing",
        task.team_id,
        task.prompt_id,
        None,
    )


def test_the_task_it_finds_has_each_value_in_its_own_field(make_task):
    from generations.services.applying import _task_find

    task = make_task(status="processing", upstream_id="found-1")
    found = _task_find(apiframe_task_id="found-1")
    assert (found.pk, found.action, found.status, found.collection_id) == (task.pk, "imagine", "processing", None)


@pytest.mark.django_db(transaction=True)  # outside a test's transaction, as in production
def test_webhook_writers_take_turns_on_a_lock_file_on_sqlite_only(post, payload, task, monkeypatch):
    import fcntl
    import os

    from django.db import connection

    from generations.services import applying

    lock_file = f"{connection.settings_dict['NAME']}.writer-lock"
    on_sqlite = connection.vendor == "sqlite"

    def another_process_could_write() -> bool:
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a second open file: as another process
        except BlockingIOError:
            return False
        finally:
            os.close(descriptor)  # closing releases it
        return True

    seen = []
    move_forward = applying._task_move_forward

    def watched(**kwargs: object) -> bool:
        seen.append(another_process_could_write())
        return move_forward(**kwargs)

    monkeypatch.setattr(applying, "_task_move_forward", watched)
    assert post(payload("processing.json")).status_code == 200
    assert seen == [not on_sqlite]  # SQLite: the turn is held while writing; PostgreSQL: no turn to take
    assert another_process_could_write()  # and given back after
    if not on_sqlite:
        os.remove(lock_file)


def test_each_task_gives_apiframe_a_webhook_url_naming_it(settings, make_task):
    from django.utils import timezone

    from generations.services import submitting

    settings.APIFRAME_WEBHOOK_URL = "https://studio.example/webhooks/apiframe/"
    settings.APIFRAME_WEBHOOK_SECRET = "whsec_test"
    task = make_task(status="queued", dispatched_at=timezone.now())
    sent = {}

    class Apiframe:
        def imagine(self, **fields):
            sent.update(fields)
            return UPSTREAM_ID

    submitting.task_submit(task_id=task.pk, client=Apiframe())
    assert sent["webhook_url"] == f"https://studio.example/webhooks/apiframe/?task={task.pk}"
    task.refresh_from_db()
    assert (task.status, task.apiframe_task_id) == ("pending", UPSTREAM_ID)
