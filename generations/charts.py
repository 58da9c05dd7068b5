"""Stacked bar charts drawn on the server: the geometry is worked out here, in numbers, and the markup is a
template (templates/generations/_usage_chart.svg). No JavaScript, no chart library."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.safestring import SafeString

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
WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 16, 12, 28  # room for the value axis on the left and the day labels below
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
    total: str  # formatted: "1,234"


# Coordinates are strings, formatted here: the template puts them in as they are (no localisation, no work).
@dataclass(frozen=True, slots=True)
class Segment:
    y: str
    height: str
    colour: str
    title: str  # the tooltip: "alice · Tue Nov 3: 12 tasks"


@dataclass(frozen=True, slots=True)
class Bar:
    day: str  # ISO date
    x: str
    segments: tuple[Segment, ...]  # bottom to top, in series order, non-zero values only (none: no bar)


@dataclass(frozen=True, slots=True)
class Label:
    x: str
    text: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: str
    value: str


@dataclass(frozen=True, slots=True)
class TableRow:
    day: str  # "Tue Nov 3"
    values: tuple[str, ...]  # in series order, formatted
    total: str


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
    baseline: int  # y of the value axis' zero
    bar_width: str
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]  # under the bars, every few days
    label_y: int
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
    table = [[values.get((day, s.key), 0) for s in series] for day in days]
    day_totals = [sum(row) for row in table]
    top_value = nice_scale(max(day_totals, default=0))
    baseline, plot_height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    scale = plot_height / top_value
    slot = (WIDTH - RIGHT - LEFT) / max(1, len(days))
    bar_width = slot * BAR_FILL

    bars, labels = [], []
    for i, (day, row) in enumerate(zip(days, table, strict=True)):
        x = LEFT + i * slot + (slot - bar_width) / 2
        segments, stacked = [], 0
        for s, value in zip(series, row, strict=True):
            if value:
                # Both edges from the running sum, so that rounding never opens a gap between segments.
                y_top, y_bottom = baseline - (stacked + value) * scale, baseline - stacked * scale
                title = f"{s.label} · {_day_words(day)}: {quantity(value, unit)}"
                segments.append(Segment(y=_n(y_top), height=_n(y_bottom - y_top), colour=s.colour, title=title))
                stacked += value
        bars.append(Bar(day=day.isoformat(), x=_n(x), segments=tuple(segments)))
        if (len(days) - 1 - i) % LABEL_EVERY == 0:
            labels.append(Label(x=_n(x + bar_width / 2), text=f"{day:%b} {day.day}"))

    ticks = tuple(
        Tick(y=_n(baseline - k / TICKS * plot_height), value=f"{top_value * k // TICKS:,}") for k in range(TICKS + 1)
    )
    totals = [sum(row[j] for row in table) for j in range(len(series))]
    legend = tuple(
        LegendItem(label=s.label, colour=s.colour, total=f"{t:,}") for s, t in zip(series, totals, strict=True) if t
    )
    rows = tuple(
        TableRow(day=_day_words(day), values=tuple(_count(v) for v in row), total=_count(t))
        for day, row, t in zip(days, table, day_totals, strict=True)
    )
    total = sum(totals)
    return StackedBarChart(
        slug=slug,
        title=title,
        description=_describe(days, day_totals, series, totals, unit),
        unit=unit,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        bar_width=_n(bar_width),
        bars=tuple(bars),
        labels=tuple(labels),
        label_y=baseline + 18,
        ticks=ticks,
        legend=legend,
        columns=tuple(s.label for s in series),
        rows=rows,
        total=total,
    )


# Coordinates and counts are digits: marked safe, the template does not escape the thousands of them a page has.
def _n(number: float) -> SafeString:
    """A coordinate to two decimals, without trailing zeros: "12.5", "200"."""
    return SafeString(f"{number:.2f}".rstrip("0").rstrip("."))


def _count(number: int) -> SafeString:
    return SafeString(f"{number:,}")


def _day_words(day: date) -> str:
    return f"{day:%a %b} {day.day}"


def _describe(
    days: Sequence[date], day_totals: list[int], series: Sequence[Series], totals: list[int], unit: str
) -> str:
    """What a screen reader says for the chart: the total, each series' share, and the busiest day."""
    total = sum(totals)
    if not total:
        return f"No {unit}s in these {len(days)} days."
    shares = ", ".join(f"{s.label} {t:,}" for s, t in zip(series, totals, strict=True) if t)
    busiest_total, busiest_day = max(zip(day_totals, days, strict=True))
    return (
        f"{quantity(total, unit)} in {len(days)} days: {shares}. "
        f"Busiest day {_day_words(busiest_day)}, {quantity(busiest_total, unit)}."
    )
