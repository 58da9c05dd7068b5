"""Painting the four kinds of scene (hills, sea, lights, abstract) through a View of their world.

Continuous things are functions of world coordinates; scattered things come from View.deals, each kept or
skipped by its extent in world units (see world.py). Everything is Pillow-only and deterministic.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from sandbox.palette import RGB, Palette, Scene, mix, seed_from, smooth
from sandbox.world import Deal, View

BLACK: RGB = (0, 0, 0)
# Image.radial_gradient is 0 at the centre and 181 at the middle of each edge (255 only in the corners).
RADIAL_EDGE = 181


def render_scene(scene: Scene, view: View) -> Image.Image:
    """One finished picture: the scene's world seen through the view, with grain and a gentle vignette."""
    painters = {"hills": _paint_hills, "sea": _paint_sea, "lights": _paint_lights, "abstract": _paint_abstract}
    return _finish(painters[scene.kind](scene, view), view)


# --- world-coordinate primitives -------------------------------------------------------------------------


def _stops(stops: list[tuple[float, RGB]]) -> Callable[[float], RGB]:
    """Colour at a world y through (world y, colour) stops, held constant beyond the ends."""

    def color_at(y: float) -> RGB:
        if y <= stops[0][0]:
            return stops[0][1]
        for (y0, c0), (y1, c1) in itertools.pairwise(stops):
            if y <= y1:
                return mix(c0, c1, smooth((y - y0) / (y1 - y0)))
        return stops[-1][1]

    return color_at


def _rows(view: View, color_at: Callable[[float], RGB]) -> Image.Image:
    """A picture whose every row has one colour, chosen by the row's world y: painted as one column."""
    w, h = view.size
    strip = Image.new("RGB", (1, h))
    strip.putdata([color_at(view.world_y(y + 0.5)) for y in range(h)])
    return strip.resize((w, h), Image.Resampling.NEAREST)


def _even(colors: tuple[RGB, ...] | list[RGB], start: float, end: float) -> list[tuple[float, RGB]]:
    step = (end - start) / max(len(colors) - 1, 1)
    return [(start + i * step, c) for i, c in enumerate(colors)]


def _glow(canvas: Image.Image, centre: tuple[float, float], radius: float, color: RGB, strength: float) -> None:
    """A soft round light (pixels): a radial falloff pasted in one colour."""
    r = max(int(radius), 2)
    falloff = Image.radial_gradient("L").resize((2 * r, 2 * r), Image.Resampling.BILINEAR)
    mask = falloff.point(lambda v: int(255 * strength * max(1 - v / RADIAL_EDGE, 0) ** 2.2))
    canvas.paste(color, (int(centre[0]) - r, int(centre[1]) - r), mask)


def _disc(canvas: Image.Image, centre: tuple[float, float], radius: float, color: RGB, soft: float) -> None:
    x, y = centre
    pad = int(soft * 3) + 2
    side = int(2 * (radius + pad)) + 1
    box = Image.new("L", (side, side))
    ImageDraw.Draw(box).ellipse((pad, pad, pad + 2 * radius, pad + 2 * radius), fill=255)
    canvas.paste(color, (int(x - radius - pad), int(y - radius - pad)), box.filter(ImageFilter.GaussianBlur(soft)))


@dataclass(frozen=True)
class Ridge:
    """A hill line in world units: slow waves everywhere, plus a bump per tile column that a salt can
    reshape (zero at the tile's borders, so invented land joins the old land)."""

    base: float
    amplitude: float
    waves: tuple[tuple[float, float, float], ...]
    jagged: bool
    name: str

    def at(self, view: View, x: float) -> float:
        u = x / view.frame[0] * 2 * math.pi
        (f0, p0, a0), rest = self.waves[0], self.waves[1:]
        main = a0 - abs(math.sin(f0 * u + p0)) * a0 * 2 if self.jagged else a0 * math.sin(f0 * u + p0)
        y = self.base + main + sum(a * math.sin(f * u + p) for f, p, a in rest)
        column = math.floor(x / view.frame[0])
        if column != 0:
            bump = view.column_rng(self.name, column).uniform(-1, 1) * self.amplitude
            y += bump * math.sin(math.pi * (x / view.frame[0] - column)) ** 2
        return y

    def polygon(self, view: View) -> list[tuple[float, float]]:
        """Ridge in pixels every 4 px, closed along the bottom of the picture."""
        w, h = view.size
        line = [(px, view.px(0, self.at(view, view.world_x(px)))[1]) for px in range(-4, w + 8, 4)]
        return [*line, (w + 8, h + 8), (-4, h + 8)]


