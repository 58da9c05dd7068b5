"""A small typed client for Apiframe, the REST API that drives Midjourney.

It speaks the HTTP contract in ../shared/docs/apiframe-contract.md and knows nothing of models or the
database: the studio's services call it and decide what a result or a failure means for a task.

Create calls (imagine, vary, upscale, pan, zoom) return the new upstream task id and are never retried here.
Fetch calls (fetch, fetch_many, account) retry transient failures with capped, jittered backoff.
Every failure is a typed `ApiframeError` that says whether trying again may help (`retryable`) and, for a
create, whether Apiframe may have created a task anyway (`maybe_created`).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import requests
import urllib3.exceptions

logger = logging.getLogger(__name__)

# --- Vocabulary (exact values the API accepts; forms can offer these as choices) --------------------------
IMAGINE_MODES: Final = ("fast", "turbo")
VARY_TYPES: Final = ("strong", "subtle")
UPSCALE_TYPES: Final = ("subtle", "creative")
PAN_DIRECTIONS: Final = ("up", "down", "left", "right")
ZOOM_MIN: Final = 1.0  # 1 = "make square"
ZOOM_MAX: Final = 2.0  # (1, 2] = zoom out by that factor
INDEXES: Final = ("1", "2", "3", "4")
# Only these two end a task; pending, staged, starting, processing, retry(ing) and anything new: "working".
FINISHED: Final = "finished"
FAILED: Final = "failed"
TERMINAL_STATUSES: Final = frozenset({FINISHED, FAILED})
FETCH_MANY_MAX: Final = 20  # /fetch-many takes 2 to 20 ids per call
TASK_ID_MAX_LENGTH: Final = 64  # Apiframe's ids are UUIDs (36); anything much longer is not one of them
# Apiframe's task objects are a few levels deep; a body nested deeper than this is not one of them.
PAYLOAD_MAX_DEPTH: Final = 32

_ASPECT_RATIO = re.compile(r"^[1-9]\d{0,3}:[1-9]\d{0,3}$")
# Control characters or surrounding whitespace in a header value make requests raise an error that quotes the
# value, i.e. the key; refuse such a key up front instead.
_UNSAFE_HEADER_VALUE = re.compile(r"[\x00-\x1f\x7f]|^\s|\s$")


# --- Errors ----------------------------------------------------------------------------------------------
class ApiframeError(Exception):
    """Apiframe refused or failed a call. `message` is the upstream's own reason when it gave one."""

    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        maybe_created: bool = False,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        # Meaningful for create calls only: True when the request may have reached Apiframe and made a task.
        self.maybe_created = maybe_created
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status_code})" if self.status_code else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable!r}, maybe_created={self.maybe_created!r})"
        )


class InvalidRequest(ApiframeError):
    """400 (bad input, banned prompt, unknown parent task) or refused locally before any HTTP call."""


class AuthenticationFailed(ApiframeError):
    """401: the API key is wrong or revoked."""


class OutOfCredits(ApiframeError):
    """402/403: the account cannot pay for this."""


class TaskNotFound(ApiframeError):
    """/fetch does not know this task id."""


class InvalidPayload(ApiframeError):
    """A task object (from fetch or a webhook delivery) that cannot be read: no task_id, or not an object."""


class UpstreamUnavailable(ApiframeError):
    """5xx, connection errors, non-JSON or wrong-shape answers: Apiframe is not answering sensibly (yet)."""

    default_retryable = True


class UpstreamTimeout(UpstreamUnavailable):
    """No answer within the timeout."""


class RateLimited(ApiframeError):
    """429: too many requests or too many concurrent jobs for the plan."""

    default_retryable = True

    def __init__(self, message: str, status_code: int | None = 429, *, retry_after: float | None = None) -> None:
        super().__init__(message, status_code, maybe_created=False)
        self.retry_after = retry_after


