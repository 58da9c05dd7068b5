"""The sandbox's in-memory Apiframe: tasks on their own clock, the plan's concurrency limit, fault dice,
request counters, rendered pictures and webhook updates. One engine per server; one lock per engine."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import pickle
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sandbox import images
from sandbox.config import SandboxConfig
from sandbox.faults import Dice
from sandbox.palette import Scene, scene_for, seed_from
from sandbox.validation import Invalid, Spec, parse_create
from sandbox.webhooks import WebhookSender
from sandbox.world import View

logger = logging.getLogger(__name__)
ACTIONS = ("imagine", "vary", "upscale", "pan", "zoom")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WORKING = ("starting", "processing")
TERMINAL = ("finished", "failed")
# Midjourney reports progress in these steps; Apiframe passes them on as strings.
PERCENTAGES = ("0", "15", "31", "46", "62", "78", "93")
STARTING_SHARE = 0.1  # of task_seconds spent "starting" before progress shows
CREDITS = 10_000
CREDITS_PER_TASK = 4  # imagine, vary, pan, zoom and upscale all cost 4 on Apiframe's price list
MAX_PAN_SIDE = 2048  # a pan that would grow an image past this is refused: memory, not realism


@dataclass(frozen=True)
class Stored:
    """One finished picture: PNG bytes, and what it shows (so children can pan and zoom it)."""

    png: bytes
    view: View
    painted: bool

    def picture(self) -> images.Picture:
        return images.Picture(images.from_png(self.png), self.view, self.painted)


@dataclass(frozen=True)
class Result:
    pictures: list[Stored]
    grid: bytes | None  # the 2x2 composite; None for an upscale


@dataclass
class Task:
    task_id: str
    spec: Spec
    prompt: str  # the lineage's first prompt: it paints every descendant
    seed: int
    parent: Stored | None
    doomed: bool  # the task_fail fault picked this one
    status: str = "pending"
    percentage: str = ""
    started: float | None = None
    render: Future[Result] | None = None
    result: Result | None = None
    error: str = ""

    def as_json(self, base_url: str) -> dict:
        """The object /fetch returns and webhooks carry."""
        data: dict = {"task_id": self.task_id, "task_type": self.spec.action, "status": self.status}
        if self.status == "processing":
            data["percentage"] = self.percentage
        elif self.status == "failed":
            data["message"] = data["error"] = self.error
        elif self.result is not None:
            cdn = f"{base_url}/cdn/{self.task_id}"
            if self.result.grid is None:
                data["image_url"] = f"{cdn}/1.png"
            else:
                data["original_image_url"] = f"{cdn}/grid.png"
                data["image_urls"] = [f"{cdn}/{n}.png" for n in range(1, 5)]
        return data


class Engine:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.base_url = ""  # the server's own URL: image links are built from it, never from a Host header
        self.request_counts: Counter[str] = Counter()  # by path, under the lock
        self.dice = Dice(self.config.faults, self.config.seed)
        self.webhooks = WebhookSender(self.dice)
        self.credits = CREDITS
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        # Unfinished tasks, oldest first: the queue for the concurrency limit (per key: the sandbox has one key).
        self._open: list[Task] = []
        self._repeats: Counter[tuple] = Counter()  # same request again -> new pictures, still repeatable
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._renderer = ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 2), thread_name_prefix="sandbox-render"
        )

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self.webhooks.start()
        self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._scheduler.is_alive():
            self._scheduler.join()
        self._renderer.shutdown(wait=False, cancel_futures=True)
        self.webhooks.stop()

    # --- requests --------------------------------------------------------------------------------------

    def count_request(self, path: str) -> None:
        # Image URLs are counted together: benchmarks want API calls per task, not per file.
        with self._lock:
            self.request_counts["/cdn/*" if path.startswith("/cdn/") else path] += 1

    def authorized(self, header: str) -> bool:
        """`Authorization: <key>` as Apiframe documents it, or `Bearer <key>` as some SDKs send it."""
        key = header.removeprefix("Bearer ").strip()
        return hmac.compare_digest(key.encode(), self.config.api_key.encode())

    def submit_fault(self) -> str | None:
        """Which submit fault (if any) this create request meets, before anything is made."""
        return next((f for f in ("submit_429", "submit_5xx") if self.dice.roll(f)), None)

    def create(self, action: str, body: dict) -> str:
        spec = parse_create(action, body, self.config.banned_words)
        with self._lock:
            task = self._new_task(spec)
            self._tasks[task.task_id] = task
            self._open.append(task)
            self.credits = max(self.credits - CREDITS_PER_TASK, 0)
        return task.task_id

    def _new_task(self, spec: Spec) -> Task:
        """A task for a valid request. Its seed comes from the request (and, for a child, its parent) plus how
        often the same request came before: asking again paints new pictures, yet a seeded run repeats."""
        if spec.action == "imagine":
            key: tuple = ("imagine", spec.prompt, spec.aspect)
            prompt, seed, picture = spec.prompt, self.config.seed, None
        else:
            parent, picture = self._parent(spec)
            key = (parent.task_id, spec.action, spec.index, spec.option)
            prompt, seed = parent.prompt, parent.seed
        self._repeats[key] += 1
        seed = seed_from(seed, *key, self._repeats[key])
        return Task(str(uuid.uuid4()), spec, prompt, seed, picture, doomed=self.dice.roll("task_fail"))

    def _task(self, task_id: str) -> Task | None:
        """A task from memory, or a finished one kept on disk by an earlier run (under the lock)."""
        task = self._tasks.get(task_id)
        if task is None and self.config.data_dir and _UUID.fullmatch(task_id):
            path = Path(self.config.data_dir) / f"{task_id}.pickle"
            try:
                # Only this sandbox writes these files (see _keep): they are as trusted as its own code.
                task = self._tasks[task_id] = pickle.loads(path.read_bytes())  # noqa: S301
            except FileNotFoundError:
                return None
            except Exception:  # a damaged file, or one from an older sandbox: as if never kept
                logger.exception("sandbox: could not read %s", path)
                return None
        return task

    def _keep(self, task: Task) -> None:
        """Write a finished task to the data folder, whole or not at all. A full disk is logged, never fatal:
        the task stays in memory and the clock keeps running."""
        folder = Path(self.config.data_dir or "")
        partial = folder / f"{task.task_id}.partial"
        # A finished task sends no more webhooks: its secret stays out of the file.
        kept = dataclasses.replace(task, spec=dataclasses.replace(task.spec, webhook_url="", webhook_secret=""))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(pickle.dumps(kept))
            partial.replace(folder / f"{task.task_id}.pickle")
        except OSError:
            logger.exception("sandbox: could not keep task %s in %s", task.task_id, folder)

    def _parent(self, spec: Spec) -> tuple[Task, Stored]:
        """The parent task and the picture the request points at, or why they can't be acted on."""
        parent = self._task(spec.parent_task_id)
        if parent is None:
            raise Invalid("Parent task not found")
        if parent.result is None:
            raise Invalid(f"Parent task is not finished (status: {parent.status})")
        if parent.result.grid is None:
            if spec.action != "vary":
                raise Invalid(
                    f"{spec.action} acts on one of a grid's four images; an upscaled image can only be varied"
                )
            return parent, parent.result.pictures[0]
        picture = parent.result.pictures[spec.index - 1]
        if spec.action == "pan" and _panned_side(picture.view.size, str(spec.option)) > MAX_PAN_SIDE:
            raise Invalid(f"pan would make the image larger than {MAX_PAN_SIDE} px")
        return parent, picture

    def fetch(self, task_id: str) -> dict | None:
        with self._lock:
            task = self._task(task_id)
            return task.as_json(self.base_url) if task else None

    def fetch_many(self, task_ids: list[str]) -> list[dict]:
        with self._lock:
            tasks = [self._task(i) for i in task_ids]
            return [task.as_json(self.base_url) for task in tasks if task]

    def image(self, task_id: str, name: str) -> bytes | None:
        """PNG bytes for `grid` or `1`..`4` of a finished task."""
        with self._lock:
            task = self._task(str(task_id))
            result = task.result if task else None
        if result is None:
            return None
        if name == "grid":
            return result.grid
        if name.isdigit() and 1 <= int(name) <= len(result.pictures):
            return result.pictures[int(name) - 1].png
        return None

    def account(self) -> dict:
        with self._lock:
            return {
                "email": "sandbox@localhost",
                "plan": "sandbox",
                "credits": self.credits,
                "concurrency": self.config.concurrency,
            }

    def stats(self) -> dict:
        with self._lock:
            statuses = Counter(task.status for task in self._tasks.values())
            requests = dict(self.request_counts)
            credits = self.credits
        return {"requests": requests, "tasks": dict(statuses), "webhooks": self.webhooks.snapshot(), "credits": credits}

    def record(self) -> list[dict]:
        """Every task this engine made, oldest first, as a benchmark compares them with a studio's: what was
        asked, how it ended, and its image links (the chaos run's ground truth; not part of Apiframe)."""
        with self._lock:
            tasks = list(self._tasks.values())
            return [
                {
                    **task.as_json(self.base_url),
                    "prompt": task.spec.prompt,
                    "parent_task_id": task.spec.parent_task_id,
                    "index": task.spec.index,
                    "option": task.spec.option,
                }
                for task in tasks
            ]

    # --- the clock -------------------------------------------------------------------------------------

    def _run(self) -> None:
        tick = min(max(self.config.task_seconds / 40, 0.005), 0.1)
        while not self._stop.wait(tick):
            self._tick(time.monotonic())

    def _tick(self, now: float) -> None:
        """Start what the concurrency limit allows (oldest first), move the rest along their clock, then
        send an update for every change: outside the lock, to threads that may be slow."""
        updates = []
        with self._lock:
            free = self.config.concurrency - sum(task.status in WORKING for task in self._open)
            for task in self._open:
                before = (task.status, task.percentage)
                if task.started is None and free > 0:
                    self._begin(task, now)
                    free -= 1
                elif task.started is None:
                    task.status = "staged"  # waiting for a free slot of the plan
                else:
                    self._advance(task, now)
                if (task.status, task.percentage) != before:
                    updates.append((task, task.as_json(self.base_url)))
            self._open = [task for task in self._open if task.status not in TERMINAL]
        for task, body in updates:
            if task.spec.webhook_url:
                final = task.status in TERMINAL
                self.webhooks.send(task.task_id, task.spec.webhook_url, task.spec.webhook_secret, body, final=final)

    def _begin(self, task: Task, now: float) -> None:
        task.status, task.started = "starting", now
        if not task.doomed:
            # Painting happens while the task "processes", so a finished task has its pictures ready.
            task.render = self._renderer.submit(
                _render, task.spec, task.prompt, task.seed, task.parent, self.config.image_side
            )

    def _advance(self, task: Task, now: float) -> None:
        total = self.config.task_seconds
        elapsed = now - (task.started or now)
        if elapsed < total * STARTING_SHARE:
            return
        if elapsed < total:
            step = int((elapsed / total - STARTING_SHARE) / (1 - STARTING_SHARE) * len(PERCENTAGES))
            task.status, task.percentage = "processing", PERCENTAGES[min(step, len(PERCENTAGES) - 1)]
        elif task.doomed:
            self._fail(task, "Midjourney could not finish this job (sandbox fault: task_fail)")
        elif task.render is not None and task.render.done():
            error = task.render.exception()
            if error is not None:
                self._fail(task, f"Rendering failed in the sandbox: {error}")
            else:
                task.status, task.percentage, task.result = "finished", "", task.render.result()
                task.render = None
                if self.config.data_dir:
                    self._keep(task)

    def _fail(self, task: Task, reason: str) -> None:
        task.status, task.percentage, task.error = "failed", "", reason


