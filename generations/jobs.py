"""Background jobs (django.tasks). Thin wrappers: each takes primary keys and calls a service."""

from __future__ import annotations

from django.tasks import task


@task()
def submit_task(task_id: int) -> None:
    from generations.services import submitting  # inside: the services enqueue these jobs

    submitting.task_submit(task_id=task_id)


@task(queue_name="mirror")
def mirror_task_images(task_id: int) -> None:
    from generations.services import mirroring  # inside: the services enqueue these jobs

    mirroring.task_mirror_images(task_id=task_id)
