"""Realistic table statistics for tests that read query plans (a plain module, imported by those tests)."""

from __future__ import annotations


def history_for_the_planner(team, user, *, tasks=3000):
    """A team's history as production has it (thousands of finished tasks, their images saved, a few others of
    every kind), with statistics gathered: PostgreSQL picks among usable indexes by statistics, so a plan read on
    a near-empty table says nothing. Only PostgreSQL needs this; SQLite's plans do not depend on row counts."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from generations.models import Image, Prompt, Task

    now = timezone.now()
    prompt = Prompt.objects.create(team=team, author=user, text="an archive of old work")
    done = Task.objects.bulk_create(
        Task(
            team=team,
            prompt=prompt,
            created_by=user,
            action="imagine",
            status="finished",
            created_at=now - timedelta(days=60, minutes=i),
            updated_at=now - timedelta(days=60),
            deadline=now - timedelta(days=60),
            finished_at=now - timedelta(days=60),
        )
        for i in range(tasks)
    )
    Image.objects.bulk_create(
        Image(task=task, index=index, source_url="https://cdn.apiframe.pro/x.png", mirrored_at=now)
        for task in done
        for index in range(1, 5)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE generations_task")
        cursor.execute("ANALYZE generations_image")
