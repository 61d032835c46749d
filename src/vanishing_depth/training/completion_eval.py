"""Depth-completion evaluation protocol: one model, one dataset, a sweep over sensor input patterns.

For every frame the dense depth of the dataset is the ground truth; each pattern simulates what a sensor would give
the model on the model's input grid ([`simulate_depth_input`]): 150 / 500 / 1500 uniformly sampled points (VOID's
densities), LiDAR scan lines, a low-resolution dToF sensor, and dense depth with holes along depth edges. The
prediction is scored against the full ground truth with [`DepthMetrics`] (per image, then averaged; errors in metres
and millimetres). Every pattern sees the same frames, and the random patterns are drawn from a generator seeded per
pattern, so a run is reproducible and two models evaluated with the same seed see identical inputs.

Other methods run on exactly the same inputs through `predictors` (a name -> ``(pixel_values, sparse_depth_m) ->
predicted_depth_m`` callable): `model_predictor` for another model (e.g. the same model untrained) and the classical
baselines `nearest_fill` / `median_fill` (`BASELINE_PREDICTORS`). The demo is this sweep with ``fraction:P`` patterns.

Outputs: a table printed to stdout, ``completion_metrics.json`` (``settings``, the model's ``metrics`` per pattern and,
with predictors, ``methods``: every method's metrics per pattern), ``completion_sweep.png`` and, with predictors,
``rmse_by_method.png`` (matplotlib, Agg canvas; no global backend change). Works on any dataset in the RGB-D corpus schema (`training.corpora`) or any schema an
adapter describes; ``vanishing-depth evaluate-completion`` runs it from the shell.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..pipeline_vanishing_depth import completed_depth, load_completion_model
from .adapters import RGBDDatasetAdapter, corpus_adapter, get_adapter
from .checkpoints import write_json
from .collators import parse_depth_pattern, simulate_depth_input

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINE_PREDICTORS",
    "DEFAULT_COMPLETION_PATTERNS",
    "CompletionEvalResult",
    "add_evaluate_completion_subcommand",
    "evaluate_completion",
    "format_completion_table",
    "format_method_table",
    "median_fill",
    "model_predictor",
    "nearest_neighbour_fill",
    "run_evaluate_completion",
]

DEFAULT_COMPLETION_PATTERNS = ("uniform:150", "uniform:500", "uniform:1500", "lidar:16", "tof:8", "holes")
_TABLE_COLUMNS = (
    ("input_points", "input px", "{:.0f}"),
    ("rmse_mm", "RMSE mm", "{:.1f}"),
    ("mae_mm", "MAE mm", "{:.1f}"),
    ("abs_rel", "AbsRel", "{:.4f}"),
    ("delta1", "d<1.25", "{:.4f}"),
    ("num_images", "images", "{:.0f}"),
)


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


def model_predictor(model) -> Predictor:
    """A completion model as a predictor: the full-resolution map of a pretraining model's four, or a head's output."""

    def predict(pixel_values: torch.Tensor, sparse_m: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        outputs = model(pixel_values=pixel_values.to(device), depth_values=sparse_m.to(device))
        return completed_depth(outputs.predicted_depth).float().cpu()

    return predict


@dataclass
class CompletionEvalResult:
    """Per-pattern metrics of the model (`metrics[pattern]`: the keys of `DepthMetrics.compute` plus
    ``input_points``, the mean number of input pixels per image), with predictors every method's (`methods[name]
    [pattern]`, the model first), the printed table and the written files."""

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
    methods: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str = "rmse_m", title: str | None = None
) -> str:
    """One row per method, one column per pattern, `metric` in each cell (e.g. RMSE in metres)."""
    patterns = list(next(iter(methods.values())))
    width = max(9, *(len(p) + 1 for p in patterns))
    name_width = max(14, *(len(m) + 2 for m in methods))
    lines = [title] if title else []
    lines.append(f"{'method':<{name_width}}" + "".join(f"{p:>{width}}" for p in patterns))
    for method, per_pattern in methods.items():
        cells = []
        for pattern in patterns:
            value = per_pattern[pattern].get(metric, float("nan"))
            cells.append(f"{'nan' if value is None or math.isnan(value) else f'{value:.3f}':>{width}}")
        lines.append(f"{method:<{name_width}}" + "".join(cells))
    return "\n".join(lines)


def _write_method_plot(
    methods: Mapping[str, Mapping[str, Mapping[str, float]]], path: Path, title: str, metric: str = "rmse_m"
) -> None:
    """`metric` of every method over the patterns, one line each (Agg canvas: no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    patterns = list(next(iter(methods.values())))
    figure = Figure(figsize=(max(6.0, 0.9 * len(patterns) + 3.0), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for method, per_pattern in methods.items():
        axis.plot(range(len(patterns)), [per_pattern[p].get(metric, float("nan")) for p in patterns], "o-", label=method)
    axis.set_xticks(range(len(patterns)), patterns, rotation=20, ha="right")
    axis.set_xlabel("input pattern")
    axis.set_ylabel(metric.replace("_m", " (m)").replace("_mm", " (mm)"))
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110)


def _write_plot(metrics: Mapping[str, Mapping[str, float]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    patterns = list(metrics)
    figure = Figure(figsize=(max(6.0, 1.1 * len(patterns) + 2.0), 6.5), layout="constrained")
    FigureCanvasAgg(figure)
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
    figure.savefig(path, dpi=100)


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

    Returns:
        [`CompletionEvalResult`].
    """
    from .finetune import load_split
    from .metrics import DepthMetrics  # imports datasets / evaluate: only when a sweep runs

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
    methods = {name: {p: DepthMetrics(min_depth_m=low, max_depth_m=high) for p in patterns} for name in predictors}
    metrics = {p: DepthMetrics(min_depth_m=low, max_depth_m=high) for p in patterns}
    input_points = dict.fromkeys(patterns, 0)
    num_frames = 0
    predict_model = model_predictor(model)
    with torch.inference_mode():
        for rows in _batches(dataset, batch_size, max_samples):
            batch = collator(rows)
            target = batch["labels"]
            num_frames += target.shape[0]
            pixel_values = batch["pixel_values"].to(device)
            for pattern in patterns:
                sparse = simulate_depth_input(target[:, None], pattern, generators[pattern])
                input_points[pattern] += int(torch.count_nonzero(sparse))
                metrics[pattern].update(predict_model(pixel_values, sparse), target)
                for name, predict in predictors.items():
                    methods[name][pattern].update(predict(pixel_values, sparse), target)
    model.train(was_training)
    if num_frames == 0:
        raise ValueError("`dataset` yielded no frames to evaluate.")

    results = {}
    for pattern in patterns:
        results[pattern] = metrics[pattern].compute()
        results[pattern]["input_points"] = input_points[pattern] / num_frames
    table = format_completion_table(results)
    all_methods = {}
    if predictors:
        all_methods[model_name] = results
        for name in predictors:
            all_methods[name] = {p: methods[name][p].compute() for p in patterns}
            for pattern in patterns:
                all_methods[name][pattern]["input_points"] = input_points[pattern] / num_frames
        table += "\n\n" + format_method_table(all_methods, "rmse_m", "RMSE (m) by method and input pattern")
    if print_table:
        print(table)
    settings = {
        "model": source or type(model).__name__,
        "adapter": adapter.name,
        "patterns": list(patterns),
        "num_frames": num_frames,
        "input_size": list(target.shape[-2:]),
        "eval_range_m": [low, high],
        "seed": seed,
    }
    if predictors:
        settings["methods"] = list(all_methods)
    result = CompletionEvalResult(metrics=results, table=table, settings=settings, methods=all_methods)
    if output_dir is not None:
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        result.json_path = output / "completion_metrics.json"
        record = {"settings": settings, "metrics": results, **({"methods": all_methods} if all_methods else {})}
        write_json(result.json_path, record, indent=2)
        result.plot_path = output / "completion_sweep.png"
        _write_plot(results, result.plot_path, f"Depth completion sweep ({num_frames} frames, {adapter.name})")
        if all_methods:
            result.methods_plot_path = output / "rmse_by_method.png"
            _write_method_plot(all_methods, result.methods_plot_path, f"RMSE by method ({num_frames} frames)")
        logger.info("Wrote %s and %s.", result.json_path, result.plot_path)
    return result


def add_evaluate_completion_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add ``vanishing-depth evaluate-completion`` to an argparse subparsers object; returns the subparser."""
    parser = subparsers.add_parser(
        "evaluate-completion",
        help="Evaluate a depth-completion model over simulated sensor patterns.",
        description=(
            "Depth-completion sweep: for each input pattern (uniform points, LiDAR lines, low-res dToF, dense with "
            "holes) simulate the sensor from the dataset's dense depth, predict, and score against the dense depth. "
            "Prints a table and writes completion_metrics.json and completion_sweep.png."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        help="A folder or Hub id with a trained decoder: a depth head (VanishingDepthForDepthEstimation) or a "
        "pretraining folder (VanishingDepthForPretraining). An encoder folder is refused.",
    )
    parser.add_argument(
        "--dataset", required=True, help="Corpus-schema data: folder, .parquet, Hub id or redwood_demo."
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--adapter", choices=["corpus", "void", "nyu_depth_v2"], default="corpus")
    parser.add_argument(
        "--patterns",
        nargs="+",
        default=list(DEFAULT_COMPLETION_PATTERNS),
        help="Sensor patterns: uniform:N, lidar:N, tof:F, holes, fraction:P, dense, none.",
    )
    parser.add_argument("--output-dir", required=True, help="Where the JSON and the PNG are written.")
    parser.add_argument("--image-size", type=int, help="Shortest edge in pixels (default: the processor's).")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-samples", type=int)
    parser.add_argument("--min-depth", type=float, help="Evaluation range minimum in metres.")
    parser.add_argument("--max-depth", type=float, help="Evaluation range maximum in metres.")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_evaluate_completion)
    return parser


def run_evaluate_completion(args: argparse.Namespace) -> int:
    """Entry point of ``vanishing-depth evaluate-completion``."""
    processor = None
    if args.image_size is not None:
        from transformers import AutoConfig

        import vanishing_depth  # noqa: F401

        model_dir = Path(args.model)
        if (model_dir / "preprocessor_config.json").is_file():
            processor = VanishingDepthImageProcessor.from_pretrained(str(model_dir))
        else:
            processor = VanishingDepthImageProcessor.from_model_config(AutoConfig.from_pretrained(args.model))
        processor.size = {"shortest_edge": args.image_size}
    result = evaluate_completion(
        args.model,
        args.dataset,
        processor,
        patterns=args.patterns,
        adapter=args.adapter,
        split=args.split,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        min_depth_m=args.min_depth,
        max_depth_m=args.max_depth,
        seed=args.seed,
    )
    print(f"wrote {result.json_path} and {result.plot_path}")
    return 0
