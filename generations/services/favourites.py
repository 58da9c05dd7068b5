"""Favourites: a member stars an image for themself (not for the team)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from generations.models import Favourite, Image


def favourite_set(*, user: AbstractBaseUser, image: Image, on: bool) -> bool:
    """Star (`on`) or unstar the image for `user`. Idempotent: starring a starred image changes nothing
    (get_or_create also absorbs a simultaneous star, which the unique constraint turns away).
    Returns whether it is starred now. The caller checks that the image is of the user's team."""
    if on:
        Favourite.objects.get_or_create(user=user, image=image)
    else:
        Favourite.objects.filter(user=user, image=image).delete()
    return on
