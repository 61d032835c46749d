"""``vanishing-depth evaluate-completion``: the depth-completion sweep over simulated sensor patterns."""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoConfig

from ..evaluation import DEFAULT_COMPLETION_PATTERNS, evaluate_completion
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor


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
