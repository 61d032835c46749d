"""``vanishing-depth study encoding | density | features``: the paper's claims as one-command studies (JSON, a printed
table and a PNG each; `vanishing_depth.evaluation.studies`)."""

from __future__ import annotations

import argparse
import json

from ..configuration_vanishing_depth import DEPTH_ENCODINGS
from ..evaluation.studies import (
    DENSITY_STUDY_REMOVALS,
    STUDY_DENSITIES,
    STUDY_SENSOR_PATTERNS,
    density_study,
    encoding_study,
    feature_study,
)

_DATASET_HELP = "Corpus-schema data: 'redwood_demo' (bundled, the default), a folder, a .parquet file or a Hub id."


def add_study_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add ``vanishing-depth study`` (with its ``encoding``, ``density`` and ``features`` studies) to an argparse
    subparsers object; returns the subparser."""
    parser = subparsers.add_parser(
        "study",
        help="Run one of the paper's claims as a study: encoding, density or features.",
        description="The paper's claims as studies; each writes a JSON record, prints a table and draws a PNG.",
    )
    studies = parser.add_subparsers(dest="study", required=True)

    encoding = studies.add_parser(
        "encoding",
        help="PDE vs the normalised baseline vs log-depth with validity, pretrained alike, scored alike.",
        description=(
            "Pretrain the same tiny model once per depth encoding and seed (same data, steps and seeds), score every "
            "run with the completion sweep at 50/10/1/0.1 %% density and on the sensor patterns, and report mean and "
            "spread over the seeds (encoding_study.json, a table, encoding_study.png with error bars)."
        ),
    )
    encoding.add_argument("--encodings", nargs="+", choices=DEPTH_ENCODINGS, default=list(DEPTH_ENCODINGS))
    encoding.add_argument("--seeds", type=int, default=3, help="Number of training seeds (0..N-1) per encoding.")
    encoding.add_argument("--max-steps", type=int, default=800, help="Optimizer steps of every run.")
    encoding.add_argument("--output-dir", required=True, help="The study's folder (refused when not empty).")
    encoding.add_argument("--overwrite", action="store_true", help="Replace a non-empty --output-dir wholly.")
    encoding.add_argument(
        "--dataset", nargs="+", default=["redwood_demo"], help=f"Pretraining corpora. {_DATASET_HELP}"
    )
    encoding.add_argument(
        "--eval-dataset", help="Frames to score (default: the first --dataset's --eval-split). " + _DATASET_HELP
    )
    encoding.add_argument("--eval-split", default="test")
    encoding.add_argument("--eval-frames", type=int, help="Score at most this many frames.")
    encoding.add_argument("--densities", nargs="+", type=float, default=list(STUDY_DENSITIES))
    encoding.add_argument("--sensor-patterns", nargs="+", default=list(STUDY_SENSOR_PATTERNS))
    encoding.add_argument("--image-size", type=int, default=112, help="Crop and evaluation short edge (pixels).")
    encoding.add_argument("--batch-size", type=int, default=8)
    encoding.add_argument(
        "--config-overrides", help="JSON of VanishingDepthConfig fields over the study's tiny model (e.g. a test size)."
    )
    encoding.set_defaults(func=run_encoding_study)

    density = studies.add_parser(
        "density",
        help="Density stress test: saved completion models and the baselines from 0 to 99.9 %% removed.",
        description=(
            "Score every --model (a saved completion model: RUN/pretraining or a depth head), nearest-neighbour and "
            "median filling from 0 to 99.9 %% of the valid pixels removed and on the sensor patterns, on the same "
            "frames and inputs (density_study.json, a table, density_study.png)."
        ),
    )
    density.add_argument("--model", nargs="+", required=True, help="Saved completion model folders or Hub ids.")
    density.add_argument("--output-dir", required=True, help="The study's folder (refused when not empty).")
    density.add_argument("--overwrite", action="store_true", help="Replace a non-empty --output-dir wholly.")
    density.add_argument("--dataset", default="redwood_demo", help=_DATASET_HELP)
    density.add_argument("--split", default="test")
    density.add_argument("--max-samples", type=int, help="Score at most this many frames.")
    density.add_argument("--removals", nargs="+", type=float, default=list(DENSITY_STUDY_REMOVALS))
    density.add_argument("--sensor-patterns", nargs="+", default=list(STUDY_SENSOR_PATTERNS))
    density.add_argument("--image-size", type=int, help="Short edge in pixels (default: the first model's processor).")
    density.add_argument("--batch-size", type=int, default=4)
    density.add_argument("--seed", type=int, default=0)
    density.set_defaults(func=run_density_study)

    features = studies.add_parser(
        "features",
        help="PCA of the RGB and depth tokens at each fusion layer, and the depth share per fusion layer.",
        description=(
            "For a few frames, PCA (3 components -> RGB) of the RGB-stream and depth-stream tokens at each fusion "
            "layer as one PNG grid (feature_pca.png), and the share of the fused tokens that comes from depth per "
            "fusion layer (feature_study.json). Needs a trained model folder (untrained weights are refused)."
        ),
    )
    features.add_argument("--model", required=True, help="A saved completion model folder (RUN/pretraining).")
    features.add_argument("--output-dir", required=True, help="The study's folder (refused when not empty).")
    features.add_argument("--overwrite", action="store_true", help="Replace a non-empty --output-dir wholly.")
    features.add_argument("--dataset", default="redwood_demo", help=_DATASET_HELP)
    features.add_argument("--split", default="test")
    features.add_argument("--frames", type=int, default=3, help="Number of frames (rows of the grid).")
    features.add_argument("--pattern", default="dense", help="Depth input pattern, e.g. dense, fraction:0.1, lidar:16.")
    features.add_argument("--image-size", type=int, help="Short edge in pixels (default: the model's processor).")
    features.add_argument("--seed", type=int, default=0)
    features.set_defaults(func=run_feature_study)
    return parser


def run_encoding_study(args: argparse.Namespace) -> int:
    """Entry point of ``vanishing-depth study encoding``."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a number of seeds >= 1, got {args.seeds}.")
    overrides = json.loads(args.config_overrides) if args.config_overrides else None
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"--config-overrides must be a JSON object of config fields, got {args.config_overrides!r}.")
    encoding_study(
        args.output_dir,
        encodings=args.encodings,
        seeds=range(args.seeds),
        max_steps=args.max_steps,
        dataset=args.dataset,
        eval_dataset=args.eval_dataset or args.dataset[0],
        eval_split=args.eval_split,
        eval_frames=args.eval_frames,
        densities=args.densities,
        sensor_patterns=args.sensor_patterns,
        image_size=args.image_size,
        batch_size=args.batch_size,
        config_overrides=overrides,
        overwrite=args.overwrite,
    )
    return 0


def run_density_study(args: argparse.Namespace) -> int:
    """Entry point of ``vanishing-depth study density``."""
    density_study(
        args.model,
        args.output_dir,
        dataset=args.dataset,
        split=args.split,
        max_samples=args.max_samples,
        removals=args.removals,
        sensor_patterns=args.sensor_patterns,
        image_size=args.image_size,
        batch_size=args.batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    return 0


def run_feature_study(args: argparse.Namespace) -> int:
    """Entry point of ``vanishing-depth study features``."""
    feature_study(
        args.model,
        args.output_dir,
        dataset=args.dataset,
        split=args.split,
        num_frames=args.frames,
        pattern=args.pattern,
        image_size=args.image_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    return 0
