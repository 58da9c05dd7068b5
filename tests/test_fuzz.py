"""Property-based tests (hypothesis): no request, logged in or not, gets a 5xx, and a refused one changes nothing.

Every route of generations/urls.py and mjstudio/urls.py (Django's admin aside) gets generated query strings, form
bodies (text with NUL, digits int() refuses, huge numbers, whitespace), content types and headers (HX-Request,
HX-Current-URL, HX-Target, X-Forwarded-For); the webhook gets generated task objects of every JSON type with the
right secret (and sometimes not). Each example runs in a savepoint that is rolled back, so every one starts from the
same rows and a failing one leaves PostgreSQL usable. An exception, a 5xx or an ERROR logged fails the example.

"Refused" means a 4xx. A refused request changes no row (counts and the tasks' state); the one exception is a
webhook body that parses as JSON but is not a task object we can read: it is logged as one "invalid" delivery.

CI runs the "ci" profile (bounded, repeatable); `make fuzz` runs the "fuzz" profile (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlencode

import hypothesis
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from generations.forms import GRID_IMAGE_ACTIONS
from generations.models import (
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
from generations.services import members, teams
from tests.support.teams import join

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
hypothesis.settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET
)
hypothesis.settings.register_profile(
    "fuzz", max_examples=1000, deadline=None, database=None, print_blob=True, suppress_health_check=_QUIET
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SECRET = "whsec_fuzz-3141"
COUNTED = (
    Task, Prompt, Image, WebhookDelivery, Team, Membership, Invitation, Collection, CollectionItem, Favourite, Flag,
)  # fmt: skip


# --- The world every example starts from ----------------------------------------------------------------------


@dataclass
class World:
    # By who: alice (a member), olivia (her team's owner). Made once; each example's rollback restores them, even
    # after a logout.
    session_cookies: dict[str, str]
    team_ids: list[int]
    task_ids: dict[str, int]  # by role: "grid", "processing", ... "foreign"
    image_ids: list[int]
    collection_ids: list[int]  # alice's team's, then charlie's
    invitation_ids: list[int]  # one alice's team sent, one sent to alice


@pytest.fixture
def world(make_task, team, alice, bob, charlie, settings, django_user_model) -> World:
    settings.APIFRAME_WEBHOOK_SECRET = SECRET
    olivia = django_user_model.objects.create_user("olivia", password="pw-olivia")
    join(team, olivia, role=Membership.Role.OWNER)
    grid = make_task(status="finished", upstream_id="up-grid", finished_at=timezone.now())
    tasks = {
        "grid": grid,
        "processing": make_task(status="processing", upstream_id="up-processing", percentage=40),
        "pending": make_task(user=bob, status="pending", upstream_id="up-pending"),
        "queued": make_task(status="queued"),
        "failed": make_task(status="failed", upstream_id="up-failed", error="Banned prompt"),
        "timed_out": make_task(status="timed_out", upstream_id="up-late", error="no result before the deadline"),
        "upscale": make_task(
            status="finished", action="upscale", option="subtle", parent=grid, parent_index=2, upstream_id="up-upscale"
        ),
        "foreign": make_task(user=charlie, status="finished", upstream_id="up-foreign"),
    }
    images = [Image(task=grid, index=i, source_url=f"https://cdn.apiframe.pro/g-{i}.png") for i in range(1, 5)]
    images.append(Image(task=tasks["foreign"], index=1, source_url="https://cdn.apiframe.pro/f-1.png"))
    for image in images[:2] + images[-1:]:
        image.file.save("f.png", ContentFile(b"\x89PNG fuzz"), save=False)
        image.thumbnail.save("t.webp", ContentFile(b"RIFF fuzz"), save=False)
        image.mirrored_at = timezone.now()
    Image.objects.bulk_create(images)
    theirs = charlie.memberships.get(chosen_at__isnull=False).team
    boards = [
        Collection.objects.create(team=team, name="Moodboard", created_by=alice),
        Collection.objects.create(team=theirs, name="Theirs", created_by=charlie),
    ]
    invitations = [
        members.invitation_create(actor=olivia, team=team, username="dora", role="member"),
        members.invitation_create(actor=charlie, team=theirs, username="alice", role="owner"),
    ]
    cookies = {}
    for user in (alice, olivia):
        teams.personal_team_ensure(user=user)  # else every example's first request would make it
        client = Client()
        client.force_login(user)
        cookies[user.username] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return World(
        session_cookies=cookies,
        team_ids=[team.pk, theirs.pk],
        task_ids={role: task.pk for role, task in tasks.items()},
        image_ids=list(Image.objects.order_by("pk").values_list("pk", flat=True)),
        collection_ids=[board.pk for board in boards],
        invitation_ids=[invitation.pk for invitation in invitations],
    )


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def _state() -> list[tuple]:
    """What a refused request must not change, beyond the counts."""
    tasks = Task.objects.order_by("pk").values_list(
        "pk", "status", "percentage", "error", "upstream_status", "updated_at", "last_heard_at", "result"
    )
    images = Image.objects.order_by("pk").values_list(
        "pk", "task_id", "index", "source_url", "mirrored_at", "review_state"
    )
    roles = Membership.objects.order_by("pk").values_list("pk", "role")
    invitations = Invitation.objects.order_by("pk").values_list("pk", "state", "role", "expires_at")
    return [*tasks, *images, *roles, *invitations]


# --- Strategies -------------------------------------------------------------------------------------------------

# Text a browser could send (UTF-8, so no lone surrogates), and the values that broke things before.
ODD_VALUES = [
    "", " ", "\x00", "a\x00b", "\t\n", "²", "٣", "１", "-1", "0", "1", "4", "5", "9" * 30, str(2**63), str(2**64),
    "1e999", "NaN", "Infinity", "-0", "0x10", "1_000", "ü", "\u202e", "%00", "http://[x/", "null", "true", "[]",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2026-13-45T99:00:00", "2026-01-01T00:00:00+99:00",
]  # fmt: skip
# Digits str.isdigit() accepts and int() refuses or reads, and numbers beyond a 64-bit column.
NUMBER_TRAPS = ["²", "٣", "１", "9" * 30, str(2**63), "-1", "0", " 1"]
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
odd = st.one_of(st.sampled_from(NUMBER_TRAPS), st.sampled_from(ODD_VALUES), text)
# Header values arrive as latin-1 (WSGI); CR/LF cannot be in one.
header_text = st.one_of(
    st.sampled_from(ODD_VALUES[:12]),
    st.text(alphabet=st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40),
)
current_urls = st.one_of(
    st.sampled_from(
        [
            "http://testserver/?mine=1",
            "http://testserver/",
            "http://[x/a",
            "http://[::1/?mine=1",
            "http://testserver:port/",
            "https://evil.example/?mine=1",
            "//testserver/?mine=1",
            "http://testserver/%ff?mine=1&mine=0",
        ]
    ),
    header_text,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "HX-Request": st.one_of(st.just("true"), header_text),
        "HX-Current-URL": current_urls,
        "HX-Target": header_text,
        "HX-Trigger": header_text,
        "HX-Boosted": header_text,
        "X-Forwarded-For": st.one_of(st.sampled_from(["127.0.0.1", "::1, 10.0.0.1", "unknown"]), header_text),
    },
)
content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "application/json",
        "text/plain",
        "",
    ]
)


@dataclass(frozen=True)
class Route:
    path: str  # {task}, {image}, {variant}, {collection}, {team}, {invitation} are drawn
    methods: tuple[str, ...]
    fields: dict[str, tuple[str, ...]]  # field names with values that get past validation; {team}, {key}, {since}
    owners: bool = False  # an owner's page: fuzzed as the team's owner too, not only as a member (403) and anonymous
    joins: bool = False  # may add or take out one membership (accepting, leaving, removing)


ROUTES = {
    "studio": Route("/", ("GET",), {"mine": ("1", "0")}),
    "pulse": Route("/studio/pulse/", ("GET",), {"since": ("{since}",), "after": ("1", "{task_id}"), "mine": ("1",)}),
    # Under the test client (WSGI) a 404: the stream is served under ASGI only (tests/test_live.py).
    # 404 under WSGI; what an open stream does when access ends is tests/test_live_access.py's, under ASGI.
    "studio_events": Route(
        "/studio/events/", ("GET",), {"after": ("0-0", "1-1"), "mine": ("1",), "team": ("1", "abc", "²", "9" * 40)}
    ),
    "task_create": Route(
        "/tasks/",
        ("POST",),
        {
            "prompt": ("a lighthouse in fog", "cà phê sữa đá"),
            "mode": ("fast", "turbo"),
            "aspect_ratio": ("1:1", "16:9"),
            "idempotency_key": ("{key}",),
        },
    ),
    "task_detail": Route("/tasks/{task}/", ("GET",), {}),
    "task_act": Route(
        "/tasks/{task}/act/",
        ("POST",),
        {
            "action": (*sorted(GRID_IMAGE_ACTIONS), "reroll"),
            "index": ("1", "2", "3", "4", ""),
            "zoom_factor": ("1.25", "2"),
            "idempotency_key": ("{key}",),
        },
    ),
    "task_retry": Route("/tasks/{task}/retry/", ("POST",), {"idempotency_key": ("{key}",)}),
    "image_file": Route("/images/{image}/{variant}/", ("GET",), {"download": ("1", "0")}),
    "team_switch": Route("/team/", ("POST",), {"team": ("{team}",)}),
    "queue_pause": Route("/team/{team}/queue/pause/", ("POST",), {}),
    "queue_resume": Route("/team/{team}/queue/resume/", ("POST",), {}),
    "health": Route("/health/", ("GET",), {}),
    "login": Route(
        "/accounts/login/",
        ("GET", "POST"),
        {"username": ("alice",), "password": ("pw-alice",), "next": ("/", "/tasks/1/", "//evil.example/")},
    ),
    "logout": Route("/accounts/logout/", ("POST",), {"next": ("/", "http://evil.example/")}),
    "task_image_actions": Route("/tasks/{task}/actions/", ("GET",), {"index": ("1", "2", "4")}),
    "task_export": Route("/tasks/{task}/export/", ("GET",), {}),
    "compare": Route("/compare/", ("GET",), {"images": ("{images}",), "size": ("actual", "fit")}),
    "collections": Route("/collections/", ("GET",), {"sort": ("recent", "name")}),
    "collection_create": Route("/collections/new/", ("POST",), {"name": ("Mood", "Cà phê")}),
    "collection_rename": Route("/collections/{collection}/rename/", ("POST",), {"name": ("Renamed", "Moodboard")}),
    "collection_delete": Route("/collections/{collection}/delete/", ("POST",), {}),
    "collection_export": Route("/collections/{collection}/export/", ("GET",), {}),
    "image_collections": Route(
        "/images/{image}/collections/",
        ("GET", "POST"),
        {"collection": ("{collection_id}",), "op": ("add", "remove"), "new_name": ("Board",)},
    ),
    "usage": Route("/usage/", ("GET",), {"metric": ("tasks", "credits")}),
    "library": Route(
        "/library/",
        ("GET",),
        {
            "q": ("ca phe", "dang", "a"),
            "action": ("imagine", "upscale"),
            "status": ("finished", "failed"),
            "mode": ("fast",),
            "ratio": ("1:1",),
            "fav": ("1",),
            "review": ("none", "shortlisted", "approved", "rejected"),
            "collection": ("{collection_id}",),
            "lineage": ("{task_id}",),
            "stacks": ("0", ""),
            "from": ("2026-01-01",),
            "to": ("2026-12-31", "1999-01-01"),
            "cursor": ("", "x"),
            "top": ("x",),
            "shown": ("24", "²"),
        },
    ),
    "library_stack": Route("/library/stacks/{task}/", ("GET",), {"fold": ("1",), "q": ("phe",)}),
    "image_favourite": Route("/images/{image}/favourite/", ("POST",), {"on": ("1", "0", "")}),
    "image_flag": Route(
        "/images/{image}/flag/", ("GET", "POST"), {"reason": ("sexual", "other"), "note": ("a real face",)}
    ),
    "task_flag": Route("/tasks/{task}/flag/", ("GET", "POST"), {"reason": ("off_brief",), "note": ("", "spam")}),
    "moderation": Route("/moderation/", ("GET",), {"show": ("flagged", "hidden"), "page": ("1", "2")}),
    "moderation_act": Route(
        "/moderation/act/",
        ("POST",),
        {"items": ("task:1", "image:1"), "act": ("hide", "restore", "clear"), "reason": ("spam",)},
    ),
    # Owners only: alice (a member) gets 403 and nothing changes; olivia (the owner) gets past. A term's or a
    # membership's id is drawn like a task's.
    "team_settings": Route("/team/settings/", ("GET",), {}, owners=True),
    "blocklist_add": Route(
        "/team/blocklist/",
        ("POST",),
        # Past a term's length, a pattern heavier than a list may hold, an unclosed \Q (it would swallow the others).
        {"text": ("ca phe", "(a", "x" * 201, r"\pL{50}", r"\Qa"), "is_regex": ("on", "")},
        owners=True,
    ),
    "blocklist_change": Route(
        "/team/blocklist/{task}/", ("POST",), {"text": ("tra da",), "is_regex": ("on",)}, owners=True
    ),
    "blocklist_remove": Route("/team/blocklist/{task}/remove/", ("POST",), {}, owners=True),
    "invitation_create": Route(
        "/team/invitations/",
        ("POST",),
        {"username": ("dora", "bob", "nobody"), "role": ("owner", "member")},
        owners=True,
    ),
    "invitation_withdraw": Route("/team/invitations/{invitation}/withdraw/", ("POST",), {}, owners=True),
    "member_role": Route("/team/members/{task}/role/", ("POST",), {"role": ("owner", "member", "staff")}, owners=True),
    "member_remove": Route("/team/members/{task}/remove/", ("POST",), {}, owners=True, joins=True),
    # A user's own teams: the invitations for them, and leaving.
    "my_teams": Route("/teams/", ("GET",), {}),
    "team_leave": Route("/teams/{team}/leave/", ("POST",), {}, owners=True, joins=True),
    "invitation_accept": Route("/invitations/{invitation}/accept/", ("POST",), {}, joins=True),
    "invitation_decline": Route("/invitations/{invitation}/decline/", ("POST",), {}),
    "image_review": Route(
        "/images/{image}/review/", ("POST",), {"state": ("none", "shortlisted", "approved", "rejected", "")}
    ),
    "approved_export": Route("/library/approved/export/", ("GET",), {}),
}


def _field_values(route: Route) -> st.SearchStrategy[list[tuple[str, str]]]:
    """The route's own fields, each present or not, valid or odd; then a few strangers."""
    known = st.fixed_dictionaries(
        {},
        optional={name: st.one_of(st.sampled_from(good), odd) for name, good in route.fields.items()},
    )
    strangers = st.lists(
        st.tuples(st.one_of(st.sampled_from(["csrfmiddlewaretoken", "page", "q"]), text), odd), max_size=2
    )
    return st.tuples(known, strangers).map(lambda both: [*both[0].items(), *both[1]])


