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
                stub.seen.append(Seen(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None))
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
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
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
    return ApiframeClient(base_url="http://x/pro", fetch_url="http://x", api_key=KEY, session=session), adapter


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


@pytest.mark.parametrize(("status", "error"), [(402, OutOfCredits), (403, OutOfCredits), (401, AuthenticationFailed)])
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
    server = stub(Reply(status=429, json={"errors": [{"msg": "Too many jobs"}]}, headers={"Retry-After": later}))

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


def test_an_upstream_message_that_echoes_the_key_is_redacted(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(status=401, json={"message": f"Invalid API key: {KEY}"}))

    with pytest.raises(AuthenticationFailed) as info:
        client_for(server.url).imagine(prompt="fox")

    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    assert info.value.message == "Invalid API key: [redacted]"


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
    assert "non-JSON" in info.value.message or "task_id" in info.value.message


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


def test_fetch_retries_5xx_with_capped_jittered_backoff(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(status=500, json={}))

    with pytest.raises(UpstreamUnavailable) as info:
        client_for(server.url, sleeps, fetch_attempts=4, backoff_base=0.5, backoff_cap=1.5).fetch("t-1")

    assert len(server.seen) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(1.5, 0.5 * 2 ** (attempt - 1))
    assert info.value.maybe_created is False  # a read never creates anything


def test_fetch_recovers_from_a_non_json_answer(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(body=b"upstream hiccup"), Reply(status=502, json={}), Reply(json=finished_grid("t-1")))

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


def test_fetch_many_falls_back_to_one_by_one_when_a_batch_is_refused(stub: Callable[..., StubServer]) -> None:
    server = stub(
        Reply(status=400, json={"errors": [{"msg": "Invalid task id: gone"}]}),
        Reply(json=finished_grid("a")),
        Reply(status=400, json={"errors": [{"msg": "Task not found"}]}),
    )

    states = client_for(server.url).fetch_many(["a", "gone"])

    assert [s.task_id for s in states] == ["a"]
    assert server.paths == ["/fetch-many", "/fetch", "/fetch"]


def test_fetch_many_of_nothing_calls_nothing() -> None:
    client, network = offline_client()
    assert client.fetch_many([]) == []
    assert network.calls == []


def test_fetch_fills_in_a_missing_task_id_with_the_one_asked(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(json={"status": "processing", "percentage": "40"}))

    state = client_for(server.url).fetch("t-7")

    assert (state.task_id, state.status, state.percentage) == ("t-7", "processing", 40)


def test_a_408_on_create_created_nothing(stub: Callable[..., StubServer]) -> None:
    server = stub(Reply(status=408, json={}))

    with pytest.raises(UpstreamTimeout) as info:
        client_for(server.url).imagine(prompt="fox")

    assert info.value.maybe_created is False
    assert info.value.retryable is True


def test_account_retries_like_fetch(stub: Callable[..., StubServer], sleeps: list[float]) -> None:
    server = stub(Reply(status=503, json={}), Reply(json={"credits": 8}))

    assert client_for(server.url, sleeps).account().credits == 8.0
    assert len(server.seen) == 2
    assert len(sleeps) == 1


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


@pytest.mark.parametrize("status", ["pending", "staged", "starting", "processing", "retrying", "queued-ish", ""])
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
    # Even if an upscale ever carried a list as well, its result is the one upscaled image.
    both = TaskState.from_payload({**state.raw, "image_urls": ["https://cdn.example/grid-1.png"]})
    assert both.result_urls == ("https://cdn.example/u.png",)


def test_junk_in_image_urls_is_dropped() -> None:
    state = TaskState.from_payload({"task_id": "t", "status": "finished", "image_urls": ["a", None, 3, " ", "b"]})
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


# --- Against the sandbox, over real HTTP ----------------------------------------------------------------
@pytest.fixture
def upstream(sandbox: Any) -> Iterator[ApiframeClient]:
    with ApiframeClient(
        base_url=f"{sandbox.url}/pro", fetch_url=sandbox.url, api_key=sandbox.engine.config.api_key, timeout=5.0
    ) as client:
        yield client


def wait_until_terminal(client: ApiframeClient, task_id: str, seconds: float = 15.0) -> TaskState:
    deadline = time.monotonic() + seconds
    while True:
        state = client.fetch(task_id)
        if state.is_terminal or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_every_action_runs_against_the_sandbox(upstream: ApiframeClient) -> None:
    parent_id = upstream.imagine(prompt="a lighthouse at dawn, film grain", mode="fast", aspect_ratio="16:9")
    parent = wait_until_terminal(upstream, parent_id)

    assert parent.is_finished, parent
    assert parent.task_id == parent_id
    assert len(parent.image_urls) == 4
    assert parent.original_image_url
    assert parent.result_urls == parent.image_urls

    children = {
        "vary": upstream.vary(parent_task_id=parent_id, index=1, type="strong"),
        "upscale": upstream.upscale(parent_task_id=parent_id, index="2", type="creative"),
        "pan": upstream.pan(parent_task_id=parent_id, index=3, direction="up"),
        "zoom": upstream.zoom(parent_task_id=parent_id, index=4, factor=1.5),
        "square": upstream.zoom(parent_task_id=parent_id, index=1, factor=1),
    }
    assert len(set(children.values()) | {parent_id}) == 6

    for action, task_id in children.items():
        state = wait_until_terminal(upstream, task_id)
        assert state.is_finished, (action, state)
        if action == "upscale":
            assert state.image_url
            assert state.result_urls == (state.image_url,)
        else:
            assert len(state.image_urls) == 4, (action, state)
            assert state.result_urls == state.image_urls
            assert not set(state.image_urls) & set(parent.image_urls)
    # A vary may act on an upscale's result too.
    again = upstream.vary(parent_task_id=children["upscale"], index=1, type="subtle")
    assert wait_until_terminal(upstream, again).is_finished


