"""Static SVG charts drawn with matplotlib (no JavaScript, nothing fetched when the page opens).

Text is drawn as outlines of DejaVu Sans, which matplotlib ships and which covers Vietnamese, so a
chart looks the same on every device whatever fonts it has. Each chart gets its own id salt so that
several SVGs inlined in one page never share an element id.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pulse.report.content import SERVICE_GROUP_LABELS, SERVICE_GROUP_MAXIMA, RankedProvince, ServiceIndexScore
from pulse.report.formatting import vn_decimal, vn_int, vn_pct

BASE = "#3b6ea5"
ACCENT = "#c8102e"
MUTED = "#b9c4d0"
TARGET = "#222222"
SERIES = ("#3b6ea5", "#e08a1e", "#2e8b57", "#8e44ad")
STYLE = {"svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold", "svg.image_inline": True}

percent_axis = FuncFormatter(lambda value, _: vn_pct(value, 0))
count_axis = FuncFormatter(lambda value, _: vn_int(value))


def _counts_on(axis) -> None:  # a matplotlib Axis
    """Whole-number ticks only: a count axis labelled 0, 0, 1, 1, 2 (halves rounded) misleads."""
    axis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axis.set_major_formatter(count_axis)


def to_svg(figure: Figure, name: str) -> str:
    """The figure as an inline <svg> element (no XML prolog), element ids salted with `name`."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"pulse-report-{name}"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), dpi=96, layout="constrained")


def ranking_chart(rows: Sequence[RankedProvince], highlight: str | None, target: float | None, title: str) -> str:
    """Horizontal bars, best at the top; the reported province in the accent colour; the target dashed."""
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 0.8 + 0.22 * len(rows))
        axes = figure.add_subplot()
        labels = [f"{row.rank}. {row.name}" for row in rows]
        colours = [ACCENT if row.code == highlight else BASE for row in rows]
        bars = axes.barh(range(len(rows)), [row.value for row in rows], color=colours, height=0.72)
        axes.set_yticks(range(len(rows)), labels)
        axes.invert_yaxis()
        axes.set_xlim(0, max(1.0, max((row.value for row in rows), default=1.0) * 1.08))
        axes.xaxis.set_major_formatter(percent_axis)
        axes.bar_label(bars, labels=[vn_pct(row.value) for row in rows], padding=2, fontsize=7)
        if target is not None:
            axes.axvline(target, color=TARGET, linestyle="--", linewidth=1, label=f"target {vn_pct(target)}")
            axes.legend(loc="lower right", frameon=False)
        axes.set_title(title, loc="left")
        return to_svg(figure, "ranking")


def trend_chart(days: Sequence[date], series: dict[str, Sequence[float | None]], targets: dict[str, float],
                title: str, name: str) -> str:
    """Daily rates as lines, each with its target as a dashed line of the same colour."""
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 3.0)
        axes = figure.add_subplot()
        for colour, (label, values) in zip(SERIES, series.items()):
            axes.plot(days, [float("nan") if v is None else v for v in values], color=colour, linewidth=1.8,
                      marker="o", markersize=2.5, label=label)
            if label in targets:
                axes.axhline(targets[label], color=colour, linestyle="--", linewidth=1, alpha=0.8)
        axes.yaxis.set_major_formatter(percent_axis)
        axes.set_ylim(_rate_floor([*targets.values(), *(v for vs in series.values() for v in vs if v is not None)]),
                      1.02)
        _day_axis(axes, days)
        axes.legend(loc="upper left", bbox_to_anchor=(0, -0.1), frameon=False, ncols=3, fontsize=8)
        axes.set_title(title, loc="left")
        axes.grid(axis="y", color="#e5e5e5")
        return to_svg(figure, name)


def volume_chart(days: Sequence[date], stacks: dict[str, Sequence[int]], title: str, name: str) -> str:
    """Daily counts as stacked bars."""
    with matplotlib.rc_context(STYLE):
        return to_svg(volume_figure(days, stacks, title), name)