def _fill(value: str, world: World, draw: st.DataObject) -> str:
    """Swap a placeholder for a real value (a task id, a team, a fresh key, a recent cursor)."""
    if value == "{team}":
        return str(draw.draw(st.sampled_from(world.team_ids)))
    if value == "{task_id}":
        return str(draw.draw(st.sampled_from(sorted(world.task_ids.values()))))
    if value == "{key}":
        return str(uuid.UUID(int=draw.draw(st.integers(0, 2**128 - 1))))
    if value == "{collection_id}":
        return str(draw.draw(st.sampled_from(world.collection_ids)))
    if value == "{images}":
        return ",".join(str(i) for i in draw.draw(st.lists(st.sampled_from(world.image_ids), min_size=1, max_size=5)))
    if value == "{since}":
        return (timezone.now() - timedelta(seconds=draw.draw(st.integers(0, 600)))).isoformat()
    return value


def _path(route: Route, world: World, draw: st.DataObject) -> str:
    def pk(ids: list[int]) -> str:
        choice = draw.draw(st.one_of(st.sampled_from(ids), st.integers(0, 2**80), st.sampled_from(ODD_VALUES)))
        return quote(str(choice), safe="")

    variant = quote(draw.draw(st.one_of(st.sampled_from(["thumb", "full"]), odd)), safe="")
    tasks = list(world.task_ids.values())
    return route.path.format(
        task=pk(tasks),
        image=pk(world.image_ids),
        variant=variant,
        collection=pk(world.collection_ids),
        team=pk(world.team_ids),
        invitation=pk(world.invitation_ids),
    )


