"""Metric curves of runs as a PNG, an SVG or a self-contained HTML page (the SVG inline).

One panel per metric, one line per run, the same colour for a run in every panel. Each line
carries the id `curve:<metric>:<run_id>` in the SVG, so a reader (or a test) can find it.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.client.metrics import MetricSeries
from runctl.errors import PlotError

FORMATS = {".png": "png", ".svg": "svg", ".html": "html", ".htm": "html"}
_COLUMNS = 3
_PANEL_INCHES = (5.0, 3.4)
_LEGEND_INCHES_PER_CHAR = 0.085  # at the default 10 pt legend font
_LEGEND_LINE_INCHES = 0.25


@dataclass(frozen=True)
class PlotResult:
    path: Path
    format: str
    # metric -> the runs drawn in its panel (a run without that metric has no line there)
    curves: dict[str, list[str]] = field(default_factory=dict)
    colors: dict[str, str] = field(default_factory=dict)  # run id -> "#rrggbb"


def curve_id(metric: str, run_id: str) -> str:
    return f"curve:{metric}:{run_id}"


def plot_format(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise PlotError(f"cannot plot to {path}: the file name must end in .png, .svg or .html")
    return found


def plot_runs(
    series: Sequence[MetricSeries], path: Path, labels: dict[str, str] | None = None
) -> PlotResult:
    """Draw every metric of the runs and write `path` in the format its suffix names."""
    kind = plot_format(path)
    metrics = sorted({name for run in series for name in run.curves})
    if not metrics:
        raise PlotError("these runs have no metrics to plot yet (no RUNCTL_METRIC lines)")
    if not path.parent.is_dir():
        raise PlotError(f"cannot write {path}: the folder {path.parent} does not exist")
    figure, colors, curves = _draw(series, metrics, labels or {})
    if kind == "png":
        figure.savefig(path, format="png", dpi=110)
    else:
        from matplotlib import rc_context

        svg = io.StringIO()
        with rc_context({"svg.hashsalt": "runctl"}):  # the same plot gives the same file
            figure.savefig(svg, format="svg", metadata={"Date": None})
        text = svg.getvalue()
        path.write_text(_html_page(text, series, labels or {}) if kind == "html" else text)
    return PlotResult(path=path, format=kind, curves=curves, colors=colors)


def _draw(
    series: Sequence[MetricSeries], metrics: list[str], labels: dict[str, str]
) -> tuple[Any, dict[str, str], dict[str, list[str]]]:
    # The object API, not pyplot: no global figure state, no GUI backend needed.
    from matplotlib import colors as mcolors
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    columns = min(_COLUMNS, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    names = [labels.get(run.run_id, run.run_id) for run in series]
    # The legend (one run a line, above the panels) must fit: widen the figure for long labels.
    legend_inches = max(len(name) for name in names) * _LEGEND_INCHES_PER_CHAR + 1.0
    figure = Figure(
        figsize=(
            max(_PANEL_INCHES[0] * columns, legend_inches),
            _PANEL_INCHES[1] * rows + _LEGEND_LINE_INCHES * len(names),
        ),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    palette = rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {
        run.run_id: mcolors.to_hex(palette[index % len(palette)])
        for index, run in enumerate(series)
    }
    curves: dict[str, list[str]] = {}
    for ax, metric in zip(axes, metrics, strict=False):
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for run in series:
            points = run.curves.get(metric)
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            (line,) = ax.plot(
                steps,
                values,
                color=colors[run.run_id],
                marker="o" if len(points) == 1 else None,
            )
            line.set_gid(curve_id(metric, run.run_id))
            curves.setdefault(metric, []).append(run.run_id)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    # One legend for the figure: every run once, even one missing from the first panel.
    figure.legend(
        [Line2D([], [], color=colors[run.run_id]) for run in series],
        names,
        loc="outside upper center",
    )
    return figure, colors, curves


def _html_page(svg: str, series: Sequence[MetricSeries], labels: dict[str, str]) -> str:
    start = svg.find("<svg")  # drop the XML prolog and DOCTYPE: inline SVG needs neither
    runs = "".join(f"<li>{html.escape(labels.get(run.run_id, run.run_id))}</li>" for run in series)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>runctl: metric curves</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}svg{max-width:100%;height:auto}</style>"
        f"</head><body><h1>Metric curves</h1><ul>{runs}</ul>\n{svg[start:]}\n</body></html>\n"
    )