def _ridge(rng: random.Random, name: str, base: float, amplitude: float, jagged: bool) -> Ridge:
    octaves = 6 if jagged else 4
    decay = 0.42 if jagged else 0.5
    waves = tuple(
        (rng.uniform(0.7, 1.5) * 2.1**k, rng.uniform(0, 2 * math.pi), amplitude * decay**k) for k in range(octaves)
    )
    return Ridge(base, amplitude, waves, jagged, name)


def _land(canvas: Image.Image, view: View, ridge: Ridge, colors: tuple[RGB, RGB], soft: float, trees: bool) -> None:
    """Fill below a ridge with a top-to-bottom gradient; pines on the crest if asked."""
    mask = Image.new("L", view.size)
    draw = ImageDraw.Draw(mask)
    draw.polygon(ridge.polygon(view), fill=255)
    if trees:
        _trees(draw, view, ridge)
    crest = ridge.base - ridge.amplitude * 1.5
    fill = _rows(view, _stops([(crest, colors[0]), (view.frame[1] * 1.05, colors[1])]))
    canvas.paste(fill, (0, 0), mask.filter(ImageFilter.GaussianBlur(soft * view.scale)))


def _trees(draw: ImageDraw.ImageDraw, view: View, ridge: Ridge) -> None:
    """Pines standing on a ridge, tile by tile: stacked triangles, in clumps and clearings."""
    fw, fh = view.frame
    for deal in view.deals("trees" + ridge.name):
        if deal.ty != 0:
            continue
        x = deal.tx * fw + deal.rng.uniform(0, 12)
        while x < (deal.tx + 1) * fw:
            tall = deal.rng.uniform(0.035, 0.085) * fh
            wide = tall * 0.32
            ground = ridge.at(view, x) + 3
            if deal.keep((x - wide, ground - tall, x + wide, ground)):
                _pine(draw, view.px(x, ground), tall * view.scale, wide * view.scale)
            x += deal.rng.uniform(4, 16) if deal.rng.random() < 0.8 else deal.rng.uniform(20, 60)


def _pine(draw: ImageDraw.ImageDraw, ground: tuple[float, float], tall: float, wide: float) -> None:
    gx, gy = ground
    for k in range(3):
        tip = gy - tall + k * tall * 0.22
        spread = wide * (0.55 + k * 0.2)
        draw.polygon([(gx, tip), (gx - spread, tip + tall * 0.45), (gx + spread, tip + tall * 0.45)], fill=255)


def _sky_color(view: View, p: Palette, horizon: float) -> Callable[[float], RGB]:
    """Sky colour by world y: its stops from 0 down to the horizon, deepening above the first picture."""
    return _stops([(-view.frame[1], mix(p.sky[0], BLACK, 0.3)), *_even(p.sky, 0, horizon)])


def _sun(canvas: Image.Image, view: View, p: Palette, rng: random.Random, horizon: float) -> tuple[float, float]:
    fw, fh = view.frame
    x, y = rng.uniform(0.2, 0.8) * fw, horizon * p.sun_height * rng.uniform(0.85, 1.1)
    radius = min(fw, fh) * rng.uniform(0.045, 0.075) * view.scale
    centre = view.px(x, y)
    _glow(canvas, centre, radius * 9, mix(p.sun, p.sky[-1], 0.3), 0.55)
    _glow(canvas, centre, radius * 3, p.sun, 0.6)
    _disc(canvas, centre, radius, p.sun, 1.5)
    return x, y