# --- Running one request and checking what it did -------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged_errors():
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    yield handler.records
    logging.getLogger().removeHandler(handler)


def _send(client: Client, method: str, path: str, *, body: bytes = b"", content_type: str = "", **headers):
    # Django's test client raises a view's exception instead of answering 500: either way the example fails.
    return client.generic(method, path, data=body, content_type=content_type, headers=headers)


@dataclass
class Done:
    """One request's answer, and the database before and after it."""

    response: object
    counts: dict[str, int]
    after: dict[str, int]
    state: list[tuple]
    after_state: list[tuple]
    logged: list[str]  # outcomes of the webhook deliveries it logged

    def changed(self, *, but: tuple[str, ...] = ()) -> bool:
        return self.state != self.after_state or any(
            self.after[m] != self.counts[m] for m in self.counts if m not in but
        )


def _example(world: World, logged_errors: list, *, who: str, request) -> Done:
    """Run `request(client)` as `who` (a key of World.session_cookies, or "anonymous") in a savepoint rolled back
    afterwards: every example starts from the same rows."""
    with transaction.atomic():
        client = Client()
        if who != "anonymous":
            client.cookies[django_settings.SESSION_COOKIE_NAME] = world.session_cookies[who]
        logged_errors.clear()
        counts, state = _counts(), _state()
        last_delivery = WebhookDelivery.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        response = request(client)
        done = Done(
            response=response,
            counts=counts,
            after=_counts(),
            state=state,
            after_state=_state(),
            logged=list(WebhookDelivery.objects.filter(pk__gt=last_delivery).values_list("outcome", flat=True)),
        )
        errors = [record.getMessage() for record in logged_errors]
        transaction.set_rollback(True)
    assert response.status_code < 500, response.content[:500]
    assert not errors, errors
    return done