# --- Parsed answers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TaskState:
    """One task as fetch (or a webhook delivery, which carries the same object) describes it.

    Parsed leniently: the upstream's documentation and its real answers disagree on types, so anything
    optional that does not parse becomes None/empty instead of an error.
    """

    task_id: str
    status: str  # lowercased and stripped; "" when missing
    raw_status: str | None = None  # exactly as sent, for logs and the admin
    task_type: str | None = None
    percentage: int | None = None  # 0-100
    original_image_url: str | None = None  # the 2x2 composite of a grid
    image_urls: tuple[str, ...] = ()  # a grid's four images, in index order 1-4
    image_url: str | None = None  # an upscale's single image
    error: str | None = None  # the upstream's reason; meaningful when is_failed
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> TaskState:
        if not isinstance(data, Mapping):
            raise InvalidPayload(f"task payload is a {type(data).__name__}, not an object")
        task_id = data.get("task_id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id.strip():
            raise InvalidPayload("task payload has no task_id")
        task_id = task_id.strip()
        # Looked up and stored as is: no control characters (PostgreSQL refuses NUL), no spaces, not too long.
        if len(task_id) > TASK_ID_MAX_LENGTH or not task_id.isprintable() or any(c.isspace() for c in task_id):
            raise InvalidPayload("task payload has a task_id that cannot be Apiframe's")
        raw_status = data.get("status")
        raw_status = None if raw_status is None else str(raw_status)
        return cls(
            task_id=task_id,
            status=(raw_status or "").replace("\x00", "").strip().lower(),  # a NUL means nothing in a word
            raw_status=raw_status,
            task_type=_optional_str(data.get("task_type")),
            percentage=_parse_percentage(data.get("percentage")),
            original_image_url=_optional_str(data.get("original_image_url")),
            image_urls=_str_tuple(data.get("image_urls")),
            image_url=_optional_str(data.get("image_url")),
            error=_error_text(data),
            raw=dict(data),
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> TaskState:
        """Parse a raw webhook body; bad JSON is an InvalidPayload like a missing task_id."""
        return cls.from_payload(json_object(body))

    @property
    def is_finished(self) -> bool:
        return self.status == FINISHED

    @property
    def is_failed(self) -> bool:
        return self.status == FAILED

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def result_urls(self) -> tuple[str, ...]:
        """The result images in index order: a grid's four, or an upscale's one."""
        if self.image_url and (self.task_type or "").lower().startswith("upscale"):
            return (self.image_url,)
        if self.image_urls:
            return self.image_urls
        return (self.image_url,) if self.image_url else ()


@dataclass(frozen=True, slots=True)
class Account:
    """GET /account, read leniently: the shape is not documented for the Pro API."""

    credits: float | None = None
    plan: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Account:
        credits: float | None = None
        for key in ("credits", "remaining_credits", "credits_left", "balance"):
            credits = _parse_number(data.get(key))
            if credits is not None:
                break
        plan = data.get("plan") or data.get("plan_name") or data.get("subscription")
        if isinstance(plan, Mapping):
            plan = plan.get("name")
        return cls(credits=credits, plan=_optional_str(plan), raw=dict(data))


# --- The client ---------------------------------------------------------------------------------------------
class ApiframeClient:
    """Apiframe over one `requests.Session`. Cheap to build; not meant to be shared between threads."""

    def __init__(
        self,
        *,
        base_url: str,
        fetch_url: str,
        api_key: str,
        timeout: float = 20.0,
        connect_timeout: float = 5.0,
        session: requests.Session | None = None,
        fetch_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        api_key = (api_key or "").strip()
        if not api_key:
            raise ValueError("Apiframe API key is empty")
        if _UNSAFE_HEADER_VALUE.search(api_key):
            raise ValueError("Apiframe API key contains control characters")  # never echo the key itself
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if fetch_attempts < 1:
            raise ValueError("fetch_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.fetch_url = fetch_url.rstrip("/")
        self._api_key = api_key
        # (connect, read): a dead host fails fast, a slow answer still gets the full read timeout.
        self.timeout = (min(connect_timeout, timeout), timeout)
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self.fetch_attempts = fetch_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep

    @classmethod
    def from_settings(cls, **overrides: Any) -> ApiframeClient:
        """The client configured by Django settings (APIFRAME_*); keyword overrides win."""
        from django.conf import settings  # here only, so the module imports without Django configured

        options: dict[str, Any] = {
            "base_url": settings.APIFRAME_BASE_URL,
            "fetch_url": settings.APIFRAME_FETCH_URL,
            "api_key": settings.APIFRAME_API_KEY,
            "timeout": settings.APIFRAME_TIMEOUT,
        }
        return cls(**{**options, **overrides})

    def __repr__(self) -> str:
        return f"ApiframeClient(base_url={self.base_url!r}, fetch_url={self.fetch_url!r})"

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self) -> ApiframeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Create calls -------------------------------------------------------------------------------------
    # Never retried in here: a create that timed out or hit an ambiguous 5xx may still have made a task (and
    # spent credits) upstream, and only the caller knows what to do about that. The studio's submit job
    # records the attempt, re-submits only when `maybe_created` is False, and otherwise lets the poller or the
    # task timeout settle it; its own idempotency key stops a double click from making a second task.

    def imagine(
        self,
        *,
        prompt: str,
        mode: str = "fast",
        aspect_ratio: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """Start a 4-image grid from a prompt; returns the task id."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("prompt must not be empty")
        _require_choice("mode", mode, IMAGINE_MODES)
        body: dict[str, Any] = {"prompt": prompt, "mode": mode}
        if aspect_ratio:  # None or "" means Midjourney's default (1:1)
            if not isinstance(aspect_ratio, str) or not _ASPECT_RATIO.match(aspect_ratio):
                raise InvalidRequest(f"aspect_ratio must look like '16:9', not {aspect_ratio!r}")
            body["aspect_ratio"] = aspect_ratio
        return self._create("imagine", body, webhook_url, webhook_secret)

    def vary(
        self,
        *,
        parent_task_id: str,
        index: int | str,
        type: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """Four new variations (strong|subtle) of image `index` of a finished task."""
        _require_choice("type", type, VARY_TYPES)
        body = _child_body(parent_task_id, index, type)
        return self._create("vary", body, webhook_url, webhook_secret)

    def upscale(
        self,
        *,
        parent_task_id: str,
        index: int | str,
        type: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """One image of a grid, about 2x (subtle|creative)."""
        _require_choice("type", type, UPSCALE_TYPES)
        body = _child_body(parent_task_id, index, type)
        return self._create("upscale", body, webhook_url, webhook_secret)

    def pan(
        self,
        *,
        parent_task_id: str,
        index: int | str,
        direction: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """A new grid with the canvas of image `index` extended up|down|left|right."""
        _require_choice("direction", direction, PAN_DIRECTIONS)
        body = _child_body(parent_task_id, index, direction)
        return self._create("pan", body, webhook_url, webhook_secret)

    def zoom(
        self,
        *,
        parent_task_id: str,
        index: int | str,
        factor: float,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """Zoom out image `index` by `factor` in (1, 2], or make it square with 1."""
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
            raise InvalidRequest(f"zoom factor must be a number, not {factor!r}")
        if not ZOOM_MIN <= factor <= ZOOM_MAX:
            raise InvalidRequest(f"zoom factor must be 1 (make square) or in (1, 2], not {factor}")
        # The seed sends a JSON number (1.5); whole factors go out as 1 and 2, exactly as documented.
        number: int | float = int(factor) if float(factor).is_integer() else float(factor)
        body = _child_body(parent_task_id, index, number)
        return self._create("zoom", body, webhook_url, webhook_secret)

    # --- Fetch calls ----------------------------------------------------------------------------------------
    def fetch(self, task_id: str) -> TaskState:
        """The task's current state; TaskNotFound when Apiframe does not know the id."""
        task_id = _require_task_id(task_id, "task_id")
        return self._retrying(lambda: self._fetch_one(task_id))

    def fetch_many(self, task_ids: Sequence[str]) -> list[TaskState]:
        """States of many tasks, in the order asked, duplicates dropped.

        Chunks of up to 20 ids go to /fetch-many, a lone id to /fetch. Ids Apiframe does not return (unknown,
        expired) are simply absent. Any other failure of a chunk, after its retries, raises: the caller could
        not tell "absent" from "not asked" otherwise.
        """
        if isinstance(task_ids, str):
            raise TypeError("fetch_many takes a sequence of ids, not one string")
        wanted = list(dict.fromkeys(_require_task_id(t, "task_ids") for t in task_ids))
        found: dict[str, TaskState] = {}
        for start in range(0, len(wanted), FETCH_MANY_MAX):
            chunk = wanted[start : start + FETCH_MANY_MAX]
            if len(chunk) == 1:
                # /fetch-many refuses fewer than 2 ids, so a lone id (often the last chunk) goes to /fetch.
                states = self._fetch_each(chunk)
            else:
                try:
                    states = self._retrying(lambda chunk=chunk: self._fetch_chunk(chunk))
                except InvalidRequest as exc:
                    # If Apiframe refuses a whole batch over one id it no longer knows (instead of leaving it
                    # out), that id must not block every other task's poll: ask for these one by one.
                    logger.warning(
                        "apiframe /fetch-many refused %d ids (%s); fetching them one by one", len(chunk), exc
                    )
                    states = self._fetch_each(chunk)
            found.update((state.task_id, state) for state in states)
        return [found[t] for t in wanted if t in found]  # in the order asked; anything not asked is dropped

    def account(self) -> Account:
        """Credits and plan of the account behind the key."""

        def call() -> Account:
            data = self._send("GET", f"{self.fetch_url}/account", None, creates=False)
            if not isinstance(data, Mapping):
                raise UpstreamUnavailable("/account answered with an unexpected shape", 200)
            return Account.from_payload(data)

        return self._retrying(call)

    # --- Internals ------------------------------------------------------------------------------------------
    def _create(self, action: str, body: dict[str, Any], webhook_url: str | None, webhook_secret: str | None) -> str:
        # Half a webhook configuration is none (e.g. APIFRAME_WEBHOOK_URL left empty): rely on polling.
        if webhook_url and webhook_secret:
            if not webhook_url.startswith(("https://", "http://")):
                raise InvalidRequest("webhook_url must be an http(s) URL")
            body["webhook_url"] = webhook_url
            body["webhook_secret"] = webhook_secret
        data = self._send("POST", f"{self.base_url}/{action}", body, creates=True)
        task_id = data.get("task_id") if isinstance(data, Mapping) else None
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id.strip():
            # A 2xx reached Apiframe, so a task may exist even though we cannot read its id.
            message = _error_text(data) if isinstance(data, Mapping) else None
            raise UpstreamUnavailable(message or f"/{action} answered without a task_id", 200, maybe_created=True)
        logger.info("apiframe %s created task %s", action, task_id)
        return task_id.strip()

    def _fetch_one(self, task_id: str) -> TaskState:
        # Apiframe answers an unknown id with 400 (sometimes 404); for /fetch the id is the whole request.
        data = self._send("POST", f"{self.fetch_url}/fetch", {"task_id": task_id}, creates=False, not_found=(400, 404))
        if not isinstance(data, Mapping):
            raise UpstreamUnavailable("/fetch answered with an unexpected shape", 200)
        if not data.get("task_id") and "status" in data:
            data = {**data, "task_id": task_id}  # lenient: the id we asked about
        try:
            return TaskState.from_payload(data)
        except InvalidPayload:
            raise UpstreamUnavailable("/fetch answered without a task", 200) from None

    def _fetch_each(self, task_ids: list[str]) -> list[TaskState]:
        states = []
        for task_id in task_ids:
            with contextlib.suppress(TaskNotFound):  # for fetch_many an unknown id is simply absent
                states.append(self._retrying(lambda task_id=task_id: self._fetch_one(task_id)))
        return states

    def _fetch_chunk(self, task_ids: list[str]) -> list[TaskState]:
        data = self._send("POST", f"{self.fetch_url}/fetch-many", {"task_ids": task_ids}, creates=False)
        items = data.get("tasks") if isinstance(data, Mapping) else data  # a bare list is fine too
        if not isinstance(items, list):
            raise UpstreamUnavailable("/fetch-many answered with an unexpected shape", 200)
        states = []
        for item in items:
            try:
                states.append(TaskState.from_payload(item))
            except InvalidPayload:
                logger.warning("apiframe /fetch-many returned an item without a task_id; skipped")
        return states

    def _retrying[T](self, call: Callable[[], T]) -> T:
        """Run a read-only call, retrying transient failures with capped exponential backoff + full jitter."""
        for attempt in range(1, self.fetch_attempts + 1):
            try:
                return call()
            except RateLimited as exc:
                if attempt == self.fetch_attempts:
                    raise
                if exc.retry_after is None:
                    delay = self._backoff(attempt)
                elif exc.retry_after > self.backoff_cap:
                    raise  # asked to wait longer than we may block: the caller (the poller) backs off instead
                else:
                    delay = exc.retry_after
                error: ApiframeError = exc
            except UpstreamUnavailable as exc:
                if attempt == self.fetch_attempts:
                    raise
                delay = self._backoff(attempt)
                error = exc
            logger.warning(
                "apiframe read failed (%s, attempt %d/%d); retrying in %.2fs",
                error,
                attempt,
                self.fetch_attempts,
                delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        # Full jitter: many pollers that failed together do not come back together.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        *,
        creates: bool,
        not_found: tuple[int, ...] = (),
    ) -> Any:
        """One HTTP exchange: the decoded JSON of a 2xx answer, or a typed ApiframeError.

        Errors are raised `from None`: requests' exceptions carry the prepared request, headers and key.
        """
        path = url.removeprefix(self.base_url if creates else self.fetch_url) or url
        headers = {"Authorization": self._api_key, "Content-Type": "application/json"}
        try:
            response = self._session.request(
                method,
                url,
                json=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,  # a redirect means a wrong base URL; never replay a create elsewhere
            )
        except requests.RequestException as exc:
            raise self._transport_error(path, exc, creates=creates) from None

        status = response.status_code
        try:
            data: Any = response.json()
        except ValueError:
            data = _NOT_JSON
        if 200 <= status < 300:
            if data is _NOT_JSON:
                raise UpstreamUnavailable(f"{path} answered with a non-JSON body", status, maybe_created=creates)
            return data

        message = self._redact(
            (_error_text(data) if isinstance(data, Mapping) else None)
            or (_text_snippet(response) if data is _NOT_JSON else None)
            or f"{path} answered {status} {response.reason or ''}".strip()
        )
        if status in not_found:
            raise TaskNotFound(message, status)
        if 300 <= status < 400:
            raise ApiframeError(f"{path} redirected to {response.headers.get('Location')!r}; check the URL", status)
        if status == 401:
            raise AuthenticationFailed(message, status)
        if status in (402, 403):
            raise OutOfCredits(message, status)
        if status == 429:
            raise RateLimited(message, status, retry_after=_parse_retry_after(response.headers.get("Retry-After")))
        if status == 408:  # the server gave up waiting for our request: nothing was processed
            raise UpstreamTimeout(message, status, maybe_created=False)
        if 400 <= status < 500:
            raise InvalidRequest(message, status)
        # 503 means "not taking requests" (nothing created); 500/502/504 may come after the work was done.
        raise UpstreamUnavailable(message, status, maybe_created=creates and status != 503)

    def _transport_error(self, path: str, exc: requests.RequestException, *, creates: bool) -> ApiframeError:
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        # Refused, unresolvable, connect timeout, TLS handshake: the request never left this machine.
        never_sent = isinstance(exc, _NEVER_SENT) or isinstance(reason, _NEVER_SENT_REASONS)
        maybe_created = creates and not never_sent
        detail = self._redact(f"{type(exc).__name__}: {exc}")[:300]
        # requests reports a timeout while reading the body as a ConnectionError; it is still a timeout.
        if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.ReadTimeoutError):
            return UpstreamTimeout(f"{path} timed out ({detail})", maybe_created=maybe_created)
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return ApiframeError(f"{path}: invalid Apiframe URL ({detail})")
        return UpstreamUnavailable(f"{path} unreachable ({detail})", maybe_created=maybe_created)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]")


# --- Parsing helpers ----------------------------------------------------------------------------------------
_NOT_JSON: Final = object()
_NEVER_SENT: Final = (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)
_NEVER_SENT_REASONS: Final = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)


def json_object(body: bytes | str) -> dict[str, Any]:
    """A webhook body as a JSON object, strictly: no NaN or Infinity (nor 1e400), nothing absurdly deep.

    Python's json accepts those; no database's JSON column does, so they are refused here, before anything is
    applied. Every refusal is an InvalidPayload that says why.
    """
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidPayload("body is nested too deeply") from None
    except ValueError:  # UnicodeDecodeError included
        raise InvalidPayload("body is not JSON (NaN and Infinity are not JSON either)") from None
    if not isinstance(data, dict):
        raise InvalidPayload("body is not a JSON object")
    if _deeper_than(data, PAYLOAD_MAX_DEPTH):
        raise InvalidPayload("body is nested too deeply")
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as infinity
        raise ValueError(f"{text[:20]} is out of range")
    return number


def _deeper_than(value: object, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _require_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _require_task_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be a non-empty task id, not {value!r}")
    return value.strip()


def _child_body(parent_task_id: str, index: int | str, type_: str | int | float) -> dict[str, Any]:
    """The body every action on an earlier result shares; `index` goes out as a string "1"-"4"."""
    parent = _require_task_id(parent_task_id, "parent_task_id")
    text = str(index).strip() if isinstance(index, int | str) and not isinstance(index, bool) else None
    if text not in INDEXES:
        raise InvalidRequest(f"index must be 1-4, not {index!r}")
    return {"parent_task_id": parent, "index": text, "type": type_}


def _optional_str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _str_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return ()
    return tuple(s.strip() for s in value if isinstance(s, str) and s.strip())


def _parse_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().rstrip("%").strip()
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        return None
    return number if math.isfinite(number) else None


def _parse_percentage(value: object) -> int | None:
    """ "40", 40, 40.0 and "40%" all mean 40; clamped to 0-100; anything else is unknown."""
    number = _parse_number(value)
    return None if number is None else max(0, min(100, int(number)))


def _error_text(data: Mapping[str, Any]) -> str | None:
    """The upstream's reason, from `error`, `errors[].msg` or `message`, whichever it used."""
    error = data.get("error")
    if isinstance(error, Mapping):
        error = error.get("message") or error.get("msg")
    if isinstance(error, str) and error.strip():
        return error.strip()
    errors = data.get("errors")
    if isinstance(errors, Mapping):
        errors = [errors]
    if isinstance(errors, list):
        parts = []
        for item in errors:
            text = item.get("msg") or item.get("message") if isinstance(item, Mapping) else item
            if isinstance(text, str) and text.strip():
                parts.append(text.strip())
        if parts:
            return "; ".join(parts)
    for key in ("message", "detail"):
        text = data.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def _text_snippet(response: requests.Response) -> str | None:
    """A short plain-text error body (not an HTML error page) is still a useful reason."""
    text = " ".join((response.text or "").split())[:200]
    return text if text and not text.startswith("<") else None


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
