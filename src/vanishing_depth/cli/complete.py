"""``vanishing-depth complete``: complete one sparse or holed depth file with a trained model."""

from __future__ import annotations

import argparse

from ..inference import complete_depth_file


def add_complete_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "complete",
        help="Complete a sparse or holed depth map with a pretrained model (writes a 16-bit mm PNG and a picture).",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="A folder with a trained decoder: RUN/pretraining (VanishingDepthForPretraining) or a depth head "
        "(VanishingDepthForDepthEstimation). An encoder folder is refused.",
    )
    parser.add_argument("--rgb", required=True, help="RGB image file.")
    parser.add_argument("--depth", required=True, help="Sparse or holed depth file.")
    parser.add_argument("--depth-format", default="auto", help="mm, kitti, tum, sunrgbd, nyu_raw, float or auto.")
    parser.add_argument("--out", required=True, help="Output 16-bit PNG in millimetres (0 = no prediction).")
    parser.add_argument("--size", type=int, default=None, help="Processing short edge in px (default: the model's).")
    parser.add_argument(
        "--keep-measured", action="store_true", help="Measured pixels pass through unchanged (metres as read)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace --out (and its preview) if they exist.")
    parser.set_defaults(func=run_complete)
    return parser


def run_complete(args: argparse.Namespace) -> int:
    written = complete_depth_file(
        args.model,
        args.rgb,
        args.depth,
        args.out,
        depth_format=args.depth_format,
        size=args.size,
        keep_measured=args.keep_measured,
        overwrite=args.overwrite,
    )
    for path in written:
        print(f"wrote {path}")
    return 0
