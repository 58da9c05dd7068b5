"""Stacked bar charts drawn on the server: the geometry is worked out here, in numbers, and the markup is a
template (templates/generations/_usage_chart.svg). No JavaScript, no chart library."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

# Distinct on the dark theme's surfaces, in the order series take them.
PALETTE = (
    "#e8b86d",  # amber (the accent)
    "#6ea8fe",  # blue
    "#7fc8a9",  # green
    "#e77b7b",  # red
    "#b79cff",  # violet
    "#5fd0d0",  # teal
    "#f08fc0",  # pink
    "#c3d66b",  # lime
    "#f0a35e",  # orange
    "#a0a4ae",  # grey
)

# The drawing, in viewBox units; CSS scales it to the width it gets.
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 28  # room for the value axis on the left and the day labels below
BAR_FILL = 0.72  # a bar's share of its day's slot
LABEL_EVERY = 5  # a day label every 5 days, counted back from the last day
TICKS = 4  # value axis: 0 and 4 steps above it
STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # round steps, so the busiest bar reaches well up the axis


@dataclass(frozen=True, slots=True)
class Series:
    key: object  # what the values are keyed by, with the day: a user pk, an action
    label: str
    colour: str


@dataclass(frozen=True, slots=True)
class LegendItem:
    label: str
    colour: str
    total: int


@dataclass(frozen=True, slots=True)
class Segment:
    y: float
    height: float
    colour: str
    label: str
    value: int
    title: str  # the tooltip: "alice · Tue Nov 3: 12 tasks"


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    x: float
    width: float
    centre: float
    total: int
    segments: tuple[Segment, ...]  # bottom to top, in series order, non-zero values only
    label: str  # the day label under the bar, or "" for none


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True, slots=True)
class TableRow:
    day: date
    values: tuple[int, ...]  # in series order
    total: int


@dataclass(frozen=True, slots=True)
class StackedBarChart:
    slug: str  # unique on the page: the ids of the title and description hang off it
    title: str
    description: str
    unit: str
    width: int
    height: int
    left: int
    right: int  # x of the plot's right edge
    top: int
    baseline: int  # y of the value axis' zero
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[LegendItem, ...]  # the series that have anything to show
    columns: tuple[str, ...]  # the table's series columns
    rows: tuple[TableRow, ...]
    total: int


def quantity(value: int, unit: str) -> str:
    """ "1 task", "12 tasks", "1,200 credits"."""
    return f"{value:,} {unit if value == 1 else unit + 's'}"


def nice_scale(peak: int, ticks: int = TICKS) -> int:
    """The top of a value axis of `ticks` equal whole steps (1, 1.5, 2, 2.5 … 8 times 10^k) that reaches `peak`."""
    if peak <= 0:
        return ticks
    raw = peak / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in STEPS if m * magnitude >= raw)
    return max(1, math.ceil(round(step, 6))) * ticks


def stacked_bars(
    *,
    slug: str,
    title: str,
    unit: str,
    days: Sequence[date],
    series: Sequence[Series],
    values: Mapping[tuple[date, object], int],
) -> StackedBarChart:
    """One bar per day, stacked by series, on an axis from 0 to a round number above the busiest day."""
    table = [
        TableRow(day=day, values=(row := tuple(values.get((day, s.key), 0) for s in series)), total=sum(row))
        for day in days
    ]
    top_value = nice_scale(max((r.total for r in table), default=0))
    baseline, plot_height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    slot = (WIDTH - RIGHT - LEFT) / max(1, len(days))
    bar_width = round(slot * BAR_FILL, 2)

    bars = []
    for i, row in enumerate(table):
        x = LEFT + i * slot + (slot - bar_width) / 2
        segments, stacked = [], 0
        for s, value in zip(series, row.values, strict=True):
            if not value:
                continue
            y_top = baseline - (stacked + value) / top_value * plot_height
            y_bottom = baseline - stacked / top_value * plot_height
            title = f"{s.label} · {_day_words(row.day)}: {quantity(value, unit)}"
            segments.append(
                Segment(
                    y=round(y_top, 2),
                    height=round(y_bottom - y_top, 2),
                    colour=s.colour,
                    label=s.label,
                    value=value,
                    title=title,
                )
            )
            stacked += value
        labelled = (len(table) - 1 - i) % LABEL_EVERY == 0
        bars.append(
            Bar(
                day=row.day,
                x=round(x, 2),
                width=bar_width,
                centre=round(x + bar_width / 2, 2),
                total=row.total,
                segments=tuple(segments),
                label=f"{row.day:%b} {row.day.day}" if labelled else "",
            )
        )

    ticks = tuple(
        Tick(y=round(baseline - k / TICKS * plot_height, 2), value=top_value * k // TICKS) for k in range(TICKS + 1)
    )
    totals = [sum(r.values[j] for r in table) for j in range(len(series))]
    legend = tuple(
        LegendItem(label=s.label, colour=s.colour, total=t) for s, t in zip(series, totals, strict=True) if t
    )
    total = sum(totals)
    return StackedBarChart(
        slug=slug,
        title=title,
        description=_describe(table, legend, unit, total),
        unit=unit,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        baseline=baseline,
        bars=tuple(bars),
        ticks=ticks,
        legend=legend,
        columns=tuple(s.label for s in series),
        rows=tuple(table),
        total=total,
    )


def _day_words(day: date) -> str:
    return f"{day:%a %b} {day.day}"


def _describe(table: list[TableRow], legend: tuple[LegendItem, ...], unit: str, total: int) -> str:
    """What a screen reader says for the chart: the total, each series' share, and the busiest day."""
    if not total:
        return f"No {unit}s in these {len(table)} days."
    shares = ", ".join(f"{item.label} {item.total:,}" for item in legend)
    busiest = max(table, key=lambda r: (r.total, r.day))
    return (
        f"{quantity(total, unit)} in {len(table)} days: {shares}. "
        f"Busiest day {_day_words(busiest.day)}, {quantity(busiest.total, unit)}."
    )
