"""The `vanishing-depth` command: one subcommand per job, each a thin layer over the library's public API."""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger("vanishing_depth.cli")


def _add_features(subparsers) -> None:
    parser = subparsers.add_parser(
        "features",
        help="Extract RGB-D feature maps for one RGB image and its depth map.",
        description="Extract the four fused RGB-D feature maps of one frame and print their shapes.",
    )
    parser.add_argument("--model", help="A saved Vanishing Depth folder or Hub id. Default: a random tiny model.")
    parser.add_argument("--rgb", required=True, help="RGB image file (JPEG/PNG).")
    parser.add_argument("--depth", help="Depth file; omit to run on RGB alone (all depth missing).")
    parser.add_argument(
        "--depth-format", default="auto", help="Depth file convention: mm, kitti, tum, sunrgbd, nyu_raw, float, auto."
    )
    parser.add_argument(
        "--size", type=int, default=224, help="Shortest edge in pixels before padding to a multiple of 14."
    )
    parser.add_argument("--out", help="Optional .safetensors file to write the feature maps to.")
    parser.set_defaults(func=run_features)


def run_features(args) -> int:
    import torch

    from .processing import VanishingDepthImageProcessor, load_depth, load_rgb

    model = _load_encoder_or_tiny(args.model)
    processor = VanishingDepthImageProcessor(size={"shortest_edge": args.size})
    rgb = load_rgb(args.rgb)
    depth_m = load_depth(args.depth, format=args.depth_format) if args.depth else None
    inputs = processor(images=rgb, depth=depth_m, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(pixel_values=inputs["pixel_values"], depth_values=inputs["depth_values"])
    summary = {
        "pixel_values": list(inputs["pixel_values"].shape),
        "depth_values": list(inputs["depth_values"].shape),
        "valid_depth_fraction": float((inputs["depth_values"] > 0).float().mean()),
        "feature_maps": [list(f.shape) for f in outputs.feature_maps],
        "last_hidden_state": list(outputs.last_hidden_state.shape),
        "rgb_last_hidden_state": list(outputs.rgb_last_hidden_state.shape),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        from safetensors.torch import save_file

        save_file({f"feature_map_{i}": f.contiguous() for i, f in enumerate(outputs.feature_maps)}, args.out)
        print(f"wrote {args.out}")
    return 0


def _load_encoder_or_tiny(name_or_path: str | None):
    from transformers import AutoModel, Dinov2Config

    from . import VanishingDepthConfig, VanishingDepthModel
    from .configuration_vanishing_depth import VIT_SHAPES

    if name_or_path:
        return AutoModel.from_pretrained(name_or_path).eval()
    logger.warning("No --model given: using a randomly initialised ViT-S-shaped model (no weights are reachable here).")
    rgb_config = Dinov2Config(image_size=518, **VIT_SHAPES["small"])
    return VanishingDepthModel(VanishingDepthConfig(rgb_config=rgb_config)).eval()


def _add_pretrain(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="Self-supervised pretraining of a depth adapter (Accelerate); see --help of the subcommand.",
        description="All flags of vanishing_depth.training.pretrain.PretrainingArguments (dashes or underscores), or "
        "--config FILE.yaml; --resume OUT/checkpoints/latest continues exactly where a run stopped.",
        add_help=False,
    )
    parser.set_defaults(func=run_pretrain, passthrough=True)


def run_pretrain(args) -> int:
    from .training.pretrain import main as pretrain_main

    # Accept --kebab-case as well as the dataclass's --snake_case flag names.
    argv = []
    for arg in args.rest:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        argv.append(arg)
    return pretrain_main(argv)


def _add_complete(subparsers) -> None:
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


def run_complete(args) -> int:
    from .training.completion import complete_depth_file

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


def _add_build_corpus(subparsers) -> None:
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


def run_build_corpus(args) -> int:
    """Build the corpus, skipping (and naming) bad files; exit 0 when at least one good pair remains."""
    from pathlib import Path

    from .output_paths import inputs_inside, prepare_output_dir
    from .training.corpora import build_corpus_from_folder, save_corpus

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vanishing-depth",
        description="Vanishing Depth: metric-depth understanding for pretrained RGB ViTs (arXiv 2503.19947).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at DEBUG level.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_features(subparsers)
    _add_pretrain(subparsers)
    _add_complete(subparsers)
    _add_build_corpus(subparsers)
    from .training.completion_eval import add_evaluate_completion_subcommand
    from .training.demo import add_demo_subcommand
    from .training.finetune import add_finetune_subcommand

    add_demo_subcommand(subparsers)
    add_finetune_subcommand(subparsers)
    add_evaluate_completion_subcommand(subparsers)

    from .convert_authors_checkpoint import add_convert_subcommand
    from .export import add_export_subcommand
    from .hub_cards.model_card import add_card_subcommand
    from .hub_cards.publish import add_push_subcommand

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


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main"]
