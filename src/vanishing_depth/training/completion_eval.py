"""Depth-completion evaluation protocol: one model, one dataset, a sweep over sensor input patterns.

For every frame the dense depth of the dataset is the ground truth; each pattern simulates what a sensor would give
the model on the model's input grid ([`simulate_depth_input`]): 150 / 500 / 1500 uniformly sampled points (VOID's
densities), LiDAR scan lines, a low-resolution dToF sensor, and dense depth with holes along depth edges. The
prediction is scored against the full ground truth with [`DepthMetrics`] (per image, then averaged; errors in metres
and millimetres). Every pattern sees the same frames, and the random patterns are drawn from a generator seeded per
pattern, so a run is reproducible and two models evaluated with the same seed see identical inputs.

Outputs: a table printed to stdout, ``completion_metrics.json`` and ``completion_sweep.png`` (matplotlib, Agg canvas;
no global backend change). Works on any dataset in the RGB-D corpus schema (`training.corpora`) or any schema an
adapter describes; ``vanishing-depth evaluate-completion`` runs it from the shell.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from .adapters import RGBDDatasetAdapter, corpus_adapter, get_adapter
from .collators import parse_depth_pattern, simulate_depth_input

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COMPLETION_PATTERNS",
    "CompletionEvalResult",
    "add_evaluate_completion_subcommand",
    "evaluate_completion",
    "format_completion_table",
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


@dataclass
class CompletionEvalResult:
    """Per-pattern metrics (`metrics[pattern]`: the keys of `DepthMetrics.compute` plus ``input_points``, the mean
    number of input pixels per image), the printed table and the written files."""

    metrics: dict[str, dict[str, float]]
    table: str
    json_path: Path | None = None
    plot_path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)


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

    Returns:
        [`CompletionEvalResult`].
    """
    from ..pipeline_vanishing_depth import load_completion_model
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
    metrics = {p: DepthMetrics(min_depth_m=low, max_depth_m=high) for p in patterns}
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
                predicted = model(pixel_values=pixel_values, depth_values=sparse.to(device)).predicted_depth
                if isinstance(predicted, (tuple, list)):  # the pretraining decoder: 4 scales, full resolution first
                    predicted = predicted[0][:, 0]
                metrics[pattern].update(predicted.float().cpu(), target)
    model.train(was_training)
    if num_frames == 0:
        raise ValueError("`dataset` yielded no frames to evaluate.")

    results = {}
    for pattern in patterns:
        results[pattern] = metrics[pattern].compute()
        results[pattern]["input_points"] = input_points[pattern] / num_frames
    table = format_completion_table(results)
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
    result = CompletionEvalResult(metrics=results, table=table, settings=settings)
    if output_dir is not None:
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        result.json_path = output / "completion_metrics.json"
        result.json_path.write_text(json.dumps({"settings": settings, "metrics": results}, indent=2, default=float))
        result.plot_path = output / "completion_sweep.png"
        _write_plot(results, result.plot_path, f"Depth completion sweep ({num_frames} frames, {adapter.name})")
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
