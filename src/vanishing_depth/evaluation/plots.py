"""Every picture the package draws: the completion sweep's charts and the RGB | input | completed depth picture.

Each figure is a `matplotlib.figure.Figure` on its own Agg canvas (`FigureCanvasAgg`), saved and dropped: nothing
here touches pyplot or sets the matplotlib backend, so drawing works headless and leaves a caller's matplotlib set-up
as it was. Depth is in metres.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "plot_completion_sweep",
    "plot_density_study",
    "plot_feature_pca_grid",
    "plot_method_comparison",
    "plot_study_error_bars",
    "plot_training_curves",
    "side_by_side_picture",
]


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


def plot_training_curves(
    losses: Sequence[tuple[int, float]],
    validation: Mapping[str, Sequence[tuple[int, float]]],
    path: str | os.PathLike,
    title: str = "pretraining",
    dpi: int = 100,
) -> None:
    """Training loss per optimizer step (top) and, when validation ran, each validation metric over steps (one panel
    per metric below it).

    Args:
        losses: ``(step, loss)`` of every step logged so far.
        validation: ``{metric key: [(step, value), ...]}``, e.g. ``{"val/si_auc": [...], "val/mae_m_auc": [...]}``
            (a key ending in ``_m`` or ``_m_auc`` is in metres); empty: the loss panel alone.
        path: the PNG to write.
        title: the chart's title.
    """
    metrics = [key for key, points in validation.items() if points]
    figure = _figure(7.0, 2.6 * (1 + len(metrics)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1 + len(metrics), 1, sharex=True))
    steps = [step for step, _ in losses]
    values = np.asarray([value for _, value in losses], dtype=float)
    axes[0].plot(steps, values, lw=0.8, alpha=0.5 if len(values) > 20 else 1.0, label="per step")
    if len(values) > 20:  # a moving mean over ~5 % of the steps shows the trend under the per-batch noise
        window = max(2, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes[0].plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window} steps")
        axes[0].legend()
    axes[0].set_ylabel("training loss")
    axes[0].set_title(title)
    for axis, key in zip(axes[1:], metrics):
        points = validation[key]
        axis.plot([s for s, _ in points], [v for _, v in points], "o-", color="tab:red")
        name = key.removeprefix("val/")
        unit = " (m)" if name.endswith("_m") or "_m_" in name else ""
        axis.set_ylabel(f"validation {name}{unit}")
    for axis in axes:
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("optimizer step")
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


def plot_study_error_bars(
    summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    path: str | os.PathLike,
    title: str,
    metrics: Sequence[str] = ("rmse_m",),
    column_titles: Mapping[str, str] | None = None,
    dpi: int = 110,
) -> None:
    """Methods (e.g. depth encodings) over input patterns with a spread: one panel per metric, grouped bars of the
    mean with the standard deviation as error bars.

    Args:
        summary: `{method: {pattern: {metric: {"mean": m, "std": s}}}}` (`vanishing_depth.evaluation.studies`).
        path: the PNG to write.
        title: the figure's title.
        metrics: the keys drawn, one panel each (e.g. ``rmse_m`` and ``removed_rmse_m``, metres).
        column_titles: a label per pattern (default: the pattern itself).
    """
    if not metrics:
        raise ValueError("`metrics` must name at least one metric to draw, e.g. ['rmse_m'].")
    methods = list(summary)
    patterns = list(summary[methods[0]])
    labels = [(column_titles or {}).get(pattern, pattern) for pattern in patterns]
    figure = _figure(max(7.0, 0.9 * len(patterns) + 3.0), 3.4 * len(metrics) + 0.6, layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(metrics), 1, sharex=True))
    width = 0.8 / len(methods)
    for axis, metric in zip(axes, metrics):
        for index, method in enumerate(methods):
            entries = [summary[method][pattern].get(metric, {}) for pattern in patterns]
            offsets = [x - 0.4 + width * (index + 0.5) for x in range(len(patterns))]
            axis.bar(
                offsets,
                [entry.get("mean", float("nan")) for entry in entries],
                width,
                yerr=[entry.get("std", float("nan")) for entry in entries],
                capsize=3,
                label=method,
            )
        axis.set_ylabel(_axis_label(metric))
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].set_title(title)
    axes[0].legend()
    axes[-1].set_xticks(range(len(patterns)), labels, rotation=20, ha="right")
    axes[-1].set_xlabel("input (kept share of the valid pixels, or sensor pattern)")
    figure.savefig(path, dpi=dpi)


def plot_density_study(
    methods: Mapping[str, Mapping[str, Mapping[str, float]]],
    removals: Sequence[float],
    removal_patterns: Sequence[str],
    sensor_patterns: Sequence[str],
    path: str | os.PathLike,
    title: str,
    metrics: Sequence[str] = ("rmse_m",),
    dpi: int = 110,
) -> None:
    """The density stress test: per metric (rows), `metric` against the removed share of the valid pixels (left, one
    line per method, removed shares evenly spaced) and per sensor pattern (right, grouped bars).

    Args:
        methods: `{method: {pattern: metrics}}`, every method over `removal_patterns` and `sensor_patterns`.
        removals: the removed share of each of `removal_patterns`, in [0, 1].
        path: the PNG to write.
        title: the figure's title.
        metrics: the keys drawn (metres), one row each.
    """
    if not metrics:
        raise ValueError("`metrics` must name at least one metric to draw, e.g. ['rmse_m'].")
    if len(removals) != len(removal_patterns):
        raise ValueError(
            f"`removals` and `removal_patterns` must pair up, got {len(removals)} and {len(removal_patterns)}."
        )
    columns = 2 if sensor_patterns else 1
    figure = _figure(6.0 * columns + 1.0, 3.6 * len(metrics) + 0.6, layout="constrained")
    axes = np.array(figure.subplots(len(metrics), columns, squeeze=False))
    names = list(methods)
    width = 0.8 / len(names)
    for row, metric in enumerate(metrics):
        left = axes[row, 0]
        for name in names:
            values = [methods[name][pattern].get(metric, float("nan")) for pattern in removal_patterns]
            left.plot(range(len(removal_patterns)), values, "o-", label=name)
        left.set_xticks(range(len(removals)), [f"{removal * 100:g}" for removal in removals])
        left.set_xlabel("valid pixels removed (%)")
        left.set_ylabel(_axis_label(metric))
        left.grid(True, alpha=0.3)
        if sensor_patterns:
            right = axes[row, 1]
            for index, name in enumerate(names):
                offsets = [x - 0.4 + width * (index + 0.5) for x in range(len(sensor_patterns))]
                values = [methods[name][pattern].get(metric, float("nan")) for pattern in sensor_patterns]
                right.bar(offsets, values, width, label=name)
            right.set_xticks(range(len(sensor_patterns)), list(sensor_patterns), rotation=20, ha="right")
            right.set_xlabel("sensor pattern")
            right.grid(True, axis="y", alpha=0.3)
    axes[0, 0].set_title(title)
    axes[0, 0].legend()
    figure.savefig(path, dpi=dpi)


def plot_feature_pca_grid(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    pictures: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str,
    dpi: int = 100,
) -> None:
    """The feature figure: one row per frame; columns RGB, input depth (turbo, metres, missing black), then each
    of `pictures` (e.g. ``"rgb L3"``, ``"depth L3"``: PCA colours on the patch grid).

    Args:
        rgb: `(B, H, W, 3)` images in [0, 1].
        depth_m: `(B, H, W)` input depth in metres, 0 = missing.
        pictures: column title -> `(B, h, w, 3)` colours in [0, 1].
        path: the PNG to write.
        title: the figure's title.
    """
    frames = rgb.shape[0]
    if depth_m.shape[0] != frames or any(picture.shape[0] != frames for picture in pictures.values()):
        raise ValueError(f"`rgb`, `depth_m` and every picture must hold the same {frames} frames.")
    columns = 2 + len(pictures)
    figure = _figure(1.9 * columns, 1.9 * frames + 0.6, layout="constrained")
    axes = np.array(figure.subplots(frames, columns, squeeze=False))
    valid = depth_m[depth_m > 0]
    vmax = float(np.percentile(valid, 99)) if valid.size else 1.0
    cmap = colormaps["turbo"].with_extremes(bad="black")
    for frame in range(frames):
        axes[frame, 0].imshow(rgb[frame])
        axes[frame, 1].imshow(np.ma.masked_where(depth_m[frame] <= 0, depth_m[frame]), cmap=cmap, vmin=0, vmax=vmax)
        for column, picture in enumerate(pictures.values(), start=2):
            axes[frame, column].imshow(picture[frame], interpolation="nearest")
    for column, name in enumerate(["RGB", "input depth (m)", *pictures]):
        axes[0, column].set_title(name, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=dpi)