def volume_figure(days: Sequence[date], stacks: dict[str, Sequence[int]], title: str) -> Figure:
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 2.6)
        axes = figure.add_subplot()
        bottom = [0] * len(days)
        for colour, (label, values) in zip(SERIES, stacks.items()):
            axes.bar(days, values, bottom=bottom, color=colour, label=label, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values)]
        _counts_on(axes.yaxis)
        axes.set_ylim(0, max(bottom, default=0) * 1.08 or 1)
        _day_axis(axes, days)
        # Under the axes, as in the trend chart: inside them the tallest bars would cover it.
        axes.legend(loc="upper left", bbox_to_anchor=(0, -0.12), frameon=False, ncols=3, fontsize=8)
        axes.set_title(title, loc="left")
        axes.grid(axis="y", color="#e5e5e5")
        axes.set_axisbelow(True)
        return figure


def service_index_chart(score: ServiceIndexScore) -> str:
    """Points of each Decision 766 group against the group's maximum."""
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 2.4)
        axes = figure.add_subplot()
        groups = list(SERVICE_GROUP_MAXIMA)
        positions = range(len(groups))
        axes.barh(positions, [SERVICE_GROUP_MAXIMA[g] for g in groups], color=MUTED, height=0.7, label="maximum")
        bars = axes.barh(positions, [score.groups[g] or 0 for g in groups], color=BASE, height=0.45, label="score")
        axes.bar_label(bars, labels=[f"{vn_decimal(score.groups[g])} / {SERVICE_GROUP_MAXIMA[g]}" for g in groups],
                       padding=3, fontsize=8)
        axes.set_yticks(list(positions), [SERVICE_GROUP_LABELS[g] for g in groups])
        axes.invert_yaxis()
        axes.set_xlim(0, 25)
        total = f"{vn_decimal(score.total)} of 100 points" if score.total is not None else "no total"
        unscored = " (–: nothing to score)" if None in score.groups.values() else ""
        axes.set_title(f"Decision 766 index {score.month:%m/%Y}: {total}{unscored}", loc="left")
        return to_svg(figure, "service-index")


def category_chart(rows: Sequence[tuple[str, int, int, int]], labels: dict[str, str]) -> str:
    """Successful cashless payments per category (count), with their value in millions of đồng."""
    with matplotlib.rc_context(STYLE):
        return to_svg(category_figure(rows, labels), "categories")


def category_figure(rows: Sequence[tuple[str, int, int, int]], labels: dict[str, str]) -> Figure:
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 0.9 + 0.4 * max(1, len(rows)))
        axes = figure.add_subplot()
        ordered = sorted(rows, key=lambda row: -row[2])
        bars = axes.barh(range(len(ordered)), [row[2] for row in ordered], color=BASE, height=0.6)
        axes.bar_label(bars, labels=[f"{vn_int(row[2])} · {vn_decimal(row[3] / 1e6)} tr ₫" for row in ordered],
                       padding=3, fontsize=8)
        axes.set_yticks(range(len(ordered)), [labels.get(row[0], row[0]) for row in ordered])
        axes.invert_yaxis()
        _counts_on(axes.xaxis)
        axes.set_xlim(0, max((row[2] for row in ordered), default=1) * 1.35 or 1)
        axes.set_title("Successful cashless payments by category", loc="left")
        return figure


def cumulative_chart(days: Sequence[date], series: dict[str, Sequence[int]], title: str, name: str) -> str:
    """Running totals over the period."""
    with matplotlib.rc_context(STYLE):
        figure = new_figure(7.5, 2.6)
        axes = figure.add_subplot()
        for colour, (label, values) in zip(SERIES, series.items()):
            running, total = [], 0
            for value in values:
                total += value
                running.append(total)
            axes.plot(days, running, color=colour, linewidth=2, label=label)
            axes.fill_between(days, running, color=colour, alpha=0.08)
        _counts_on(axes.yaxis)
        _day_axis(axes, days)
        axes.legend(loc="upper left", frameon=False, fontsize=8)
        axes.set_title(title, loc="left")
        axes.grid(axis="y", color="#e5e5e5")
        return to_svg(figure, name)


def _rate_floor(values: Sequence[float]) -> float:
    """Where a rate axis starts: 10 points under the lowest value, on a multiple of 10 %, so that lines
    in the 80s and 90s are told apart; the axis labels say where it starts."""
    return max(0.0, (int(min(values, default=0.0) * 10) - 1) / 10)


def _day_axis(axes, days: Sequence[date]) -> None:  # matplotlib Axes
    step = max(1, len(days) // 8)
    ticks = list(days)[::step]
    axes.set_xticks(ticks, [day.strftime("%d/%m") for day in ticks])