def _clouds(canvas: Image.Image, view: View, top: float, bottom: float, color: RGB) -> None:
    """Long soft clouds, tile by tile: drawn at a quarter size, blurred, stretched back (cheap and soft)."""
    fw, fh = view.frame
    small = Image.new("L", (max(view.size[0] // 4, 1), max(view.size[1] // 4, 1)))
    draw = ImageDraw.Draw(small)
    for deal in view.deals("clouds"):
        if deal.ty > 0:
            continue
        rng = deal.rng
        # The first row of tiles keeps its clouds in the upper sky; rows above (a pan up) fill their whole tile.
        low, high = (top, bottom) if deal.ty == 0 else (deal.ty, deal.ty + 1)
        for _ in range(rng.randint(2, 5)):
            cx, cy = (deal.tx + rng.random()) * fw, rng.uniform(low, high) * fh
            length, thick = rng.uniform(0.15, 0.4) * fw, rng.uniform(0.01, 0.03) * fh
            puffs = [
                (cx + rng.uniform(-length, length) / 2, cy + rng.uniform(-thick, thick), rng.randint(60, 120))
                for _ in range(4)
            ]
            if not deal.keep((cx - length, cy - 3 * thick - 0.03 * fh, cx + length, cy + 3 * thick + 0.03 * fh)):
                continue
            for x, y, level in puffs:
                (x, y), half, tall = view.px(x, y), length * view.scale / 2, thick * view.scale
                draw.ellipse(((x - half) / 4, (y - tall) / 4, (x + half) / 4, (y + tall) / 4), fill=level)
    mask = small.filter(ImageFilter.GaussianBlur(2.5)).resize(view.size, Image.Resampling.BILINEAR)
    canvas.paste(color, (0, 0), mask)


def _stars(canvas: Image.Image, view: View, horizon: float) -> None:
    fw, fh = view.frame
    draw = ImageDraw.Draw(canvas)
    for deal in view.deals("stars", margin=0):
        top, bottom = deal.ty * fh, min(horizon, (deal.ty + 1) * fh)
        if bottom <= top:
            continue
        for _ in range(int(fw * (bottom - top) / 1800)):
            wx, wy = (deal.tx + deal.rng.random()) * fw, top + (bottom - top) * deal.rng.random() ** 1.15
            level, size = deal.rng.randint(120, 255), 0.5 if deal.rng.random() < 0.9 else 1.1
            if deal.keep((wx - 1, wy - 1, wx + 1, wy + 1)):
                (x, y), r = view.px(wx, wy), size * max(view.scale, 0.6)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=(level, level, min(level + 20, 255)))


def _birds(canvas: Image.Image, view: View, rng: random.Random, horizon: float, color: RGB) -> None:
    fw, fh = view.frame
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.uniform(0.15, 0.85) * fw, rng.uniform(0.12, horizon * 0.6) * fh
    for _ in range(rng.randint(2, 5)):
        x, y = view.px(cx + rng.uniform(-40, 40), cy + rng.uniform(-18, 18))
        span = rng.uniform(3, 6) * view.scale
        draw.line([(x - span, y - span * 0.5), (x, y), (x + span, y - span * 0.6)], fill=color, width=1)


# --- scenes -----------------------------------------------------------------------------------------------


def _paint_hills(scene: Scene, view: View) -> Image.Image:
    fh = view.frame[1]
    p = scene.palette
    rng = random.Random(seed_from(view.seed, "world"))
    horizon = rng.uniform(0.5, 0.64)
    canvas = _rows(view, _sky_color(view, p, (horizon + 0.1) * fh))
    if p.night:
        _stars(canvas, view, horizon * fh)
    _sun(canvas, view, p, rng, horizon * fh)
    _clouds(canvas, view, 0.08, horizon * 0.8, mix(p.sun, p.sky[1], 0.35))
    if not p.night and rng.random() < 0.5:
        _birds(canvas, view, rng, horizon, mix(p.land, p.sky[0], 0.3))
    layers = rng.randint(3, 4)
    for i in range(layers):
        depth = i / (layers - 1)  # 0 = farthest, 1 = nearest
        base = (horizon + depth * (0.88 - horizon) * rng.uniform(0.85, 1.0)) * fh
        jagged = scene.peaks and i < 2
        amplitude = fh * (0.05 + 0.05 * depth) * (1.9 if jagged else 1.0)
        ridge = _ridge(rng, f"hill{i}", base, amplitude, jagged)
        near = mix(p.land, p.haze, 0.72 * (1 - depth) ** 1.2)
        colors = (mix(near, p.sun, 0.18 * (1 - depth)), mix(near, BLACK, 0.4 * depth))
        _land(canvas, view, ridge, colors, 2.2 * (1 - depth) + 0.6, trees=scene.forest and i >= layers - 2)
        if i < layers - 1:
            _mist(canvas, view, p.haze, base, 0.09 * fh)
    _foreground(canvas, view, p, scene.forest)
    return canvas


def _foreground(canvas: Image.Image, view: View, p: Palette, forest: bool) -> None:
    """Below the first picture (a pan down or zoom-out shows it): bushes, or pines in a forest, in the
    near land's darkest tone."""
    fw, fh = view.frame
    mask = Image.new("L", view.size)
    draw = ImageDraw.Draw(mask)
    for deal in view.deals("foreground"):
        if deal.ty < 1:
            continue
        for _ in range(deal.rng.randint(4, 8)):
            wx, wy = (deal.tx + deal.rng.random()) * fw, (deal.ty + deal.rng.uniform(0.1, 1)) * fh
            size = deal.rng.uniform(0.05, 0.12) * fh
            puffs = [(deal.rng.uniform(-1, 1) * size, deal.rng.uniform(-0.5, 0) * size) for _ in range(4)]
            if not deal.keep((wx - 3 * size, wy - 3 * size, wx + 3 * size, wy + size)):
                continue
            (x, y), sp = view.px(wx, wy), size * view.scale
            if forest:
                _pine(draw, (x, y), sp * 3, sp)
                continue
            for dx, dy in puffs:
                cx, cy = x + dx * view.scale, y + dy * view.scale
                draw.ellipse((cx - sp, cy - sp * 0.7, cx + sp, cy + sp * 0.5), fill=255)
    canvas.paste(mix(p.land, BLACK, 0.55), (0, 0), mask.filter(ImageFilter.GaussianBlur(view.scale)))


def _mist(canvas: Image.Image, view: View, color: RGB, at: float, depth: float) -> None:
    """A band of valley mist, thickest at world y `at`."""
    w, h = view.size
    strip = Image.new("L", (1, h))
    strip.putdata([int(95 * smooth(1 - abs(view.world_y(y) - at) / depth)) for y in range(h)])
    canvas.paste(color, (0, 0), strip.resize((w, h), Image.Resampling.NEAREST))


def _paint_sea(scene: Scene, view: View) -> Image.Image:
    fh = view.frame[1]
    p = scene.palette
    rng = random.Random(seed_from(view.seed, "world"))
    horizon = rng.uniform(0.48, 0.62) * fh
    canvas = _rows(view, _sky_color(view, p, horizon))
    if p.night:
        _stars(canvas, view, horizon)
    sun_x, _ = _sun(canvas, view, p, rng, horizon)
    _clouds(canvas, view, 0.05, horizon / fh * 0.75, mix(p.sun, p.sky[1], 0.4))
    if rng.random() < 0.6:
        _island(canvas, view, p, rng, horizon)
    _water(canvas, view, p, horizon, sun_x)
    return canvas


def _island(canvas: Image.Image, view: View, p: Palette, rng: random.Random, horizon: float) -> None:
    """A low headland on the horizon, tapering into the sea at both ends."""
    fw, fh = view.frame
    start, length = rng.uniform(-0.3, 0.8) * fw, rng.uniform(0.2, 0.6) * fw
    hump = _ridge(rng, "island", 0.0, fh * 0.03, jagged=False)
    mask = Image.new("L", view.size)
    line = []
    for px in range(-4, view.size[0] + 8, 4):
        x = view.world_x(px)
        lift = max(fh * 0.035 + hump.at(view, x), 0.0)
        t = (x - start) / length
        height = lift * math.sin(math.pi * t) ** 0.5 if 0 < t < 1 else 0.0
        line.append((px, view.px(0, horizon - height)[1]))
    hz = view.px(0, horizon)[1] + 1
    ImageDraw.Draw(mask).polygon([*line, (view.size[0] + 8, hz), (-4, hz)], fill=255)
    canvas.paste(mix(p.land, p.haze, 0.5), (0, 0), mask.filter(ImageFilter.GaussianBlur(0.8)))


def _water(canvas: Image.Image, view: View, p: Palette, horizon: float, sun_x: float) -> None:
    """Below the horizon: the sky mirrored and deepened, with streaks of light and the sun's glitter."""
    w, h = view.size
    hz = max(int(view.px(0, horizon)[1]), 0)
    if h - hz < 2:
        return
    sky, deep = _sky_color(view, p, horizon), mix(p.sky[0], p.land, 0.35)
    depth = _stops([(horizon, mix(p.sky[-1], deep, 0.4)), (view.frame[1], deep)])
    water = _rows(view, lambda y: mix(sky(2 * horizon - y), depth(y), 0.55)).crop((0, hz, w, h))
    streaks, glints = Image.new("L", water.size), Image.new("L", water.size)
    sdraw, gdraw = ImageDraw.Draw(streaks), ImageDraw.Draw(glints)
    fw, fh = view.frame
    for deal in view.deals("water"):
        top, bottom = max(horizon, deal.ty * fh), (deal.ty + 1) * fh
        # Streaks crowd toward the horizon (perspective); further down they thin to the same density the
        # horizon's tile ends with, so a pan down shows no seam.
        crowded = top == horizon
        count = int((bottom - top) / (2 if crowded else 3.2)) if bottom > top else 0
        for _ in range(count):
            wx, wy = (
                (deal.tx + deal.rng.random()) * fw,
                top + (bottom - top) * deal.rng.random() ** (1.6 if crowded else 1),
            )
            length, level = deal.rng.uniform(20, 90), deal.rng.randint(20, 90)
            if deal.keep((wx, wy - 1, wx + length, wy + 1)):
                x, y = view.px(wx, wy)
                sdraw.line((x, y - hz, x + length * view.scale, y - hz), fill=level)
    rng = random.Random(seed_from(view.seed, "glitter"))
    below = fh - horizon
    for _ in range(int(below)):
        t = rng.random() ** 1.3
        spread = 4 + 40 * t
        x, y = view.px(sun_x + rng.gauss(0, spread), horizon + below * 1.2 * t)
        half = spread * 0.4 * view.scale
        gdraw.line((x - half, y - hz, x + half, y - hz), fill=rng.randint(80, 220))
    water.paste(mix(p.sky[-1], (255, 255, 255), 0.3), (0, 0), streaks.filter(ImageFilter.GaussianBlur(0.7)))
    water.paste(p.sun, (0, 0), glints.filter(ImageFilter.GaussianBlur(0.7)))
    canvas.paste(water, (0, hz))


def _paint_lights(scene: Scene, view: View) -> Image.Image:
    """An evening interior out of focus: a row of windows glowing with the time of day, layers of bokeh,
    a table across the bottom (and, for coffee and tea, a steaming cup)."""
    fh = view.frame[1]
    p = scene.palette
    rng = random.Random(seed_from(view.seed, "world"))
    dark = mix(p.sky[0], (12, 8, 6), 0.55)
    canvas = _rows(view, _stops([(0, dark), (0.55 * fh, mix(p.sky[-2], dark, 0.5)), (fh, mix(p.land, dark, 0.4))]))
    sill = (0.08 * fh, rng.uniform(0.5, 0.62) * fh)
    framed: set[int] = set()
    for deal in view.deals("window"):
        # An invented tile keeps an old window that reaches into the parent, or else gets a new one.
        if deal.ty == 0 and deal.tx not in framed and _window(canvas, view, scene, deal, sill):
            framed.add(deal.tx)
    _pendants(canvas, view, p)
    canvas = _bokeh(canvas, view, p)
    table = rng.uniform(0.74, 0.8) * fh
    _table(canvas, view, p, table)
    if scene.cup:
        _cup(canvas, view, p, rng, table)
    return canvas


def _window(canvas: Image.Image, view: View, scene: Scene, deal: Deal, sill: tuple[float, float]) -> bool:
    """A bright window in the deal's tile (always one in the first picture): a small landscape behind
    panes, glowing into the room. Says whether it was drawn."""
    p, rng, fw = scene.palette, deal.rng, view.frame[0]
    absent = deal.tx != 0 and rng.random() < 0.4
    left = (deal.tx + rng.uniform(0.05, 0.55)) * fw
    right = left + rng.uniform(0.3, 0.4) * fw
    seed = rng.getrandbits(64)
    glow = (right - left) * 0.8
    if absent or not deal.keep((left - glow, sill[0] - glow, right + glow, sill[1] + glow)):
        return False
    (x0, y0), (x1, y1) = view.px(left, sill[0]), view.px(right, sill[1])
    x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
    if x1 - x0 >= 8:
        inner = View(seed, (x1 - x0, y1 - y0), (x1 - x0, y1 - y0))
        outside = Scene("hills", p, forest=False, peaks=False, cup=False)
        pane = Image.blend(_paint_hills(outside, inner), Image.new("RGB", inner.size, p.haze), 0.3)
        _glow(canvas, ((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0) * 1.2, mix(p.sun, p.sky[-1], 0.5), 0.5)
        canvas.paste(pane, (x0, y0))
        _panes(canvas, (x0, y0, x1, y1), mix(p.land, (10, 8, 6), 0.6), max(int(fw / 100 * view.scale), 2))
    return True


def _panes(canvas: Image.Image, box: tuple[int, int, int, int], color: RGB, bar: int) -> None:
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(box, outline=color, width=bar + 1)
    draw.rectangle(((x0 + x1) // 2 - bar // 2, y0, (x0 + x1) // 2 + bar // 2, y1), fill=color)
    draw.rectangle((x0, (y0 + y1) // 2 - bar // 2, x1, (y0 + y1) // 2 + bar // 2), fill=color)


def _bokeh(canvas: Image.Image, view: View, p: Palette) -> Image.Image:
    """Out-of-focus lamps add light: drawn on black per depth layer, blurred, and screened over the room.
    Lamps take the time of day's colours with a touch of the prompt's own; colour words take over. Layers
    are drawn at half size: they end up blurred anyway, and it halves the cost."""
    fw, fh = view.frame
    half = (max(view.size[0] // 2, 1), max(view.size[1] // 2, 1))
    lamps = [*p.lights, *p.lights, *p.accents, *p.accents] if p.accents else [*p.lights, *p.lights, p.tints[0]]
    layers = ((26, (0.02, 0.05), 3.0, 0.35), (14, (0.04, 0.09), 1.6, 0.5), (5, (0.1, 0.18), 7.0, 0.3))
    for k, (count, (small, large), soft, strength) in enumerate(layers):
        light = Image.new("RGB", half)
        draw = ImageDraw.Draw(light)
        for deal in view.deals(f"bokeh{k}"):
            if deal.ty != 0:  # lamps hang in the room's band, not above or below it
                continue
            for _ in range(count):
                wx, wy = (deal.tx + deal.rng.random()) * fw, deal.rng.uniform(0.05, 0.75) * fh
                r = min(fw, fh) * deal.rng.uniform(small, large)
                color = mix(BLACK, deal.rng.choice(lamps), strength * deal.rng.uniform(0.5, 1))
                reach = r + 3 * soft
                if deal.keep((wx - reach, wy - reach, wx + reach, wy + reach)):
                    (x, y), rp = view.px(wx, wy), r * view.scale
                    draw.ellipse((x / 2 - rp / 2, y / 2 - rp / 2, x / 2 + rp / 2, y / 2 + rp / 2), fill=color)
        light = light.filter(ImageFilter.GaussianBlur(soft * view.scale / 2)).resize(
            view.size, Image.Resampling.BILINEAR
        )
        canvas = ImageChops.screen(canvas, light)
    return canvas


def _table(canvas: Image.Image, view: View, p: Palette, top: float) -> None:
    """A wooden table top across the room, lit along its edge, with a faint grain."""
    wood = mix(p.land, p.sun, 0.12)
    fw, fh = view.frame
    edge = 0.02 * fh
    color_at = _stops([(top, mix(wood, p.sun, 0.25)), (top + edge, wood), (fh * 1.2, mix(wood, BLACK, 0.5))])
    fill = _rows(view, color_at)
    grain = ImageDraw.Draw(fill)
    for deal in view.deals("wood"):
        low, high = max(top + edge, deal.ty * fh), (deal.ty + 1) * fh
        for _ in range(12 if high > low else 0):
            wx, wy = (deal.tx + deal.rng.uniform(-0.2, 1)) * fw, deal.rng.uniform(low, high)
            length, shade, tilt = deal.rng.uniform(0.2, 0.7) * fw, deal.rng.uniform(0.08, 0.2), deal.rng.uniform(-2, 2)
            if deal.keep((wx, wy - 2, wx + length, wy + 2)):
                (x, y), color = view.px(wx, wy), mix(color_at(wy), BLACK, shade)
                grain.line((x, y, x + length * view.scale, y + tilt * view.scale), fill=color, width=1)
    y = max(int(view.px(0, top)[1]), 0)
    if y < view.size[1]:
        canvas.paste(fill.crop((0, y, view.size[0], view.size[1])), (0, y))


def _pendants(canvas: Image.Image, view: View, p: Palette) -> None:
    """Warm lamps hanging from the ceiling, above the first picture (a pan up or zoom-out shows them)."""
    fw, fh = view.frame
    draw = ImageDraw.Draw(canvas)
    for deal in view.deals("pendants"):
        if deal.ty >= 0:
            continue
        for _ in range(deal.rng.randint(1, 3)):
            wx, wy = (deal.tx + deal.rng.uniform(0.1, 0.9)) * fw, (deal.ty + deal.rng.uniform(0.4, 0.95)) * fh
            r = deal.rng.uniform(0.025, 0.045) * fh
            if deal.keep((wx - 6 * r, wy - fh, wx + 6 * r, wy + 6 * r)):
                (x, y), rp = view.px(wx, wy), r * view.scale
                draw.line((x, view.px(0, deal.ty * fh)[1], x, y), fill=mix(p.land, BLACK, 0.6), width=1)
                _glow(canvas, (x, y + rp), rp * 6, mix(p.lights[0], p.sun, 0.5), 0.5)
                draw.chord((x - rp, y - rp * 0.2, x + rp, y + rp * 1.8), 180, 360, fill=mix(p.land, BLACK, 0.5))
                _disc(canvas, (x, y + rp * 0.9), rp * 0.45, p.lights[1], 1.0)


def _cup(canvas: Image.Image, view: View, p: Palette, rng: random.Random, table: float) -> None:
    """A cup on the table in the first picture, with its shadow and a curl of steam."""
    fw, fh = view.frame
    side = min(fw, fh) * view.scale
    cx, base = view.px(rng.uniform(0.35, 0.65) * fw, table + min(fw, fh) * 0.07)
    cw, ch = side * 0.17, side * 0.13
    shadow = Image.new("L", view.size)
    ImageDraw.Draw(shadow).ellipse((cx - cw * 0.9, base - ch * 0.08, cx + cw * 0.9, base + ch * 0.16), fill=120)
    canvas.paste(BLACK, (0, 0), shadow.filter(ImageFilter.GaussianBlur(6 * view.scale)))
    china = mix((240, 232, 220), p.sun, 0.25)
    shade = mix(china, p.land, 0.35)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse(
        (cx + cw * 0.3, base - ch * 0.8, cx + cw * 0.78, base - ch * 0.3), outline=shade, width=max(int(side / 60), 2)
    )
    body_view = View(0, (max(int(cw), 1), max(int(ch), 1)), (max(int(cw), 1), max(int(ch), 1)))
    body = _rows(body_view, _stops([(0, china), (ch * 0.5, china), (ch, shade)]))
    mask = Image.new("L", body.size)
    ImageDraw.Draw(mask).rounded_rectangle((0, -ch * 0.5, cw - 1, ch - 1), radius=ch * 0.45, fill=255)
    canvas.paste(body, (int(cx - cw / 2), int(base - ch)), mask)
    draw.ellipse((cx - cw / 2, base - ch * 1.12, cx + cw / 2, base - ch * 0.88), fill=shade)
    coffee = mix(p.land, (30, 16, 8), 0.5)
    draw.ellipse((cx - cw * 0.44, base - ch * 1.08, cx + cw * 0.44, base - ch * 0.91), fill=coffee)
    _steam(canvas, rng, (cx, base - ch * 1.15), ch, mix(china, p.sky[-1], 0.3))


def _steam(canvas: Image.Image, rng: random.Random, origin: tuple[float, float], height: float, color: RGB) -> None:
    mask = Image.new("L", canvas.size)
    draw = ImageDraw.Draw(mask)
    for k in range(3):
        phase, x0 = rng.uniform(0, 6.3), origin[0] + (k - 1) * height * 0.22
        points = [(x0 + math.sin(phase + t / 9) * height * 0.12, origin[1] - t * height / 40) for t in range(60)]
        draw.line(points, fill=70, width=max(int(height / 12), 2))
    canvas.paste(color, (0, 0), mask.filter(ImageFilter.GaussianBlur(height / 14)))


def _paint_abstract(scene: Scene, view: View) -> Image.Image:
    """Soft colour fields: a gradient, big blurred blobs, flowing bands and a few glowing discs."""
    fw, fh = view.frame
    p = scene.palette
    rng = random.Random(seed_from(view.seed, "world"))
    colors = [*(p.accents or p.tints), *p.lights[:3], p.sky[1]]
    rng.shuffle(colors)
    canvas = _rows(view, _stops(_even([mix(c, p.haze, 0.25) for c in colors[:3]], -0.2 * fh, 1.2 * fh)))
    # Blobs are painted at a quarter size, colour and shape both blurred: soft, and nearly free.
    quarter = (max(view.size[0] // 4, 1), max(view.size[1] // 4, 1))
    blobs, shapes = Image.new("RGB", quarter, colors[0]), Image.new("L", quarter)
    bdraw, sdraw = ImageDraw.Draw(blobs), ImageDraw.Draw(shapes)
    for deal in view.deals("blobs"):
        for _ in range(deal.rng.randint(4, 7)):
            wx, wy = (deal.tx + deal.rng.random()) * fw, (deal.ty + deal.rng.random()) * fh
            r = deal.rng.uniform(0.12, 0.3) * min(fw, fh)
            color, level = deal.rng.choice(colors), deal.rng.randint(110, 200)
            if deal.keep((wx - r * 1.3 - 30, wy - r * 1.3 - 30, wx + r * 1.3 + 30, wy + r * 1.3 + 30)):
                (x, y), r = view.px(wx, wy), r * view.scale / 4
                bdraw.ellipse((x / 4 - r * 1.3, y / 4 - r * 1.3, x / 4 + r * 1.3, y / 4 + r * 1.3), fill=color)
                sdraw.ellipse((x / 4 - r, y / 4 - r, x / 4 + r, y / 4 + r), fill=level)
    blobs = blobs.filter(ImageFilter.GaussianBlur(4 * view.scale)).resize(view.size, Image.Resampling.BILINEAR)
    shapes = shapes.filter(ImageFilter.GaussianBlur(6 * view.scale)).resize(view.size, Image.Resampling.BILINEAR)
    canvas.paste(blobs, (0, 0), shapes)
    for k in range(rng.randint(2, 4)):
        ridge = _ridge(rng, f"band{k}", fh * rng.uniform(0.45, 0.92), fh * 0.07, jagged=False)
        band = Image.new("L", view.size)
        ImageDraw.Draw(band).polygon(ridge.polygon(view), fill=60 + 20 * k)
        tone = mix(rng.choice(colors), p.land, 0.2 + 0.12 * k)
        canvas.paste(tone, (0, 0), band.filter(ImageFilter.GaussianBlur(1.5)))
    for deal in view.deals("discs"):
        for _ in range(deal.rng.randint(1, 3)):
            wx, wy = (deal.tx + deal.rng.uniform(0.15, 0.85)) * fw, (deal.ty + deal.rng.uniform(0.15, 0.6)) * fh
            r = deal.rng.uniform(0.03, 0.07) * min(fw, fh)
            if deal.keep((wx - 3 * r, wy - 3 * r, wx + 3 * r, wy + 3 * r)):
                centre, radius = view.px(wx, wy), r * view.scale
                _glow(canvas, centre, radius * 3, p.sun, 0.4)
                _disc(canvas, centre, radius, mix(p.sun, colors[1], 0.25), 1.5)
    return canvas


# --- finishing: a gentle vignette and film grain ------------------------------------------------------------


def _finish(canvas: Image.Image, view: View) -> Image.Image:
    canvas = ImageChops.multiply(canvas, Image.merge("RGB", (_vignette(view),) * 3))
    # Grain laid from world (0, 0): a pan's new pixels carry on the parent's grain pattern.
    origin = (round(view.offset[0]), round(view.offset[1]))
    return add_grain(canvas, seed_from(view.seed, "grain"), 13, origin)


def _vignette(view: View) -> Image.Image:
    """Edges darkened by the first picture's frame, held constant beyond it: a pan or zoom-out continues
    the parent's own shading instead of drawing a dark line through the middle of the new picture."""
    w, h = view.size
    x0, y0, x1, y1 = view.frame_box()

    def falloff(length: int, start: float, end: float) -> Image.Image:
        values = []
        for i in range(length):
            t = min(max((i + 0.5 - start) / (end - start), 0.0), 1.0)
            values.append(int(255 * (1 - 0.1 * abs(2 * t - 1) ** 2.5)))
        line = Image.new("L", (length, 1))
        line.putdata(values)
        return line

    across = falloff(w, x0, x1).resize((w, h), Image.Resampling.NEAREST)
    down = falloff(h, y0, y1).transpose(Image.Transpose.TRANSPOSE).resize((w, h), Image.Resampling.NEAREST)
    return ImageChops.multiply(across, down)


def add_grain(image: Image.Image, seed: int, strength: int, origin: tuple[int, int] = (0, 0)) -> Image.Image:
    """Add film grain: a seeded 128 px tile repeated from `origin` (deterministic, unlike Image.effect_noise,
    which uses C rand())."""
    rng = random.Random(seed)
    tile = Image.frombytes("L", (128, 128), rng.randbytes(128 * 128))
    tile = tile.point(lambda v: 128 + (v - 128) * strength // 128)
    noise = Image.new("L", image.size)
    for x in range(origin[0] % 128 - 128, image.size[0], 128):
        for y in range(origin[1] % 128 - 128, image.size[1], 128):
            noise.paste(tile, (x, y))
    return ImageChops.add(image, Image.merge("RGB", (noise,) * 3), 1.0, -128)
