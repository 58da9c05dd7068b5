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

    def send(body: bytes, *, secret: str | None = "whsec_test"):
        headers = {"x-webhook-secret": secret} if secret is not None else {}
        return client.post(URL, data=body, content_type="application/json", headers=headers)

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
    assert len(callbacks) == 1  # the mirror job


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
