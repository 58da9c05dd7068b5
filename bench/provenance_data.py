"""Shared by bench/task_page.py and bench/export_memory.py: Django on a throwaway SQLite database and media folder,
and task families of a chosen size and shape, created in bulk."""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="mjstudio-bench-"))
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "mjstudio.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'bench.sqlite3'}"
os.environ["MEDIA_ROOT"] = str(TMP / "media")

import django  # noqa: E402

django.setup()

from datetime import timedelta  # noqa: E402

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from generations.models import Image, Membership, Prompt, Task, Team  # noqa: E402

call_command("migrate", verbosity=0)

from django.conf import settings  # noqa: E402
from django.core.signals import request_started  # noqa: E402
from django.db import reset_queries  # noqa: E402

# Measured as in production: no debug query log (CaptureQueriesContext still counts), and nothing clears the
# count at the start of each request.
settings.DEBUG = False
settings.ALLOWED_HOSTS = ["127.0.0.1"]
request_started.disconnect(reset_queries)


def logged_in_client() -> tuple[Client, Team]:
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    team = Team.objects.create(name="Bench")
    Membership.objects.create(team=team, user=user)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    client.get("/")  # the session's team, once
    return client, team


def family_create(*, team: Team, size: int, shape: str = "bushy", images: int = 4, seed: int = 1) -> list[Task]:
    """`size` tasks under one root, oldest first: "bushy" (each grid gets 0-4 children, as a team works) or
    "chain" (each made from the one before). Each task gets `images` image rows, without files."""
    rng = random.Random(seed)
    user = team.members.first()
    prompt = Prompt.objects.create(team=team, author=user, text="a lighthouse on a cliff at dusk, long exposure")
    start = timezone.now() - timedelta(days=1)

    def task(n: int, parent: Task | None, action: str, option: str) -> Task:
        at = start + timedelta(minutes=n)
        return Task(
            team=team, prompt=prompt, created_by=user, action=action, option=option, parent=parent,
            parent_index=rng.randint(1, 4) if parent else None, root=parent.root if parent else None,
            status="finished", credits=2 if action == "upscale" else 4, deadline=at, created_at=at,
            submitted_at=at + timedelta(seconds=1), started_at=at + timedelta(seconds=3),
            finished_at=at + timedelta(seconds=40), apiframe_task_id=f"bench-{shape}-{seed}-{n}",
        )  # fmt: skip

    root = task(0, None, "imagine", "")
    root.save()
    Task.objects.filter(pk=root.pk).update(root=root)
    root.root = root
    tasks, frontier = [root], [root]
    actions = [("vary", "strong"), ("vary", "subtle"), ("upscale", "subtle"), ("pan", "right"), ("zoom", "2")]
    while len(tasks) < size:
        level: list[Task] = []
        for parent in frontier:
            count = 1 if shape == "chain" else rng.randint(0 if parent is not root else 2, 4)
            for _ in range(min(count, size - len(tasks) - len(level))):
                level.append(task(len(tasks) + len(level), parent, *rng.choice(actions)))
        if not level:  # a bushy level that made nothing: grow from the newest task
            level.append(task(len(tasks), tasks[-1], "vary", "subtle"))
        Task.objects.bulk_create(level)
        tasks += level
        frontier = level
    Image.objects.bulk_create(
        Image(task=t, index=i, source_url="https://cdn.apiframe.pro/x.png", file=f"images/{t.pk}-{i}.png",
              thumbnail=f"thumbs/{t.pk}-{i}.webp", width=512, height=512, mirrored_at=timezone.now())
        for t in tasks for i in range(1, images + 1)
    )  # fmt: skip
    return tasks
