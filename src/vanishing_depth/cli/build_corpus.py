"""``vanishing-depth build-corpus``: an RGB folder and a depth folder of a real format -> the RGB-D corpus schema."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import build_corpus_from_folder, save_corpus
from ..output_paths import inputs_inside, prepare_output_dir


def add_build_corpus_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-corpus", help="Convert an RGB folder + depth folder of a real format into the RGB-D corpus schema."
    )
    parser.add_argument("--rgb-dir", required=True)
    parser.add_argument("--depth-dir", required=True)
    parser.add_argument("--depth-format", required=True, help="mm, kitti, tum, sunrgbd, nyu_raw or float.")
    parser.add_argument("--source-name", required=True, help="Corpus name stored in every row.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--match", default="stem", choices=["stem", "sorted", "number"])
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"))
    parser.add_argument("--split", default="train", help="Split name of the written parquet file.")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a non-empty --output-dir wholly (everything in it is deleted once the new corpus is built).",
    )
    parser.set_defaults(func=run_build_corpus)
    return parser


def run_build_corpus(args: argparse.Namespace) -> int:
    """Build the corpus, skipping (and naming) bad files; exit 0 when at least one good pair remains."""
    output_dir = Path(args.output_dir)
    what = "corpus output folder"
    if output_dir.exists() and not args.overwrite:
        prepare_output_dir(output_dir, what=what)  # refuses a non-empty folder before the (long) conversion
    for source in inputs_inside(output_dir, (args.rgb_dir, args.depth_dir)):
        raise ValueError(f"--output-dir {str(output_dir)!r} holds the input folder {source!r}; choose another.")
    bad_files: list[tuple[str, str]] = []
    dataset = build_corpus_from_folder(
        args.rgb_dir,
        args.depth_dir,
        args.depth_format,
        args.source_name,
        intrinsics=args.intrinsics,
        match=args.match,
        bad_files=bad_files,
    )
    prepare_output_dir(output_dir, overwrite=args.overwrite, what=what)
    paths = save_corpus(dataset, output_dir, splits={args.split: list(range(len(dataset)))})
    for path, reason in bad_files:
        print(f"skipped bad file {path}: {reason}")
    print(f"{len(dataset)} frames -> {paths}; {len(bad_files)} bad file(s) skipped")
    return 0
