from __future__ import annotations

import logging

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"


class Command(BaseCommand):
    help = (
        "Run one worker for a queue of background jobs, on whichever backend TASKS_BACKEND names: the "
        "database's (db_worker) by default, or RQ's on Redis. Start as many copies as you like."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "queues",
            nargs="+",
            choices=settings.TASK_QUEUES,
            help="The queue this worker takes jobs from; several, in order of preference, share one worker.",
        )

    def handle(self, *args: object, queues: list[str], verbosity: int, **options: object) -> None:
        backend = settings.TASKS["default"]["BACKEND"]
        if backend == DATABASE_BACKEND:
            call_command(
                "db_worker",
                queue_name=",".join(queues),
                interval=0.2,
                reload=False,
                startup_delay=False,
                verbosity=verbosity,
            )
        elif backend.startswith("django_tasks_rq"):
            self._run_rq(queues, verbosity=verbosity)
        else:
            raise CommandError(f"No worker for TASKS_BACKEND={backend}: use {DATABASE_BACKEND} or an RQ backend.")

    def _run_rq(self, queues: list[str], *, verbosity: int) -> None:
        from django_rq.utils import reset_db_connections
        from django_rq.workers import get_worker
        from redis.exceptions import ConnectionError as RedisConnectionError
        from rq.logutils import setup_loghandlers

        from generations.workers import children_die_with_worker

        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()) if verbosity < 2 else "DEBUG"
        setup_loghandlers(level)
        try:
            worker = get_worker(
                *queues,
                job_class="django_tasks_rq.Job",
                worker_class="generations.workers.StudioWorker",
                job_monitoring_interval=settings.MJSTUDIO_RQ_HEARTBEAT_SECONDS,
                maintenance_interval=settings.MJSTUDIO_RQ_MAINTENANCE_SECONDS,
                # An idle worker waits on Redis for 15 s less than this: it wakes for the maintenance in time.
                worker_ttl=settings.MJSTUDIO_RQ_MAINTENANCE_SECONDS + 15,
            )
            reset_db_connections()  # none open when the scheduler's process forks off
            children_die_with_worker()
            # The scheduler enqueues jobs queued for later (a submit Apiframe asked to retry, an image's backoff).
            worker.work(with_scheduler=True, logging_level=level)
        except RedisConnectionError as exc:
            raise CommandError(f"Redis is not reachable at REDIS_URL: {exc}") from exc
