"""``vanishing-depth pretrain``: self-supervised pretraining of a depth adapter, then its model card.

Every field of `vanishing_depth.training.pretrain.PretrainingArguments` is a flag (``--learning-rate`` or
``--learning_rate``), or a key of a YAML file given with ``--config FILE.yaml`` (flags given next to it override the
file). Several processes: ``accelerate launch -m vanishing_depth.cli pretrain ...``; the main process writes the card.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml
from accelerate import PartialState
from transformers import HfArgumentParser

from ..hub import write_run_card
from ..training.pretrain import PretrainingArguments, pretrain


def add_pretrain_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        help="Self-supervised pretraining of a depth adapter (Accelerate); see --help of the subcommand.",
        description="All flags of vanishing_depth.training.pretrain.PretrainingArguments (dashes or underscores), or "
        "--config FILE.yaml; --resume OUT/checkpoints/latest continues exactly where a run stopped.",
        add_help=False,
    )
    parser.set_defaults(func=run_pretrain, passthrough=True)
    return parser


def snake_case_flags(argv: list[str]) -> list[str]:
    """``--kebab-case`` flags as the dataclass's ``--snake_case`` names (values untouched)."""
    normalised = []
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        normalised.append(arg)
    return normalised


def parse_arguments(argv: list[str] | None = None) -> PretrainingArguments:
    """`PretrainingArguments` from flags (``--learning-rate`` or ``--learning_rate``), or ``--config file.yaml``
    (flags given next to it override the file's values)."""
    argv = snake_case_flags(list(sys.argv[1:] if argv is None else argv))
    parser = HfArgumentParser(PretrainingArguments)
    if "--config" in argv:
        position = argv.index("--config")
        config_path = Path(argv[position + 1])
        del argv[position : position + 2]
        values = yaml.safe_load(config_path.read_text()) or {}
        parser.parse_dict(values)  # refuses unknown keys and bad values, naming them
        flags = parser.parse_args_into_dataclasses(argv)[0]
        given = {a.lstrip("-").split("=")[0] for a in argv if a.startswith("--")}
        # Only what the file and the flags set explicitly: the rest comes from the recipe they choose (a flag wins).
        merged = {**values, **{f.name: getattr(flags, f.name) for f in dataclasses.fields(flags) if f.name in given}}
        return PretrainingArguments(**merged)
    return parser.parse_args_into_dataclasses(argv)[0]


def run_pretrain(args: argparse.Namespace) -> int:
    """Parse the pretraining flags, run `pretrain`, write the model card (main process, unless
    ``--write_model_card false``) and print a one-line summary."""
    arguments = parse_arguments(args.rest)
    summary = pretrain(arguments)
    if arguments.write_model_card and PartialState().is_main_process:
        write_run_card(arguments.output_dir, dataclasses.asdict(arguments))
    last = summary["history"][-1]["loss"] if summary["history"] else None
    training, validation = summary["rows"]["training"], summary["rows"]["validation"]
    print(
        f"done: {summary['steps']} steps, last loss {'n/a' if last is None else f'{last:.4f}'}, model in "
        f"{arguments.output_dir}; rows skipped by cause: training {training['skipped']} of {training['rows_read']} "
        f"read, validation {validation['skipped']} of {validation['rows_read']} read"
    )
    return 0
