"""Building a team's library for the library tests: tasks with images (files made with Pillow when asked)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generations.models import Image, Prompt, Task
from generations.services.submitting import prompt_create

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _size(ratio: str, long_side: int) -> tuple[int, int]:
    w, h = (int(x) for x in ratio.split(":"))
    return (long_side, round(long_side * h / w)) if w >= h else (round(long_side * w / h), long_side)


@lru_cache(maxsize=8)
def _grid(prompt: str, size: tuple[int, int], seed: int) -> list:
    from sandbox.images import imagine
    from sandbox.palette import scene_for

    return [picture.image for picture in imagine(scene_for(prompt), size, seed)]


def picture_files(*, seed: int, index: int, size: tuple[int, int], prompt: str) -> tuple[str, str]:
    """Image `index` of a small grid of the prompt, painted by the sandbox (tests may use it), saved as the
    image and its WebP thumbnail."""
    picture = _grid(prompt, size, seed)[index - 1]
    png, webp = io.BytesIO(), io.BytesIO()
    picture.save(png, "PNG", compress_level=1)
    picture.save(webp, "WEBP", quality=70)
    file_name = default_storage.save(f"images/t{seed}-{index}.png", ContentFile(png.getvalue()))
    thumb_name = default_storage.save(f"thumbs/t{seed}-{index}.webp", ContentFile(webp.getvalue()))
    return file_name, thumb_name


def add_task(
    *,
    user,
    text: str = "a quiet harbour",
    parent: Task | None = None,
    action: str = "imagine",
    option: str = "",
    index: int | None = None,
    status: str = Task.Status.FINISHED,
    images: int | None = None,
    at: datetime | None = None,
    minutes: float = 0,
    mirrored: bool = True,
    ratio: str = "1:1",
    mode: str = Prompt.Mode.FAST,
    files: bool = False,
    error: str = "",
) -> Task:
    """A task of the user's (first) team: an imagine with its own prompt, or a child of `parent` (same prompt,
    same lineage). Made `minutes` after T0 (or `at`). Finished tasks get their images (4, 1 for an upscale),
    mirrored, with real files when `files`."""
    team = user.memberships.first().team
    created = at or T0 + timedelta(minutes=minutes)
    if parent is None:
        prompt = prompt_create(team=team, author=user, text=text, mode=mode, aspect_ratio=ratio)
    else:
        prompt = parent.prompt
    task = Task.objects.create(
        team=team,
        prompt=prompt,
        created_by=user,
        action=action,
        option=option,
        parent=parent,
        parent_index=index,
        root_id=parent.root_id if parent else None,
        status=status,
        error=error,
        created_at=created,
        updated_at=created,
        deadline=created + timedelta(minutes=5),
    )
    if task.root_id is None:
        Task.objects.filter(pk=task.pk).update(root=task)
        task.root_id = task.pk
    if images is None:
        images = (1 if action == Task.Action.UPSCALE else 4) if status == Task.Status.FINISHED else 0
    size = _size(prompt.aspect_ratio, 2048 if action == Task.Action.UPSCALE else 1024)
    for n in range(1, images + 1):
        image = Image(task=task, index=n, source_url=f"https://cdn.apiframe.pro/{task.pk}-{n}.png")
        if mirrored:
            image.width, image.height, image.mirrored_at = *size, created + timedelta(seconds=30)
            if files:
                size_ = _size(prompt.aspect_ratio, 200)
                files_ = picture_files(seed=task.pk, index=n, size=size_, prompt=prompt.text)
                image.file, image.thumbnail = files_
        image.save()
    return task


def tile_ids(html: str) -> list[str]:
    """The tiles a page shows, in order, by their element ids ("i12" an image, "k5" a task without one)."""
    import re

    return re.findall(r'<figure class="tile[^"]*" id="([ik]\d+)"', html)


def image_tile(task: Task, index: int = 1) -> str:
    return f"i{task.images.get(index=index).pk}"
