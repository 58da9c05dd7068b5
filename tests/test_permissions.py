"""The permission matrix (issue #8): every URL of the studio, with every method it accepts and one it refuses, for
five actors; and every action of every admin, for the same five. A guard fails when a URL name or an admin action
is missing from the tables, so a new route or action must say here who may use it.

Actors: a member of team A, an owner of team A, staff (a member of team A with is_staff and every permission), the
owner of another team B (working in B), and an anonymous visitor; each has a personal team too. Every object a studio
URL names is team A's, but for the invitation team B sent to team A's member (only the invitee may answer it).

Outcomes: `login` (sent to the site's login: a 302, or an htmx redirect), `ok` (2xx or 3xx, not to a login
page), or a status (403, 404, 405, 401). A refused request, and any GET, changes no row of any table (sessions
aside); an accepted POST changes at least one; another team's owner changes none of team A's rows. Each actor's
request runs in a savepoint rolled back afterwards: all start from the same rows.

In the admin, staff run every action (a reason first where one is asked for); the others never reach it:
anonymous visitors are sent to the site's login (it comes first), members and owners to the admin's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import get_resolver, reverse
from django.utils import timezone

from generations.models import (
    AuditEntry,
    BlockedTerm,
    Collection,
    CollectionItem,
    Favourite,
    Flag,
    Image,
    Invitation,
    Membership,
    Prompt,
    Task,
    Team,
    WebhookDelivery,
)
from generations.services import blocklist, members, moderation, queue, teams, usage
from tests.support.teams import join

ACTORS = ("member", "owner", "staff", "other", "anonymous")
SECRET = "whsec_matrix-2718"
LOGIN, ADMIN_LOGIN = "/accounts/login/", "/admin/login/"


# --- The world: team A's objects, and the five actors ---------------------------------------------------------


@dataclass
class World:
    users: dict[str, object]  # by actor; anonymous is None
    ids: dict[str, object] = field(default_factory=dict)  # what paths and bodies name: {task}, {image}, ...


def _saved_image(task: Task, index: int, **fields) -> Image:
    image = Image(task=task, index=index, source_url=f"https://cdn.apiframe.pro/{task.pk}-{index}.png", **fields)
    if "mirror_attempts" not in fields:
        image.file.save("f.png", ContentFile(b"\x89PNG matrix"), save=False)
        image.thumbnail.save("t.webp", ContentFile(b"RIFF matrix"), save=False)
        image.mirrored_at = timezone.now()
    image.save()
    return image


@pytest.fixture
def world(settings, monkeypatch, make_task, team, alice, bob, charlie, django_user_model) -> Iterator[World]:
    from generations.apiframe import ApiframeClient, TaskState

    settings.APIFRAME_WEBHOOK_SECRET = SECRET
    # Refresh from Apiframe, wherever it is asked: the tasks are processing. No test here leaves the machine.
    monkeypatch.setattr(
        ApiframeClient,
        "fetch_many",
        lambda self, ids: [
            TaskState.from_payload({"task_id": i, "status": "processing", "percentage": 50}) for i in ids
        ],
    )
    cache.clear()
    cache.set(usage.ACCOUNT_CACHE_KEY, usage.AccountCredits(credits=1000, checked_at=timezone.now()), 600)

    owner = django_user_model.objects.create_user("olivia", password="pw-olivia")
    join(team, owner, role=Membership.Role.OWNER)
    staff = django_user_model.objects.create_user("sam", password="pw-sam", is_staff=True)
    staff.user_permissions.set(Permission.objects.all())  # staff with permissions, not a superuser
    join(team, staff)
    Membership.objects.filter(user=charlie).update(role=Membership.Role.OWNER)  # team B's owner, working in B
    dora = django_user_model.objects.create_user("dora", password="pw-dora")  # in no team yet
    for user in (alice, owner, staff, charlie):  # made on a first request otherwise: a GET would write
        teams.personal_team_ensure(user=user)
    invited = members.invitation_create(actor=owner, team=team, username="erin", role="member")
    theirs = Team.objects.get(name="Other Studio")
    invitation_in = members.invitation_create(actor=charlie, team=theirs, username="alice", role="member")

    grid = make_task(status="finished", upstream_id="up-grid", finished_at=timezone.now())
    images = [_saved_image(grid, i) for i in range(1, 5)]
    moderation.flag_create(user=bob, team=team, reason="violence", image=images[0])
    moderation.items_hide(actor=owner, items=Image.objects.filter(pk=images[3].pk), reason="gore")
    flagged = make_task(status="finished", upstream_id="up-flagged", finished_at=timezone.now())
    moderation.flag_create(user=bob, team=team, reason="off_brief", task=flagged)
    hidden = make_task(status="finished", upstream_id="up-hidden", finished_at=timezone.now())
    moderation.items_hide(actor=owner, items=Task.objects.filter(pk=hidden.pk), reason="spam")
    failed = make_task(status="failed", upstream_id="up-failed", error="Banned prompt")
    stuck = make_task(status="pending", upstream_id="up-stuck", deadline=timezone.now() - timedelta(hours=1))
    gave_up = make_task(status="finished", upstream_id="up-gave-up", finished_at=timezone.now())
    lost = _saved_image(gave_up, 1, mirror_attempts=Image.MIRROR_MAX_ATTEMPTS, mirror_error="503")
    delivery = WebhookDelivery.objects.create(
        apiframe_task_id="up-stuck",
        reported_status="processing",
        outcome="unknown_task",
        body={"task_id": "up-stuck", "status": "processing", "percentage": 50},
    )
    make_task(user=charlie, status="finished", upstream_id="up-theirs")  # team B's own work
    collection = Collection.objects.create(team=team, name="Moodboard", created_by=alice)
    term = blocklist.term_add(actor=owner, team=team, text="ca phe")
    empty = Team.objects.create(name="Empty studio")  # the admin deletes a team with no work only (tasks are kept)
    group = Group.objects.create(name="editors")
    attempt = AccessAttempt.objects.create(
        username="mallory", ip_address="10.0.0.9", user_agent="x", http_accept="*/*", path_info="/accounts/login/",
        get_data="", post_data="", failures_since_start=3,
    )  # fmt: skip
    AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=timezone.now() - timedelta(days=1))  # expired
    fresh = AccessAttempt.objects.create(
        username="trudy", ip_address="10.0.0.8", user_agent="x", http_accept="*/*", path_info="/accounts/login/",
        get_data="", post_data="", failures_since_start=1,
    )  # fmt: skip
    access_log = AccessLog.objects.create(username="mallory", ip_address="10.0.0.9", user_agent="x", path_info="/")
    failure_log = AccessFailureLog.objects.create(
        username="mallory", ip_address="10.0.0.9", user_agent="x", path_info="/", locked_out=False
    )
    yield World(
        users={"member": alice, "owner": owner, "staff": staff, "other": charlie, "anonymous": None},
        ids={
            "team": team.pk,
            "empty_team": empty.pk,
            "task": grid.pk,
            "image": images[0].pk,
            "image2": images[1].pk,
            "hidden_image": images[3].pk,
            "flagged": flagged.pk,
            "hidden": hidden.pk,
            "failed": failed.pk,
            "stuck": stuck.pk,
            "gave_up": gave_up.pk,
            "lost_image": lost.pk,
            "delivery": delivery.pk,
            "collection": collection.pk,
            "term": term.pk,
            "membership": Membership.objects.get(user=bob).pk,
            "invitation": invited.pk,
            "invitation_in": invitation_in.pk,
            "dora": dora.pk,
            "group": group.pk,
            "attempt": attempt.pk,
            "fresh_attempt": fresh.pk,
            "access_log": access_log.pk,
            "failure_log": failure_log.pk,
            "key": str(uuid.uuid4()),
        },
    )
    cache.clear()  # the account's credits set above


def _snapshot() -> dict[str, list]:
    """Every row of every table but the sessions (a login writes one): what a refused request must leave alone."""
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.label != "sessions.Session" and not model._meta.proxy
    }


# Team A's rows, found through the team: another team's owner changes none of them, whatever the answer.
TEAM_SCOPED = {
    Team: "pk", Task: "team", Prompt: "team", Image: "task__team", Collection: "team", BlockedTerm: "team",
    Membership: "team", Flag: "team", AuditEntry: "team", CollectionItem: "collection__team", Invitation: "team",
    Favourite: "image__task__team",
}  # fmt: skip


def _team_rows(team_id: int) -> list[list]:
    return [
        list(model.objects.filter(**{path: team_id}).order_by("pk").values_list())
        for model, path in TEAM_SCOPED.items()
    ]


def _changed(before: dict[str, list], after: dict[str, list]) -> list[str]:
    return [label for label in before if before[label] != after[label]]


def _as(world: World, actor: str) -> Client:
    client = Client()
    if world.users[actor] is not None:
        client.force_login(world.users[actor])
    return client


# --- The studio's URLs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str  # the URL name in the generations namespace
    method: str
    expect: str  # one outcome per actor, in ACTORS' order
    args: tuple[str, ...] = ()  # the URL's arguments: a key of World.ids, or the value itself
    data: dict = field(default_factory=dict)  # query (GET) or body (POST); "{key}" takes World.ids' value
    htmx: bool = False
    secret: bool = False  # the webhook's secret header
    paused: bool = False  # team A's queue paused first
    writes: bool = True  # an accepted POST changes some row (switching teams only changes the session)

    @property
    def id(self) -> str:
        words = [self.name, self.method, *self.args[:1], self.data.get("state"), "secret" * self.secret]
        return "-".join(str(word) for word in words if word)


KEY = {"idempotency_key": "{key}"}
PROMPT = {"prompt": "a lighthouse in fog", "mode": "fast", "aspect_ratio": "1:1", **KEY}
SINCE = {"since": "2000-01-01T00:00:00+00:00"}
VARY = {"action": "vary:subtle", "index": "1", **KEY}
ADD = {"collection": "{collection}", "op": "add"}
CLEAR = {"items": "image:{image}", "act": "clear", "reason": "checked"}
UPDATE = {"task_id": "up-stuck", "status": "processing"}  # the webhook's body
# fmt: off
ROWS = [
    #   name                  method  member owner staff other anonymous
    Row("studio",             "GET",  "ok    ok    ok    ok    login"),
    Row("studio",             "POST", "405   405   405   405   login"),
    Row("pulse",              "GET",  "ok    ok    ok    ok    login", data=SINCE, htmx=True),
    Row("pulse",              "POST", "405   405   405   405   login", htmx=True),
    # Live push is off in tests (no Redis, a WSGI client): the stream is 404 for everyone logged in (tests/test_live.py
    # covers it on). Anonymous visitors are sent to log in either way.
    # Under WSGI there is no stream to open; an open stream ending with its access is tests/test_live_access.py's.
    Row("studio_events",      "GET",  "404   404   404   404   login"),
    Row("studio_events",      "POST", "405   405   405   405   login"),
    Row("task_create",        "POST", "ok    ok    ok    ok    login", data=PROMPT),
    Row("task_create",        "GET",  "405   405   405   405   login"),
    Row("task_detail",        "GET",  "ok    ok    ok    404   login", ("task",)),
    Row("task_detail",        "GET",  "404   404   ok    404   login", ("hidden",)),  # hidden by a moderator
    Row("task_detail",        "POST", "405   405   405   405   login", ("task",)),
    Row("task_act",           "POST", "ok    ok    ok    404   login", ("task",), VARY),
    Row("task_act",           "GET",  "405   405   405   405   login", ("task",)),
    Row("task_image_actions", "GET",  "ok    ok    ok    404   login", ("task",), {"index": "1"}),
    Row("task_image_actions", "POST", "405   405   405   405   login", ("task",)),
    Row("task_retry",         "POST", "ok    ok    ok    404   login", ("failed",), KEY),
    Row("task_retry",         "GET",  "405   405   405   405   login", ("failed",)),
    Row("task_export",        "GET",  "ok    ok    ok    404   login", ("task",)),
    Row("task_export",        "POST", "405   405   405   405   login", ("task",)),
    Row("task_flag",          "GET",  "ok    ok    ok    404   login", ("task",)),
    Row("task_flag",          "POST", "ok    ok    ok    404   login", ("task",), {"reason": "off_brief"}),
    Row("task_flag",          "PUT",  "405   405   405   405   login", ("task",)),
    Row("collections",        "GET",  "ok    ok    ok    ok    login"),
    Row("collections",        "POST", "405   405   405   405   login"),
    Row("collection_create",  "POST", "ok    ok    ok    ok    login", data={"name": "Mood"}),
    Row("collection_create",  "GET",  "405   405   405   405   login"),
    Row("collection_rename",  "POST", "ok    ok    ok    404   login", ("collection",), {"name": "Renamed"}),
    Row("collection_rename",  "GET",  "405   405   405   405   login", ("collection",)),
    Row("collection_delete",  "POST", "ok    ok    ok    404   login", ("collection",)),
    Row("collection_delete",  "GET",  "405   405   405   405   login", ("collection",)),
    Row("collection_export",  "GET",  "ok    ok    ok    404   login", ("collection",)),
    Row("collection_export",  "POST", "405   405   405   405   login", ("collection",)),
    Row("image_collections",  "GET",  "ok    ok    ok    404   login", ("image",)),
    Row("image_collections",  "POST", "ok    ok    ok    404   login", ("image",), ADD),
    Row("image_collections",  "PUT",  "405   405   405   405   login", ("image",)),
    Row("image_flag",         "GET",  "ok    ok    ok    404   login", ("image",)),
    Row("image_flag",         "POST", "ok    ok    ok    404   login", ("image",), {"reason": "sexual"}),
    Row("image_flag",         "PUT",  "405   405   405   405   login", ("image",)),
    Row("compare",            "GET",  "ok    ok    ok    404   login", data={"images": "{image},{image2}"}),
    Row("compare",            "POST", "405   405   405   405   login"),
    Row("library",            "GET",  "ok    ok    ok    ok    login"),
    Row("library",            "POST", "405   405   405   405   login"),
    Row("library_stack",      "GET",  "ok    ok    ok    404   login", ("task",), htmx=True),
    Row("library_stack",      "POST", "405   405   405   405   login", ("task",)),
    Row("image_favourite",    "POST", "ok    ok    ok    404   login", ("image",), {"on": "1"}),
    Row("image_favourite",    "GET",  "405   405   405   405   login", ("image",)),
    Row("image_review",       "POST", "ok    ok    ok    404   login", ("image",), {"state": "shortlisted"}),
    Row("image_review",       "POST", "403   ok    ok    404   login", ("image",), {"state": "approved"}, htmx=True),
    Row("image_review",       "GET",  "405   405   405   405   login", ("image",)),
    Row("approved_export",    "GET",  "ok    ok    ok    ok    login"),
    Row("approved_export",    "POST", "405   405   405   405   login"),
    Row("image_file",         "GET",  "ok    ok    ok    404   login", ("image", "full")),
    Row("image_file",         "GET",  "404   404   ok    404   login", ("hidden_image", "full")),
    Row("image_file",         "POST", "405   405   405   405   login", ("image", "full")),
    Row("team_switch",        "POST", "ok    ok    ok    404   login", data={"team": "{team}"}, writes=False),
    Row("team_switch",        "GET",  "405   405   405   405   login"),
    Row("queue_pause",        "POST", "403   ok    ok    404   login", ("team",)),
    Row("queue_pause",        "GET",  "405   405   405   405   login", ("team",)),
    Row("queue_resume",       "POST", "403   ok    ok    404   login", ("team",), paused=True),
    Row("queue_resume",       "GET",  "405   405   405   405   login", ("team",)),
    Row("team_settings",      "GET",  "403   ok    ok    ok    login"),
    Row("team_settings",      "POST", "405   405   405   405   login"),
    Row("blocklist_add",      "POST", "403   ok    ok    ok    login", data={"text": "moon"}),
    Row("blocklist_add",      "GET",  "405   405   405   405   login"),
    Row("blocklist_change",   "POST", "403   ok    ok    404   login", ("term",), {"text": "tra da"}),
    Row("blocklist_change",   "GET",  "405   405   405   405   login", ("term",)),
    Row("blocklist_remove",   "POST", "403   ok    ok    404   login", ("term",)),
    Row("blocklist_remove",   "GET",  "405   405   405   405   login", ("term",)),
    Row("invitation_create",  "POST", "403   ok    ok    ok    login", data={"username": "dora", "role": "member"}),
    Row("invitation_create",  "GET",  "405   405   405   405   login"),
    Row("invitation_withdraw", "POST", "403   ok    ok    404   login", ("invitation",)),
    Row("invitation_withdraw", "GET",  "405   405   405   405   login", ("invitation",)),
    Row("member_role",        "POST", "403   ok    ok    404   login", ("membership",), {"role": "owner"}),
    Row("member_role",        "GET",  "405   405   405   405   login", ("membership",)),
    Row("member_remove",      "POST", "403   ok    ok    404   login", ("membership",)),
    Row("member_remove",      "GET",  "405   405   405   405   login", ("membership",)),
    # A user's own teams and invitations: only the invitee answers (team B invited team A's member); anyone leaves
    # a team they are in, but its last owner (team A's owner) is refused.
    Row("my_teams",           "GET",  "ok    ok    ok    ok    login"),
    Row("my_teams",           "POST", "405   405   405   405   login"),
    Row("team_leave",         "POST", "ok    422   ok    404   login", ("team",)),
    Row("team_leave",         "GET",  "405   405   405   405   login", ("team",)),
    Row("invitation_accept",  "POST", "ok    404   404   404   login", ("invitation_in",)),
    Row("invitation_accept",  "GET",  "405   405   405   405   login", ("invitation_in",)),
    Row("invitation_decline", "POST", "ok    404   404   404   login", ("invitation_in",)),
    Row("invitation_decline", "GET",  "405   405   405   405   login", ("invitation_in",)),
    Row("usage",              "GET",  "ok    ok    ok    ok    login"),
    Row("usage",              "POST", "405   405   405   405   login"),
    Row("moderation",         "GET",  "403   ok    ok    ok    login"),
    Row("moderation",         "POST", "405   405   405   405   login"),
    Row("moderation_act",     "POST", "403   ok    ok    404   login", data=CLEAR),
    Row("moderation_act",     "GET",  "405   405   405   405   login"),
    # The only URLs open without a login: the webhook (its secret instead) and the health check.
    Row("apiframe_webhook",   "POST", "401   401   401   401   401", data=UPDATE),
    Row("apiframe_webhook",   "POST", "ok    ok    ok    ok    ok", data=UPDATE, secret=True),
    Row("apiframe_webhook",   "GET",  "405   405   405   405   405"),
    Row("health",             "GET",  "ok    ok    ok    ok    ok", writes=False),
    Row("health",             "POST", "405   405   405   405   405"),
]
# fmt: on


def _fill(value: str, ids: dict) -> str:
    return value.format(**ids) if isinstance(value, str) else value


def _send(client: Client, row: Row, ids: dict):
    path = reverse(f"generations:{row.name}", args=[ids.get(arg, arg) for arg in row.args])
    data = {key: _fill(value, ids) for key, value in row.data.items()}
    headers = {"HX-Request": "true"} if row.htmx else {}
    if row.name == "apiframe_webhook":
        headers |= {"x-webhook-secret": SECRET} if row.secret else {}
        return client.generic(row.method, path, json.dumps(data), "application/json", headers=headers)
    if row.method == "GET":
        return client.get(path, data, headers=headers)
    if row.method == "POST":
        return client.post(path, data, headers=headers)
    return client.generic(row.method, path, headers=headers)


def _outcome_error(response, expected: str, *, htmx: bool) -> str:
    """Why the response is not the expected outcome ("" when it is)."""
    status, where = response.status_code, response.get("Location", "") or response.get("HX-Redirect", "")
    if expected == "login":
        sent = (status == 200 and htmx and response.get("HX-Redirect", "").startswith(LOGIN)) or (
            status == 302 and where.startswith(LOGIN)
        )
        return "" if sent else f"{status} {where} instead of a login redirect"
    if expected == "ok":
        if where.startswith((LOGIN, ADMIN_LOGIN)) or not 200 <= status < 400:
            return f"{status} {where} instead of ok"
        return ""
    return "" if status == int(expected) else f"{status} {where} instead of {expected}"


@pytest.mark.django_db
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_the_url_matrix(world, row):
    wrong = []
    for actor, expected in zip(ACTORS, row.expect.split(), strict=True):
        with transaction.atomic():
            if row.paused:
                queue.team_queue_pause(team=Team.objects.get(pk=world.ids["team"]), actor=world.users["owner"])
            client = _as(world, actor)
            before, team_a = _snapshot(), _team_rows(world.ids["team"])
            response = _send(client, row, world.ids)
            if response.streaming:  # a zip or a file: built while it is read
                b"".join(response.streaming_content)
            changed, team_a_changed = _changed(before, _snapshot()), _team_rows(world.ids["team"]) != team_a
            transaction.set_rollback(True)
        if actor == "other" and team_a_changed and not row.secret:  # the webhook answers its secret, not a login
            wrong.append(f"{actor}: changed team A's rows")
        if error := _outcome_error(response, expected, htmx=row.htmx):
            wrong.append(f"{actor}: {error}")
        elif expected != "ok" or row.method != "POST":
            if changed:  # refused, or a GET: nothing changes
                wrong.append(f"{actor}: {expected} {row.method}, but {changed} changed")
        elif row.writes and not changed:
            wrong.append(f"{actor}: an accepted POST changed nothing")
    assert not wrong, "\n".join(wrong)


def test_every_url_is_in_the_matrix_with_a_method_it_refuses():
    names = {name for name in get_resolver("generations.urls").reverse_dict if isinstance(name, str)}
    assert names == {row.name for row in ROWS}  # a new URL must say here who may use it
    refused = {row.name for row in ROWS if "405" in row.expect.split()}
    assert names - refused == set()  # and which method it refuses
    assert len({row.id for row in ROWS}) == len(ROWS)


# --- The admin's actions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    pick: str  # the World.ids key of the row it acts on
    done: object  # (World) -> bool: what the act did
    reason: bool = False  # asks for a reason on a page of its own first


def _is(model: type, key: str, **lookup: object):
    """(World) -> bool: the row named `key` now matches `lookup`."""
    return lambda w: model.objects.filter(pk=w.ids[key], **lookup).exists()


def _gone(model: type, key: str):
    return lambda w: not model.objects.filter(pk=w.ids[key]).exists()


def _expired_only(world: World) -> bool:
    """Attempts older than the cool-off are gone; a fresh one stays (it may still lock an account out)."""
    return _gone(AccessAttempt, "attempt")(world) and _is(AccessAttempt, "fresh_attempt")(world)


HIDDEN, SHOWN, RETRIED = {"hidden_at__isnull": False}, {"hidden_at": None}, {"mirror_attempts": 0}
PROCESSING, FAILED, CLEARED = {"status": "processing"}, {"status": "failed"}, {"flagged_at": None}
ADMIN_ACTIONS = {
    # (model, action name): Action(row selected, what it did, asks for a reason first)
    ("generations.task", "hide_items"): Action("task", _is(Task, "task", **HIDDEN), reason=True),
    ("generations.task", "restore_items"): Action("hidden", _is(Task, "hidden", **SHOWN), reason=True),
    ("generations.task", "clear_flags"): Action("flagged", _is(Task, "flagged", **CLEARED), reason=True),
    ("generations.task", "refresh_tasks"): Action("stuck", _is(Task, "stuck", **PROCESSING)),
    ("generations.task", "retry_mirror"): Action("gave_up", _is(Image, "lost_image", **RETRIED)),
    ("generations.task", "fail_tasks"): Action("stuck", _is(Task, "stuck", **FAILED), reason=True),
    ("generations.stucktask", "refresh_tasks"): Action("stuck", _is(Task, "stuck", **PROCESSING)),
    ("generations.stucktask", "retry_mirror"): Action("gave_up", _is(Image, "lost_image", **RETRIED)),
    ("generations.stucktask", "fail_tasks"): Action("stuck", _is(Task, "stuck", **FAILED), reason=True),
    ("generations.image", "hide_items"): Action("image", _is(Image, "image", **HIDDEN), reason=True),
    ("generations.image", "restore_items"): Action("hidden_image", _is(Image, "hidden_image", **SHOWN), reason=True),
    ("generations.image", "clear_flags"): Action("image", _is(Image, "image", **CLEARED), reason=True),
    ("generations.image", "retry_mirror"): Action("lost_image", _is(Image, "lost_image", **RETRIED)),
    ("generations.webhookdelivery", "replay_deliveries"): Action("delivery", _is(Task, "stuck", **PROCESSING)),
    ("generations.blockedterm", "delete_selected"): Action("term", _gone(BlockedTerm, "term")),
    ("generations.team", "delete_selected"): Action("empty_team", _gone(Team, "empty_team")),
    ("auth.user", "delete_selected"): Action("dora", _gone(get_user_model(), "dora")),
    ("auth.group", "delete_selected"): Action("group", _gone(Group, "group")),
    ("axes.accessattempt", "delete_selected"): Action("attempt", _gone(AccessAttempt, "attempt")),
    ("axes.accessattempt", "cleanup_expired_attempts"): Action("attempt", _expired_only),
    ("axes.accesslog", "delete_selected"): Action("access_log", _gone(AccessLog, "access_log")),
    ("axes.accessfailurelog", "delete_selected"): Action("failure_log", _gone(AccessFailureLog, "failure_log")),
}
# Nobody but staff reaches the admin: the site's login comes first for anonymous visitors, the admin's for others.
NOBODY_BUT_STAFF = {"member": ADMIN_LOGIN, "owner": ADMIN_LOGIN, "other": ADMIN_LOGIN, "anonymous": LOGIN}


def _admin_post(client: Client, key: tuple[str, str], world: World, **extra: str):
    label, name = key
    url = reverse(f"admin:{label.replace('.', '_')}_changelist")
    pk = str(world.ids[ADMIN_ACTIONS[key].pick])
    return client.post(url, {"action": name, "_selected_action": [pk], "index": "0", **extra})


def _registered_actions(user) -> set[tuple[str, str]]:
    request = RequestFactory().get("/admin/")
    request.user = user
    return {
        (model._meta.label_lower, name)
        for model, model_admin in admin.site._registry.items()
        for name in model_admin.get_actions(request)
    }


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(ADMIN_ACTIONS), ids=[".".join(k) for k in sorted(ADMIN_ACTIONS)])
def test_the_admin_action_matrix(world, key):
    action = ADMIN_ACTIONS[key]
    # Everything it could need to act at once: a reason, confirmed; "yes, delete".
    acting = {"confirm": "yes", "reason": "the permission matrix", "post": "yes"}
    wrong = []
    for actor, login in NOBODY_BUT_STAFF.items():
        with transaction.atomic():
            client = _as(world, actor)
            before = _snapshot()
            response = _admin_post(client, key, world, **acting)
            changed = _changed(before, _snapshot())
            transaction.set_rollback(True)
        if response.status_code != 302 or not response["Location"].startswith(login):
            wrong.append(f"{actor}: {response.status_code} {response.get('Location')} instead of {login}")
        if changed:
            wrong.append(f"{actor}: {changed} changed")
    assert not wrong, "\n".join(wrong)

    staff = _as(world, "staff")
    if action.reason:  # the reason's page first; without a reason, a 422 that changes nothing
        before = _snapshot()
        asked = _admin_post(staff, key, world)
        refused = _admin_post(staff, key, world, confirm="yes", reason="  ")
        assert asked.status_code == 200 and "admin/generations/confirm_reason.html" in [t.name for t in asked.templates]
        assert refused.status_code == 422
        assert _changed(before, _snapshot()) == []
    response = _admin_post(staff, key, world, **acting)
    assert response.status_code == 302 and response["Location"].startswith("/admin/"), response.status_code
    assert action.done(world)
    if action.reason:
        assert AuditEntry.objects.filter(actor=world.users["staff"], reason="the permission matrix").exists()


@pytest.mark.django_db
def test_every_admin_action_is_in_the_matrix(world):
    assert _registered_actions(world.users["staff"]) == set(ADMIN_ACTIONS)  # a new action must say who runs it
