"""Webhook deliveries: a few worker threads, each owning a share of the tasks, so one task's updates leave
in order (unless a fault says otherwise) and a slow receiver never holds up the scheduler."""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections import Counter
from dataclasses import dataclass

import requests

from sandbox.faults import Dice

logger = logging.getLogger(__name__)
TIMEOUT = 3.0  # seconds; Apiframe does not wait long for a receiver either


@dataclass(frozen=True)
class Delivery:
    url: str
    secret: str
    body: bytes


class WebhookSender:
    def __init__(self, dice: Dice, workers: int = 4) -> None:
        self._dice = dice
        self._queues: list[queue.Queue[Delivery | None]] = [queue.Queue() for _ in range(workers)]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"sandbox-webhook-{n}", daemon=True)
            for n, q in enumerate(self._queues)
        ]
        self._lock = threading.Lock()
        self._held: dict[str, Delivery] = {}  # task id -> delivery the reorder fault holds back
        self.counts: Counter[str] = Counter()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=TIMEOUT + 1)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def send(self, task_id: str, url: str, secret: str, body: dict, *, final: bool) -> None:
        """Queue one update. Faults: drop it, send it twice, or hold it back until the task's next update
        has gone (the final update is never held: nothing would come after it)."""
        delivery = Delivery(url, secret, json.dumps(body).encode())
        with self._lock:
            if self._dice.roll("webhook_drop"):
                self.counts["dropped"] += 1
                batch = []
            else:
                batch = [delivery, delivery] if self._dice.roll("webhook_duplicate") else [delivery]
                self.counts["duplicated"] += len(batch) - 1
            held = self._held.pop(task_id, None)
            if batch and held is None and not final and self._dice.roll("webhook_reorder"):
                self._held[task_id] = delivery
                self.counts["reordered"] += 1
                batch = batch[1:]
            if held is not None:
                batch.append(held)
            shard = self._queues[zlib.crc32(task_id.encode()) % len(self._queues)]
            for item in batch:
                shard.put(item)

    def _work(self, deliveries: queue.Queue[Delivery | None]) -> None:
        session = requests.Session()
        while (delivery := deliveries.get()) is not None:
            headers = {"Content-Type": "application/json"}
            if delivery.secret:
                headers["x-webhook-secret"] = delivery.secret
            try:
                response = session.post(delivery.url, data=delivery.body, headers=headers, timeout=TIMEOUT)
                outcome = "sent" if response.ok else "rejected"
            except requests.RequestException as exc:
                # No retries, like a receiver that was down: polling has to pick up the pieces.
                logger.debug("sandbox webhook to %s failed: %s", delivery.url, exc)
                outcome = "failed"
            with self._lock:
                self.counts[outcome] += 1
        session.close()
