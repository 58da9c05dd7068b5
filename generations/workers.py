"""RQ's queue and worker as the studio runs them (TASKS_BACKEND=django_tasks_rq.RQBackend): every job has a
timeout and retries, and a job whose worker was killed is found within seconds, not RQ's minutes.

A job runs again only if its first run died, or, rarely, lost its heartbeat for a whole period while still
running (Redis away): that is harmless, because each job claims its work in the database first (a task is sent
once: QUEUED -> SUBMITTING; an image is downloaded by whoever claims it), so a second run finds nothing to do."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Any

import django_rq
from django.conf import settings
from django.db import close_old_connections
from django_rq.queues import DjangoRQ
from rq import Retry, SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def children_die_with_worker() -> None:
    """Every process the worker forks (RQ's scheduler) gets SIGKILL when the worker dies, even of a SIGKILL: no
    orphan runs on unwatched."""
    if sys.platform != "linux":
        return
    worker = os.getpid()

    def die_with_parent() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != worker:  # the worker died before the line above
            os._exit(1)

    os.register_at_fork(after_in_child=die_with_parent)


class StudioQueue(DjangoRQ):
    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        # django-tasks-rq passes neither: RQ's defaults (180 s, no retry) would leave a killed worker's job failed.
        kwargs["timeout"] = kwargs.get("timeout") or int(settings.MJSTUDIO_JOB_TIMEOUT)
        if kwargs.get("retry") is None and settings.MJSTUDIO_JOB_RETRIES > 0:
            kwargs["retry"] = Retry(max=settings.MJSTUDIO_JOB_RETRIES)
        return super().create_job(*args, **kwargs)


class StudioWorker(SimpleWorker):
    """Runs each job in the worker's own process, as `db_worker` does: four times the jobs per second of RQ's
    fork-per-job worker here. A thread keeps the job's heartbeat while it runs, so a job is called abandoned
    only once its worker has died, within seconds rather than after the job's whole timeout."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        close_old_connections()  # as around a request: a connection past its age or broken is not reused
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, done), name="rq-heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join()
            close_old_connections()
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: Job, execution: Any, done: threading.Event) -> None:
        while not done.wait(self.job_monitoring_interval):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # Redis away for a moment: the next beat tries again
                self.log.exception("heartbeat of job %s failed", job.id)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # RQ waits a minute past the heartbeat (or, for a worker like this one, the job's whole timeout) before
        # calling a job abandoned; one more period is enough while a thread beats.
        return self.job_monitoring_interval + max(self.job_monitoring_interval, 10)


def rq_job_is_held(job_id: str) -> bool:
    """Whether RQ still holds a job it calls queued: in its queue, on its way to a worker, or scheduled. A job that a
    worker popped and was SIGKILLed before marking started is in none of them, and no worker would ever run it."""
    from rq.exceptions import NoSuchJobError
    from rq.intermediate_queue import IntermediateQueue

    connection = django_rq.get_connection()
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    queue = django_rq.get_queue(job.origin)
    return (
        connection.lpos(queue.key, job_id) is not None
        or job_id in IntermediateQueue(queue.key, connection=connection).get_job_ids()
        or job_id in queue.scheduled_job_registry
        or job_id in queue.deferred_job_registry
    )
