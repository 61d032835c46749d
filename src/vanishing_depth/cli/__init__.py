"""The `vanishing-depth` command: one subcommand per job, each a thin layer over the library's public API.

One module per subcommand holds its parser and its ``run_*`` function (``features``, ``pretrain``, ``complete``,
``build_corpus``, ``demo``, ``finetune``, ``evaluate_completion``, ``study``, ``app``); the Hub and export tools bring their own
(`vanishing_depth.hub`, `vanishing_depth.export`, `vanishing_depth.convert_authors_checkpoint`). Commands that train
write the model card at the end (the training code itself never imports the Hub layer).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..convert_authors_checkpoint import add_convert_subcommand
from ..export import add_export_subcommand
from ..hub import add_card_subcommand, add_push_subcommand
from .app import add_app_subcommand
from .build_corpus import add_build_corpus_subcommand
from .complete import add_complete_subcommand
from .demo import add_demo_subcommand
from .evaluate_completion import add_evaluate_completion_subcommand
from .features import add_features_subcommand
from .finetune import add_finetune_subcommand
from .pretrain import add_pretrain_subcommand
from .study import add_study_subcommand

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vanishing-depth",
        description="Vanishing Depth: metric-depth understanding for pretrained RGB ViTs (arXiv 2503.19947).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at DEBUG level.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_features_subcommand(subparsers)
    add_pretrain_subcommand(subparsers)
    add_complete_subcommand(subparsers)
    add_build_corpus_subcommand(subparsers)
    add_demo_subcommand(subparsers)
    add_finetune_subcommand(subparsers)
    add_evaluate_completion_subcommand(subparsers)
    add_study_subcommand(subparsers)
    add_app_subcommand(subparsers)
    add_card_subcommand(subparsers)
    add_push_subcommand(subparsers)
    add_export_subcommand(subparsers)
    add_convert_subcommand(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
