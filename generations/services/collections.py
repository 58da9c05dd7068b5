"""A team's collections (boards of images): creating, renaming and deleting them, putting images in and out,
and filling one with a new task's images when the composer chose it."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from generations.models import Collection, CollectionItem, Image, Task, Team


def collection_name_clean(*, team: Team, name: str, collection: Collection | None = None) -> str:
    """The name as it will be saved (trimmed, runs of spaces made one), or a ValidationError saying what is
    wrong with it. `collection` is the one being renamed: it may keep its own name in another case."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValidationError("Give the collection a name.", code="required")
    if len(cleaned) > Collection.MAX_NAME_LENGTH:
        raise ValidationError(
            f"Keep the name to {Collection.MAX_NAME_LENGTH} characters at most (it has {len(cleaned)}).",
            code="max_length",
        )
    taken = Collection.objects.filter(team=team, name_key=Collection.key_for(cleaned))
    if collection is not None:
        taken = taken.exclude(pk=collection.pk)
    if name := taken.values_list("name", flat=True).first():
        raise _name_taken(name)
    return cleaned


def _name_taken(name: str) -> ValidationError:
    return ValidationError(f"Your team already has a collection named “{name}”.", code="unique")


def collection_create(*, team: Team, user: AbstractBaseUser, name: str) -> Collection:
    name = collection_name_clean(team=team, name=name)
    now = timezone.now()
    try:
        with transaction.atomic():
            return Collection.objects.create(team=team, name=name, created_by=user, created_at=now, updated_at=now)
    except IntegrityError:  # a teammate made one with this name a moment ago (the unique name_key)
        raise _name_taken(name) from None


def collection_rename(*, collection: Collection, name: str) -> Collection:
    """Rename; the same name again changes nothing (not even "last updated")."""
    name = collection_name_clean(team=collection.team, name=name, collection=collection)
    if name == collection.name:
        return collection
    collection.name, collection.updated_at = name, timezone.now()
    try:
        with transaction.atomic():
            collection.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise _name_taken(name) from None
    return collection


def collection_delete(*, collection: Collection) -> None:
    """The collection and its items go; the images stay in the library, and tasks still to arrive simply
    join no collection (Task.collection is SET_NULL)."""
    collection.delete()


def _touch(collection_id: int) -> None:
    Collection.objects.filter(pk=collection_id).update(updated_at=timezone.now())


def _check_same_team(*, collection: Collection, image: Image) -> None:
    if image.task.team_id != collection.team_id:
        raise ValueError(f"image {image.pk} and collection {collection.pk} belong to different teams")


def collection_add_image(*, collection: Collection, image: Image, user: AbstractBaseUser) -> bool:
    """Put an image in a collection; True if it was not there yet (adding twice keeps one item)."""
    _check_same_team(collection=collection, image=image)
    try:
        with transaction.atomic():
            _, created = CollectionItem.objects.get_or_create(
                collection=collection, image=image, defaults={"added_by": user, "added_at": timezone.now()}
            )
    except IntegrityError:  # the same add, racing: the other request's item stands
        return False
    if created:
        _touch(collection.pk)
    return created


def collection_remove_image(*, collection: Collection, image: Image) -> bool:
    """Take an image out of a collection (the image itself stays); True if it was in it."""
    _check_same_team(collection=collection, image=image)
    removed, _ = CollectionItem.objects.filter(collection=collection, image=image).delete()
    if removed:
        _touch(collection.pk)
    return bool(removed)


def collection_add_task_images(*, task_id: int) -> int:
    """Put a task's images in the collection chosen for it in the composer, if any; how many were new.

    Safe to call again (a repeated "finished", the poller and a webhook both applying it): images already
    there are skipped. A collection of another team is never filled (the join on the task's own team).
    """
    chosen = (
        Task.objects.filter(pk=task_id, collection__team_id=F("team_id"))
        .values_list("collection_id", "created_by_id")
        .first()
    )
    if chosen is None:
        return 0  # no collection chosen, or it was deleted since
    collection_id, added_by_id = chosen
    images = Image.objects.filter(task_id=task_id).exclude(collection_items__collection_id=collection_id)
    now = timezone.now()
    new_items = [
        CollectionItem(collection_id=collection_id, image_id=image_id, added_by_id=added_by_id, added_at=now)
        for image_id in images.values_list("pk", flat=True)
    ]
    if not new_items:
        return 0
    CollectionItem.objects.bulk_create(new_items, ignore_conflicts=True)
    _touch(collection_id)
    return len(new_items)
