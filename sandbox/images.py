"""The sandbox's pictures: imagine grids and the Midjourney buttons acting on them.

A Picture is pixels plus the View it shows of its scene's world (see world.py), so a pan or zoom-out
paints more of the same world around the untouched parent pixels. Everything is deterministic.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageEnhance, ImageFilter

from sandbox.painting import RADIAL_EDGE, add_grain, render_scene
from sandbox.palette import Scene, seed_from, smooth
from sandbox.world import Size, View

LONG_SIDE = 512
# Where the parent sits in a pan's canvas, in halves of its size.
PAN_PLACEMENT = {"right": (0, 0), "down": (0, 0), "left": (1, 0), "up": (0, 1)}


@dataclass(frozen=True)
class Picture:
    image: Image.Image
    view: View
    painted: bool = True  # every pixel is the world as painted (a vary bends and recolours it)


def size_for(aspect: tuple[int, int], long_side: int = LONG_SIDE) -> Size:
    """The size of one grid image: the aspect ratio with the long side LONG_SIDE px (or `long_side`)."""
    a, b = aspect
    if a >= b:
        return long_side, max(1, round(long_side * b / a))
    return max(1, round(long_side * a / b)), long_side


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: film grain makes higher levels barely smaller and several times slower.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def from_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def imagine(scene: Scene, size: Size, seed: int) -> list[Picture]:
    """Four pictures of the prompt, each its own world."""
    pictures = []
    for n in range(1, 5):
        view = View(seed_from(seed, n), size, size)
        pictures.append(Picture(render_scene(scene, view), view))
    return pictures


def composite(images: list[Image.Image]) -> Image.Image:
    """The 2x2 grid, as Midjourney shows it: images 1-2 on top, 3-4 below, edge to edge."""
    w, h = images[0].size
    grid = Image.new("RGB", (2 * w, 2 * h))
    for n, image in enumerate(images):
        grid.paste(image, ((n % 2) * w, (n // 2) * h))
    return grid


def vary(picture: Picture, seed: int, *, strong: bool) -> Picture:
    """The same picture with its shapes bent and its colours shifted. Strong bends further, may mirror the
    composition and relights it; subtle stays close. Varying an upscale gives grid-sized pictures again."""
    image, view = picture.image, picture.view
    if max(image.size) > LONG_SIDE:
        view = view.scaled(LONG_SIDE / max(image.size))
        image = image.resize(view.size, Image.Resampling.LANCZOS)
    rng = random.Random(seed)
    varied = _bend(image, rng, 0.05 if strong else 0.012)
    if strong and rng.random() < 0.5:
        varied = varied.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    varied = _shift_hue(varied, rng.uniform(6, 16) * rng.choice((-1, 1)) if strong else rng.uniform(-3, 3))
    if strong:
        varied = ImageEnhance.Contrast(varied).enhance(rng.uniform(0.9, 1.15))
        varied = _relight(varied, rng)
    return Picture(add_grain(varied, seed, 10), view, painted=False)


def _shift_hue(image: Image.Image, degrees: float) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    h = h.point(lambda x: int(x + degrees * 256 / 360) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _relight(image: Image.Image, rng: random.Random) -> Image.Image:
    """Brighten a broad soft patch, as if the light moved."""
    w, h = image.size
    r = int(max(w, h) * 0.35)
    spot = Image.radial_gradient("L").resize((2 * r, 2 * r)).point(lambda v: int(90 * max(1 - v / RADIAL_EDGE, 0) ** 2))
    mask = Image.new("L", image.size)
    mask.paste(spot, (int(rng.uniform(0.2, 0.8) * w) - r, int(rng.uniform(0.2, 0.6) * h) - r))
    return Image.composite(ImageEnhance.Brightness(image).enhance(1.35), image, mask)


def _bend(image: Image.Image, rng: random.Random, amount: float, cells: int = 8) -> Image.Image:
    """Resample through a gently bent grid: displacements follow slow waves, so lines bend but never kink
    (edge points slide only along their edge, so no border is left empty)."""
    w, h = image.size
    waves = [(rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * math.pi)) for _ in range(4)]

    def shift(u: float, v: float, axis: int) -> float:
        (fx, fy, p), (gx, gy, q) = waves[axis], waves[axis + 2]
        return math.sin(math.pi * (fx * u + fy * v) + p) * 0.7 + math.sin(math.pi * (2 * gx * u - gy * v) + q) * 0.3

    points = {}
    for i in range(cells + 1):
        for j in range(cells + 1):
            u, v = i / cells, j / cells
            dx = 0.0 if i in (0, cells) else shift(u, v, 0) * amount * w
            dy = 0.0 if j in (0, cells) else shift(u, v, 1) * amount * h
            points[i, j] = (u * w + dx, v * h + dy)
    mesh = []
    for i in range(cells):
        for j in range(cells):
            box = (i * w // cells, j * h // cells, (i + 1) * w // cells, (j + 1) * h // cells)
            mesh.append((box, (*points[i, j], *points[i, j + 1], *points[i + 1, j + 1], *points[i + 1, j])))
    return image.transform(image.size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)


def upscale(picture: Picture, seed: int, *, creative: bool) -> Picture:
    """Exactly twice the width and height; creative sharpens harder and adds fine new texture."""
    image = picture.image
    big = image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS)
    if creative:
        big = ImageEnhance.Color(big.filter(ImageFilter.UnsharpMask(radius=3, percent=130, threshold=1))).enhance(1.12)
        big = add_grain(big, seed, 24)
    else:
        big = big.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
    return Picture(big, picture.view.scaled(2), picture.painted)


def pan(picture: Picture, scene: Scene, salt: int, direction: str) -> Picture:
    """The canvas grows by half in one direction; the old pixels stay exactly where they were."""
    w, h = picture.image.size
    size = (w + w // 2, h) if direction in ("left", "right") else (w, h + h // 2)
    across, down = PAN_PLACEMENT[direction]
    return _outpaint(picture, scene, salt, size, (across * (w // 2), down * (h // 2)), picture.image)


def zoom_out(picture: Picture, scene: Scene, salt: int, factor: float) -> Picture:
    """Same size as the parent: the parent shrunk by 1/factor in the middle, more world around it."""
    w, h = picture.image.size
    small = picture.image.resize((max(round(w / factor), 1), max(round(h / factor), 1)), Image.Resampling.LANCZOS)
    placement = ((w - small.width) // 2, (h - small.height) // 2)
    return _outpaint(picture, scene, salt, (w, h), placement, small, shrink=factor)


def make_square(picture: Picture, scene: Scene, salt: int) -> Picture:
    """Pad to a square (side = the long side) around the unchanged picture."""
    w, h = picture.image.size
    side = max(w, h)
    return _outpaint(picture, scene, salt, (side, side), ((side - w) // 2, (side - h) // 2), picture.image)


def _outpaint(
    picture: Picture,
    scene: Scene,
    salt: int,
    size: Size,
    placement: tuple[int, int],
    inner: Image.Image,
    shrink: float = 1.0,
) -> Picture:
    """Paint the wider world around the parent and paste the parent pixels back untouched. A painted
    parent continues seamlessly; a varied one is cross-faded from its own edge colours over a short band."""
    view = picture.view.around(size, placement, shrink, salt)
    canvas = render_scene(scene, view)
    if not picture.painted:
        fade = max(min(inner.size) * 0.1, 4.0)
        smear = _edge_smear(inner, size, placement).filter(ImageFilter.GaussianBlur(fade / 4))
        canvas = Image.composite(smear, canvas, _seam_mask(size, placement, inner.size, fade))
    canvas.paste(inner, placement)
    return Picture(canvas, view, picture.painted)


def _edge_smear(image: Image.Image, size: Size, placement: tuple[int, int]) -> Image.Image:
    """The picture with its border colours stretched outward (each border averaged over a band a few pixels
    deep, so the grain doesn't turn into streaks); corners take their corner's colour."""
    w, h = image.size
    x0, y0 = placement
    x1, y1 = x0 + w, y0 + h
    band = 6
    canvas = Image.new("RGB", size)
    corners = {
        (0, 0, x0, y0): (0, 0),
        (x1, 0, size[0], y0): (w - band, 0),
        (0, y1, x0, size[1]): (0, h - band),
        (x1, y1, size[0], size[1]): (w - band, h - band),
    }
    for (left, top, right, bottom), (cx, cy) in corners.items():
        if right > left and bottom > top:
            patch = image.crop((cx, cy, cx + band, cy + band)).resize((1, 1), Image.Resampling.BOX)
            canvas.paste(patch.resize((right - left, bottom - top)), (left, top))
    sides = {
        (0, y0, x0, y1): image.crop((0, 0, band, h)).resize((1, h), Image.Resampling.BOX),
        (x1, y0, size[0], y1): image.crop((w - band, 0, w, h)).resize((1, h), Image.Resampling.BOX),
        (x0, 0, x1, y0): image.crop((0, 0, w, band)).resize((w, 1), Image.Resampling.BOX),
        (x0, y1, x1, size[1]): image.crop((0, h - band, w, h)).resize((w, 1), Image.Resampling.BOX),
    }
    for (left, top, right, bottom), strip in sides.items():
        if right > left and bottom > top:
            canvas.paste(strip.resize((right - left, bottom - top), Image.Resampling.NEAREST), (left, top))
    canvas.paste(image, placement)
    return canvas


def _seam_mask(size: Size, placement: tuple[int, int], inner: Size, fade: float) -> Image.Image:
    """255 over the picture, easing to 0 `fade` pixels away from it (Chebyshev distance)."""

    def ramp(length: int, start: int, span: int) -> Image.Image:
        line = Image.new("L", (length, 1))
        line.putdata([int(255 * smooth(1 - max(start - x, x - (start + span - 1), 0) / fade)) for x in range(length)])
        return line

    w, h = size
    across = ramp(w, placement[0], inner[0]).resize((w, h), Image.Resampling.NEAREST)
    down = ramp(h, placement[1], inner[1]).transpose(Image.Transpose.TRANSPOSE).resize((w, h), Image.Resampling.NEAREST)
    return ImageChops.darker(across, down)
