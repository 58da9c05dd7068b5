"""The sandbox, a local Apiframe, over real HTTP: lifecycle, limits, webhooks, pictures, errors and faults."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, ImageChops, ImageStat

from sandbox import images
from sandbox.painting import render_scene
from sandbox.palette import scene_for
from sandbox.server import SandboxConfig, SandboxServer

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["pending", "staged", "starting", "processing", "finished", "failed"]


# --- helpers -----------------------------------------------------------------------------------------------


def post(sandbox: Any, path: str, body: object, key: str | None = None) -> requests.Response:
    key = sandbox.engine.config.api_key if key is None else key
    return requests.post(f"{sandbox.url}{path}", json=body, headers={"Authorization": key}, timeout=10)


def submit(sandbox: Any, action: str, **body: object) -> str:
    response = post(sandbox, f"/pro/{action}", body)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


def fetch(sandbox: Any, task_id: str) -> dict:
    response = post(sandbox, "/fetch", {"task_id": task_id})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def finished(sandbox: Any, task_id: str) -> dict:
    task = wait_for(lambda: (t := fetch(sandbox, task_id))["status"] in ("finished", "failed") and t)
    assert task["status"] == "finished", task
    return task


def picture(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def pictures(task: dict) -> list[Image.Image]:
    return [picture(url) for url in task["image_urls"]]


def grid_of(sandbox: Any, **body: object) -> tuple[str, list[Image.Image]]:
    task_id = submit(sandbox, "imagine", **{"prompt": "a calm ocean at sunset", **body})
    return task_id, pictures(finished(sandbox, task_id))


def children(sandbox: Any, action: str, parent: str, index: str, kinds: list[object]) -> list[dict]:
    """Submit one child per type at once (they run side by side), and wait for them all."""
    ids = [submit(sandbox, action, parent_task_id=parent, index=index, type=kind) for kind in kinds]
    return [finished(sandbox, task_id) for task_id in ids]


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def rank(update: dict) -> tuple[int, int]:
    return ORDER.index(update["status"]), int(update.get("percentage") or 0)


class Receiver:
    """A tiny webhook receiver: every POST's secret header and JSON body, in arrival order."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str | None, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.deliveries.append((self.headers.get("x-webhook-secret"), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/apiframe"

    @property
    def bodies(self) -> list[dict]:
        return [body for _, body in self.deliveries]

    def finals(self) -> int:
        return sum(body["status"] == "finished" for body in self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def with_webhook(sandbox: Any, receiver: Receiver) -> str:
    return submit(sandbox, "imagine", prompt="a lighthouse", webhook_url=receiver.url, webhook_secret="whsec_123")


# --- lifecycle ---------------------------------------------------------------------------------------------


def test_a_task_goes_from_pending_to_finished_with_rising_percentage(sandbox: Any) -> None:
    task_id = submit(sandbox, "imagine", prompt="a quiet coffee shop at dawn, warm tones", mode="turbo")
    seen: list[dict] = []
    while not seen or seen[-1]["status"] not in ("finished", "failed"):
        seen.append(fetch(sandbox, task_id))
    assert [rank(u) for u in seen] == sorted(rank(u) for u in seen)  # never backwards
    percentages = [u["percentage"] for u in seen if u["status"] == "processing"]
    assert all(isinstance(p, str) for p in percentages)
    assert len(set(percentages)) >= 3
    assert {"starting", "processing", "finished"} <= {u["status"] for u in seen}
    task = seen[-1]
    assert task["task_type"] == "imagine" and "percentage" not in task
    assert len(task["image_urls"]) == 4
    assert [im.size for im in pictures(task)] == [(512, 512)] * 4
    assert picture(task["original_image_url"]).size == (1024, 1024)


@pytest.mark.sandbox(concurrency=2)
def test_no_more_than_the_concurrency_limit_work_at_once(sandbox: Any) -> None:
    ids = [submit(sandbox, "imagine", prompt=f"a red kite {n}") for n in range(5)]
    most_working, statuses = 0, set()
    while True:
        tasks = post(sandbox, "/fetch-many", {"task_ids": ids}).json()["tasks"]
        statuses |= {t["status"] for t in tasks}
        most_working = max(most_working, sum(t["status"] in ("starting", "processing") for t in tasks))
        if all(t["status"] == "finished" for t in tasks):
            break
    assert most_working == 2
    assert "staged" in statuses  # the others waited their turn


def test_it_posts_every_update_and_the_result_to_the_webhook_with_the_secret(sandbox: Any, receiver: Receiver) -> None:
    task = finished(sandbox, with_webhook(sandbox, receiver))
    wait_for(receiver.finals)
    assert {secret for secret, _ in receiver.deliveries} == {"whsec_123"}
    assert [rank(b) for b in receiver.bodies] == sorted(rank(b) for b in receiver.bodies)
    assert len({(b["status"], b.get("percentage")) for b in receiver.bodies}) >= 4
    assert receiver.bodies[-1] == task  # the final delivery is what fetch returns


def test_two_servers_in_one_process_keep_their_own_tasks(sandbox: Any) -> None:
    other = SandboxServer(config=SandboxConfig(api_key="other-key", task_seconds=0.2))
    other.start()
    try:
        task_id = submit(sandbox, "imagine", prompt="a fox")
        assert post(other, "/fetch", {"task_id": task_id}).status_code == 400
        assert post(sandbox, "/fetch", {"task_id": task_id}, key="other-key").status_code == 401
    finally:
        other.stop()


def test_the_same_seed_paints_the_same_pictures() -> None:
    bytes_seen = []
    for _ in range(2):
        server = SandboxServer(config=SandboxConfig(task_seconds=0.2, seed=7))
        server.start()
        try:
            task = finished(server, submit(server, "imagine", prompt="misty pine forest"))
            bytes_seen.append(requests.get(task["image_urls"][0], timeout=10).content)
        finally:
            server.stop()
    assert bytes_seen[0] == bytes_seen[1]


# --- pictures: every action true to its meaning ------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "size"), [("16:9", (512, 288)), ("2:3", (341, 512)), ("1:1", (512, 512))])
def test_the_aspect_ratio_shapes_every_image_and_the_grid(sandbox: Any, ratio: str, size: tuple[int, int]) -> None:
    task = finished(sandbox, submit(sandbox, "imagine", prompt="a calm ocean", aspect_ratio=ratio))
    assert {im.size for im in pictures(task)} == {size}
    assert picture(task["original_image_url"]).size == (size[0] * 2, size[1] * 2)


def test_an_ar_parameter_inside_the_prompt_counts_too(sandbox: Any) -> None:
    task = finished(sandbox, submit(sandbox, "imagine", prompt="a calm ocean --ar 3:4"))
    assert picture(task["image_urls"][0]).size == (384, 512)


def test_vary_subtle_changes_less_than_strong(sandbox: Any) -> None:
    parent_id, parent = grid_of(sandbox)
    subtle, strong = children(sandbox, "vary", parent_id, "3", ["subtle", "strong"])
    subtle_diff = [difference(parent[2], im) for im in pictures(subtle)]
    strong_diff = [difference(parent[2], im) for im in pictures(strong)]
    assert {im.size for im in pictures(subtle) + pictures(strong)} == {(512, 512)}
    assert 0 < sum(subtle_diff) < sum(strong_diff)
    assert len({im.tobytes() for im in pictures(strong)}) == 4  # four different variations


def test_upscale_doubles_width_and_height(sandbox: Any) -> None:
    parent_id, parent = grid_of(sandbox, aspect_ratio="16:9")
    subtle, creative = children(sandbox, "upscale", parent_id, "2", ["subtle", "creative"])
    for task in (subtle, creative):
        assert task["task_type"] == "upscale" and "image_urls" not in task
        assert picture(task["image_url"]).size == (parent[1].width * 2, parent[1].height * 2) == (1024, 576)
    assert picture(subtle["image_url"]).tobytes() != picture(creative["image_url"]).tobytes()


@pytest.mark.parametrize(
    ("direction", "size", "at", "seam"),
    [
        ("right", (768, 512), (0, 0), (508, 0, 512, 512)),
        ("left", (768, 512), (256, 0), (256, 0, 260, 512)),
        ("up", (512, 768), (0, 256), (0, 256, 512, 260)),
        ("down", (512, 768), (0, 0), (0, 508, 512, 512)),
    ],
)
def test_pan_grows_the_canvas_by_half_and_keeps_the_old_pixels_exactly(
    sandbox: Any, direction: str, size: tuple[int, int], at: tuple[int, int], seam: tuple[int, int, int, int]
) -> None:
    parent_id, parent = grid_of(sandbox)
    (task,) = children(sandbox, "pan", parent_id, "4", [direction])
    variants = pictures(task)
    assert {im.size for im in variants} == {size}
    step = {"right": (4, 0), "left": (-4, 0), "up": (0, -4), "down": (0, 4)}[direction]
    beyond = (seam[0] + step[0], seam[1] + step[1], seam[2] + step[0], seam[3] + step[1])
    for im in variants:
        assert im.crop((*at, at[0] + 512, at[1] + 512)).tobytes() == parent[3].tobytes()
        # The new area continues the old one: across the seam, neighbouring 4-px strips differ about as
        # much as film grain makes any two neighbouring strips differ (~9), not like unrelated pictures.
        assert difference(im.crop(seam), im.crop(beyond)) < 14
    assert len({im.tobytes() for im in variants}) == 4  # the new area differs between variants
    assert picture(task["original_image_url"]).size == (size[0] * 2, size[1] * 2)


@pytest.mark.parametrize("prompt", ["a calm ocean", "misty pine forest", "a coffee shop", "abstract swirl"])
def test_a_pan_paints_more_of_the_same_world(prompt: str) -> None:
    """The new area is not a different picture glued on: the child's world, painted where the parent sits,
    is the parent (away from its very edge, where blurs now see past it)."""
    scene = scene_for(prompt)
    parent = images.imagine(scene, (512, 512), seed=1)[0]
    for size, at in (((768, 512), (0, 0)), ((768, 512), (256, 0)), ((512, 768), (0, 256)), ((512, 768), (0, 0))):
        world = render_scene(scene, parent.view.around(size, at, shrink=1.0, salt=5))
        inside = world.crop((at[0] + 16, at[1] + 16, at[0] + 496, at[1] + 496))
        assert difference(inside, parent.image.crop((16, 16, 496, 496))) < 0.1


def test_zoom_out_shrinks_the_parent_into_the_middle_of_a_same_size_canvas(sandbox: Any) -> None:
    parent_id, parent = grid_of(sandbox)
    for task, factor in zip(children(sandbox, "zoom", parent_id, "1", [2, "1.5"]), (2, 1.5), strict=True):
        inner = round(512 / factor)
        shrunk = parent[0].resize((inner, inner), Image.Resampling.LANCZOS)
        for im in pictures(task):
            assert im.size == (512, 512)
            at = (512 - inner) // 2
            assert difference(im.crop((at, at, at + inner, at + inner)), shrunk) < 2
            assert difference(im, parent[0]) > 10  # the rest is new surroundings


def test_zoom_1_makes_a_wide_image_square_around_its_pixels(sandbox: Any) -> None:
    parent_id, parent = grid_of(sandbox, aspect_ratio="16:9")
    (task,) = children(sandbox, "zoom", parent_id, "2", [1])
    for im in pictures(task):
        assert im.size == (512, 512)
        assert im.crop((0, 112, 512, 400)).tobytes() == parent[1].tobytes()


def test_a_pan_that_would_pass_2048_px_is_refused(sandbox: Any) -> None:
    task_id, _ = grid_of(sandbox, aspect_ratio="4:1")  # 512 x 128: three pans right reach 1728 px
    for _ in range(3):
        (task,) = children(sandbox, "pan", task_id, "1", ["right"])
        task_id = task["task_id"]
    assert picture(task["image_urls"][0]).size == (1728, 128)
    response = post(sandbox, "/pro/pan", {"parent_task_id": task_id, "index": "1", "type": "left"})
    assert response.status_code == 400 and "2048" in response.json()["errors"][0]["msg"]
    assert post(sandbox, "/pro/pan", {"parent_task_id": task_id, "index": "1", "type": "up"}).status_code == 200


def test_an_upscale_can_be_varied_but_not_upscaled_panned_or_zoomed(sandbox: Any) -> None:
    parent_id, _ = grid_of(sandbox)
    (upscaled,) = children(sandbox, "upscale", parent_id, "1", ["subtle"])
    task_id = upscaled["task_id"]
    (varied,) = children(sandbox, "vary", task_id, "1", ["strong"])
    assert {im.size for im in pictures(varied)} == {(512, 512)}
    for action, kind in (("upscale", "subtle"), ("pan", "left"), ("zoom", 2)):
        response = post(sandbox, f"/pro/{action}", {"parent_task_id": task_id, "index": "1", "type": kind})
        assert response.status_code == 400
        assert "upscale" in response.json()["errors"][0]["msg"]


# --- errors ------------------------------------------------------------------------------------------------

BAD_IMAGINES = [
    {},
    {"prompt": ""},
    {"prompt": "   "},
    {"prompt": 42},
    {"prompt": "x" * 4001},
    {"prompt": "a fox", "mode": "relax"},
    {"prompt": "a fox", "aspect_ratio": "wide"},
    {"prompt": "a fox", "aspect_ratio": "9:1"},
    {"prompt": "a fox", "webhook_url": "ftp://example.com"},
]


@pytest.mark.parametrize("body", BAD_IMAGINES)
def test_a_bad_imagine_gets_400_with_a_message(sandbox: Any, body: dict) -> None:
    response = post(sandbox, "/pro/imagine", body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["msg"]


BAD_CHILDREN = [
    ("vary", "0", "strong"),
    ("vary", "5", "strong"),
    ("vary", "one", "strong"),
    ("vary", True, "strong"),
    ("vary", None, "strong"),
    ("vary", "1", "medium"),
    ("upscale", "1", "strong"),
    ("pan", "1", "sideways"),
    ("zoom", "1", 0.5),
    ("zoom", "1", 2.5),
    ("zoom", "1", "far"),
    ("zoom", "1", True),
]


def test_a_bad_child_action_gets_400_with_a_message(sandbox: Any) -> None:
    parent_id, _ = grid_of(sandbox)
    before = sandbox.engine.stats()["tasks"]
    for action, index, kind in BAD_CHILDREN:
        response = post(sandbox, f"/pro/{action}", {"parent_task_id": parent_id, "index": index, "type": kind})
        assert response.status_code == 400, (action, index, kind)
        assert response.json()["errors"][0]["msg"]
    assert sandbox.engine.stats()["tasks"] == before  # nothing made


def test_an_unknown_or_unfinished_parent_gets_400(sandbox: Any) -> None:
    unknown = post(sandbox, "/pro/vary", {"parent_task_id": "nope", "index": "1", "type": "strong"})
    assert unknown.status_code == 400 and "not found" in unknown.json()["errors"][0]["msg"]
    running = submit(sandbox, "imagine", prompt="a fox")
    early = post(sandbox, "/pro/upscale", {"parent_task_id": running, "index": 1, "type": "subtle"})
    assert early.status_code == 400 and "not finished" in early.json()["errors"][0]["msg"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_gets_400(sandbox: Any, body: bytes) -> None:
    headers = {"Authorization": sandbox.engine.config.api_key, "Content-Type": "application/json"}
    for path in ("/pro/imagine", "/fetch", "/fetch-many"):
        response = requests.post(f"{sandbox.url}{path}", data=body, headers=headers, timeout=10)
        assert response.status_code == 400
        assert response.json()["errors"][0]["msg"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": "Bearer wrong"}])
def test_a_missing_or_wrong_key_gets_401_with_an_empty_object(sandbox: Any, headers: dict) -> None:
    for method, path in (("post", "/pro/imagine"), ("post", "/fetch"), ("post", "/fetch-many"), ("get", "/account")):
        response = requests.request(
            method, f"{sandbox.url}{path}", json={"prompt": "a fox"}, headers=headers, timeout=10
        )
        assert (response.status_code, response.json()) == (401, {})


@pytest.mark.parametrize("form", ["{key}", "Bearer {key}"])
def test_both_authorization_forms_are_accepted(sandbox: Any, form: str) -> None:
    key = form.format(key=sandbox.engine.config.api_key)
    assert post(sandbox, "/pro/imagine", {"prompt": "a fox"}, key=key).status_code == 200
    assert requests.get(f"{sandbox.url}/account", headers={"Authorization": key}, timeout=10).status_code == 200


def test_an_unknown_path_is_a_json_404_and_a_wrong_method_a_405(sandbox: Any) -> None:
    missing = post(sandbox, "/pro/describe", {"prompt": "a fox"})
    assert missing.status_code == 404 and missing.json()["errors"][0]["msg"]
    assert requests.get(f"{sandbox.url}/pro/imagine", timeout=10).status_code == 405
    assert requests.post(f"{sandbox.url}/account", timeout=10).status_code == 405


def test_fetch_of_an_unknown_task_gets_400_with_a_message(sandbox: Any) -> None:
    response = post(sandbox, "/fetch", {"task_id": "00000000-0000-4000-8000-000000000000"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["msg"] == "Task not found"


def test_fetch_many_takes_2_to_20_ids_and_leaves_unknown_ones_out(sandbox: Any) -> None:
    known = [submit(sandbox, "imagine", prompt=f"a fox {n}") for n in range(2)]
    for ids in (known[:1], known * 10 + ["extra"], "not a list"):
        response = post(sandbox, "/fetch-many", {"task_ids": ids})
        assert response.status_code == 400 and response.json()["errors"][0]["msg"]
    tasks = post(sandbox, "/fetch-many", {"task_ids": [known[0], "unknown-id", known[1]]}).json()["tasks"]
    assert [t["task_id"] for t in tasks] == known
    assert len(post(sandbox, "/fetch-many", {"task_ids": known * 10}).json()["tasks"]) == 20


def test_every_task_costs_4_credits(sandbox: Any) -> None:
    def credits() -> int:
        account = requests.get(f"{sandbox.url}/account", headers={"Authorization": "sandbox-key"}, timeout=10).json()
        assert account["plan"] == "sandbox"
        return account["credits"]

    before = credits()
    submit(sandbox, "imagine", prompt="a fox")
    assert credits() == before - 4


# --- banned words ------------------------------------------------------------------------------------------


def test_a_banned_word_is_refused_and_named(sandbox: Any) -> None:
    response = post(sandbox, "/pro/imagine", {"prompt": "A castle, GORE everywhere"})
    assert response.status_code == 400
    assert "gore" in response.json()["errors"][0]["msg"]
    assert post(sandbox, "/pro/imagine", {"prompt": "a bloodhound in gorse"}).status_code == 200  # whole words


@pytest.mark.sandbox(banned_words=("durian",))
def test_the_banned_words_are_configurable(sandbox: Any) -> None:
    assert post(sandbox, "/pro/imagine", {"prompt": "a durian stall"}).status_code == 400
    assert post(sandbox, "/pro/imagine", {"prompt": "gore"}).status_code == 200


# --- faults, each at rate 1 --------------------------------------------------------------------------------


@pytest.mark.sandbox(faults={"submit_5xx": 1.0})
def test_submit_5xx_answers_500_and_makes_no_task(sandbox: Any) -> None:
    response = post(sandbox, "/pro/imagine", {"prompt": "a fox"})
    assert (response.status_code, response.json()) == (500, {})
    assert sandbox.engine.stats()["tasks"] == {}


@pytest.mark.sandbox(faults={"submit_429": 1.0})
def test_submit_429_asks_to_retry_after_a_second_and_makes_no_task(sandbox: Any) -> None:
    response = post(sandbox, "/pro/imagine", {"prompt": "a fox"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["errors"][0]["msg"]
    assert sandbox.engine.stats()["tasks"] == {}


@pytest.mark.sandbox(faults={"task_fail": 1.0})
def test_task_fail_ends_the_task_failed_with_a_reason(sandbox: Any) -> None:
    task_id = submit(sandbox, "imagine", prompt="a fox")
    task = wait_for(lambda: (t := fetch(sandbox, task_id))["status"] in ("finished", "failed") and t)
    assert task["status"] == "failed"
    assert task["message"] and task["error"]
    assert "image_urls" not in task


@pytest.mark.sandbox(faults={"cdn_error": 1.0})
def test_cdn_error_breaks_image_downloads(sandbox: Any) -> None:
    task = finished(sandbox, submit(sandbox, "imagine", prompt="a fox"))
    assert requests.get(task["image_urls"][0], timeout=10).status_code == 500


@pytest.mark.sandbox(faults={"cdn_slow": 1.0})
def test_cdn_slow_makes_image_downloads_take_about_two_seconds(sandbox: Any) -> None:
    task = finished(sandbox, submit(sandbox, "imagine", prompt="a fox"))
    started = time.monotonic()
    picture(task["original_image_url"])
    assert time.monotonic() - started >= 1.9


@pytest.mark.sandbox(faults={"webhook_drop": 1.0})
def test_webhook_drop_loses_every_delivery(sandbox: Any, receiver: Receiver) -> None:
    finished(sandbox, with_webhook(sandbox, receiver))
    time.sleep(0.3)
    assert receiver.deliveries == []
    assert sandbox.engine.stats()["webhooks"]["dropped"] >= 4


@pytest.mark.sandbox(faults={"webhook_duplicate": 1.0})
def test_webhook_duplicate_sends_every_delivery_twice(sandbox: Any, receiver: Receiver) -> None:
    finished(sandbox, with_webhook(sandbox, receiver))
    wait_for(lambda: receiver.finals() == 2)
    copies = Counter(json.dumps(body, sort_keys=True) for body in receiver.bodies)
    assert len(copies) >= 4 and set(copies.values()) == {2}


@pytest.mark.sandbox(faults={"webhook_reorder": 1.0})
def test_webhook_reorder_lets_an_older_update_arrive_after_a_newer_one(sandbox: Any, receiver: Receiver) -> None:
    task = finished(sandbox, with_webhook(sandbox, receiver))
    wait_for(receiver.finals)
    time.sleep(0.2)  # what was held back behind the final update
    ranks = [rank(body) for body in receiver.bodies]
    assert ranks != sorted(ranks)
    assert task in receiver.bodies


def test_faults_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_FAULTS", "webhook_drop=1, submit_429=0.2")
    monkeypatch.setenv("SANDBOX_TASK_SECONDS", "1.5")
    monkeypatch.setenv("SANDBOX_BANNED_WORDS", "durian, natto")
    monkeypatch.setenv("SANDBOX_SEED", "42")
    config = SandboxConfig.from_env()
    assert config.faults == {"webhook_drop": 1.0, "submit_429": 0.2}
    assert (config.task_seconds, config.seed, config.banned_words) == (1.5, 42, ("durian", "natto"))
    monkeypatch.setenv("SANDBOX_FAULTS", "webhook_lose=1")
    with pytest.raises(ValueError, match="webhook_lose"):
        SandboxConfig.from_env()


# --- counters and the command ------------------------------------------------------------------------------


def test_requests_are_counted_by_path_and_shown_at_the_stats_page(sandbox: Any) -> None:
    task = finished(sandbox, submit(sandbox, "imagine", prompt="a fox"))
    pictures(task)
    counts = sandbox.engine.request_counts
    assert counts["/pro/imagine"] == 1 and counts["/fetch"] >= 2 and counts["/cdn/*"] == 4
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()
    assert stats["requests"]["/fetch"] == counts["/fetch"]
    assert stats["tasks"] == {"finished": 1}


@pytest.mark.sandbox(faults={"task_fail": 1.0})
def test_it_lists_every_task_it_made_with_how_it_ended_at_the_tasks_page(sandbox: Any) -> None:
    doomed = submit(sandbox, "imagine", prompt="a fox")
    wait_for(lambda: fetch(sandbox, doomed)["status"] == "failed")
    sandbox.engine.config.faults["task_fail"] = 0.0  # the dice read the config's own dict
    grid = finished(sandbox, submit(sandbox, "imagine", prompt="a heron"))
    upscaled = finished(sandbox, submit(sandbox, "upscale", parent_task_id=grid["task_id"], index="2", type="subtle"))
    record = requests.get(f"{sandbox.url}/_sandbox/tasks", timeout=10).json()["tasks"]
    assert [(t["task_id"], t["status"], t["prompt"]) for t in record] == [
        (doomed, "failed", "a fox"),
        (grid["task_id"], "finished", "a heron"),
        (upscaled["task_id"], "finished", ""),
    ]
    assert record[1]["image_urls"] == grid["image_urls"] and len(record[1]["image_urls"]) == 4
    assert (record[2]["parent_task_id"], record[2]["index"], record[2]["image_url"]) == (
        grid["task_id"],
        2,
        upscaled["image_url"],
    )
    assert "image_urls" not in record[0] and record[0]["error"]


@pytest.mark.sandbox(image_side=96)
def test_image_side_sets_the_size_of_grid_images(sandbox: Any) -> None:
    _, grid = grid_of(sandbox, aspect_ratio="16:9")
    assert [image.size for image in grid] == [(96, 54)] * 4


def test_an_image_side_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_IMAGE_SIDE", "8")
    with pytest.raises(ValueError, match="image_side"):
        SandboxConfig.from_env()
    monkeypatch.setenv("SANDBOX_IMAGE_SIDE", "200")
    assert SandboxConfig.from_env().image_side == 200


def test_runsandbox_serves_with_the_environment_and_stops_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SANDBOX_API_KEY": "env-key", "SANDBOX_FAULTS": "submit_5xx=1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "manage.py", "runsandbox", f"127.0.0.1:{port}"]
    # A fixed command: this interpreter and the project's manage.py.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert f"http://127.0.0.1:{port}" in (process.stdout.readline() if process.stdout else "")
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/account", headers={"Authorization": "env-key"}, timeout=10).status_code == 200
        imagine = requests.post(
            f"{url}/pro/imagine", json={"prompt": "a fox"}, headers={"Authorization": "env-key"}, timeout=10
        )
        assert imagine.status_code == 500
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in out
        assert err == ""  # quiet: no per-request lines
    finally:
        process.kill()


def test_finished_tasks_outlive_a_restart_when_a_data_folder_is_set(tmp_path):
    from sandbox.server import SandboxConfig, SandboxServer

    def started() -> SandboxServer:
        server = SandboxServer(config=SandboxConfig(task_seconds=0.2, seed=7, data_dir=str(tmp_path)))
        server.start()
        return server

    first = started()
    headers = {"Authorization": "sandbox-key"}
    body = {"prompt": "a lantern", "webhook_url": "http://127.0.0.1:9/", "webhook_secret": "whsec-never-on-disk"}
    task_id = requests.post(f"{first.url}/pro/imagine", json=body, headers=headers, timeout=5).json()["task_id"]
    deadline = time.monotonic() + 10
    while (
        requests.post(f"{first.url}/fetch", json={"task_id": task_id}, headers=headers, timeout=5).json()["status"]
        != "finished"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.stop()
    assert b"whsec-never-on-disk" not in (tmp_path / f"{task_id}.pickle").read_bytes()

    second = started()
    try:
        fetched = requests.post(f"{second.url}/fetch", json={"task_id": task_id}, headers=headers, timeout=5).json()
        assert fetched["status"] == "finished" and len(fetched["image_urls"]) == 4
        assert requests.get(fetched["image_urls"][0], timeout=5).headers["Content-Type"] == "image/png"
        pan = {"parent_task_id": task_id, "index": "2", "type": "right"}
        assert requests.post(f"{second.url}/pro/pan", json=pan, headers=headers, timeout=5).status_code == 200
    finally:
        second.stop()
