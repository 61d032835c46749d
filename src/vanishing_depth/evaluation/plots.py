"""Every picture the package draws: the completion sweep's charts and the RGB | input | completed depth picture.

Each figure is a `matplotlib.figure.Figure` on its own Agg canvas (`FigureCanvasAgg`), saved and dropped: nothing
here touches pyplot or sets the matplotlib backend, so drawing works headless and leaves a caller's matplotlib set-up
as it was. Depth is in metres.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_completion_sweep", "plot_method_comparison", "side_by_side_picture"]


def _figure(width: float, height: float, **kwargs) -> Figure:
    """A figure on an Agg canvas of its own (no pyplot, no global backend)."""
    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _axis_label(metric: str) -> str:
    """``rmse_m`` -> ``rmse (m)``, ``mae_mm`` -> ``mae (mm)``; other keys as they are."""
    for suffix, unit in (("_mm", "mm"), ("_m", "m")):
        if metric.endswith(suffix):
            return f"{metric[: -len(suffix)]} ({unit})"
    return metric


def plot_completion_sweep(
    metrics: Mapping[str, Mapping[str, float]], path: str | os.PathLike, title: str, dpi: int = 100
) -> None:
    """One model over the sweep's input patterns: RMSE and MAE in millimetres (top), delta < 1.25 (bottom).

    Args:
        metrics: `{pattern: DepthMetrics keys}` (``rmse_mm``, ``mae_mm``, ``delta1``; a missing key draws nothing).
        path: the PNG to write.
        title: the chart's title.
    """
    patterns = list(metrics)
    figure = _figure(max(6.0, 1.1 * len(patterns) + 2.0), 6.5, layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    positions = range(len(patterns))
    rmse = [metrics[p].get("rmse_mm", float("nan")) for p in patterns]
    mae = [metrics[p].get("mae_mm", float("nan")) for p in patterns]
    width = 0.4
    axes[0].bar([x - width / 2 for x in positions], rmse, width, label="RMSE")
    axes[0].bar([x + width / 2 for x in positions], mae, width, label="MAE")
    axes[0].set_ylabel("error (mm)")
    axes[0].legend()
    axes[0].set_title(title)
    axes[1].bar(list(positions), [metrics[p].get("delta1", float("nan")) for p in patterns], 0.6, color="tab:green")
    axes[1].set_ylabel("delta < 1.25")
    axes[1].set_ylim(0.0, 1.0)
    axes[1].set_xticks(list(positions), patterns, rotation=20, ha="right")
    axes[1].set_xlabel("input pattern (simulated on the model's input grid)")
    figure.savefig(path, dpi=dpi)


def plot_method_comparison(
    methods: Mapping[str, Mapping[str, Mapping[str, float]]],
    path: str | os.PathLike,
    title: str,
    metric: str = "rmse_m",
    dpi: int = 110,
) -> None:
    """Several methods over the same input patterns: `metric` of each method, one line per method.

    Args:
        methods: `{method: {pattern: metrics}}`, every method over the same patterns (those of the first are drawn).
        path: the PNG to write.
        title: the chart's title.
        metric: the key drawn (default ``rmse_m``, RMSE in metres).
    """
    patterns = list(next(iter(methods.values())))
    figure = _figure(max(6.0, 0.9 * len(patterns) + 3.0), 4.2, layout="constrained")
    axis = figure.subplots()
    for method, per_pattern in methods.items():
        axis.plot(
            range(len(patterns)), [per_pattern[p].get(metric, float("nan")) for p in patterns], "o-", label=method
        )
    axis.set_xticks(range(len(patterns)), patterns, rotation=20, ha="right")
    axis.set_xlabel("input pattern")
    axis.set_ylabel(_axis_label(metric))
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=dpi)


def side_by_side_picture(
    rgb: np.ndarray, depth_in_m: np.ndarray, depth_out_m: np.ndarray, path: str | os.PathLike
) -> None:
    """RGB | input depth | completed depth, one shared colour scale (turbo) in metres, missing input drawn black.

    Args:
        rgb: (H, W, 3) image.
        depth_in_m: (H, W) input depth in metres, 0 = no measurement.
        depth_out_m: (H, W) completed depth in metres.
        path: the PNG to write.
    """
    # One colour scale for input and output, so a wrong completion shows as a colour change.
    valid = np.concatenate([depth_in_m[depth_in_m > 0], depth_out_m[depth_out_m > 0]])
    vmax = float(np.percentile(valid, 99)) if valid.size else 1.0
    figure = _figure(12, 3.6)
    axes = figure.subplots(1, 3)
    axes[0].imshow(rgb)
    axes[0].set_title("RGB")
    shown_in = np.ma.masked_where(depth_in_m <= 0, depth_in_m)
    cmap = colormaps["turbo"].with_extremes(bad="black")
    axes[1].imshow(shown_in, cmap=cmap, vmin=0, vmax=vmax)
    axes[1].set_title(f"input depth ({(depth_in_m > 0).mean() * 100:.1f}% valid)")
    image = axes[2].imshow(depth_out_m, cmap=cmap, vmin=0, vmax=vmax)
    axes[2].set_title("completed depth")
    for axis in axes:
        axis.axis("off")
    figure.colorbar(image, ax=axes, fraction=0.02, label="metres")
    figure.savefig(path, dpi=110, bbox_inches="tight")
