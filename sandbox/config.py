"""The sandbox's knobs, settable from the environment without code (see SandboxConfig.from_env)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sandbox.faults import FAULTS

DEFAULT_BANNED_WORDS = ("blood", "gore", "nsfw", "nude", "porn")


@dataclass
class SandboxConfig:
    api_key: str = "sandbox-key"
    task_seconds: float = 6.0  # from starting to finished
    concurrency: int = 3  # tasks starting/processing at once for the key; the rest wait (pending/staged)
    faults: dict[str, float] = field(default_factory=dict)  # fault name -> rate in [0, 1]; all off by default
    seed: int | None = None  # repeatable fault dice and pictures
    banned_words: tuple[str, ...] = DEFAULT_BANNED_WORDS
    # Where finished tasks are kept across restarts (None: memory only), so a restarted demo can still
    # vary, pan and zoom yesterday's grids.
    data_dir: str | None = None
    # The long side of a grid image in px: small ones keep a run of thousands of tasks light (memory, CPU).
    image_side: int = 512

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sandbox faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if any(not 0 <= rate <= 1 for rate in self.faults.values()):
            raise ValueError("sandbox fault rates must be between 0 and 1")
        if not 16 <= self.image_side <= 2048:
            raise ValueError("image_side must be between 16 and 2048 px")
        if self.task_seconds <= 0 or self.concurrency < 1:
            raise ValueError("task_seconds must be positive and concurrency at least 1")

    @classmethod
    def from_env(cls) -> SandboxConfig:
        """SANDBOX_API_KEY, SANDBOX_TASK_SECONDS, SANDBOX_CONCURRENCY, SANDBOX_FAULTS ("webhook_drop=1,
        submit_429=0.2"), SANDBOX_SEED, SANDBOX_BANNED_WORDS (comma list; empty bans nothing),
        SANDBOX_IMAGE_SIDE (px)."""
        env = os.environ
        config = cls()
        banned = env.get("SANDBOX_BANNED_WORDS")
        return cls(
            api_key=env.get("SANDBOX_API_KEY", config.api_key),
            task_seconds=float(env.get("SANDBOX_TASK_SECONDS", config.task_seconds)),
            concurrency=int(env.get("SANDBOX_CONCURRENCY", config.concurrency)),
            faults=_faults(env.get("SANDBOX_FAULTS", "")),
            seed=int(env["SANDBOX_SEED"]) if env.get("SANDBOX_SEED") else None,
            banned_words=config.banned_words if banned is None else tuple(_words(banned)),
            data_dir=env.get("SANDBOX_DATA_DIR") or None,
            image_side=int(env.get("SANDBOX_IMAGE_SIDE", config.image_side)),
        )


def _faults(text: str) -> dict[str, float]:
    faults = {}
    for item in _words(text):
        name, _, rate = item.partition("=")
        faults[name.strip()] = float(rate) if rate.strip() else 1.0
    return faults


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]
