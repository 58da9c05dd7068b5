"""Fault dice: each fault rolls its own seeded stream, so a run with a seed repeats exactly."""

from __future__ import annotations

import random
import threading

from sandbox.palette import seed_from

FAULTS = (
    "webhook_drop",  # skip a delivery
    "webhook_duplicate",  # send a delivery twice
    "webhook_reorder",  # hold a delivery back until the task's next one has gone
    "submit_5xx",  # a create request answers 500 {} and makes no task
    "submit_429",  # a create request answers 429 with Retry-After: 1 and makes no task
    "task_fail",  # a task ends failed, with a message
    "cdn_error",  # an image download answers 500
    "cdn_slow",  # an image download takes about 2 s
)


class Dice:
    def __init__(self, rates: dict[str, float], seed: int | None) -> None:
        self._rates = rates  # the config's own dict, not a copy: a test may switch a fault off mid-run
        self._streams = {name: random.Random(seed_from("fault", name, seed)) for name in FAULTS}
        self._lock = threading.Lock()

    def roll(self, fault: str) -> bool:
        rate = self._rates.get(fault, 0.0)
        if rate <= 0:
            return False
        with self._lock:
            return self._streams[fault].random() < rate
