"""Chart details a reader trips over: count axes labelled with repeated rounded halves, legends under bars."""
from __future__ import annotations

from datetime import date

from pulse.report.charts import category_figure, volume_figure

DAYS = [date(2031, 3, 3), date(2031, 3, 4)]


def _labels(figure, axis: str) -> list[str]:
    figure.canvas.draw()
    axes = figure.axes[0]
    ticks = axes.get_xticklabels() if axis == "x" else axes.get_yticklabels()
    return [tick.get_text() for tick in ticks]


def test_category_counts_are_labelled_once_each_in_whole_numbers() -> None:
    figure = category_figure([("market", 4, 3, 6_000_000), ("utility", 2, 2, 4_000_000)],
                             {"market": "Traditional markets", "utility": "Electricity and water bills"})
    labels = [text for text in _labels(figure, "x") if text]
    assert labels == sorted(set(labels), key=labels.index), labels  # no label twice
    assert labels[:4] == ["0", "1", "2", "3"], labels


def test_volume_legend_sits_below_the_bars_it_names() -> None:
    figure = volume_figure(DAYS, {"online": [40, 47], "at the counter": [10, 3]}, "Dossiers submitted per day")
    figure.canvas.draw()
    axes = figure.axes[0]
    renderer = figure._get_renderer()
    legend_box = axes.get_legend().get_window_extent(renderer)
    axes_box = axes.get_window_extent(renderer)
    assert legend_box.y1 <= axes_box.y0, (legend_box, axes_box)
    assert axes.get_ylim()[1] > 50  # headroom above the tallest stack (40 + 10)
