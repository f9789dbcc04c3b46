"""Plots: one panel per metric, one line per run, as PNG, SVG or self-contained HTML."""

from __future__ import annotations

import re

import pytest
from matplotlib import colors as mcolors
from matplotlib import image

from runctl.client.metrics import MetricSeries
from runctl.client.plotting import curve_id, plot_runs
from runctl.errors import PlotError

RUN_A = MetricSeries(
    "run-a", {"loss": [(10, 1.0), (20, 0.5), (30, 0.2)], "acc": [(10, 0.2), (30, 0.9)]}
)
RUN_B = MetricSeries("run-b", {"loss": [(10, 1.4), (20, 1.1), (30, 0.9)]})


def _pixels_of(png, hex_color: str) -> int:
    pixels = image.imread(str(png))[..., :3]
    target = mcolors.to_rgb(hex_color)
    close = (abs(pixels - target) < 0.02).all(axis=-1)
    return int(close.sum())


def test_png_draws_each_run_in_its_own_colour(tmp_path):
    path = tmp_path / "curves.png"

    result = plot_runs([RUN_A, RUN_B], path, labels={"run-a": "run-a (lr=0.1)"})

    assert path.read_bytes().startswith(b"\x89PNG")
    assert result.curves == {"acc": ["run-a"], "loss": ["run-a", "run-b"]}
    # Both runs' lines are really in the picture (not only in the legend): many pixels each.
    assert result.colors["run-a"] != result.colors["run-b"]
    for run_id in ("run-a", "run-b"):
        assert _pixels_of(path, result.colors[run_id]) > 200


def test_html_is_self_contained_with_one_curve_per_run_and_metric(tmp_path):
    path = tmp_path / "curves.html"

    plot_runs([RUN_A, RUN_B], path, labels={"run-a": "run-a (lr=0.1)"})

    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    ids = set(re.findall(r'id="(curve:[^"]+)"', page))
    assert ids == {curve_id("loss", "run-a"), curve_id("loss", "run-b"), curve_id("acc", "run-a")}
    assert "run-a (lr=0.1)" in page
    # Nothing fetched from elsewhere: no scripts, stylesheets or images by URL.
    assert not re.search(r"<(script|link|img)\b", page)


def test_svg_output_is_stable_for_the_same_runs(tmp_path):
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    plot_runs([RUN_A, RUN_B], first)
    plot_runs([RUN_A, RUN_B], second)
    assert first.read_text() == second.read_text()


def test_an_unknown_format_is_refused_before_drawing(tmp_path):
    with pytest.raises(PlotError, match=r"\.png, \.svg or \.html"):
        plot_runs([RUN_A], tmp_path / "curves.pdf")
    assert not (tmp_path / "curves.pdf").exists()


def test_runs_without_metrics_cannot_be_plotted(tmp_path):
    with pytest.raises(PlotError, match="no metrics"):
        plot_runs([MetricSeries("run-x")], tmp_path / "curves.png")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(PlotError, match="does not exist"):
        plot_runs([RUN_A], tmp_path / "nope" / "curves.png")
