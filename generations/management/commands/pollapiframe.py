from __future__ import annotations

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from generations.apiframe import ApiframeError, RateLimited
from generations.services import housekeeping, leases, polling, queue

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0


class Command(BaseCommand):
    help = (
        "The safety net beside webhooks: fetch quiet in-flight tasks through fetch-many, time out overdue "
        "ones, let the fair queue's next tasks go, and queue again image mirrors that a dead worker or a CDN "
        "error left behind. Now and then also marks failed the jobs a killed worker left running, sweeps "
        "stored files no image names (hourly) and "
        "prunes old webhook deliveries and job rows (daily). However many copies run, one runs rounds (a lease in "
        "Redis or the database); the others wait to take over if it dies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between rounds (default 1).")
        parser.add_argument(
            "--once", action="store_true", help="Run one round and exit (none while another poller holds the lease)."
        )

    def handle(self, *args: object, interval: float, once: bool, verbosity: int, **options: object) -> None:
        # Stopped like the other processes (Ctrl-C, SIGINT from runstudio, SIGTERM from a supervisor): a round
        # in progress rolls back, and the poller exits quietly, not with a traceback in the log.
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.verbosity, self.last_sweep = verbosity, 0.0
        lease = leases.lease_for(name="poller", seconds=settings.MJSTUDIO_POLLER_LEASE_SECONDS)
        keeper = LeaseKeeper(lease)
        try:
            if once:
                if keeper.renew():
                    self._round(delay=interval, interval=interval)
                else:
                    self.stdout.write("Another poller holds the lease: no round run.")
                return
            keeper.start()
            self._run(interval=interval, keeper=keeper)
        except KeyboardInterrupt:
            logger.info("poller stopped")
        finally:
            keeper.stop()
            signal.signal(signal.SIGTERM, previous)

    def _run(self, *, interval: float, keeper: LeaseKeeper) -> None:
        delay = interval
        while True:
            if keeper.held.wait(timeout=keeper.every):  # a standby copy waits here until the holder dies
                delay = self._round(delay=delay, interval=interval)
                time.sleep(delay)

    def _round(self, *, delay: float, interval: float) -> float:
        """One round; returns the seconds to wait before the next (longer while Apiframe or the database fails)."""
        if self.verbosity >= 2:
            self.stdout.write(f"poll round at {time.time():.3f}")
        try:
            if time.monotonic() - self.last_sweep > SWEEP_SECONDS:
                self.last_sweep = time.monotonic()  # a failing sweep is tried again next period, not every round
                housekeeping.jobs_reap_running()
                polling.images_requeue_unmirrored()
                polling.tasks_requeue_unsent()
                housekeeping.chores_run_due()
            polling.tasks_expire_overdue()
            queue.queue_dispatch()  # a lost wake-up (a dispatch that failed) waits a round at most
            polling.tasks_poll()
            return interval
        except RateLimited as exc:
            delay = min(max(exc.retry_after or 0, delay * 2), MAX_BACKOFF_SECONDS)
            logger.warning("Apiframe rate-limited the poller; next round in %.0fs", delay)
        except ApiframeError as exc:  # down, a bad key, no credits: keep trying, ever more slowly
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            logger.warning("Apiframe unavailable (%s); next round in %.0fs", exc, delay)
        except Exception:  # the safety net must not die of one bad round (a locked database, a bug)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            logger.exception("poll round failed; next round in %.0fs", delay)
        return delay


class LeaseKeeper(threading.Thread):
    """Takes the poller's lease, or renews it, three times per lease, for as long as the process lives: rounds
    run only while `held` is set. A holder killed stops renewing, and a waiting copy takes over within a lease."""

    def __init__(self, lease: leases.Lease) -> None:
        super().__init__(name="poller-lease", daemon=True)
        self.lease = lease
        self.every = lease.seconds / 3
        self.held = threading.Event()
        self.stopping = threading.Event()

    def renew(self) -> bool:
        try:
            held = self.lease.hold()
        except Exception:  # Redis or the database away: not ours until it answers again
            logger.exception("could not renew the poller's lease")
            held = False
        if held and not self.held.is_set():
            logger.info("this poller runs the rounds now (lease taken)")
        elif not held and self.held.is_set():
            logger.warning("this poller lost its lease: another runs the rounds")
        (self.held.set if held else self.held.clear)()
        return held

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.renew()
                self.stopping.wait(self.every)
        finally:
            connection.close()  # this thread's own database connection

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=self.every + 5)
        try:
            self.lease.release()  # a copy waiting takes over at once, not after a lease
        except Exception:
            logger.exception("could not release the poller's lease")