def test_every_route_is_fuzzed():
    from django.urls import get_resolver

    names = {name for name in get_resolver().reverse_dict if isinstance(name, str)}
    names |= {n for n in get_resolver("generations.urls").reverse_dict if isinstance(n, str)}
    assert names - set(ROUTES) - {"apiframe_webhook"} == set()  # the webhook has its own test below


# Every route as alice (a member) and anonymously; the owners' routes as olivia (the team's owner) too.
RUNS = [
    (name, who)
    for name in sorted(ROUTES)
    for who in ("alice", "anonymous", *(("olivia",) if ROUTES[name].owners else ()))
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "who"), RUNS, ids=[f"{name}-{who}" for name, who in RUNS])
@given(draw=st.data())
def test_no_request_gets_a_5xx_and_a_refused_one_changes_nothing(world, logged_errors, name, who, draw):
    route = ROUTES[name]
    method = draw.draw(st.sampled_from([*route.methods * 4, "GET", "POST", "PUT", "HEAD"]))
    fields = [(key, _fill(value, world, draw)) for key, value in draw.draw(_field_values(route))]
    path = _path(route, world, draw)
    sent_headers = draw.draw(headers)
    if method in ("GET", "HEAD"):
        query = urlencode(fields)
        raw = draw.draw(st.one_of(st.just(""), st.sampled_from(["%ff", "a=%", "&&=", "since=%2B", "after=%C2%B2"])))
        path, body, content_type = f"{path}?{'&'.join(p for p in (query, raw) if p)}", b"", ""
    elif draw.draw(st.booleans()):
        body, content_type = encode_multipart(BOUNDARY, dict(fields)), MULTIPART_CONTENT
    else:
        body, content_type = urlencode(fields).encode(), draw.draw(content_types)

    def request(client: Client):
        return _send(client, method, path, body=body, content_type=content_type, **sent_headers)

    done = _example(world, logged_errors, who=who, request=request)
    if 400 <= done.response.status_code < 500:
        assert not done.changed(), f"refused with {done.response.status_code}, but rows changed"
    # Whatever the answer: no request here touches images, the webhook log or teams, or makes two tasks; only
    # joining, leaving and removing change memberships, by one.
    for model in ("Image", "WebhookDelivery", "Team"):
        assert done.after[model] == done.counts[model], f"{model}: {done.counts[model]} -> {done.after[model]}"
    assert abs(done.after["Membership"] - done.counts["Membership"]) <= route.joins
    assert 0 <= done.after["Task"] - done.counts["Task"] <= 1
    assert 0 <= done.after["Prompt"] - done.counts["Prompt"] <= 1


