"""RQ's queue and worker as the studio runs them (TASKS_BACKEND=django_tasks_rq.RQBackend): every job has a
timeout and retries, and a job whose worker was killed is found within seconds, not RQ's minutes.

A retried job may start again while a killed worker's orphaned copy still runs: that is harmless, because each
job claims its work in the database first (a task is sent once: QUEUED -> SUBMITTING; an image is downloaded by
whoever claims it), so a second run finds nothing left to do."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

from django.conf import settings
from django_rq.queues import DjangoRQ
from rq import Retry, Worker
from rq.job import Job

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def children_die_with_worker() -> None:
    """Every process the worker forks (a job's work horse, the scheduler) gets SIGKILL when the worker dies, even
    of a SIGKILL: no orphan runs on unwatched, and the killed worker's job is run again by its retry."""
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


class StudioWorker(Worker):
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # RQ waits a fixed minute past the heartbeat before calling a job abandoned; one more period is enough.
        return self.job_monitoring_interval + max(self.job_monitoring_interval, 10)
