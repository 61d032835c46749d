"""``vanishing-depth finetune``: train a task head on a frozen encoder with `transformers.Trainer`, then its card."""

from __future__ import annotations

import argparse
import json

from ..data import TASKS
from ..hub import write_run_card
from ..training.finetune import finetune


def add_finetune_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add ``vanishing-depth finetune`` to an argparse subparsers object; returns the subparser."""
    parser = subparsers.add_parser(
        "finetune",
        help="Train a task head (segmentation, depth completion, classification) on a frozen encoder.",
        description=(
            "Fine-tune a task head on a Vanishing Depth encoder with transformers.Trainer. The encoder stays frozen "
            "(the paper's protocol) unless --unfreeze-encoder or --lora is given."
        ),
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument(
        "--dataset", required=True, help="Training data: a folder or .parquet file, a Hub dataset id, or redwood_demo."
    )
    parser.add_argument("--encoder", required=True, help="Encoder folder or Hub id (VanishingDepthModel).")
    parser.add_argument("--output-dir", required=True, help="Where the model, processor and metrics are written.")
    parser.add_argument(
        "--adapter",
        choices=["nyu_depth_v2", "sunrgbd", "void", "corpus"],
        help="The dataset's schema (columns, depth unit, labels). Inferred for depth completion.",
    )
    parser.add_argument("--split", default="train", help="Training split (default: train).")
    parser.add_argument(
        "--eval-split", help="Evaluation split (default for local folders: validation or test if present)."
    )
    parser.add_argument("--num-labels", type=int, help="Number of classes (default: the adapter's).")
    parser.add_argument("--image-size", type=int, help="Shortest edge in pixels (default: the processor's).")
    parser.add_argument("--max-steps", type=int, default=-1, help="Training steps (-1: use --num-train-epochs).")
    parser.add_argument("--num-train-epochs", type=float, default=3.0)
    parser.add_argument(
        "--learning-rate", type=float, help="Default: 1e-4 (segmentation, depth), 1e-3 (classification)."
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segmentation-head", choices=["linear", "multiscale"])
    parser.add_argument("--unfreeze-encoder", action="store_true", help="Also train the depth stream and fusions.")
    parser.add_argument("--lora", action="store_true", help="LoRA on the depth ViT's q/v projections.")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument(
        "--input-depth-pattern",
        help="Depth completion without a sparse-depth column: simulated sensor, e.g. uniform:500, lidar:16, tof:8.",
    )
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use-cpu", action="store_true", help="Train on the CPU even if a GPU is present.")
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace what --output-dir holds (it must otherwise be empty or new)."
    )
    parser.set_defaults(func=run_finetune)
    return parser


def run_finetune(args: argparse.Namespace) -> int:
    """Entry point of ``vanishing-depth finetune``: trains, saves, writes the model card, prints the metrics as JSON."""
    result = finetune(
        args.task,
        args.dataset,
        args.encoder,
        args.output_dir,
        adapter=args.adapter,
        split=args.split,
        eval_split=args.eval_split,
        num_labels=args.num_labels,
        image_size=args.image_size,
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        freeze_encoder=not args.unfreeze_encoder,
        segmentation_head=args.segmentation_head,
        lora=args.lora,
        lora_r=args.lora_r,
        input_depth_pattern=args.input_depth_pattern,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        seed=args.seed,
        use_cpu=True if args.use_cpu else None,
        logging_steps=args.logging_steps,
        overwrite=args.overwrite,
    )
    write_run_card(result.output_dir, result.summary)
    print(json.dumps({"train": result.train_metrics, "eval": result.eval_metrics}, indent=2, default=float))
    print(f"wrote {result.output_dir}")
    return 0