# --- The webhook ------------------------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([10**400, -(10**400), 2**63, 1e308, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.one_of(text, st.sampled_from(["\x00", "a\x00", "\ud800", "x\udfff", SECRET, f"echo {SECRET}", "FINISHED "])),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.one_of(text, st.just(SECRET)), inner, max_size=4),
    max_leaves=12,
)
image_urls = st.one_of(
    st.sampled_from(
        [
            "https://cdn.apiframe.pro/images/a-1.png",
            "http://[x/a.png",
            "https://cdn.apiframe.pro:port/a.png",
            "https://cdn.apiframe.pro/a b.png",
            "https://cdn.apiframe.pro/\x00.png",
            "javascript:alert(1)",
            "http:///a.png",
            "https://cdn.apiframe.pro/" + "a" * 1200,
        ]
    ),
    text,
    json_values,
)
task_ids = st.one_of(
    st.sampled_from(["up-grid", "up-processing", "up-pending", "up-failed", "up-late", "up-upscale", "up-foreign"]),
    st.sampled_from(["up-grid\x00", "x" * 65, "a b", "\ud800", 2**70, "up-new"]),
    text,
    json_values,
)
statuses = st.one_of(
    st.sampled_from(
        ["pending", "starting", "processing", "finished", "failed", " FINISHED", "processing\x00", "x" * 30]
    ),
    json_values,
)
percentages = st.one_of(st.integers(-1000, 1000), st.sampled_from(["40", "40%", "²", "1e999", "9" * 400]), json_values)
task_objects = st.fixed_dictionaries(
    {},
    optional={
        "task_id": task_ids,
        "task_type": st.one_of(st.sampled_from(["imagine", "upscale", "vary"]), json_values),
        "status": statuses,
        "percentage": percentages,
        "image_urls": st.one_of(st.lists(image_urls, max_size=5), image_urls),
        "image_url": image_urls,
        "original_image_url": image_urls,
        "error": st.one_of(text, json_values, st.fixed_dictionaries({"message": json_values})),
        "errors": json_values,
        "webhook_secret": st.just(SECRET),
        "meta": json_values,
    },
)
webhook_bodies = st.one_of(
    task_objects.map(lambda body: json.dumps(body, allow_nan=True).encode()),
    st.sampled_from([b"", b"{", b"[]", b'"x"', b"null", b'{"task_id": NaN}', b"\xff\xfe", b"[" * 5000 + b"]" * 5000]),
    st.binary(max_size=60),
)


