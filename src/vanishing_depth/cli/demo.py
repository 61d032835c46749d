"""``vanishing-depth demo`` (``make demo``): pretrain on the bundled corpus and procedural rooms, evaluate completion
on held-out frames of both (all and removed pixels), save."""

from __future__ import annotations

import argparse

from ..demo import run_demo


def add_demo_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="Pretrain on the bundled corpus and procedural rooms, evaluate completion, save (minutes; on busy cores "
        "set OMP_NUM_THREADS=1).",
    )
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--max-steps", type=int, default=1800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace OUTPUT_DIR/vanishing-depth-demo if it holds a run."
    )
    parser.set_defaults(func=run_demo_command)
    return parser


def run_demo_command(args: argparse.Namespace) -> int:
    run_demo(args.output_dir, args.max_steps, args.seed, args.overwrite)
    return 0