def test_fetch_reports_progress_before_the_end(upstream: ApiframeClient) -> None:
    task_id = upstream.imagine(prompt="a slow red fox")

    first = upstream.fetch(task_id)

    assert not first.is_terminal
    assert first.status in {"pending", "staged", "starting", "processing"}
    assert first.percentage is None or 0 <= first.percentage <= 100


def test_account_against_the_sandbox(upstream: ApiframeClient) -> None:
    account = upstream.account()
    assert isinstance(account.credits, float)
    assert account.raw


def test_a_wrong_key_is_authentication_failed(sandbox: Any) -> None:
    wrong = "sk-wrong-7c1e0a"
    client = ApiframeClient(base_url=f"{sandbox.url}/pro", fetch_url=sandbox.url, api_key=wrong)

    with pytest.raises(AuthenticationFailed) as on_create:
        client.imagine(prompt="fox")
    with pytest.raises(AuthenticationFailed) as on_fetch:
        client.fetch("anything")

    for info in (on_create, on_fetch):
        assert info.value.status_code == 401
        assert info.value.retryable is False
        assert info.value.maybe_created is False
        assert wrong not in str(info.value)
        assert wrong not in repr(info.value)
        assert sandbox.engine.config.api_key not in str(info.value)


def test_a_banned_prompt_carries_the_sandbox_reason(sandbox: Any, upstream: ApiframeClient) -> None:
    banned = sorted(sandbox.engine.config.banned_words)[0]

    with pytest.raises(InvalidRequest) as info:
        upstream.imagine(prompt=f"a portrait, {banned}, studio light")

    assert info.value.status_code == 400
    assert banned in info.value.message.lower()
    assert info.value.maybe_created is False


def test_an_unknown_parent_carries_the_sandbox_reason(upstream: ApiframeClient) -> None:
    with pytest.raises(InvalidRequest) as info:
        upstream.vary(parent_task_id="00000000-0000-0000-0000-000000000000", index=1, type="strong")

    assert info.value.status_code in (400, 404)
    assert info.value.message
    assert "00000000" in info.value.message or "parent" in info.value.message.lower()


def test_index_5_is_refused_before_any_request(sandbox: Any, upstream: ApiframeClient) -> None:
    parent_id = upstream.imagine(prompt="a fox")
    before = sum(sandbox.engine.request_counts.values())

    with pytest.raises(InvalidRequest, match="index"):
        upstream.upscale(parent_task_id=parent_id, index=5, type="subtle")

    assert sum(sandbox.engine.request_counts.values()) == before


def test_fetch_of_an_unknown_task_is_task_not_found(upstream: ApiframeClient) -> None:
    with pytest.raises(TaskNotFound):
        upstream.fetch("no-such-task")


@pytest.mark.parametrize(
    ("known", "unknown", "fetch_many_calls", "fetch_calls"),
    [(3, 42, 3, 0), (3, 38, 2, 1), (1, 0, 0, 1)],
)
def test_fetch_many_chunks_by_twenty(
    sandbox: Any, upstream: ApiframeClient, known: int, unknown: int, fetch_many_calls: int, fetch_calls: int
) -> None:
    ids = [upstream.imagine(prompt=f"fox number {n}") for n in range(known)]
    asked = [*ids, *(f"unknown-{n}" for n in range(unknown)), *ids]  # duplicates are asked once
    counts = sandbox.engine.request_counts
    before = (counts["/fetch-many"], counts["/fetch"])

    states = upstream.fetch_many(asked)

    assert (counts["/fetch-many"] - before[0], counts["/fetch"] - before[1]) == (fetch_many_calls, fetch_calls)
    assert [s.task_id for s in states] == ids  # unknown ids are simply absent


def test_fetch_many_of_a_lone_unknown_id_is_empty(upstream: ApiframeClient) -> None:
    assert upstream.fetch_many(["no-such-task"]) == []


@pytest.mark.sandbox(faults={"submit_429": 1.0})
def test_a_429_on_create_is_rate_limited(sandbox: Any, upstream: ApiframeClient) -> None:
    with pytest.raises(RateLimited) as info:
        upstream.imagine(prompt="fox")

    assert info.value.retry_after == 1
    assert info.value.maybe_created is False
    assert info.value.retryable is True
    assert sandbox.engine.request_counts["/pro/imagine"] == 1  # not retried


@pytest.mark.sandbox(faults={"submit_5xx": 1.0})
def test_a_5xx_on_create_from_the_sandbox(sandbox: Any, upstream: ApiframeClient) -> None:
    with pytest.raises(UpstreamUnavailable) as info:
        upstream.imagine(prompt="fox", mode="turbo")

    assert info.value.status_code is not None and info.value.status_code >= 500
    assert info.value.maybe_created is (info.value.status_code != 503)
    assert sandbox.engine.request_counts["/pro/imagine"] == 1
