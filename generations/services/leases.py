"""Leases: one process at a time holds a name (the poller's), renewing it while it lives; when the holder dies,
even of a SIGKILL, another copy takes the name over once the lease runs out.

With REDIS_URL the lease is a Redis key (SET NX with an expiry; only the holder's token renews or deletes it).
Without, it is a row of the database (Chore): the holder renews with a conditional update on the expiry it last
wrote, and anyone may take a row whose expiry has passed. Clocks of the machines must agree (NTP) to well under
a lease."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from generations.models import Chore


class Lease(ABC):
    """Held by at most one process at a time; `hold()` takes it if free or renews it if ours."""

    def __init__(self, *, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds

    @abstractmethod
    def hold(self) -> bool:
        """Take the lease if free, renew it if ours; whether we hold it now."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up at once, if ours, so that a waiting copy need not wait for it to run out."""


class DatabaseLease(Lease):
    def __init__(self, *, name: str, seconds: float) -> None:
        super().__init__(name=name, seconds=seconds)
        self.row = f"lease:{name}"
        self.expires_at: datetime | None = None  # the expiry we wrote last: our proof of holding it

    def hold(self) -> bool:
        now = timezone.now()
        expires_at = now + timedelta(seconds=self.seconds)
        rows = Chore.objects.filter(name=self.row)
        # Ours if the row still shows the expiry we wrote (nobody took it meanwhile, even if it ran out).
        if self.expires_at is not None and rows.filter(last_run_at=self.expires_at).update(last_run_at=expires_at):
            self.expires_at = expires_at
            return True
        Chore.objects.get_or_create(name=self.row, defaults={"last_run_at": now - timedelta(seconds=1)})
        # Free or run out: whoever moves the expiry takes it; a second taker's update then matches nothing.
        taken = rows.filter(last_run_at__lt=now).update(last_run_at=expires_at) == 1
        self.expires_at = expires_at if taken else None
        return taken

    def release(self) -> None:
        if self.expires_at is not None:
            past = timezone.now() - timedelta(seconds=1)
            Chore.objects.filter(name=self.row, last_run_at=self.expires_at).update(last_run_at=past)
            self.expires_at = None


class RedisLease(Lease):
    def __init__(self, *, name: str, seconds: float, url: str) -> None:
        from redis import Redis

        super().__init__(name=name, seconds=seconds)
        client = Redis.from_url(url, socket_timeout=max(seconds / 3, 1))
        self.lock = client.lock(f"mjstudio:lease:{name}", timeout=seconds, thread_local=False)
        self.held = False

    def hold(self) -> bool:
        from redis.exceptions import LockError

        if self.held:
            try:
                self.lock.reacquire()  # only if the key still holds our token
                return True
            except LockError:
                self.held = False
        self.held = self.lock.acquire(blocking=False)
        return self.held

    def release(self) -> None:
        from redis.exceptions import LockError

        if self.held:
            self.held = False
            with contextlib.suppress(LockError):  # ran out and taken meanwhile: not ours to delete
                self.lock.release()


def lease_for(*, name: str, seconds: float) -> Lease:
    """Redis's when REDIS_URL is set (the `scale` extra), else the database's."""
    if settings.REDIS_URL:
        return RedisLease(name=name, seconds=seconds, url=settings.REDIS_URL)
    return DatabaseLease(name=name, seconds=seconds)