def _stored_secret() -> bool:
    """Whether the secret made it into the log or a task, anywhere."""
    logged = WebhookDelivery.objects.values_list("apiframe_task_id", "reported_status", "body")
    tasks = Task.objects.values_list("error", "upstream_status", "result")
    return SECRET in json.dumps([list(row) for row in [*logged, *tasks]])


@pytest.mark.django_db
@hypothesis.settings(max_examples=hypothesis.settings.default.max_examples * 3)
@given(body=webhook_bodies, secret=st.sampled_from([SECRET, SECRET, SECRET, SECRET, "", "wrong"]), headers=headers)
def test_no_webhook_body_gets_a_5xx_and_a_refused_one_changes_nothing(world, logged_errors, body, secret, headers):
    def request(client: Client):
        sent = {**headers, "x-webhook-secret": secret} if secret else headers
        response = _send(client, "POST", "/webhooks/apiframe/", body=body, content_type="application/json", **sent)
        assert not _stored_secret(), "the webhook secret was stored"
        return response

    done = _example(world, logged_errors, who="anonymous", request=request)
    status = done.response.status_code
    if 400 <= status < 500:
        # Refused: nothing applied. Logged only when it parsed as JSON but is no task object we can read.
        assert not done.changed(but=("WebhookDelivery",)), f"refused with {status}, but rows changed"
        assert done.logged in ([], ["invalid"]), done.logged
        assert status != 401 or done.logged == []
    else:
        assert status == 200, status
        assert len(done.logged) == 1 and done.logged != ["invalid"], done.logged
        for model in ("Task", "Prompt", "Team", "Membership"):
            assert done.after[model] == done.counts[model]
