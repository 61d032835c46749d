"""Depth-completion evaluation: one sweep over sensor input patterns, for one model and any other methods.

For every frame the dense depth of the dataset is the ground truth; each pattern simulates what a sensor would give
the model on the model's input grid ([`simulate_depth_input`]): 150 / 500 / 1500 uniformly sampled points (VOID's
densities), LiDAR scan lines, a low-resolution dToF sensor, and dense depth with holes along depth edges. The
prediction is scored against the full ground truth with [`DepthMetrics`] (per image, then averaged; errors in metres
and millimetres), and again on the removed pixels alone (valid ground truth that was not given as input: what the
method had to infer), under the same keys prefixed ``removed_`` (``removed_rmse_m``, ``removed_mae_m``, ...). A
method that copies its input scores 0 on the measured pixels, so only the removed-pixel numbers compare inference.
Every pattern sees the same frames, and the random patterns are drawn from a generator seeded per pattern, so a run
is reproducible and two models evaluated with the same seed see identical inputs.

Other methods run on exactly the same inputs through `predictors` (a name -> ``(pixel_values, sparse_depth_m) ->
predicted_depth_m`` callable): `model_predictor` for another model (e.g. the same model untrained) and the classical
baselines `nearest_fill` / `median_fill` (`BASELINE_PREDICTORS`); `model_predictor(model, keep_measured=True)`
passes the measured pixels through (as the depth-completion pipeline's ``keep_measured``). The demo
(`vanishing_depth.demo`) is this sweep with ``fraction:P`` patterns.

Outputs: a table printed to stdout, ``completion_metrics.json`` (`vanishing_depth.evaluation.results`),
``completion_sweep.png`` and, with predictors, ``rmse_by_method.png`` (`vanishing_depth.evaluation.plots`). Works on
any dataset in the RGB-D corpus schema (`vanishing_depth.data.schema`) or any schema an adapter describes;
``vanishing-depth evaluate-completion`` runs it from the shell.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import (
    RGBDDatasetAdapter,
    corpus_adapter,
    get_adapter,
    load_split,
    parse_depth_pattern,
    simulate_depth_input,
)
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..pipeline_vanishing_depth import completed_depth, load_completion_model
from .depth import DepthMetrics
from .plots import plot_completion_sweep, plot_method_comparison
from .results import write_completion_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINE_PREDICTORS",
    "DEFAULT_COMPLETION_PATTERNS",
    "REMOVED_PREFIX",
    "CompletionEvalResult",
    "Predictor",
    "evaluate_completion",
    "format_completion_table",
    "format_method_table",
    "median_fill",
    "model_predictor",
    "nearest_neighbour_fill",
]

DEFAULT_COMPLETION_PATTERNS = ("uniform:150", "uniform:500", "uniform:1500", "lidar:16", "tof:8", "holes")
_TABLE_COLUMNS = (
    ("input_points", "input px", "{:.0f}"),
    ("rmse_mm", "RMSE mm", "{:.1f}"),
    ("mae_mm", "MAE mm", "{:.1f}"),
    ("removed_rmse_mm", "removed RMSE mm", "{:.1f}"),
    ("removed_mae_mm", "removed MAE mm", "{:.1f}"),
    ("abs_rel", "AbsRel", "{:.4f}"),
    ("delta1", "d<1.25", "{:.4f}"),
    ("num_images", "images", "{:.0f}"),
)


#: The prefix of the metrics scored on the removed pixels only (valid ground truth not given as input).
REMOVED_PREFIX = "removed_"

#: A completion method: ``(pixel_values (B, 3, H, W), sparse depth (B, 1, H, W) metres) -> (B, H, W) metres``.
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def nearest_neighbour_fill(sparse_m: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Classical baseline: every pixel takes the depth of the nearest measured pixel. `(H, W)` metres -> `(H, W)`."""
    height, width = sparse_m.shape
    known = torch.nonzero(sparse_m > 0).float()
    if known.shape[0] == 0:
        return torch.zeros_like(sparse_m)
    values = sparse_m[sparse_m > 0]
    grid = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"), -1)
    grid = grid.reshape(-1, 2).float()
    filled = torch.empty(grid.shape[0], dtype=sparse_m.dtype)
    for start in range(0, grid.shape[0], chunk):
        distances = torch.cdist(grid[start : start + chunk], known)
        filled[start : start + chunk] = values[distances.argmin(dim=1)]
    return filled.reshape(height, width)


