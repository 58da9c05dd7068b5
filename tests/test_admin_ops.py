"""The admin for moderation and operations: the review queue's bulk actions (a reason first, through the
moderation service), stuck work (refresh from Apiframe, retry mirror, fail with reason), webhook replays, the
read-only audit trail, and lists whose query count does not grow with their rows."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.tasks import default_task_backend
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations.models import AuditEntry, Flag, Image, Membership, Prompt, Task, WebhookDelivery
from generations.services import moderation

ACTION = "_selected_action"


@pytest.fixture
def ada(db):
    return get_user_model().objects.create_superuser("ada", "ada@example.com", "pw-ada")


@pytest.fixture
def staff(client, ada):
    client.force_login(ada)
    return client


def _flagged_image(make_task, *, index=1, user=None, **task_fields):
    task = make_task(user=user, status="finished", **task_fields)
    image = Image.objects.create(
        task=task,
        index=index,
        source_url=f"https://cdn.example/{task.pk}-{index}.png",
        thumbnail=f"thumbs/{task.pk}-{index}.webp",
        file=f"images/{task.pk}-{index}.png",
        mirrored_at=timezone.now(),
    )
    Flag.objects.create(team=task.team, image=image, reason="violence", created_by=task.created_by)
    Image.objects.filter(pk=image.pk).update(flagged_at=timezone.now())
    image.refresh_from_db()
    return image


def _act(client, model, action, pks, **extra):
    return client.post(
        f"/admin/generations/{model}/", {"action": action, ACTION: [str(pk) for pk in pks], "index": "0", **extra}
    )


# --- Who may reach the admin ----------------------------------------------------------------------------------

ADMIN_URLS = [
    "/admin/",
    "/admin/generations/task/",
    "/admin/generations/image/",
    "/admin/generations/prompt/",
    "/admin/generations/webhookdelivery/",
    "/admin/generations/flag/",
    "/admin/generations/auditentry/",
    "/admin/generations/stucktask/",
    "/admin/generations/image/?moderation=flagged",
]


@pytest.mark.parametrize("role", ["member", "owner"])
@pytest.mark.parametrize("url", ADMIN_URLS)
def test_it_sends_members_and_owners_to_the_admin_login(client, alice, make_task, role, url):
    Membership.objects.filter(user=alice).update(role=role)
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("who", ["member", "owner", "another team's member", "anonymous"])
@pytest.mark.parametrize(
    ("model", "action"),
    [
        ("task", "hide_items"),
        ("task", "fail_tasks"),
        ("task", "refresh_tasks"),
        ("image", "restore_items"),
        ("image", "clear_flags"),
        ("stucktask", "retry_mirror"),
        ("webhookdelivery", "replay_deliveries"),
    ],
)
def test_nobody_but_staff_runs_an_admin_action(client, alice, charlie, make_task, who, model, action):
    image = _flagged_image(make_task)
    if who in ("member", "owner"):
        Membership.objects.filter(user=alice).update(role=who)
        client.force_login(alice)
    elif who == "another team's member":
        client.force_login(charlie)
    response = _act(client, model, action, [image.task_id], reason="mine now", confirm="yes")
    assert response.status_code == 302
    login = "/accounts/login/" if who == "anonymous" else "/admin/login/"  # the site's login comes first
    assert response["Location"].startswith(login)
    image.refresh_from_db()
    assert (image.hidden_at, image.task.status) == (None, "finished")
    assert not AuditEntry.objects.exists()


def test_staff_without_the_change_permission_cannot_hide(client, make_task):
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("vera", password="pw-vera", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_image"))
    image = _flagged_image(make_task)
    client.force_login(viewer)

    listed = client.get("/admin/generations/image/")
    response = _act(client, "image", "hide_items", [image.pk], reason="gore", confirm="yes")

    assert listed.status_code == 200 and "hide_items" not in listed.content.decode()
    assert response.status_code == 200  # the list again: no such action for her
    assert Image.objects.get(pk=image.pk).hidden_at is None
    assert not AuditEntry.objects.exists()


def test_anonymous_visitors_go_to_the_admin_login(client, db):
    response = client.get("/admin/generations/auditentry/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")  # the site's login comes first


# --- Lists: fast, thumbnails, filters, search -----------------------------------------------------------------


def _seed(make_task, ada, n: int) -> None:
    """n tasks, each with an image, a flag, a webhook delivery and an audit row."""
    for i in range(n):
        image = _flagged_image(make_task, upstream_id=f"up-{n}-{i}")
        if i % 2:
            parent = image.task
            make_task(status="pending", parent=parent, parent_index=1, action="vary", deadline=timezone.now())
        WebhookDelivery.objects.create(
            apiframe_task_id=f"up-{n}-{i}", task=image.task, reported_status="finished", outcome="applied", body={}
        )
        AuditEntry.objects.create(actor=ada, actor_name="ada", team=image.task.team, act="hide", target_repr="x")


LISTS = ["task", "image", "prompt", "webhookdelivery", "flag", "auditentry", "stucktask"]


@pytest.mark.parametrize("model", LISTS)
def test_a_list_takes_as_many_queries_for_50_rows_as_for_5(staff, make_task, ada, model):
    def count() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(f"/admin/generations/{model}/")
        assert response.status_code == 200
        return len(queries), len(response.context["cl"].result_list)

    _seed(make_task, ada, 5)
    few, rows_few = count()
    _seed(make_task, ada, 45)
    many, rows_many = count()
    assert rows_few >= 2 and rows_many > rows_few  # the rows are really there (stuck: the overdue children)
    assert many == few


@pytest.mark.parametrize(
    "query",
    [
        "?moderation=flagged",
        "?moderation=hidden",
        "?moderation=clean",
        "?status__exact=finished",
        "?action__exact=imagine",
        "?created_at__gte=2020-01-01+00%3A00%3A00%2B00%3A00",
        "?q=quiet+harbour",
        "?q=up-5-1",
    ],
)
def test_the_task_list_filters_and_searches(staff, make_task, ada, query):
    _seed(make_task, ada, 3)
    assert staff.get(f"/admin/generations/task/{query}").status_code == 200


def test_a_list_stops_counting_at_the_cap_and_says_so(staff, make_task, monkeypatch):
    from generations.admin.base import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "COUNT_CAP", 3)
    for _ in range(5):
        make_task()

    capped = staff.get("/admin/generations/task/").content.decode()
    exact = staff.get("/admin/generations/task/?status__exact=pending&action__exact=imagine&q=af-none").content.decode()

    assert "More than 3 tasks" in capped
    assert "0 tasks" in exact


@pytest.mark.parametrize("common_from", [500, 1])  # rare words through the index; common ones walk the newest
def test_it_finds_a_task_by_its_apiframe_id_or_its_prompt_words(staff, make_task, alice, monkeypatch, common_from):
    monkeypatch.setattr("generations.admin.base.COMMON_WORDS", common_from)
    wanted = make_task(upstream_id="af-7f3c")
    other = make_task(upstream_id="af-0000")
    Prompt.objects.filter(pk=other.prompt_id).update(text="Cà phê sữa đá", search_text="ca phe sua da")

    by_id = staff.get("/admin/generations/task/", {"q": "af-7f3c"}).context["cl"].result_list
    by_words = staff.get("/admin/generations/task/", {"q": "CA PHE"}).context["cl"].result_list
    by_number = staff.get("/admin/generations/task/", {"q": str(other.pk)}).context["cl"].result_list
    Image.objects.create(task=other, index=1, source_url="https://cdn.example/1.png")
    images = staff.get("/admin/generations/image/", {"q": "phe sua"}).context["cl"].result_list

    assert [t.pk for t in by_id] == [wanted.pk]
    assert [t.pk for t in by_words] == [other.pk]
    assert [t.pk for t in by_number] == [other.pk]
    assert [i.task_id for i in images] == [other.pk]


def test_an_image_of_a_hidden_task_is_marked_in_the_image_list(staff, make_task, ada):
    image = _flagged_image(make_task)
    moderation.items_hide(actor=ada, items=Task.objects.filter(pk=image.task_id), reason="the prompt itself")
    page = staff.get("/admin/generations/image/").content.decode()
    assert 'title="the prompt itself">task hidden</span>' in page


@pytest.mark.parametrize("term", ["²", "٣", "99999999999999999999999"])
def test_a_search_for_digits_that_are_no_task_number_finds_nothing_and_fails_not(staff, make_task, term):
    make_task()
    response = staff.get("/admin/generations/task/", {"q": term})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


def test_rows_show_thumbnails_through_the_image_view_and_mark_hidden_ones(staff, make_task, ada):
    image = _flagged_image(make_task)
    moderation.items_hide(actor=ada, items=Image.objects.filter(pk=image.pk), reason="gore")
    thumb = f'src="/images/{image.pk}/thumb/"'

    tasks = staff.get("/admin/generations/task/").content.decode()
    images = staff.get("/admin/generations/image/?moderation=hidden").content.decode()

    assert thumb in tasks and thumb in images
    assert "mj-thumb--hidden" in images and "mj-badge--hidden" in images


def test_staff_may_open_any_teams_image_files_hidden_ones_included(staff, make_task, ada, settings, tmp_path):
    image = _flagged_image(make_task)
    for name in (image.thumbnail.name, image.file.name):
        path = settings.MEDIA_ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF....WEBP")
    moderation.items_hide(actor=ada, items=Image.objects.filter(pk=image.pk), reason="gore")

    assert staff.get(f"/images/{image.pk}/thumb/").status_code == 200  # ada is in no team at all
    assert staff.get(f"/images/{image.pk}/full/").status_code == 200


def test_another_teams_member_still_gets_404_for_an_image_file(client, charlie, make_task):
    image = _flagged_image(make_task)
    client.force_login(charlie)
    assert client.get(f"/images/{image.pk}/thumb/").status_code == 404


def test_the_task_page_links_parent_and_root_and_shows_children_and_images(staff, make_task):
    root = make_task(status="finished")
    child = make_task(status="finished", parent=root, parent_index=2, action="vary", option="strong")
    grandchild = make_task(status="pending", parent=child, parent_index=1, action="upscale", option="subtle")
    Image.objects.create(task=child, index=1, source_url="https://cdn.example/1.png", thumbnail="thumbs/a.webp")
    Task.objects.filter(pk=child.pk).update(result={"task_id": "af-1", "images": ["x"]})

    page = staff.get(f"/admin/generations/task/{child.pk}/change/").content.decode()

    assert f'href="/admin/generations/task/{root.pk}/change/"' in page  # parent and root
    assert f'href="/admin/generations/task/{grandchild.pk}/change/"' in page  # a child, inline
    assert f'src="/images/{child.images.get().pk}/thumb/"' in page
    assert '<pre class="mj-json">{\n  &quot;images&quot;: [\n    &quot;x&quot;\n  ],' in page
    assert 'name="_save"' not in page  # read-only


def test_the_admin_index_links_the_review_queue_and_stuck_work(staff, make_task):
    _flagged_image(make_task)
    page = staff.get("/admin/").content.decode()
    assert "Review queue: flagged images</a></th><td>1</td>" in page
    assert "Review queue: flagged tasks</a></th><td>0</td>" in page
    assert 'href="/admin/generations/image/?moderation=flagged"' in page
    assert 'href="/admin/generations/task/?moderation=flagged"' in page
    assert 'href="/admin/generations/stucktask/"' in page


# --- The review queue's bulk actions --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["image", "task"])
def test_hide_asks_for_a_reason_and_changes_nothing_without_one(staff, make_task, model):
    image = _flagged_image(make_task)
    pk = image.pk if model == "image" else image.task_id

    asked = _act(staff, model, "hide_items", [pk])
    refused = _act(staff, model, "hide_items", [pk], confirm="yes", reason="   ")

    assert asked.status_code == 200 and 'name="reason"' in asked.content.decode()
    assert refused.status_code == 422 and "Give a reason" in refused.content.decode()
    item = Image.objects.get(pk=pk) if model == "image" else Task.objects.get(pk=pk)
    assert item.hidden_at is None
    assert not AuditEntry.objects.exists()


def test_hide_then_restore_images_with_reasons_audited(staff, make_task, ada):
    first, second = _flagged_image(make_task), _flagged_image(make_task)

    hidden = _act(staff, "image", "hide_items", [first.pk, second.pk], confirm="yes", reason="gore")
    first.refresh_from_db()
    assert hidden.status_code == 302
    assert (first.hidden_by, first.hidden_reason, first.flagged_at) == (ada, "gore", None)
    assert not Flag.objects.filter(resolved_at=None).exists()  # hiding resolves the flags

    restored = _act(staff, "image", "restore_items", [first.pk], confirm="yes", reason="a mistake")
    first.refresh_from_db()
    assert restored.status_code == 302
    assert first.hidden_at is None
    assert Image.objects.get(pk=second.pk).hidden_at is not None
    acts = sorted(AuditEntry.objects.values_list("act", "target_id", "reason", "actor_name"))
    assert acts == [
        ("hide", first.pk, "gore", "ada"),
        ("hide", second.pk, "gore", "ada"),
        ("restore", first.pk, "a mistake", "ada"),
    ]


def test_clear_flags_on_tasks_keeps_them_visible(staff, make_task):
    task = make_task(status="finished")
    Flag.objects.create(team=task.team, task=task, reason="other", created_by=task.created_by)
    Task.objects.filter(pk=task.pk).update(flagged_at=timezone.now())

    response = _act(staff, "task", "clear_flags", [task.pk], confirm="yes", reason="fine by the brief")

    task.refresh_from_db()
    assert response.status_code == 302
    assert (task.flagged_at, task.hidden_at) == (None, None)
    assert Flag.objects.get().resolved_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.act, entry.target_type, entry.target_id) == ("clear_flags", "task", task.pk)
    assert entry.reason == "fine by the brief"


def test_hide_from_an_images_own_page(staff, make_task):
    image = _flagged_image(make_task)
    url = f"/admin/generations/image/{image.pk}/change/"
    response = staff.post(
        url, {"CHANGE_FORM-action": "hide_items", ACTION: str(image.pk), "confirm": "yes", "reason": "spam"}
    )
    image.refresh_from_db()
    assert response.status_code == 302
    assert image.hidden_reason == "spam"
    assert AuditEntry.objects.get().act == "hide"


def test_select_across_the_flagged_filter_hides_only_flagged_ones(staff, make_task):
    flagged, clean = _flagged_image(make_task), _flagged_image(make_task)
    Image.objects.filter(pk=clean.pk).update(flagged_at=None)

    response = staff.post(
        "/admin/generations/image/?moderation=flagged",
        {"action": "hide_items", ACTION: [str(flagged.pk)], "select_across": "1", "index": "0"}
        | {"confirm": "yes", "reason": "queue sweep"},
    )

    assert response.status_code == 302
    assert list(Image.objects.filter(hidden_at__isnull=False).values_list("pk", flat=True)) == [flagged.pk]


# --- Stuck work -----------------------------------------------------------------------------------------------


def test_the_stuck_list_shows_overdue_timed_out_and_mirror_given_up_tasks_only(staff, make_task):
    overdue = make_task(status="processing", deadline=timezone.now() - timedelta(minutes=1))
    timed_out = make_task(status="timed_out")
    mirror = make_task(status="finished")
    Image.objects.create(task=mirror, index=1, source_url="https://cdn.example/m.png", mirror_attempts=8)
    make_task(status="processing")  # still within its deadline
    healthy = make_task(status="finished")
    Image.objects.create(task=healthy, index=1, source_url="https://cdn.example/h.png", mirrored_at=timezone.now())

    listed = staff.get("/admin/generations/stucktask/").context["cl"].result_list
    only_mirror = staff.get("/admin/generations/stucktask/?why=mirror").context["cl"].result_list

    assert sorted(t.pk for t in listed) == sorted([overdue.pk, timed_out.pk, mirror.pk])
    assert [t.pk for t in only_mirror] == [mirror.pk]
    page = staff.get("/admin/generations/stucktask/").content.decode()
    assert "overdue since" in page and "timed out" in page and "mirror gave up (1 image)" in page


def test_a_task_waiting_its_turn_in_the_fair_queue_is_not_stuck(staff, make_task):
    make_task(status="queued", deadline=timezone.now() - timedelta(hours=1))  # waiting: its clock has not started
    let_go = make_task(status="queued", dispatched_at=timezone.now(), deadline=timezone.now() - timedelta(minutes=1))

    listed = staff.get("/admin/generations/stucktask/").context["cl"].result_list

    assert [t.pk for t in listed] == [let_go.pk]


def test_failing_a_task_that_held_a_slot_lets_the_next_in_line_go(
    staff, make_task, settings, django_capture_on_commit_callbacks
):
    settings.APIFRAME_CONCURRENCY = 1
    holding = make_task(status="queued", dispatched_at=timezone.now(), deadline=timezone.now() - timedelta(minutes=1))
    next_in_line = make_task(status="queued", queue_position=1)

    with django_capture_on_commit_callbacks(execute=True):
        response = _act(staff, "stucktask", "fail_tasks", [holding.pk], confirm="yes", reason="the worker is down")

    assert response.status_code == 302
    assert Task.objects.get(pk=holding.pk).status == "failed"
    next_in_line.refresh_from_db()
    assert next_in_line.dispatched_at is not None and next_in_line.queue_position is None


def _sandbox_tasks(sandbox, n: int) -> list[str]:
    ids = [sandbox.engine.create("imagine", {"prompt": f"a lighthouse number {i}"}) for i in range(n)]
    deadline = time.monotonic() + 30
    while any(sandbox.engine.fetch(i)["status"] != "finished" for i in ids):
        assert time.monotonic() < deadline, "the sandbox did not finish its tasks"
        time.sleep(0.05)
    return ids


@pytest.mark.django_db(transaction=True)  # the mirror job runs on commit, in its own threads
def test_refresh_fetches_many_in_batches_of_twenty_and_applies_each(staff, make_task, studio_upstream):
    ids = _sandbox_tasks(studio_upstream, 21)
    overdue = timezone.now() - timedelta(minutes=1)
    tasks = [make_task(status="pending", upstream_id=i, deadline=overdue) for i in ids]
    never_sent = make_task(status="queued", deadline=overdue)
    counts = studio_upstream.engine.request_counts
    before = (counts["/fetch-many"], counts["/fetch"])

    response = _act(staff, "stucktask", "refresh_tasks", [t.pk for t in [*tasks, never_sent]])

    assert response.status_code == 302
    assert (counts["/fetch-many"] - before[0], counts["/fetch"] - before[1]) == (1, 1)  # 20, then a lone one
    for task in tasks:
        task.refresh_from_db()
        assert (task.status, task.percentage, task.images.count()) == ("finished", 100, 4)
    assert Image.objects.filter(task__in=tasks, mirrored_at=None).count() == 0  # the mirror ran (at once here)
    # Never sent: no id to ask about, so not asked (the fair queue sends it on, as the finished ones free slots).
    assert not AuditEntry.objects.filter(act="task_refresh", target_id=never_sent.pk).exists()
    audit = AuditEntry.objects.filter(act="task_refresh")
    assert sorted(audit.values_list("target_id", flat=True)) == sorted(t.pk for t in tasks)
    assert {e.details["outcome"] for e in audit} == {"applied"}

    again = _act(staff, "task", "refresh_tasks", [tasks[0].pk])  # a second refresh changes nothing
    assert again.status_code == 302
    assert AuditEntry.objects.filter(act="task_refresh").latest("pk").details["outcome"] == "stale"
    assert Image.objects.filter(task=tasks[0]).count() == 4


def test_refresh_asks_about_at_most_its_limit_those_heard_of_longest_ago_first(make_task, ada, monkeypatch):
    from generations.apiframe import ApiframeClient, TaskState
    from generations.services.operations import tasks_refresh

    asked = []

    def fetch_many(self, task_ids):
        asked.extend(task_ids)
        return [TaskState.from_payload({"task_id": t, "status": "processing", "percentage": 50}) for t in task_ids]

    monkeypatch.setattr(ApiframeClient, "fetch_many", fetch_many)
    now = timezone.now()
    heard = [
        make_task(status="pending", upstream_id=f"af-{i}", last_heard_at=now - timedelta(minutes=i)) for i in range(3)
    ]
    never = make_task(status="pending", upstream_id="af-never")

    first = tasks_refresh(actor=ada, tasks=Task.objects.all(), limit=2)
    second = tasks_refresh(actor=ada, tasks=Task.objects.all(), limit=2)

    assert asked[:2] == ["af-never", "af-2"]  # never heard of, then the longest silent
    assert asked[2:] == ["af-1", "af-0"]  # the answers stamped the first two: the next run asks the others
    assert (first["applied"], first["more"], second["more"]) == (2, True, True)
    assert Task.objects.get(pk=never.pk).status == "processing"
    assert {t.pk for t in heard} | {never.pk} == set(
        Task.objects.filter(status="processing").values_list("pk", flat=True)
    )


def test_refresh_says_so_when_apiframe_is_down(staff, make_task, monkeypatch):
    from generations.apiframe import ApiframeClient, UpstreamUnavailable

    def down(self, task_ids):
        raise UpstreamUnavailable("connection refused", None)

    monkeypatch.setattr(ApiframeClient, "fetch_many", down)
    task = make_task(status="pending", upstream_id="af-down")

    response = _act(staff, "task", "refresh_tasks", [task.pk])

    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).status == "pending"
    assert not AuditEntry.objects.exists()
    messages = [str(m) for m in staff.get("/admin/generations/task/").context["messages"]]
    assert any("Apiframe did not answer" in m for m in messages)


@pytest.mark.django_db(transaction=True)  # the mirror job runs on commit, in its own threads
def test_retry_mirror_resets_the_attempts_and_mirrors_again_from_the_sandbox(staff, make_task, studio_upstream):
    (upstream_id,) = _sandbox_tasks(studio_upstream, 1)
    task = make_task(status="pending", upstream_id=upstream_id)
    _act(staff, "task", "refresh_tasks", [task.pk])
    Image.objects.filter(task=task).update(
        mirrored_at=None, file="", thumbnail="", mirror_attempts=8, mirror_error="CDN answered 500"
    )

    response = _act(staff, "stucktask", "retry_mirror", [task.pk])

    assert response.status_code == 302
    images = list(task.images.all())
    assert len(images) == 4 and all(i.is_mirrored and i.mirror_attempts == 1 and i.thumbnail for i in images)
    entry = AuditEntry.objects.get(act="mirror_retry")
    assert (entry.target_id, entry.details["images"]) == (task.pk, 4)
    assert entry.details["errors"]["1"] == "CDN answered 500"


def test_retry_mirror_queues_the_job_and_leaves_tasks_that_never_gave_up(
    staff, make_task, django_capture_on_commit_callbacks
):
    gave_up, fine = make_task(status="finished"), make_task(status="finished")
    Image.objects.create(task=gave_up, index=1, source_url="https://cdn.example/g.png", mirror_attempts=8)
    Image.objects.create(task=fine, index=1, source_url="https://cdn.example/f.png", mirror_attempts=2)

    with django_capture_on_commit_callbacks(execute=True):
        response = _act(staff, "image", "retry_mirror", list(Image.objects.values_list("pk", flat=True)))

    assert response.status_code == 302
    assert Image.objects.get(task=gave_up).mirror_attempts == 0
    assert Image.objects.get(task=fine).mirror_attempts == 2
    (job,) = default_task_backend.results
    assert (job.task.name, job.args) == ("mirror_task_images", [gave_up.pk])
    assert Image.objects.get(task=gave_up).mirror_job_id == str(job.id)
    assert list(AuditEntry.objects.values_list("act", "target_id")) == [("mirror_retry", gave_up.pk)]


def test_fail_with_reason_fails_unfinished_tasks_only(staff, make_task):
    overdue = make_task(status="processing", upstream_id="af-1", deadline=timezone.now() - timedelta(minutes=1))
    timed_out = make_task(status="timed_out")
    finished = make_task(status="finished")
    pks = [overdue.pk, timed_out.pk, finished.pk]

    asked = _act(staff, "stucktask", "fail_tasks", pks)
    without = _act(staff, "stucktask", "fail_tasks", pks, confirm="yes", reason="")
    assert asked.status_code == 200 and without.status_code == 422
    assert Task.objects.get(pk=overdue.pk).status == "processing"

    response = _act(staff, "task", "fail_tasks", pks, confirm="yes", reason="Apiframe lost it (ticket 123)")

    assert response.status_code == 302
    for task in (overdue, timed_out):
        task.refresh_from_db()
        assert (task.status, task.error) == ("failed", "Apiframe lost it (ticket 123)")
        assert task.finished_at is not None
    assert Task.objects.get(pk=finished.pk).status == "finished"  # monotonic: a finished task stays finished
    audit = AuditEntry.objects.filter(act="task_fail").order_by("target_id")
    assert [(e.target_id, e.details["was"]) for e in audit] == [(overdue.pk, "processing"), (timed_out.pk, "timed_out")]


def test_a_failed_task_takes_apiframes_late_result_no_more(make_task, ada):
    from generations.apiframe import TaskState
    from generations.services.applying import task_apply_state
    from generations.services.operations import tasks_fail

    task = make_task(status="processing", upstream_id="af-late")
    tasks_fail(actor=ada, tasks=Task.objects.filter(pk=task.pk), reason="stuck for a day")
    state = TaskState.from_payload({"task_id": "af-late", "status": "finished", "image_urls": ["https://x/1.png"]})

    outcome, _ = task_apply_state(state=state)

    assert outcome == "stale"
    assert Task.objects.get(pk=task.pk).status == "failed"


# --- The webhook log ------------------------------------------------------------------------------------------


def test_replay_applies_a_delivery_once_and_audits_each_replay(staff, make_task, payload):
    import json

    body = json.loads(payload("finished_grid.json"))
    delivery = WebhookDelivery.objects.create(
        apiframe_task_id=body["task_id"], reported_status="finished", outcome="unknown_task", body=body
    )
    task = make_task(status="processing", upstream_id=body["task_id"])

    first = _act(staff, "webhookdelivery", "replay_deliveries", [delivery.pk])
    task.refresh_from_db()
    after_first = (task.status, task.updated_at, task.images.count())
    second = staff.post(
        f"/admin/generations/webhookdelivery/{delivery.pk}/change/",
        {"CHANGE_FORM-action": "replay_deliveries", ACTION: str(delivery.pk)},
    )
    task.refresh_from_db()

    assert first.status_code == second.status_code == 302
    assert after_first[0] == "finished" and after_first[2] >= 1
    assert (task.status, task.updated_at, task.images.count()) == after_first  # the replay changed nothing
    assert WebhookDelivery.objects.get(pk=delivery.pk).task == task  # the log now knows its task
    assert WebhookDelivery.objects.count() == 1  # a replay is no new delivery
    outcomes = [e.details["outcome"] for e in AuditEntry.objects.filter(act="webhook_replay").order_by("pk")]
    assert outcomes == ["applied", "stale"]
    listed = staff.get("/admin/generations/webhookdelivery/")
    assert [d.replay_count for d in listed.context["cl"].result_list] == [2]
    said = [str(m) for m in listed.context["messages"]]
    assert any(m.startswith("Replayed 1 delivery:") for m in said), said


def test_the_admin_counts_nouns_in_english():
    from generations.admin.base import plural

    assert [plural(1, "task"), plural(3, "task"), plural(2, "delivery", "deliveries")] == [
        "1 task",
        "3 tasks",
        "2 deliveries",
    ]


def test_a_delivery_without_a_task_object_cannot_be_replayed(staff, db):
    delivery = WebhookDelivery.objects.create(outcome="invalid", body={"hello": "world"})
    response = _act(staff, "webhookdelivery", "replay_deliveries", [delivery.pk])
    assert response.status_code == 302
    assert not AuditEntry.objects.exists()


def test_the_webhook_log_finds_deliveries_by_their_exact_apiframe_id(staff, db):
    wanted = WebhookDelivery.objects.create(apiframe_task_id="af-12", outcome="stale", body={})
    WebhookDelivery.objects.create(apiframe_task_id="af-123", outcome="stale", body={})
    listed = staff.get("/admin/generations/webhookdelivery/", {"q": " af-12 "}).context["cl"].result_list
    assert [d.pk for d in listed] == [wanted.pk]


def test_the_delivery_page_pretty_prints_its_body(staff, db):
    delivery = WebhookDelivery.objects.create(
        apiframe_task_id="af-9", outcome="stale", body={"task_id": "af-9", "status": "finished"}
    )
    page = staff.get(f"/admin/generations/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert '<pre class="mj-json">{\n  &quot;status&quot;: &quot;finished&quot;,\n  &quot;task_id&quot;' in page
    assert "Replay (apply the body again)" in page


# --- The audit trail ------------------------------------------------------------------------------------------


def test_nobody_adds_changes_or_deletes_audit_rows_superusers_included(staff, ada, team):
    entry = AuditEntry.objects.create(
        actor=ada, actor_name="ada", team=team, act="hide", reason="gore", details={"was": "processing"}
    )

    assert staff.get("/admin/generations/auditentry/add/").status_code == 403
    assert staff.get(f"/admin/generations/auditentry/{entry.pk}/delete/").status_code == 403
    staff.post(f"/admin/generations/auditentry/{entry.pk}/change/", {"reason": "nothing happened"})
    deleting = staff.post(
        "/admin/generations/auditentry/", {"action": "delete_selected", ACTION: [entry.pk], "post": "yes"}
    )
    page = staff.get(f"/admin/generations/auditentry/{entry.pk}/change/")

    assert deleting.status_code == 200  # no such action: the list again, with a message
    assert AuditEntry.objects.get(pk=entry.pk).reason == "gore"
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert '<pre class="mj-json">{\n  &quot;was&quot;: &quot;processing&quot;\n}</pre>' in page.content.decode()


def test_the_audit_trail_filters_by_act_team_actor_and_date_and_searches_reasons(staff, ada, team, alice):
    hide = AuditEntry.objects.create(actor=ada, actor_name="ada", team=team, act="hide", reason="gore")
    AuditEntry.objects.create(actor=alice, actor_name="alice", act="flag", reason="spam", target_repr="Image 1")

    def listed(query: str) -> list[int]:
        return [e.pk for e in staff.get(f"/admin/generations/auditentry/{query}").context["cl"].result_list]

    assert listed("?act__exact=hide") == [hide.pk]
    assert listed(f"?team__id__exact={team.pk}") == [hide.pk]
    assert listed(f"?actor__id__exact={ada.pk}") == [hide.pk]
    assert listed("?q=gore") == [hide.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+", "%2B")
    assert len(listed(f"?created_at__gte={since}")) == 2


def test_flags_are_read_only_in_the_admin(staff, make_task):
    image = _flagged_image(make_task)
    flag = Flag.objects.get(image=image)
    assert staff.get("/admin/generations/flag/add/").status_code == 403
    assert staff.get(f"/admin/generations/flag/{flag.pk}/delete/").status_code == 403
    page = staff.get(f"/admin/generations/flag/{flag.pk}/change/").content.decode()
    assert f'href="/admin/generations/image/{image.pk}/change/"' in page and 'name="_save"' not in page
