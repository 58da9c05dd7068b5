"""The Apiframe client: against the sandbox over real HTTP, against tiny scripted servers for the failures
the sandbox cannot stage precisely (timeouts, dropped connections, a 429 on fetch), and its parsers alone."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from generations.apiframe import (
    Account,
    ApiframeClient,
    ApiframeError,
    AuthenticationFailed,
    InvalidPayload,
    InvalidRequest,
    OutOfCredits,
    RateLimited,
    TaskNotFound,
    TaskState,
    UpstreamTimeout,
    UpstreamUnavailable,
    _parse_retry_after,
)

KEY = "sk-test-5f1d2c9a-do-not-leak"


# --- A scripted stand-in server ------------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # answer late (a client timeout)
    hang_up: bool = False  # read the request, then close the connection without answering


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


class StubServer:
    """Answers every request with the next scripted Reply; the last one repeats. Records what it was sent."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []
        self.release = threading.Event()  # lets delayed answers end at teardown instead of sleeping on
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                stub.seen.append(
                    Seen(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
                )
                reply = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                if reply.delay:
                    stub.release.wait(reply.delay)
                if reply.hang_up:
                    self.close_connection = True
                    return
                body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client hung up on a late answer: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@pytest.fixture
def stub() -> Iterator[Callable[..., StubServer]]:
    servers: list[StubServer] = []

    def start(*replies: Reply) -> StubServer:
        servers.append(StubServer(list(replies)))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(url: str, sleeps: list[float] | None = None, **options: Any) -> ApiframeClient:
    return ApiframeClient(
        base_url=f"{url}/pro",
        fetch_url=url,
        api_key=KEY,
        sleep=(sleeps.append if sleeps is not None else time.sleep),
        **options,
    )


class NoNetwork(requests.adapters.BaseAdapter):
    """A session adapter that counts (and refuses) every HTTP call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls.append(str(request.url))
        raise AssertionError(f"unexpected HTTP call to {request.url}")

    def close(self) -> None:
        pass


def offline_client() -> tuple[ApiframeClient, NoNetwork]:
    adapter = NoNetwork()
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return ApiframeClient(
        base_url="http://x/pro", fetch_url="http://x", api_key=KEY, session=session
    ), adapter


def finished_grid(task_id: str = "t-1") -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_type": "imagine",
        "status": "finished",
        "original_image_url": "https://cdn.example/grid.png",
        "image_urls": [f"https://cdn.example/{i}.png" for i in range(1, 5)],
    }


# --- What the client sends ------------------------------------------------------------------------------
def test_it_sends_the_raw_key_and_the_contract_bodies(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(json={"task_id": "new-1"}))
    client = client_for(server.url)

    assert client.imagine(prompt="a red fox", mode="turbo", aspect_ratio="16:9") == "new-1"
    client.vary(parent_task_id="p", index=2, type="subtle")
    client.upscale(parent_task_id="p", index="1", type="creative")
    client.pan(parent_task_id="p", index=3, direction="right")
    client.zoom(parent_task_id="p", index=4, factor=1.5)
    client.zoom(parent_task_id="p", index=1, factor=2)

    assert server.paths == ["/pro/imagine", "/pro/vary", "/pro/upscale", "/pro/pan", "/pro/zoom", "/pro/zoom"]
    for seen in server.seen:
        assert seen.method == "POST"
        assert seen.headers["Authorization"] == KEY  # no "Bearer "
        assert seen.headers["Content-Type"] == "application/json"
    assert [s.json for s in server.seen] == [
        {"prompt": "a red fox", "mode": "turbo", "aspect_ratio": "16:9"},
        {"parent_task_id": "p", "index": "2", "type": "subtle"},
        {"parent_task_id": "p", "index": "1", "type": "creative"},
        {"parent_task_id": "p", "index": "3", "type": "right"},
        {"parent_task_id": "p", "index": "4", "type": 1.5},
        {"parent_task_id": "p", "index": "1", "type": 2},
    ]


def test_it_sends_webhook_fields_only_when_both_are_given(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(json={"task_id": "new-1"}))
    client = client_for(server.url)

    client.imagine(prompt="fox", webhook_url="https://studio.example/webhooks/apiframe/", webhook_secret="s3")
    client.imagine(prompt="fox", webhook_url="https://studio.example/webhooks/apiframe/")
    client.imagine(prompt="fox", webhook_url="", webhook_secret="s3")

    assert server.seen[0].json == {
        "prompt": "fox",
        "mode": "fast",
        "webhook_url": "https://studio.example/webhooks/apiframe/",
        "webhook_secret": "s3",
    }
    assert server.seen[1].json == {"prompt": "fox", "mode": "fast"}
    assert server.seen[2].json == {"prompt": "fox", "mode": "fast"}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.imagine(prompt=""),
        lambda c: c.imagine(prompt="   "),
        lambda c: c.imagine(prompt="fox", mode="relax"),
        lambda c: c.imagine(prompt="fox", aspect_ratio="wide"),
        lambda c: c.imagine(prompt="fox", webhook_url="ftp://x", webhook_secret="s"),
        lambda c: c.vary(parent_task_id="p", index=5, type="strong"),
        lambda c: c.vary(parent_task_id="p", index=0, type="strong"),
        lambda c: c.vary(parent_task_id="p", index=True, type="strong"),
        lambda c: c.vary(parent_task_id="p", index="one", type="strong"),
        lambda c: c.vary(parent_task_id="p", index=1, type="medium"),
        lambda c: c.vary(parent_task_id="", index=1, type="strong"),
        lambda c: c.upscale(parent_task_id="p", index=1, type="strong"),
        lambda c: c.pan(parent_task_id="p", index=1, direction="diagonal"),
        lambda c: c.zoom(parent_task_id="p", index=1, factor=0.5),
        lambda c: c.zoom(parent_task_id="p", index=1, factor=2.5),
        lambda c: c.zoom(parent_task_id="p", index=1, factor=float("nan")),
        lambda c: c.zoom(parent_task_id="p", index=1, factor=True),
        lambda c: c.fetch(""),
    ],
)
def test_it_refuses_bad_input_without_calling_apiframe(call: Callable[[ApiframeClient], Any]) -> None:
    client, network = offline_client()

    with pytest.raises(InvalidRequest) as info:
        call(client)

    assert network.calls == []
    assert info.value.status_code is None
    assert info.value.maybe_created is False
    assert info.value.retryable is False


def test_the_key_stays_out_of_reprs_and_errors() -> None:
    client, _ = offline_client()
    assert KEY not in repr(client)

    with pytest.raises(ValueError) as info:
        ApiframeClient(base_url="http://x", fetch_url="http://x", api_key="secret\nvalue")
    assert "secret" not in str(info.value)
    with pytest.raises(ValueError):
        ApiframeClient(base_url="http://x", fetch_url="http://x", api_key="  ")


def test_from_settings_reads_the_apiframe_settings(settings: Any) -> None:
    settings.APIFRAME_BASE_URL = "https://api.apiframe.ai/pro/"
    settings.APIFRAME_FETCH_URL = "https://api.apiframe.ai"
    settings.APIFRAME_API_KEY = KEY
    settings.APIFRAME_TIMEOUT = 7.0

    client = ApiframeClient.from_settings()

    assert client.base_url == "https://api.apiframe.ai/pro"
    assert client.fetch_url == "https://api.apiframe.ai"
    assert client.timeout == (5.0, 7.0)
    assert KEY not in repr(client)


# --- Failures on create: typed, never retried, and honest about whether a task may exist ------------------
@pytest.mark.parametrize(
    ("status", "maybe_created"),
    [(500, True), (502, True), (504, True), (503, False)],
)
def test_a_5xx_on_create_is_upstream_unavailable(
    stub: Callable[..., StubServer], status: int, maybe_created: bool
) -> None:
    server = stub(Reply(status=status, json={}))

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url).imagine(prompt="fox")

    assert info.value.status_code == status
    assert info.value.maybe_created is maybe_created
    assert info.value.retryable is True
    assert len(server.seen) == 1  # creates are never retried by the client


@pytest.mark.parametrize(
    ("status", "error"), [(402, OutOfCredits), (403, OutOfCredits), (401, AuthenticationFailed)]
)
def test_refusals_on_create_say_nothing_was_created(
    stub: Callable[..., StubServer], status: int, error: type[ApiframeError]
) -> None:
    server = stub(Reply(status=status, json={"message": "Not enough credits"}))

    with pytest.raises(error) as info:
        client_for(server.url).vary(parent_task_id="p", index=1, type="strong")

    assert info.value.maybe_created is False
    assert info.value.retryable is False
    assert info.value.message == "Not enough credits"


def test_a_429_on_create_is_rate_limited_with_an_http_date(stub: Callable[..., StubServer]) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = stub(
        Reply(status=429, json={"errors": [{"msg": "Too many jobs"}]}, headers={"Retry-After": later})
    )

    with pytest.raises(RateLimited) as info:
        client_for(server.url).imagine(prompt="fox")

    assert info.value.message == "Too many jobs"
    assert info.value.maybe_created is False
    assert 25 <= (info.value.retry_after or 0) <= 30
    assert len(server.seen) == 1


def test_a_slow_create_times_out_and_may_have_created_a_task(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(json={"task_id": "late"}, delay=2.0))
    started = time.monotonic()

    with pytest.raises(UpstreamTimeout) as info:
        client_for(server.url, timeout=0.2).imagine(prompt="fox")

    assert time.monotonic() - started < 1.5
    assert info.value.maybe_created is True
    assert info.value.retryable is True
    assert isinstance(info.value, UpstreamUnavailable)
    assert len(server.seen) == 1


def test_a_connection_dropped_after_sending_may_have_created_a_task(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(hang_up=True))

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url).pan(parent_task_id="p", index=2, direction="left")

    assert not isinstance(info.value, UpstreamTimeout)
    assert info.value.maybe_created is True
    assert KEY not in str(info.value)


def test_a_refused_connection_created_nothing() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(f"http://127.0.0.1:{port}").imagine(prompt="fox")

    assert info.value.maybe_created is False
    assert info.value.retryable is True
    assert info.value.__cause__ is None  # requests' exception (which holds the headers) is not attached


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>Bad gateway</html>"),
        Reply(json=["not", "an", "object"]),
        Reply(json={"id": "no task_id field"}),
    ],
)
def test_a_2xx_without_a_readable_task_id_may_have_created_a_task(
    stub: Callable[..., StubServer], reply: Reply
) -> None:
    server = stub(reply)

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url).imagine(prompt="fox")

    assert info.value.maybe_created is True


def test_an_html_error_page_does_not_become_the_message(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(status=502, body=b"<html><body>nginx: bad gateway</body></html>"))

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url).imagine(prompt="fox")

    assert "<html>" not in info.value.message
    assert "502" in str(info.value)


# --- Failures on fetch: retried with backoff -------------------------------------------------------------
def test_fetch_retries_a_429_after_retry_after(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(status=429, json={}, headers={"Retry-After": "1"}), Reply(json=finished_grid("t-1")))

    state = client_for(server.url, sleeps).fetch("t-1")

    assert state.is_finished
    assert sleeps == [1.0]
    assert server.paths == ["/fetch", "/fetch"]
    assert server.seen[0].json == {"task_id": "t-1"}


def test_fetch_gives_up_at_once_when_told_to_wait_longer_than_the_cap(
    stub: Callable[..., StubServer], sleeps: list[float]
) -> None:
    server = stub(Reply(status=429, json={}, headers={"Retry-After": "120"}))

    with pytest.raises(RateLimited) as info:
        client_for(server.url, sleeps, backoff_cap=8.0).fetch("t-1")

    assert info.value.retry_after == 120
    assert sleeps == []
    assert len(server.seen) == 1


def test_fetch_retries_5xx_with_capped_jittered_backoff(
    stub: Callable[..., StubServer], sleeps: list[float]
) -> None:
    server = stub(Reply(status=500, json={}))

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url, sleeps, fetch_attempts=4, backoff_base=0.5, backoff_cap=1.5).fetch("t-1")

    assert len(server.seen) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(1.5, 0.5 * 2 ** (attempt - 1))
    assert info.value.maybe_created is False  # a read never creates anything


def test_fetch_recovers_from_a_non_json_answer(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(
        Reply(body=b"upstream hiccup"), Reply(status=502, json={}), Reply(json=finished_grid("t-1"))
    )

    assert client_for(server.url, sleeps).fetch("t-1").task_id == "t-1"
    assert len(server.seen) == 3


def test_fetch_gives_up_on_a_non_json_body(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(body=b"not json"))

    with pytest.raises(UpstreamUnavailable):
        client_for(server.url, sleeps, fetch_attempts=2).fetch("t-1")
    assert len(server.seen) == 2


def test_fetch_timeouts_are_retried(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(json=finished_grid(), delay=2.0))

    with pytest.raises(UpstreamTimeout):
        client_for(server.url, sleeps, timeout=0.2, fetch_attempts=2).fetch("t-1")
    assert len(server.seen) == 2


def test_fetch_does_not_retry_a_bad_key(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(status=401, json={}))

    with pytest.raises(AuthenticationFailed):
        client_for(server.url, sleeps).fetch("t-1")
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [400, 404])
def test_fetch_of_an_unknown_id_is_task_not_found(
    stub: Callable[..., StubServer], sleeps: list[float], status: int
) -> None:
    server = stub(Reply(status=status, json={"errors": [{"msg": "Task not found"}]}))

    with pytest.raises(TaskNotFound) as info:
        client_for(server.url, sleeps).fetch("nope")

    assert info.value.message == "Task not found"
    assert len(server.seen) == 1


def test_fetch_many_leaves_out_what_upstream_leaves_out(stub: Callable[..., StubServer]) -> None:
    server = stub(
        Reply(json={"tasks": [finished_grid("b"), finished_grid("zzz-not-asked"), {"status": "finished"}]}),
        Reply(status=400, json={"errors": [{"msg": "Task not found"}]}),
    )

    states = client_for(server.url).fetch_many(["a", "b", "b"] + [f"x{i}" for i in range(18)] + ["lone"])

    assert [s.task_id for s in states] == ["b"]
    assert server.paths == ["/fetch-many", "/fetch"]
    assert server.seen[0].json == {"task_ids": ["a", "b"] + [f"x{i}" for i in range(18)]}
    assert server.seen[1].json == {"task_id": "lone"}


def test_fetch_many_of_nothing_calls_nothing() -> None:
    client, network = offline_client()
    assert client.fetch_many([]) == []
    assert network.calls == []


def test_account_is_read_leniently(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(json={"credits": "1200", "plan": {"name": "Pro"}, "email": "x@example.com"}))

    account = client_for(server.url).account()

    assert account == Account(credits=1200.0, plan="Pro")
    assert account.raw["email"] == "x@example.com"
    assert server.seen[0].method == "GET"
    assert server.seen[0].path == "/account"


# --- Parsing task objects (fetch answers and webhook bodies) --------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("40", 40),
        (40, 40),
        (40.0, 40),
        ("40%", 40),
        (" 40 % ", 40),
        ("40.7", 40),
        (140, 100),
        (-3, 0),
        ("abc", None),
        (None, None),
        (True, None),
        ("nan", None),
        ([40], None),
    ],
)
def test_percentage_forms(value: Any, expected: int | None) -> None:
    state = TaskState.from_payload({"task_id": "t", "status": "processing", "percentage": value})
    assert state.percentage == expected


@pytest.mark.parametrize(
    "status", ["pending", "staged", "starting", "processing", "retrying", "queued-ish", ""]
)
def test_other_statuses_are_still_working(status: str) -> None:
    state = TaskState.from_payload({"task_id": "t", "status": status, "message": "busy"})
    assert not state.is_terminal
    assert not state.is_failed
    assert not state.is_finished


def test_status_is_lowercased_and_the_raw_kept() -> None:
    state = TaskState.from_payload({**finished_grid(" t-9 "), "status": " FINISHED"})
    assert state.task_id == "t-9"
    assert state.status == "finished"
    assert state.raw_status == " FINISHED"
    assert state.is_finished and state.is_terminal


@pytest.mark.parametrize(
    "payload",
    [
        {"error": "Banned prompt"},
        {"message": "Banned prompt"},
        {"errors": [{"msg": "Banned prompt"}]},
        {"error": {"message": "Banned prompt"}},
    ],
)
def test_failed_shapes_keep_the_reason(payload: dict[str, Any]) -> None:
    state = TaskState.from_payload({"task_id": "t", "status": "failed", **payload})
    assert state.is_failed and state.is_terminal
    assert state.error == "Banned prompt"
    assert state.result_urls == ()


def test_a_failed_task_without_a_reason_is_still_failed() -> None:
    state = TaskState.from_payload({"task_id": "t", "status": "failed"})
    assert state.is_failed
    assert state.error is None


@pytest.mark.parametrize("payload", [{}, {"task_id": ""}, {"task_id": None, "status": "finished"}, [], "t"])
def test_a_payload_without_a_task_id_is_invalid(payload: Any) -> None:
    with pytest.raises(InvalidPayload):
        TaskState.from_payload(payload)


def test_webhook_bodies_parse_like_fetch_answers() -> None:
    state = TaskState.from_json(json.dumps(finished_grid("hook-1")).encode())
    assert state.task_id == "hook-1"
    assert state.result_urls == tuple(f"https://cdn.example/{i}.png" for i in range(1, 5))
    assert state.original_image_url == "https://cdn.example/grid.png"
    assert state.raw["task_type"] == "imagine"
    with pytest.raises(InvalidPayload):
        TaskState.from_json(b"{not json")


def test_result_urls_of_an_upscale_is_its_one_image() -> None:
    state = TaskState.from_payload(
        {
            "task_id": "u",
            "task_type": "upscale",
            "status": "finished",
            "image_url": "https://cdn.example/u.png",
        }
    )
    assert state.result_urls == ("https://cdn.example/u.png",)
    assert state.image_urls == ()


def test_junk_in_image_urls_is_dropped() -> None:
    state = TaskState.from_payload(
        {"task_id": "t", "status": "finished", "image_urls": ["a", None, 3, " ", "b"]}
    )
    assert state.image_urls == ("a", "b")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1", 1.0), ("2.5", 2.5), ("0", 0.0), ("-4", 0.0), ("soon", None), (None, None), ("", None)],
)
def test_retry_after_in_seconds(header: str | None, expected: float | None) -> None:
    assert _parse_retry_after(header) == expected


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 85 <= (_parse_retry_after(later) or 0) <= 90
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=90), usegmt=True)
    assert _parse_retry_after(past) == 0.0