def median_fill(sparse_m: torch.Tensor) -> torch.Tensor:
    """Baseline: every pixel takes the median of the measured depth. `(H, W)` metres -> `(H, W)`."""
    values = sparse_m[sparse_m > 0]
    return torch.full_like(sparse_m, float(values.median()) if values.numel() else 0.0)


def _per_map(fill: Callable[[torch.Tensor], torch.Tensor]) -> Predictor:
    def predict(pixel_values: torch.Tensor, sparse_m: torch.Tensor) -> torch.Tensor:
        return torch.stack([fill(depth[0].float().cpu()) for depth in sparse_m])

    predict.__name__ = fill.__name__
    return predict


#: The classical baselines, by the names the tables use.
BASELINE_PREDICTORS: dict[str, Predictor] = {
    "nearest_fill": _per_map(nearest_neighbour_fill),
    "median_fill": _per_map(median_fill),
}


def model_predictor(model, keep_measured: bool = False) -> Predictor:
    """A completion model as a predictor: the full-resolution map of a pretraining model's four, or a head's output.
    With `keep_measured` the measured pixels (input depth > 0) keep their measured depth in metres, as the
    depth-completion pipeline's ``keep_measured`` does."""

    def predict(pixel_values: torch.Tensor, sparse_m: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        outputs = model(pixel_values=pixel_values.to(device), depth_values=sparse_m.to(device))
        predicted = completed_depth(outputs.predicted_depth).float().cpu()
        if keep_measured:
            measured = sparse_m[:, 0].float().cpu()
            predicted = torch.where(measured > 0, measured, predicted)
        return predicted

    return predict


@dataclass
class CompletionEvalResult:
    """Per-pattern metrics of the model (`metrics[pattern]`: the keys of `DepthMetrics.compute` on all valid pixels,
    the same keys prefixed ``removed_`` on the removed pixels only, and ``input_points``, the mean number of input
    pixels per image), with predictors every method's (`methods[name][pattern]`, the model first), the printed table
    and the written files."""

    metrics: dict[str, dict[str, float]]
    table: str
    json_path: Path | None = None
    plot_path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    methods_plot_path: Path | None = None


def format_completion_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width text table, one row per pattern."""
    header = ["pattern"] + [title for _, title, _ in _TABLE_COLUMNS]
    rows = []
    for pattern, values in metrics.items():
        cells = [pattern]
        for key, _, fmt in _TABLE_COLUMNS:
            value = values.get(key, float("nan"))
            cells.append("nan" if value is None or math.isnan(value) else fmt.format(value))
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in [header] + rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_method_table(
    methods: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str = "rmse_m",
    title: str | None = None,
    column_titles: Mapping[str, str] | None = None,
) -> str:
    """One row per method, one column per pattern, `metric` in each cell (e.g. RMSE in metres).

    Args:
        methods: `{method: {pattern: metrics}}`, every method over the same patterns (those of the first are shown).
        metric: the key shown.
        title: an optional first line.
        column_titles: a header per pattern (default: the pattern itself), e.g. ``{"fraction:0.1": "10.0%"}``.
    """
    patterns = list(next(iter(methods.values())))
    headers = [(column_titles or {}).get(pattern, pattern) for pattern in patterns]
    width = max(10, *(len(header) + 1 for header in headers))
    name_width = max(14, *(len(m) + 2 for m in methods))
    lines = [title] if title else []
    lines.append(f"{'method':<{name_width}}" + "".join(f"{header:>{width}}" for header in headers))
    for method, per_pattern in methods.items():
        cells = []
        for pattern in patterns:
            value = per_pattern[pattern].get(metric, float("nan"))
            cells.append(f"{'nan' if value is None or math.isnan(value) else f'{value:.3f}':>{width}}")
        lines.append(f"{method:<{name_width}}" + "".join(cells))
    return "\n".join(lines)


def _pattern_metrics(all_pixels: DepthMetrics, removed_pixels: DepthMetrics, input_points: float) -> dict[str, float]:
    """One method's metrics at one pattern: all valid pixels, the removed ones (``removed_`` keys), input pixels."""
    values = all_pixels.compute()
    values.update({REMOVED_PREFIX + key: value for key, value in removed_pixels.compute().items()})
    values["input_points"] = input_points
    return values


def _batches(dataset: Iterable[Mapping[str, Any]], batch_size: int, max_samples: int | None):
    batch, seen = [], 0
    for row in dataset:
        if max_samples is not None and seen >= max_samples:
            break
        batch.append(row)
        seen += 1
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate_completion(
    model: Any,
    dataset: Any,
    processor: VanishingDepthImageProcessor | None = None,
    *,
    patterns: Sequence[str] = DEFAULT_COMPLETION_PATTERNS,
    adapter: str | RGBDDatasetAdapter | None = None,
    split: str = "test",
    output_dir: str | os.PathLike | None = None,
    batch_size: int = 4,
    max_samples: int | None = None,
    min_depth_m: float | None = None,
    max_depth_m: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    print_table: bool = True,
    predictors: Mapping[str, Predictor] | None = None,
    model_name: str = "model",
    settings: Mapping[str, Any] | None = None,
) -> CompletionEvalResult:
    """Evaluate a depth-completion model over a sweep of simulated sensor patterns.

    Args:
        model: a `VanishingDepthForDepthEstimation` or `VanishingDepthForPretraining` (or any model returning
            `predicted_depth` in metres from `pixel_values` and `depth_values`), or a folder / Hub id of either, loaded
            with `load_completion_model`: a folder without a trained decoder (an encoder) is refused, nothing is scored.
        dataset: rows in the corpus schema (or the adapter's schema): a `datasets.Dataset` / `IterableDataset`, a
            list of dicts, or a path / Hub id / ``"redwood_demo"`` (loaded with split `split`).
        processor: the image processor (default: the model folder's, else one matching the model config).
        patterns: sensor patterns ([`parse_depth_pattern`]); default: 150 / 500 / 1500 points, 16 LiDAR lines,
            an 8x coarser dToF, dense with edge holes.
        adapter: the dataset's schema (default: the corpus schema); its ground-truth depth is what is scored.
        output_dir: where ``completion_metrics.json`` and ``completion_sweep.png`` are written (None: nothing).
        batch_size / max_samples: batching and an optional cap on the number of frames.
        min_depth_m / max_depth_m: evaluation range in metres (default: the adapter's, else (1 mm, none)).
        seed: seeds one generator per pattern.
        device: where to run (default: the model's device).
        print_table: print the table to stdout.
        predictors: other methods scored on exactly the same inputs, by name (`model_predictor(other_model)`,
            `BASELINE_PREDICTORS`); their results, and the model's under `model_name`, go to `result.methods`.
        model_name: the model's name in the method table.
        settings: further entries for the record's ``settings`` (e.g. how the model was trained).

    Returns:
        [`CompletionEvalResult`].
    """

    if not patterns:
        raise ValueError("`patterns` must name at least one sensor pattern, e.g. ['uniform:500'].")
    for pattern in patterns:
        parse_depth_pattern(pattern)
    if len(set(patterns)) != len(patterns):
        raise ValueError(f"`patterns` must not repeat, got {list(patterns)}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    source = None
    if isinstance(model, str | os.PathLike):
        source = str(model)
        model = load_completion_model(source)
    if processor is None:
        if source is not None and (Path(source) / "preprocessor_config.json").is_file():
            processor = VanishingDepthImageProcessor.from_pretrained(source)
        else:
            processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if adapter is None:
        adapter = corpus_adapter()
    elif isinstance(adapter, str):
        adapter = get_adapter(adapter, task="depth")
    if adapter.task != "depth":
        raise ValueError(f"`adapter` must be set up for task 'depth', got {adapter.task!r}.")
    low, high = adapter.eval_range_m if adapter.eval_range_m is not None else (1e-3, None)
    low = low if min_depth_m is None else min_depth_m
    high = high if max_depth_m is None else max_depth_m
    if isinstance(dataset, str | os.PathLike) or hasattr(dataset, "keys"):
        dataset = load_split(dataset, split)

    # The collator only decodes and processes: ground truth in, ground truth out; the patterns are applied below.
    collator = adapter.collator(processor, input_depth_pattern="dense")
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generators = {p: torch.Generator().manual_seed(seed * 1000 + i) for i, p in enumerate(patterns)}
    predictors = dict(predictors or {})
    if model_name in predictors:
        raise ValueError(f"`predictors` must not reuse the model's name {model_name!r}; got {sorted(predictors)}.")
    names = [model_name, *predictors]
    # Per method and pattern: all valid pixels, and the removed ones (valid ground truth that was not an input).
    scores = {
        name: {p: (DepthMetrics(min_depth_m=low, max_depth_m=high), DepthMetrics(min_depth_m=low, max_depth_m=high))
               for p in patterns}
        for name in names
    }  # fmt: skip
    predictors = {model_name: model_predictor(model), **predictors}
    input_points = dict.fromkeys(patterns, 0)
    num_frames = 0
    with torch.inference_mode():
        for rows in _batches(dataset, batch_size, max_samples):
            batch = collator(rows)
            target = batch["labels"]
            num_frames += target.shape[0]
            pixel_values = batch["pixel_values"].to(device)
            for pattern in patterns:
                sparse = simulate_depth_input(target[:, None], pattern, generators[pattern])
                input_points[pattern] += int(torch.count_nonzero(sparse))
                # Removed: valid ground truth the input does not carry, i.e. missing there or (a low-resolution ToF
                # upsampled onto every pixel) given as another pixel's value.
                removed = (sparse[:, 0] <= 0) | (sparse[:, 0] != target)
                for name, predict in predictors.items():
                    prediction = predict(pixel_values, sparse)
                    all_pixels, removed_pixels = scores[name][pattern]
                    all_pixels.update(prediction, target)
                    removed_pixels.update(prediction, target, valid_mask=removed)
    model.train(was_training)
    if num_frames == 0:
        raise ValueError("`dataset` yielded no frames to evaluate.")

    computed = {name: {p: _pattern_metrics(*scores[name][p], input_points[p] / num_frames) for p in patterns}
                for name in names}  # fmt: skip
    results = computed[model_name]
    table = format_completion_table(results)
    all_methods = {}
    if len(names) > 1:
        all_methods = computed
        table += "\n\n" + format_method_table(all_methods, "rmse_m", "RMSE (m) by method and input pattern")
        table += "\n\n" + format_method_table(
            all_methods, REMOVED_PREFIX + "rmse_m", "RMSE (m) on the removed pixels by method and input pattern"
        )
    if print_table:
        print(table)
    record_settings = {
        "model": source or type(model).__name__,
        "adapter": adapter.name,
        "patterns": list(patterns),
        "num_frames": num_frames,
        "input_size": list(target.shape[-2:]),
        "eval_range_m": [low, high],
        "seed": seed,
    }
    if all_methods:
        record_settings["methods"] = list(all_methods)
    record_settings.update(settings or {})
    result = CompletionEvalResult(metrics=results, table=table, settings=record_settings, methods=all_methods)
    if output_dir is not None:
        output = Path(output_dir)
        result.json_path = write_completion_metrics(output, record_settings, results, all_methods)
        result.plot_path = output / "completion_sweep.png"
        plot_completion_sweep(
            results, result.plot_path, f"Depth completion sweep ({num_frames} frames, {adapter.name})"
        )
        if all_methods:
            result.methods_plot_path = output / "rmse_by_method.png"
            plot_method_comparison(all_methods, result.methods_plot_path, f"RMSE by method ({num_frames} frames)")
        logger.info("Wrote %s and %s.", result.json_path, result.plot_path)
    return result
