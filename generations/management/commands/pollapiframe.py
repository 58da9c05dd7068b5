from __future__ import annotations

import logging
import signal
import time

from django.core.management.base import BaseCommand, CommandParser

from generations.apiframe import ApiframeError, RateLimited
from generations.services import housekeeping, polling, queue

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0


class Command(BaseCommand):
    help = (
        "The safety net beside webhooks: fetch quiet in-flight tasks through fetch-many, time out overdue "
        "ones, let the fair queue's next tasks go, and queue again image mirrors that a dead worker or a CDN "
        "error left behind. Now and then also marks failed the jobs a killed worker left running, sweeps "
        "stored files no image names (hourly) and "
        "prunes old webhook deliveries and job rows (daily)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between rounds (default 1).")
        parser.add_argument("--once", action="store_true", help="Run one round and exit.")

    def handle(self, *args: object, interval: float, once: bool, **options: object) -> None:
        # Stopped like the other processes (Ctrl-C, SIGINT from runstudio, SIGTERM from a supervisor): a round
        # in progress rolls back, and the poller exits quietly, not with a traceback in the log.
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            self._run(interval=interval, once=once)
        except KeyboardInterrupt:
            logger.info("poller stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run(self, *, interval: float, once: bool) -> None:
        delay, last_sweep = interval, 0.0
        while True:
            try:
                if time.monotonic() - last_sweep > SWEEP_SECONDS:
                    last_sweep = time.monotonic()  # a failing sweep is tried again next period, not every round
                    housekeeping.jobs_reap_running()
                    polling.images_requeue_unmirrored()
                    polling.tasks_requeue_unsent()
                    housekeeping.chores_run_due()
                polling.tasks_expire_overdue()
                queue.queue_dispatch()  # a lost wake-up (a dispatch that failed) waits a round at most
                polling.tasks_poll()
                delay = interval
            except RateLimited as exc:
                delay = min(max(exc.retry_after or 0, delay * 2), MAX_BACKOFF_SECONDS)
                logger.warning("Apiframe rate-limited the poller; next round in %.0fs", delay)
            except ApiframeError as exc:  # down, a bad key, no credits: keep trying, ever more slowly
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                logger.warning("Apiframe unavailable (%s); next round in %.0fs", exc, delay)
            except Exception:  # the safety net must not die of one bad round (a locked database, a bug)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                logger.exception("poll round failed; next round in %.0fs", delay)
            if once:
                return
            time.sleep(delay)
