"""The world a lineage of pictures shares, so that pan and zoom show more of the same place.

World coordinates are the pixels of a lineage's first picture (its frame). A View says which part of the
world a picture shows and at what scale. What must continue across a seam is a function of world
coordinates (sky, horizon, ridges, table top); scattered things (lamps, trees, clouds, stars, windows) are
dealt per frame-sized tile from the tile's own seed, so every view of a tile shows the same ones. A child
picture that reaches new tiles gives them a salt of its own: its four variants differ only there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sandbox.palette import seed_from

Size = tuple[int, int]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class View:
    """Which part of a seeded world a picture shows: world point (x, y) lands on pixel
    (x * scale + offset x, y * scale + offset y)."""

    seed: int
    frame: Size  # the first picture's size: the world's unit tile
    size: Size  # this picture's size in pixels
    scale: float = 1.0  # pixels per world unit
    offset: tuple[float, float] = (0.0, 0.0)  # where world (0, 0) lands
    salts: tuple[tuple[int, int, int, Box], ...] = ()  # (tile x, tile y, salt, what was seen) per invented tile

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale + self.offset[0], y * self.scale + self.offset[1]

    def world_x(self, px: float) -> float:
        return (px - self.offset[0]) / self.scale

    def world_y(self, py: float) -> float:
        return (py - self.offset[1]) / self.scale

    def world_box(self) -> Box:
        return self.world_x(0), self.world_y(0), self.world_x(self.size[0]), self.world_y(self.size[1])

    def frame_box(self) -> Box:
        """The first picture's place in this one, in pixels (it frames the vignette)."""
        return (*self.px(0, 0), *self.px(*self.frame))

    def tiles(self, margin: float = 0.5) -> Iterator[tuple[int, int]]:
        """Tiles that can put something into this picture (a margin catches things leaning in)."""
        fw, fh = self.frame
        x0, y0, x1, y1 = self.world_box()
        for tx in range(math.floor(x0 / fw - margin), math.floor(x1 / fw + margin) + 1):
            for ty in range(math.floor(y0 / fh - margin), math.floor(y1 / fh + margin) + 1):
                yield tx, ty

    def deals(self, kind: str, margin: float = 0.5) -> Iterator[Deal]:
        """For each tile, the random streams that place its things. An invented tile deals twice: the
        original stream, keeping only things that reach into what an ancestor showed (they are in its
        pixels), then its salted stream, keeping only things that stay clear of it."""
        for tx, ty in self.tiles(margin):
            base = random.Random(seed_from(self.seed, kind, tx, ty))
            invented = self._invented(tx, ty)
            if invented is None:
                yield Deal(tx, ty, base, None, reach=True)
                continue
            salt, seen = invented
            yield Deal(tx, ty, base, seen, reach=True)
            yield Deal(tx, ty, random.Random(seed_from(self.seed, kind, tx, ty, salt)), seen, reach=False)

    def column_rng(self, kind: str, column: int) -> random.Random:
        """One stream per tile column (for ridges), salted where the column was invented."""
        invented = self._invented(column, 0)
        return random.Random(seed_from(self.seed, kind, column, invented[0] if invented else 0))

    def _invented(self, tx: int, ty: int) -> tuple[int, Box] | None:
        return next(((salt, seen) for x, y, salt, seen in self.salts if (x, y) == (tx, ty)), None)

    def scaled(self, factor: float) -> View:
        size = (round(self.size[0] * factor), round(self.size[1] * factor))
        offset = (self.offset[0] * factor, self.offset[1] * factor)
        return replace(self, size=size, scale=self.scale * factor, offset=offset)

    def around(self, size: Size, placement: tuple[int, int], shrink: float, salt: int) -> View:
        """The view of a bigger picture holding this one, shrunk by `shrink`, at `placement`; tiles this one
        never touched are invented with `salt`."""
        offset = (self.offset[0] / shrink + placement[0], self.offset[1] / shrink + placement[1])
        child = replace(self, size=size, scale=self.scale / shrink, offset=offset)
        fw, fh = self.frame
        seen = self.world_box()
        fresh = tuple(
            (tx, ty, salt, seen)
            for tx, ty in child.tiles()
            if self._invented(tx, ty) is None and not _overlap((tx * fw, ty * fh, (tx + 1) * fw, (ty + 1) * fh), seen)
        )
        return replace(child, salts=self.salts + fresh)


@dataclass(frozen=True)
class Deal:
    """One tile's random stream, and which of its things to draw (see View.deals)."""

    tx: int
    ty: int
    rng: random.Random
    seen: Box | None
    reach: bool

    def keep(self, box: Box) -> bool:
        return self.seen is None or _overlap(box, self.seen) == self.reach


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
