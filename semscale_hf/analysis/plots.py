"""PNG plots of a semantic-scale report: scale vs accuracy, marginal-effect curves, per-class scales and weights.

The `plot_*` functions take a [`~semscale_hf.analysis.report.SemanticScaleReport`] (read through its attributes, so
this module does not import the report); [`draw_scale_vs_accuracy`] takes plain lists, for callers that hold no
report, such as the model card.

matplotlib is an optional dependency (`pip install 'semscale-hf[plots]'`), imported only when a plot is drawn. Figures
are built with the object-oriented API on an Agg canvas, never through `pyplot`, so drawing needs no display and
leaves the user's matplotlib backend and global state untouched.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import format_number
from .correlation import pearson_correlation, spearman_correlation


if TYPE_CHECKING:
    from matplotlib.figure import Figure


__all__ = [
    "PLOT_FILES",
    "draw_scale_vs_accuracy",
    "plot_marginal_effects",
    "plot_scale_vs_accuracy",
    "plot_scales_and_weights",
    "save_report_plots",
]

PLOT_FILES = {
    "scale_vs_accuracy": "scale_vs_accuracy.png",
    "marginal_effect": "marginal_effect.png",
    "scales_and_weights": "scales_and_weights.png",
}
_DPI = 120
_GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red", None: "tab:gray"}


def _new_figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plots need matplotlib, an optional dependency of semscale-hf: pip install 'semscale-hf[plots]' "
            "(or skip the plots: save(..., plots=False), `semscale analyze --no-plots`)"
        ) from error
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)  # attaches the Agg canvas: no display or pyplot needed
    return figure


def _save(figure: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        figure.savefig(path, dpi=_DPI, format="png")
    return figure


def plot_scale_vs_accuracy(report: Any, path: str | os.PathLike[str] | None = None) -> Figure:
    """Scatter of per-class accuracy against semantic scale, with the least-squares line and both correlations.

    Points are coloured by many/medium/few group when training counts are known and labelled with the class name.

    Raises:
        `ValueError`: if the report has no accuracies (it was built without predictions).
    """
    if not report.has_accuracy:
        raise ValueError("the report has no per-class accuracy: build it with predictions to plot scale vs accuracy")
    rows = report.classes
    return draw_scale_vs_accuracy(
        [row.name for row in rows],
        [row.scale for row in rows],
        [row.accuracy for row in rows],
        [row.group for row in rows],
        path,
    )


def draw_scale_vs_accuracy(
    names: list[str],
    scales: list[float | None],
    accuracies: list[float | None],
    groups: list[str | None] | None = None,
    path: str | os.PathLike[str] | None = None,
    metric: str = "accuracy",
) -> Figure:
    """[`plot_scale_vs_accuracy`] from plain per-class lists; classes whose scale or accuracy is `None` or NaN are left
    out. `groups` holds `"many"`, `"medium"`, `"few"` or `None` per class; `metric` names the per-class score (e.g.
    `"average precision"`) on the axis and in the title."""
    groups = groups if groups is not None else [None] * len(names)
    points = [
        (name, scale, accuracy, group)
        for name, scale, accuracy, group in zip(names, scales, accuracies, groups, strict=True)
        if _finite(scale) and _finite(accuracy)
    ]
    figure = _new_figure(figsize=(6.0, 4.5), layout="constrained")
    axes = figure.add_subplot()
    xs = [point[1] for point in points]
    ys = [point[2] for point in points]
    for group, color in _GROUP_COLORS.items():
        chosen = [point for point in points if point[3] == group]
        if chosen:
            axes.scatter(
                [point[1] for point in chosen],
                [point[2] for point in chosen],
                color=color,
                label=f"{group}-shot" if group else None,
                zorder=3,
            )
    for name, scale, accuracy, _ in points:
        axes.annotate(name, (scale, accuracy), textcoords="offset points", xytext=(4, 4), fontsize=8)
    pearson = pearson_correlation(xs, ys)
    spearman = spearman_correlation(xs, ys)
    if len(points) >= 2 and max(xs) > min(xs):
        slope, intercept = _least_squares_line(xs, ys)
        ends = [min(xs), max(xs)]
        axes.plot(ends, [slope * x + intercept for x in ends], color="black", linestyle="--", linewidth=1, label="fit")
    axes.set_xlabel("semantic scale (bits)")
    axes.set_ylabel(f"per-class {metric}")
    axes.set_title(f"Scale vs {metric}: Pearson r = {_fmt(pearson)}, Spearman ρ = {_fmt(spearman)}")
    axes.grid(alpha=0.3)
    if any(point[3] for point in points) or len(points) >= 2:
        axes.legend(fontsize=8)
    return _save(figure, path)


def plot_marginal_effects(report: Any, path: str | os.PathLike[str] | None = None) -> Figure:
    """Semantic scale against the number of samples `m` for the report's chosen classes, with the fitted curves.

    Markers with error bars are the mean and standard deviation over random subsets; the dashed line is the fit
    `S(m) = a (1 - exp(-m / tau))`.

    Raises:
        `ValueError`: if the report has no marginal-effect curves.
    """
    if not report.marginal_effects:
        raise ValueError("the report has no marginal-effect curves: build it with marginal_classes")
    figure = _new_figure(figsize=(6.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for i, (c, effect) in enumerate(report.marginal_effects.items()):
        color = colors[i % len(colors)]
        name = report.classes[c].name
        axes.errorbar(
            effect.sizes,
            effect.mean.tolist(),
            yerr=effect.std.tolist(),
            fmt="o",
            markersize=4,
            capsize=2,
            color=color,
            label=f"class {name} (n={effect.sizes[-1]})",
        )
        low, high = effect.sizes[0], effect.sizes[-1]
        grid = [low + (high - low) * k / 99 for k in range(100)]
        fitted = effect.fit.predict(grid).tolist()
        axes.plot(
            grid,
            fitted,
            linestyle="--",
            color=color,
            linewidth=1,
            label=f"fit: a={_fmt(effect.fit.asymptote)}, τ={_fmt(effect.fit.tau)}, R²={_fmt(effect.fit.r_squared)}",
        )
    axes.set_xlabel("number of samples m")
    axes.set_ylabel("semantic scale S(m) (bits)")
    axes.set_title("Marginal effect of semantic scale")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return _save(figure, path)


def plot_scales_and_weights(report: Any, path: str | os.PathLike[str] | None = None) -> Figure:
    """Per-class bars of semantic scale (top) and class weight (bottom); unmeasured classes are marked."""
    rows = report.classes
    width = max(6.0, min(0.35 * len(rows) + 2.0, 24.0))
    figure = _new_figure(figsize=(width, 5.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    positions = list(range(len(rows)))
    colors = [_GROUP_COLORS[row.group] for row in rows]
    top.bar(positions, [row.scale if row.scale is not None else 0.0 for row in rows], color=colors)
    for position, row in zip(positions, rows):
        if row.scale is None:
            top.annotate("n/a", (position, 0), ha="center", va="bottom", fontsize=7, color="tab:gray")
    top.set_ylabel("scale (bits)")
    top.set_title("Semantic scale and class weight per class")
    top.grid(axis="y", alpha=0.3)
    bottom.bar(positions, [row.weight for row in rows], color=colors)
    bottom.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    bottom.set_ylabel(f"weight (power {report.settings.get('power')})")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(positions)
    bottom.set_xticklabels([row.name for row in rows], rotation=90 if len(rows) > 20 else 0, fontsize=8)
    bottom.set_xlabel("class")
    if any(row.group for row in rows):
        from matplotlib.patches import Patch

        handles = [Patch(color=_GROUP_COLORS[g], label=f"{g}-shot") for g in ("many", "medium", "few")]
        figure.legend(handles=handles, loc="outside right upper", fontsize=8)  # outside: never hides a bar
    return _save(figure, path)


def save_report_plots(report: Any, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Saves every plot the report has data for into `directory`; returns the written paths by plot name.

    `scales_and_weights` is always drawn, `scale_vs_accuracy` only with accuracies, `marginal_effect` only with curves.
    """
    directory = Path(directory)
    written = {}
    plots = [("scales_and_weights", plot_scales_and_weights, True)]
    plots.append(("scale_vs_accuracy", plot_scale_vs_accuracy, report.has_accuracy))
    plots.append(("marginal_effect", plot_marginal_effects, bool(report.marginal_effects)))
    for name, plot, available in plots:
        if available:
            path = directory / PLOT_FILES[name]
            plot(report, path)
            written[name] = path
    return written


def _least_squares_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    return format_number(value, ".3g", infinity=None)
