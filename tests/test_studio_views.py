"""The studio's pages and actions through Django's test client: permissions, validation, idempotency."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.tasks import default_task_backend
from django.utils import timezone

from generations.models import Image, Membership, Task

HTMX = {"HX-Request": "true"}


def _imagine(client, *, prompt="a lighthouse in fog", key=None, htmx=True, **extra):
    data = {"prompt": prompt, "mode": "fast", "aspect_ratio": "16:9", "idempotency_key": str(key or uuid.uuid4())}
    return client.post("/tasks/", {**data, **extra}, headers=HTMX if htmx else {})


def _act(client, task, *, action, index=1, key=None, **extra):
    data = {"action": action, "index": index, "idempotency_key": str(key or uuid.uuid4()), **extra}
    return client.post(f"/tasks/{task.pk}/act/", data, headers=HTMX)


@pytest.mark.parametrize("url", ["/", "/studio/pulse/", "/tasks/1/", "/images/1/thumb/"])
def test_pages_require_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", ["/tasks/", "/tasks/1/act/", "/tasks/1/retry/", "/team/"])
def test_actions_require_login(client, db, url):
    response = client.post(url, {"prompt": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not Task.objects.exists()


def test_an_expired_session_sends_htmx_to_the_login_page_and_back(client, db):
    headers = {**HTMX, "HX-Current-URL": "http://testserver/?mine=1"}
    response = client.get("/studio/pulse/", headers=headers)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2F%3Fmine%3D1"


def test_health_needs_no_login(client, db):
    assert client.get("/health/").json() == {"status": "ok"}


def test_studio_shows_the_teams_cards_only(alice_client, make_task, bob, charlie):
    make_task(user=bob, status="finished")
    theirs = make_task(user=charlie, status="finished")
    response = alice_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="composer"' in body and "bob" in body
    assert "{#" not in body and "{%" not in body  # no template syntax leaks onto the page
    assert f'id="task-{theirs.pk}"' not in body


def test_mine_only_narrows_the_cards(alice_client, make_task, bob):
    hers, his = make_task(), make_task(user=bob)
    body = alice_client.get("/?mine=1").content.decode()
    assert f'id="task-{hers.pk}"' in body and f'id="task-{his.pk}"' not in body


def test_a_user_without_a_team_gets_a_personal_one(client, django_user_model):
    newcomer = django_user_model.objects.create_user("dana", password="pw")
    client.force_login(newcomer)
    assert client.get("/").status_code == 200
    assert Membership.objects.get(user=newcomer).team.name == "dana's team"


def test_imagine_creates_a_queued_task_and_queues_its_submission(
    alice_client, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _imagine(alice_client)
    assert response.status_code == 200
    assert "<html" not in response.content.decode()
    task = Task.objects.get()
    assert (task.status, task.action, task.created_by, task.root) == ("queued", "imagine", alice, task)
    assert (task.prompt.text, task.prompt.aspect_ratio) == ("a lighthouse in fog", "16:9")
    assert f'id="task-{task.pk}"' in response.content.decode()
    queued = default_task_backend.results
    assert [(r.task.name, r.args) for r in queued] == [("submit_task", [task.pk])]


def test_imagine_without_htmx_redirects(alice_client):
    response = _imagine(alice_client, htmx=False)
    assert response.status_code == 302 and response["Location"] == "/"
    assert Task.objects.count() == 1


def test_a_double_submit_makes_one_task(alice_client):
    key = uuid.uuid4()
    _imagine(alice_client, key=key)
    second = _imagine(alice_client, key=key)
    assert second.status_code == 200
    assert Task.objects.count() == 1


def test_a_stale_key_with_a_new_prompt_still_makes_a_task(alice_client):
    key = uuid.uuid4()  # the browser restored an already used form (Back)
    _imagine(alice_client, key=key, prompt="a lighthouse in fog")
    _imagine(alice_client, key=key, prompt="a lighthouse at noon")
    assert sorted(Task.objects.values_list("prompt__text", flat=True)) == [
        "a lighthouse at noon",
        "a lighthouse in fog",
    ]


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "Write a prompt first."), ("   ", "Write a prompt first."), ("x" * 4001, "4000 characters at most")],
)
def test_a_bad_prompt_gets_a_message_and_changes_nothing(alice_client, prompt, message):
    response = _imagine(alice_client, prompt=prompt)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("field", "message"), [({"mode": "relax"}, "Mode:"), ({"aspect_ratio": "7:1"}, "Aspect ratio:")]
)
def test_unknown_mode_or_ratio_is_refused(alice_client, field, message):
    response = _imagine(alice_client, **field)
    assert response.status_code == 422 and message in response.content.decode()
    assert not Task.objects.exists()


def test_pan_right_on_image_3_makes_a_child_task(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    response = _act(alice_client, parent, action="pan:right", index=3)
    assert response.status_code == 200
    child = Task.objects.get(parent=parent)
    assert (child.action, child.option, child.parent_index, child.root, child.status) == (
        "pan",
        "right",
        3,
        parent,
        "queued",
    )
    assert child.describe() == "Pan right of image 3"
    assert "Pan right of image 3" in response.content.decode()


@pytest.mark.parametrize(
    ("action", "option"),
    [
        ("vary:strong", "strong"),
        ("vary:subtle", "subtle"),
        ("upscale:subtle", "subtle"),
        ("upscale:creative", "creative"),
        ("pan:up", "up"),
        ("zoom:1.5", "1.5"),
        ("zoom:2", "2"),
        ("zoom:1", "1"),
    ],
)
def test_every_grid_action_is_accepted(alice_client, make_task, action, option):
    parent = make_task(status="finished", upstream_id="up-1")
    assert _act(alice_client, parent, action=action, index=2).status_code == 200
    child = Task.objects.get(parent=parent)
    assert (child.action, child.option) == (action.split(":")[0], option)


def test_custom_zoom_keeps_the_factor(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    assert _act(alice_client, parent, action="zoom:custom", index=4, zoom_factor="1.25").status_code == 200
    assert Task.objects.get(parent=parent).option == "1.25"


def test_distinct_buttons_of_one_menu_make_distinct_tasks_but_a_double_click_does_not(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    key = uuid.uuid4()
    _act(alice_client, parent, action="pan:left", index=1, key=key)
    _act(alice_client, parent, action="pan:left", index=1, key=key)
    _act(alice_client, parent, action="pan:right", index=1, key=key)
    assert sorted(Task.objects.filter(parent=parent).values_list("option", flat=True)) == ["left", "right"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "pan:right", "index": 5}, "The image number must be 1, 2, 3 or 4."),
        ({"action": "pan:right", "index": 0}, "The image number must be 1, 2, 3 or 4."),
        ({"action": "pan:right", "index": "two"}, "The image number must be 1, 2, 3 or 4."),
        ({"action": "pan:diagonal", "index": 1}, "Unknown pan direction"),
        ({"action": "explode", "index": 1}, "Unknown action"),
        ({"action": "zoom:custom", "index": 1, "zoom_factor": "2.5"}, "Custom zoom must be more than 1 and at most 2"),
        ({"action": "zoom:custom", "index": 1, "zoom_factor": "1"}, "Custom zoom must be more than 1 and at most 2"),
        ({"action": "zoom:custom", "index": 1}, "Custom zoom must be more than 1 and at most 2"),
    ],
)
def test_a_bad_action_gets_a_message_and_sends_nothing(alice_client, make_task, data, message):
    parent = make_task(status="finished", upstream_id="up-1")
    response = _act(alice_client, parent, **data)
    assert response.status_code == 422
    assert message in response.content.decode()
    if data.get("index") == 1:  # said in the menu of the image too
        assert f'id="task-{parent.pk}-1-feedback"' in response.content.decode()
    assert not Task.objects.filter(parent=parent).exists()


def test_an_unfinished_parent_cannot_be_acted_on(alice_client, make_task):
    parent = make_task(status="processing", upstream_id="up-1")
    response = _act(alice_client, parent, action="vary:strong")
    assert response.status_code == 422
    assert "has not finished yet" in response.content.decode()


def test_an_upscale_can_only_be_varied(alice_client, make_task):
    grid = make_task(status="finished", upstream_id="up-1")
    upscale = make_task(status="finished", action="upscale", option="subtle", parent=grid, parent_index=2)
    assert _act(alice_client, upscale, action="pan:left").status_code == 422
    assert _act(alice_client, upscale, action="vary:subtle").status_code == 200
    assert Task.objects.get(parent=upscale).action == "vary"


def test_another_teams_task_is_a_404(alice_client, make_task, charlie):
    theirs = make_task(user=charlie, status="failed", upstream_id="up-c")
    assert alice_client.get(f"/tasks/{theirs.pk}/").status_code == 404
    assert _act(alice_client, theirs, action="vary:strong").status_code == 404
    retry = alice_client.post(f"/tasks/{theirs.pk}/retry/", {"idempotency_key": str(uuid.uuid4())})
    assert retry.status_code == 404
    assert Task.objects.count() == 1


def test_retry_sends_a_failed_task_again_beside_it(alice_client, make_task):
    failed = make_task(status="failed", error="boom")
    response = alice_client.post(f"/tasks/{failed.pk}/retry/", {"idempotency_key": str(uuid.uuid4())}, headers=HTMX)
    assert response.status_code == 200
    again = Task.objects.exclude(pk=failed.pk).get()
    assert (again.action, again.prompt, again.status) == ("imagine", failed.prompt, "queued")


def test_a_finished_task_cannot_be_retried(alice_client, make_task):
    done = make_task(status="finished")
    response = alice_client.post(f"/tasks/{done.pk}/retry/", {"idempotency_key": str(uuid.uuid4())}, headers=HTMX)
    assert response.status_code == 422
    assert Task.objects.count() == 1


def test_reroll_imagines_the_same_prompt_again(alice_client, make_task):
    grid = make_task(status="finished", upstream_id="up-1")
    assert _act(alice_client, grid, action="reroll", index="").status_code == 200
    reroll = Task.objects.get(parent=grid)
    assert (reroll.action, reroll.prompt, reroll.parent_index) == ("reroll", grid.prompt, None)


def test_pulse_is_204_when_nothing_changed(alice_client, make_task):
    make_task(status="finished", updated_at=timezone.now() - timedelta(minutes=1))
    since = timezone.now().isoformat()
    response = alice_client.get("/studio/pulse/", {"since": since}, headers=HTMX)
    assert response.status_code == 204


def test_pulse_sends_changed_cards_out_of_band(alice_client, make_task, bob, charlie):
    since = timezone.now() - timedelta(seconds=30)
    make_task(status="finished", updated_at=since - timedelta(minutes=5))
    changed = make_task(user=bob, status="processing", percentage=60)
    foreign = make_task(user=charlie, status="processing")
    response = alice_client.get("/studio/pulse/", {"since": since.isoformat()}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="task-{changed.pk}"' in body and 'hx-swap-oob="true"' in body
    assert f'id="task-{foreign.pk}"' not in body
    assert 'hx-trigger="every 0.5s, catch-up"' in body  # something is in flight: the page keeps asking often


def test_images_are_served_to_the_team_only(alice_client, make_task, client, charlie):
    task = make_task(status="finished")
    image = Image.objects.create(task=task, index=1, source_url="https://cdn.apiframe.pro/x.png")
    image.thumbnail.save("t.webp", ContentFile(b"RIFF....WEBP"), save=False)
    image.mirrored_at = timezone.now()
    image.save()
    response = alice_client.get(f"/images/{image.pk}/thumb/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"RIFF....WEBP"
    # Named as a download is, never by the stored (unguessable) name.
    assert response["Content-Disposition"] == f'inline; filename="a-quiet-harbour-{task.pk}-1.webp"'
    assert "private" in response["Cache-Control"]
    assert alice_client.get(f"/images/{image.pk}/full/").status_code == 404  # not saved yet
    image.file.save("f.png", ContentFile(b"\x89PNG...."))
    download = alice_client.get(f"/images/{image.pk}/full/", {"download": "1"})
    assert download["Content-Disposition"] == f'attachment; filename="a-quiet-harbour-{task.pk}-1.png"'
    client.force_login(charlie)
    assert client.get(f"/images/{image.pk}/thumb/").status_code == 404


def test_pulse_keeps_mine_only_from_the_page_that_asks(alice_client, make_task, bob):
    hers, his = make_task(status="processing"), make_task(user=bob, status="processing")
    since = (timezone.now() - timedelta(seconds=30)).isoformat()
    headers = {**HTMX, "HX-Current-URL": "http://testserver/?mine=1"}
    body = alice_client.get("/studio/pulse/", {"since": since}, headers=headers).content.decode()
    assert f'id="task-{hers.pk}"' in body and f'id="task-{his.pk}"' not in body
    assert "mine=1" in body  # the next pulse keeps asking for hers only


def test_pulse_survives_a_mangled_cursor(alice_client, make_task):
    make_task(status="finished", updated_at=timezone.now() - timedelta(minutes=1))
    response = alice_client.get("/studio/pulse/", {"since": "2026-13-45T99:00:00"}, headers=HTMX)
    assert response.status_code == 204


@pytest.mark.parametrize("factor", ["abc", "NaN", "Infinity", "1e999", "", "1.004", "2.005", "2.00000000000000001"])
def test_a_custom_zoom_that_is_not_a_number_in_range_is_explained(alice_client, make_task, factor):
    parent = make_task(status="finished", upstream_id="up-1")
    response = _act(alice_client, parent, action="zoom:custom", zoom_factor=factor)
    assert response.status_code == 422
    assert "Custom zoom must be more than 1 and at most 2" in response.content.decode()
    assert not Task.objects.exclude(pk=parent.pk).exists()


def test_a_custom_zoom_is_sent_with_two_decimals(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    assert _act(alice_client, parent, action="zoom:custom", zoom_factor=" 1.999 ").status_code == 200
    assert Task.objects.get(parent=parent).option == "2"


def test_what_sits_in_the_zoom_box_does_not_block_another_button(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    assert _act(alice_client, parent, action="vary:strong", zoom_factor="oops").status_code == 200


def test_odd_inputs_get_answers_not_errors(alice_client, make_task):
    task = make_task(status="failed")
    assert alice_client.post("/team/", {"team": "abc"}).status_code == 404
    pulse = alice_client.get("/studio/pulse/", {"since": "0001-01-01T00:00:00+00:00"}, headers=HTMX)
    assert pulse.status_code == 200
    retry = alice_client.post(f"/tasks/{task.pk}/retry/", {"idempotency_key": "nope"}, headers=HTMX)
    assert retry.status_code == 422 and "reload it" in retry.content.decode()
    assert _act(alice_client, task, action="x" * 500).status_code == 422


def test_a_missing_image_file_is_a_404(alice_client, make_task):
    task = make_task(status="finished")
    image = Image.objects.create(
        task=task,
        index=1,
        source_url="https://cdn.apiframe.pro/x.png",
        thumbnail="thumbs/gone.webp",
        mirrored_at=timezone.now(),
    )
    assert alice_client.get(f"/images/{image.pk}/thumb/").status_code == 404


@pytest.mark.parametrize("tied", [False, True])
def test_a_burst_of_changes_is_sent_over_several_pulses(alice_client, make_task, tied):
    from generations.views.studio import PULSE_MAX_CARDS

    start = timezone.now() - timedelta(seconds=20)
    stamps = [start if tied else start + timedelta(milliseconds=i) for i in range(60)]  # tied: one sweep
    tasks = [make_task(status="processing", updated_at=stamp) for stamp in stamps]
    url, sent = f"/studio/pulse/?since={start.isoformat().replace('+', '%2B')}", set()
    for _ in range(3):
        response = alice_client.get(url, headers=HTMX)
        if response.status_code == 204:
            break
        body = response.content.decode()
        page = {t.pk for t in tasks if f'id="task-{t.pk}"' in body}
        assert len(page) <= PULSE_MAX_CARDS
        sent |= page
        url = html.unescape(re.search(r'id="pulse" hx-get="([^"]+)"', body).group(1))
    assert sent == {t.pk for t in tasks}


def test_the_login_page_names_the_demo_login_in_sandbox_mode_only(client, db, settings):
    settings.DEBUG, settings.APIFRAME_IS_SANDBOX = True, True
    assert "mjstudio-demo" in client.get("/accounts/login/").content.decode()
    settings.APIFRAME_IS_SANDBOX = False
    assert "mjstudio-demo" not in client.get("/accounts/login/").content.decode()


def test_without_htmx_a_refused_action_comes_back_as_a_message(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    data = {"action": "pan:right", "index": 9, "idempotency_key": str(uuid.uuid4())}
    response = alice_client.post(f"/tasks/{parent.pk}/act/", data, follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert "The image number must be 1, 2, 3 or 4." in response.content.decode()
    assert Task.objects.count() == 1


# --- Headers and parameters never cause a 500 -----------------------------------------------------------------


@pytest.mark.parametrize("current", ["http://[x/a", "http://testserver:port/", "http://[::1/?mine=1"])
def test_a_malformed_current_url_still_sends_an_expired_session_to_log_in(client, db, current):
    response = client.get("/studio/pulse/", headers={**HTMX, "HX-Current-URL": current})
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2F"


def test_a_malformed_current_url_reads_as_no_mine_only_filter(alice_client, make_task, bob):
    hers, his = make_task(status="processing"), make_task(user=bob, status="processing")
    since = (timezone.now() - timedelta(seconds=30)).isoformat()
    headers = {**HTMX, "HX-Current-URL": "http://[x/?mine=1"}
    response = alice_client.get("/studio/pulse/", {"since": since}, headers=headers)
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="task-{hers.pk}"' in body and f'id="task-{his.pk}"' in body


@pytest.mark.parametrize("after", ["²", "٣", "１", "-1", "0", "9" * 30, str(2**63)])
def test_pulse_reads_an_after_that_is_no_row_id_as_absent(alice_client, make_task, after):
    task = make_task(status="processing", updated_at=timezone.now() - timedelta(seconds=1))
    since = (timezone.now() - timedelta(seconds=30)).isoformat()
    response = alice_client.get("/studio/pulse/", {"since": since, "after": after}, headers=HTMX)
    assert response.status_code == 200
    assert f'id="task-{task.pk}"' in response.content.decode()


@pytest.mark.parametrize(
    ("since", "status"),
    [
        ("9999-12-31T23:59:59-05:00", 204),  # year 10000 in UTC: clamped, nothing changed after it
        ("9999-12-31T23:59:59.999999", 204),
        ("0001-01-01T00:00:00+05:00", 200),  # before year 1 in UTC: clamped, everything changed after it
        ("2026-01-01T00:00:00+99:00", 204),  # no such offset: read as absent, i.e. now
        ("2026-02-30T00:00:00", 204),
    ],
)
def test_pulse_clamps_a_cursor_outside_what_databases_store(alice_client, make_task, since, status):
    make_task(status="finished", updated_at=timezone.now() - timedelta(minutes=1))
    response = alice_client.get("/studio/pulse/", {"since": since}, headers=HTMX)
    assert response.status_code == status


@pytest.mark.parametrize("team_id", ["²", "٣", "9" * 30, str(2**63), "-1", " 1", ""])
def test_switching_to_a_team_that_is_no_number_or_too_big_is_a_404(alice_client, alice, team_id):
    before = alice_client.session.get("team_id")
    response = alice_client.post("/team/", {"team": team_id})
    assert response.status_code == 404
    assert alice_client.session.get("team_id") == before
    assert Membership.objects.filter(user=alice).count() == 1


def test_switching_to_another_of_ones_teams_still_works(alice_client, alice, charlie):
    other = charlie.memberships.get(chosen_at__isnull=False).team
    Membership.objects.create(team=other, user=alice)
    response = alice_client.post("/team/", {"team": str(other.pk)})
    assert response.status_code == 302
    assert alice_client.session["team_id"] == other.pk


@pytest.mark.parametrize("page", ["/", "/library/", "/collections/", "/usage/", "/tasks/{task}/"])
def test_every_page_offers_the_team_menu_to_a_member_of_two_teams(alice_client, alice, charlie, make_task, page):
    other = charlie.memberships.get(chosen_at__isnull=False).team
    Membership.objects.create(team=other, user=alice)
    task = make_task(status="finished")
    response = alice_client.get(page.format(task=task.pk))
    assert response.status_code == 200
    menu = re.search(r'<select id="team-select" name="team">(.*?)</select>', response.content.decode(), re.S)
    assert menu is not None, page
    assert f'value="{other.pk}"' in menu.group(1) and f'value="{task.team_id}" selected' in menu.group(1)


@pytest.mark.parametrize(
    "url", ["/tasks/{n}/", "/tasks/{n}/act/", "/tasks/{n}/retry/", "/images/{n}/thumb/", "/images/{n}/full/"]
)
@pytest.mark.parametrize("n", ["9" * 30, str(2**63), str(2**64)])
def test_a_primary_key_beyond_the_databases_range_is_a_404(alice_client, url, n):
    method = alice_client.get if "/act/" not in url and "/retry/" not in url else alice_client.post
    assert method(url.format(n=n)).status_code == 404


@pytest.mark.parametrize("field", ["prompt", "mode", "aspect_ratio", "idempotency_key"])
def test_a_nul_character_in_the_composer_is_a_form_error(alice_client, field):
    data = {"prompt": "a lighthouse", "mode": "fast", "aspect_ratio": "1:1", "idempotency_key": str(uuid.uuid4())}
    data[field] += "\x00"
    response = alice_client.post("/tasks/", data, headers=HTMX)
    assert response.status_code == 422
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"action": "pan:right\x00", "index": "1"},
        {"action": "zoom:custom", "index": "1", "zoom_factor": "1.5\x00"},
        {"action": "pan:right", "index": "²"},
        {"action": "pan:right", "index": "9" * 30},
    ],
)
def test_a_nul_or_odd_digit_in_an_action_is_a_form_error(alice_client, make_task, data):
    parent = make_task(status="finished", upstream_id="up-1")
    response = alice_client.post(
        f"/tasks/{parent.pk}/act/", {**data, "idempotency_key": str(uuid.uuid4())}, headers=HTMX
    )
    assert response.status_code == 422
    assert Task.objects.count() == 1


# --- Cards: one menu per page, constant queries, light HTML ------------------------------------------------


def _finished_grids(make_task, count, *, user=None, action="imagine"):
    """Finished tasks with every image saved (files are not needed to render a page)."""
    tasks = [
        make_task(user=user, status="finished", upstream_id=f"up-{uuid.uuid4()}", action=action) for _ in range(count)
    ]
    indexes = (1, 2, 3, 4) if action != "upscale" else (1,)
    Image.objects.bulk_create(
        Image(
            task=task,
            index=i,
            source_url=f"https://cdn.apiframe.pro/{task.pk}-{i}.png",
            file=f"images/{uuid.uuid4().hex}.png",
            thumbnail=f"thumbs/{uuid.uuid4().hex}.webp",
            width=1024,
            height=1024,
            mirror_attempts=1,
            mirrored_at=timezone.now(),
        )
        for task in tasks
        for i in indexes
    )
    return tasks


def _studio_queries(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get("/")  # the first visit settles the session's team
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/")
    assert response.status_code == 200
    return len(captured), response.content.decode()


def test_the_studio_asks_the_same_number_of_queries_for_5_or_24_cards(alice_client, make_task, bob):
    from generations.views.studio import STUDIO_PAGE_SIZE

    _finished_grids(make_task, 5)
    few, body = _studio_queries(alice_client)
    assert body.count('<article id="task-') == 5
    _finished_grids(make_task, STUDIO_PAGE_SIZE - 5, user=bob)
    make_task(status="failed", error="boom")  # another kind of card, still no extra query
    many, body = _studio_queries(alice_client)
    assert body.count('<article id="task-') == STUDIO_PAGE_SIZE
    # session, user, team, teams, the composer's collections, cards, their images, two for "anything in flight?",
    # the viewer's role (whether the images offer approve and reject, and the queue's pause button)
    assert many == few <= 10


def test_a_page_of_24_finished_grids_has_one_menu_and_weighs_under_88_kb(alice_client, make_task):
    tasks = _finished_grids(make_task, 24)
    for task in tasks:  # long prompts, the heaviest kind of card
        task.prompt.text = "a quiet coffee shop at dawn, warm tones, film grain, " * 6
        task.prompt.save()
    body = alice_client.get("/").content
    assert body.count(b'<article id="task-') == 24
    # 80 KB until each image gained its review button and each card its Flag link (about 8 KB for 24 cards of
    # these longest prompts); bench/library.py's cards with everyday prompts weigh 77 KB.
    assert len(body) <= 88 * 1024, len(body)
    page = body.decode()
    assert page.count('id="image-menu"') == 1 and page.count("popover") >= 1
    assert page.count('aria-label="Actions for image ') == 96
    for task in tasks[:3]:  # each image's button says which image and where its menu posts
        assert f'data-act="/tasks/{task.pk}/act/"' in page
        assert f'action="/tasks/{task.pk}/actions/"' in page


def test_the_one_menu_is_rendered_from_the_action_table(alice_client, make_task):
    from generations import actions

    _finished_grids(make_task, 1)
    page = alice_client.get("/").content.decode()
    menu = page[page.index('id="image-menu"') :]
    for choice in actions.IMAGE_ACTIONS.values():
        assert f'value="{choice.value}" data-name="{choice.name}"' in menu
    assert 'data-valid-on="grid upscale"' in menu and 'data-valid-on="grid"' in menu
    assert "4 credits" in menu  # the price, from settings.MJSTUDIO_CREDIT_PRICES


def test_without_js_an_images_actions_open_on_a_page_of_their_own(alice_client, make_task):
    grid = _finished_grids(make_task, 1)[0]
    response = alice_client.get(f"/tasks/{grid.pk}/actions/", {"index": "3"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'aria-label="Pan right, image 3"' in page and 'aria-label="Custom Zoom, image 3"' in page
    assert f'action="/tasks/{grid.pk}/act/"' in page and 'name="index" value="3"' in page
    assert f'id="task-{grid.pk}-3-feedback"' in page
    assert "popover" not in page  # a plain form, posted without JS
    key = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)
    sent = {"action": "pan:right", "index": "3", "idempotency_key": key, "zoom_factor": "1.25"}
    assert alice_client.post(f"/tasks/{grid.pk}/act/", sent).status_code == 302
    assert alice_client.post(f"/tasks/{grid.pk}/act/", sent).status_code == 302  # sent twice: one task
    child = Task.objects.get(parent=grid)
    assert (child.action, child.option, child.parent_index) == ("pan", "right", 3)


def test_an_upscales_own_menu_page_offers_vary_only(alice_client, make_task):
    grid = _finished_grids(make_task, 1)[0]
    upscale = _finished_grids(make_task, 1, action="upscale")[0]
    upscale.parent, upscale.option, upscale.parent_index = grid, "subtle", 2
    upscale.save()
    page = alice_client.get(f"/tasks/{upscale.pk}/actions/", {"index": "1"}).content.decode()
    assert 'aria-label="Vary (Subtle), image 1"' in page
    assert "Pan right" not in page and "Upscale (Creative)" not in page


@pytest.mark.parametrize("index", ["5", "0", "", "x"])
def test_a_menu_page_for_no_such_image_is_a_404(alice_client, make_task, index):
    grid = _finished_grids(make_task, 1)[0]
    assert alice_client.get(f"/tasks/{grid.pk}/actions/", {"index": index}).status_code == 404


def test_a_menu_page_is_a_404_for_another_team_or_an_unsaved_image(alice_client, make_task, charlie):
    theirs = _finished_grids(make_task, 1, user=charlie)[0]
    assert alice_client.get(f"/tasks/{theirs.pk}/actions/", {"index": "1"}).status_code == 404
    saving = _finished_grids(make_task, 1)[0]
    Image.objects.filter(task=saving, index=4).update(mirrored_at=None)
    assert alice_client.get(f"/tasks/{saving.pk}/actions/", {"index": "1"}).status_code == 404


def test_an_image_action_answer_sends_no_stray_key_but_reroll_gets_a_fresh_one(alice_client, make_task):
    parent = make_task(status="finished", upstream_id="up-1")
    body = _act(alice_client, parent, action="pan:right", index=3).content.decode()
    assert "idempotency_key" not in body  # the menu makes its own key each time it opens
    body = _act(alice_client, parent, action="reroll", index="").content.decode()
    assert f'id="key-{parent.pk}-reroll"' in body and 'hx-swap-oob="true"' in body


@pytest.mark.parametrize(
    ("action", "option", "index", "words"),
    [
        ("imagine", "", None, "Imagine"),
        ("reroll", "", None, "Reroll"),
        ("vary", "strong", 2, "Vary (strong) of image 2"),
        ("upscale", "creative", 1, "Upscale (creative) of image 1"),
        ("pan", "up", 4, "Pan up of image 4"),
        ("zoom", "1", 3, "Make square of image 3"),
        ("zoom", "2", 3, "Zoom out 2× of image 3"),
        ("zoom", "1.25", 1, "Zoom out 1.25× of image 1"),
    ],
)
def test_it_describes_every_action_from_the_table(action, option, index, words):
    assert Task(action=action, option=option, parent_index=index).describe() == words


def test_the_forms_action_sets_come_from_the_table():
    from generations import actions
    from generations.forms import GRID_IMAGE_ACTIONS, UPSCALE_IMAGE_ACTIONS

    assert set(actions.IMAGE_ACTIONS) == GRID_IMAGE_ACTIONS
    assert {"vary:strong", "vary:subtle"} == UPSCALE_IMAGE_ACTIONS
    assert actions.price("upscale") == 4 and actions.price("unknown") == 0


def test_the_team_is_busy_while_a_task_flies_or_an_image_is_being_saved(make_task, team, charlie):
    from generations.views.studio import team_is_busy

    done = _finished_grids(make_task, 1)[0]
    make_task(user=charlie, status="processing")  # another team's work does not count
    Image.objects.filter(task=done, index=1).update(mirrored_at=None, mirror_attempts=8)  # gave up: not busy
    assert team_is_busy(team) is False
    Image.objects.filter(task=done, index=2).update(mirrored_at=None, mirror_attempts=3)
    assert team_is_busy(team) is True
    Image.objects.filter(task=done, index=2).update(mirrored_at=timezone.now())
    make_task(status="pending")
    assert team_is_busy(team) is True


@pytest.mark.parametrize(
    ("which", "sqlite_plan", "postgresql_indexes"),
    [
        (
            "tasks",
            "USING COVERING INDEX task_team_status (team_id=? AND status=?)",
            ("task_team_status", "task_status_heard", "task_status_deadline"),
        ),
        (
            "images",
            "USING INDEX image_mirror_pending (mirrored_at=? AND mirror_attempts<?)",
            ("image_mirror_pending", "image_not_mirrored"),
        ),
    ],
)
def test_the_in_flight_check_reads_an_index_not_the_teams_history(
    make_task, team, alice, which, sqlite_plan, postgresql_indexes
):
    from django.db import connection

    from tests.planner import history_for_the_planner

    make_task(status="finished")
    queries = {
        "tasks": Task.objects.for_team(team).in_flight(),
        "images": Image.objects.filter(
            task__team=team, mirrored_at=None, mirror_attempts__lt=Image.MIRROR_MAX_ATTEMPTS
        ),
    }
    sql, params = queries[which].query.exists().get_compiler(connection=connection).as_sql()  # as .exists() asks
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert sqlite_plan in plan, plan
        else:  # PostgreSQL: an index of the rows in flight (its planner picks which), never the team's rows
            history_for_the_planner(team, alice)
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert any(index in plan for index in postgresql_indexes), plan


def test_a_card_says_how_each_unsaved_image_is_doing_and_offers_no_actions_yet(alice_client, make_task):
    task = _finished_grids(make_task, 1)[0]
    Image.objects.filter(task=task, index=2).update(mirrored_at=None, mirror_attempts=3, mirror_error="CDN said 500")
    Image.objects.filter(task=task, index=3).update(mirrored_at=None, mirror_attempts=8, mirror_error="<too big>")
    Image.objects.filter(task=task, index=4).update(mirrored_at=None, mirror_attempts=0)
    page = alice_client.get("/").content.decode()
    card = page[page.index(f'<article id="task-{task.pk}"') : page.index("</article>")]
    assert card.count('class="shot__link"') == 1  # image 1, saved
    assert "Saving failed, trying again…" in card and "Saving…" in card
    assert "Could not save this image: &lt;too big&gt;" in card  # escaped
    assert 'data-ready="false"' in card and "Actions for image" not in card