def _panned_side(size: tuple[int, int], direction: str) -> int:
    w, h = size
    return max(w + w // 2, h) if direction in ("left", "right") else max(w, h + h // 2)


def _render(spec: Spec, prompt: str, seed: int, parent: Stored | None, side: int = images.LONG_SIDE) -> Result:
    """Paint a task's pictures (on a render thread, outside the engine's lock)."""
    scene = scene_for(prompt)
    if spec.action == "imagine":
        pictures = images.imagine(scene, images.size_for(spec.aspect, side), seed)
    else:
        assert parent is not None  # every action but imagine has a parent picture
        source = parent.picture()
        if spec.action == "upscale":
            upscaled = images.upscale(source, seed, creative=spec.option == "creative")
            return Result([_store(upscaled)], None)
        pictures = [_act(spec, scene, source, seed_from(seed, n)) for n in range(1, 5)]
    return Result([_store(p) for p in pictures], images.to_png(images.composite([p.image for p in pictures])))


def _act(spec: Spec, scene: Scene, source: images.Picture, seed: int) -> images.Picture:
    if spec.action == "vary":
        return images.vary(source, seed, strong=spec.option == "strong")
    if spec.action == "pan":
        return images.pan(source, scene, seed, str(spec.option))
    if spec.option == 1:
        return images.make_square(source, scene, seed)
    return images.zoom_out(source, scene, seed, float(spec.option))


def _store(picture: images.Picture) -> Stored:
    return Stored(images.to_png(picture.image), picture.view, picture.painted)
