"""Depth completion on real sensor frames: a saved completion model against nearest-neighbour and median filling.

Scores a completion model (a folder with a trained decoder: a `VanishingDepthForPretraining` or a
`VanishingDepthForDepthEstimation`; default the `make demo` output ``outputs/vanishing-depth-demo/pretraining``)
on the real RGB-D frames of ``../shared/data`` (described in its SOURCES.md; not shipped with the project):

- ``nyu``: NYU Depth v2, 3 test frames (Metric3D's demo), Kinect v1 structured light, 16-bit millimetre PNGs with the
  sensor's own holes (67-75 % valid). Intrinsics fx 518.8579, fy 519.46961, cx 325.58245, cy 253.73617.
- ``redwood_noisy``: Redwood living room 1 (Augmented ICL-NUIM, rendered), frames 00000-00004 with ``depth_noisy``
  (simulated Kinect noise and quantisation, 87 % valid). Not a held-out test: these five views (the same RGB files)
  are in the demo's training split (``load_demo_corpus("train")``: 00000-00004 and 00010-00170), trained on with their
  clean depth. Here the noisy map is both the ground truth and the source of the input, so this corpus measures how
  the model copes with another depth noise model on views it has seen, not how it generalises to new rooms.
- ``arkit``: one iPhone LiDAR capture (PromptDA's example), 1920x1440 JPEG with ARKit's 256x192 millimetre depth map
  (100 % valid, 1.6-3.5 m). The library pairs them as one view at two resolutions: the image processor resizes the
  RGB (bicubic) to the short edge and samples the depth map onto the same grid with nearest neighbour, so at the
  default 112 px short edge (112x149, below the LiDAR map's 192x256) this is scored on the processor's grid, against
  a nearest-neighbour subsample of the LiDAR map; the LiDAR map is ARKit's own dense estimate, not independent
  ground truth.

Every corpus is built with `vanishing_depth.data.build_corpus_from_folder` in a temporary folder and scored with
`vanishing_depth.evaluation.evaluate_completion` (frames at ``--short-edge`` px, the demo's 112 by default; one frame
per batch; seeded patterns, so a rerun gives the same inputs and, on the same machine and thread count, the same
numbers). Input patterns: a uniform random share of the valid pixels kept (10 %, 1 %, 0.1 %) and sensor patterns of
`vanishing_depth.evaluation.studies.STUDY_SENSOR_PATTERNS`: 500 random points, half the valid pixels removed in Perlin
blobs, 16 LiDAR lines, a ToF sensor 8x coarser than the image (its upsampled map is on every pixel; the removed
pixels are those whose input is not their own depth), and (NYU and Redwood only: a structured-light artefact, not a
LiDAR's) holes along depth edges. Rows: the model, the model with its measured pixels passed through
(``keep_measured``), nearest-neighbour filling and median filling, all on the same inputs.

Prints, per corpus, the RMSE in metres on the removed pixels (valid ground truth not given as input: what each method
had to infer) and on all valid pixels, by method and input pattern, then one markdown block per corpus to paste into
the README. Writes ``real_frames.json`` (strict JSON: settings and every method's full metrics per corpus and
pattern) and ``real_frames.md`` (the markdown blocks) to ``--output-dir``.

    python benchmarks/bench_real_frames.py [--model outputs/vanishing-depth-demo/pretraining]
        [--data-dir ../shared/data] [--output-dir outputs/real_frames] [--short-edge 112] [--max-frames N]
        [--corpora nyu redwood_noisy arkit] [--seed 0] [--threads 2] [--overwrite]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vanishing_depth import VanishingDepthImageProcessor
from vanishing_depth.data import build_corpus_from_folder, parse_depth_pattern
from vanishing_depth.demo import deterministic_algorithms
from vanishing_depth.evaluation import BASELINE_PREDICTORS, evaluate_completion, format_method_table, model_predictor
from vanishing_depth.evaluation.completion import REMOVED_PREFIX
from vanishing_depth.evaluation.studies import STUDY_SENSOR_PATTERNS
from vanishing_depth.output_paths import prepare_output_dir, write_json
from vanishing_depth.pipeline_vanishing_depth import load_completion_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "outputs/vanishing-depth-demo/pretraining"
DATA_ENV = "VANISHING_DEPTH_SHARED_DATA"
DENSITY_PATTERNS = ("fraction:0.1", "fraction:0.01", "fraction:0.001")
MODEL_NAME = "model"
JSON_FILE = "real_frames.json"
COLUMNS_LEGEND = (
    "Columns: the share of the valid pixels kept at random as input (10 %, 1 %, 0.1 %), 500 random points, half the "
    "valid pixels removed in Perlin blobs, 16 LiDAR lines, an 8x coarser ToF{holes}; RMSE in metres."
)
MARKDOWN_FILE = "real_frames.md"
NYU_INTRINSICS = (518.8579, 519.46961, 325.58245, 253.73617)  # Metric3D's test_annotations.json (cam_in)
REDWOOD_INTRINSICS = (525.0, 525.0, 319.5, 239.5)  # PrimeSense default, as ICL-NUIM renders
SENSOR_PATTERNS = tuple(STUDY_SENSOR_PATTERNS)
# Holes along depth edges are a structured-light (Kinect) artefact; a dToF LiDAR loses points, lines, blobs.
ARKIT_SENSOR_PATTERNS = tuple(p for p in SENSOR_PATTERNS if p != "holes")


@dataclass(frozen=True)
class RealCorpus:
    """One folder of ``--data-dir``: how to build it as a corpus, which sensor patterns it is scored on, and what
    the reader must know about it."""

    name: str
    title: str
    folder: str
    sensor_patterns: tuple[str, ...]
    note: str
    build: Callable[[Path, Path], Any]  # (data dir, temporary folder) -> datasets.Dataset


def _build_nyu(data: Path, scratch: Path):
    folder = data / "metric3d_nyu_demo"
    return build_corpus_from_folder(
        folder / "rgb", folder / "depth", "mm", "metric3d_nyu_demo", intrinsics=NYU_INTRINSICS, match="number",
        cache_dir=scratch / "cache_nyu", on_bad_file="raise",
    )  # fmt: skip


def _build_redwood_noisy(data: Path, scratch: Path):
    folder = data / "open3d_redwood_livingroom1"
    return build_corpus_from_folder(
        folder / "color", folder / "depth_noisy", "mm", "open3d_redwood_livingroom1_noisy",
        intrinsics=REDWOOD_INTRINSICS, pairs_file=folder / "rgbd.match",  # Open3D's pairs: frames 00000-00004
        cache_dir=scratch / "cache_redwood_noisy", on_bad_file="raise",
    )  # fmt: skip


def _build_arkit(data: Path, scratch: Path):
    folder = data / "promptda_arkit"
    pairs = scratch / "arkit_pairs.txt"
    pairs.write_text("image.jpg arkit_depth.png\n")
    return build_corpus_from_folder(
        folder, folder, "mm", "promptda_arkit", pairs_file=pairs, cache_dir=scratch / "cache_arkit",
        on_bad_file="raise",
    )  # fmt: skip


CORPORA = {
    corpus.name: corpus
    for corpus in (
        RealCorpus(
            "nyu",
            "NYU Depth v2, Kinect v1",
            "metric3d_nyu_demo",
            SENSOR_PATTERNS,
            "NYU Depth v2 test frames (the 3 of Metric3D's demo), Kinect v1 depth with its own holes; a sensor and rooms the "
            "demo never trains on.",
            _build_nyu,
        ),
        RealCorpus(
            "redwood_noisy",
            "Redwood living room 1, noisy depth",
            "open3d_redwood_livingroom1",
            SENSOR_PATTERNS,
            "Redwood frames 00000-00004 with simulated Kinect noise and quantisation (depth_noisy). Not held out: the "
            "demo trains on these five views (same RGB) with their clean depth; this measures another noise model on "
            "seen views, not generalisation.",
            _build_redwood_noisy,
        ),
        RealCorpus(
            "arkit",
            "iPhone ARKit LiDAR",
            "promptda_arkit",
            ARKIT_SENSOR_PATTERNS,
            "One iPhone capture (PromptDA's example): 1920x1440 RGB, ARKit's 256x192 LiDAR depth map as ground truth "
            "(ARKit's own dense estimate), sampled by the image processor with nearest neighbour onto the RGB's "
            "short-edge grid, where it is scored.",
            _build_arkit,
        ),
    )
}


def column_title(pattern: str) -> str:
    """A short column header for an input pattern (``fraction:0.01`` -> ``1%``, ``lidar:16`` -> ``16 lines``)."""
    kind, value = parse_depth_pattern(pattern)
    if kind == "fraction":
        return f"{value * 100:g}%"
    if kind == "perlin":
        return f"Perlin -{value * 100:g}%"
    if kind == "tof":
        return f"ToF 1/{value:g}"
    return {"uniform": f"{value} pts", "lidar": f"{value} lines", "holes": "edge holes"}.get(kind, pattern)


def default_data_dir() -> Path:
    """``$VANISHING_DEPTH_SHARED_DATA``, else ``<repo>/../shared/data`` (as the tests' `shared_data_dir`)."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared" / "data")


def load_model(path: str | os.PathLike):
    """The completion model in `path` (`load_completion_model`); a missing folder or one without a trained decoder
    ends the run with a message naming the path and how to make one."""
    advice = (
        f"The real-frames benchmark needs a completion model with a trained decoder at {str(path)!r}: run `make demo` "
        f"(it writes {DEFAULT_MODEL}) or pass --model FOLDER (a RUN/pretraining folder or a depth head)."
    )
    if not Path(path).is_dir():
        raise SystemExit(f"The model folder {str(path)!r} does not exist. {advice}")
    try:
        return load_completion_model(str(path))
    except (OSError, ValueError) as error:
        raise SystemExit(f"{error}\n{advice}") from None


def corpus_tables(name: str, methods: dict, short_edge: int) -> tuple[str, str]:
    """The RMSE tables (m) of one corpus: on the removed pixels and on all valid pixels, by method and pattern."""
    titles = {pattern: column_title(pattern) for pattern in next(iter(methods.values()))}
    corpus = CORPORA[name]
    removed = format_method_table(
        methods,
        REMOVED_PREFIX + "rmse_m",
        f"RMSE (m) on the removed pixels, {corpus.title}, {short_edge} px short edge",
        column_titles=titles,
    )
    every = format_method_table(
        methods, "rmse_m", f"RMSE (m) on all valid pixels, {corpus.title}, {short_edge} px short edge", titles
    )
    return removed, every


def markdown_block(name: str, record: dict, short_edge: int) -> str:
    """One corpus's results as a markdown block for the README: a heading, what the frames are, the two tables."""
    corpus = CORPORA[name]
    height, width = record["input_size"]
    removed, every = corpus_tables(name, record["methods"], short_edge)
    legend = COLUMNS_LEGEND.format(holes=", holes along depth edges" if "holes" in record["patterns"] else "")
    return (
        f"#### {corpus.title} ({record['num_frames']} frame{'s' * (record['num_frames'] != 1)}, "
        f"model input {width}x{height} px padded to the patch size)\n\n{corpus.note} {legend}\n\n"
        f"```text\n{removed}\n\n{every}\n```"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a completion model folder (default: %(default)s)")
    parser.add_argument(
        "--data-dir", default=None, help=f"the real frames (default: ${DATA_ENV}, else <repo>/../shared/data)"
    )
    parser.add_argument("--output-dir", default="outputs/real_frames")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a used --output-dir")
    parser.add_argument("--short-edge", type=int, default=112, help="processor short edge in px (the demo's 112)")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per corpus")
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.short_edge < 14:
        parser.error(f"--short-edge must be >= 14 px (one patch), got {args.short_edge}.")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames must be >= 1, got {args.max_frames}.")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark (`argv`: the command-line arguments); returns the record written to ``real_frames.json``."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    data = Path(args.data_dir) if args.data_dir is not None else default_data_dir()
    if not data.is_dir():
        raise SystemExit(
            f"The real RGB-D frames folder {str(data)!r} does not exist: pass --data-dir or set ${DATA_ENV} to the "
            "folder holding metric3d_nyu_demo/, open3d_redwood_livingroom1/ and promptda_arkit/ (see its SOURCES.md)."
        )
    missing = [str(data / CORPORA[name].folder) for name in args.corpora if not (data / CORPORA[name].folder).is_dir()]
    if missing:
        raise SystemExit(f"The real-frames folder {str(data)!r} lacks {missing}; choose the others with --corpora.")
    output = prepare_output_dir(args.output_dir, overwrite=args.overwrite, what="real-frames benchmark output folder")
    processor = VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": args.short_edge})
    predictors = {f"{MODEL_NAME}_keep_measured": model_predictor(model, keep_measured=True), **BASELINE_PREDICTORS}

    record: dict[str, Any] = {
        "settings": {
            "model": str(args.model),
            "model_class": type(model).__name__,
            "data_dir": str(data),
            "short_edge_px": args.short_edge,
            "max_frames": args.max_frames,
            "seed": args.seed,
            "threads": args.threads,
            "scored_on": "the image processor's grid (short edge resized, padded to the patch size), metres",
            "removed_pixels": "valid ground truth not given as input (the `removed_` keys)",
        },
        "corpora": {},
    }
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-real-frames-") as scratch, deterministic_algorithms():
        for name in args.corpora:
            corpus = CORPORA[name]
            dataset = corpus.build(data, Path(scratch))
            patterns = [*DENSITY_PATTERNS, *corpus.sensor_patterns]
            result = evaluate_completion(
                model,
                dataset,
                processor,
                patterns=patterns,
                batch_size=1,
                max_samples=args.max_frames,
                min_depth_m=1e-3,
                seed=args.seed,
                print_table=False,
                predictors=predictors,
                model_name=MODEL_NAME,
            )
            record["corpora"][name] = {
                "title": corpus.title,
                "folder": corpus.folder,
                "note": corpus.note,
                "num_frames": result.settings["num_frames"],
                "input_size": result.settings["input_size"],
                "eval_range_m": result.settings["eval_range_m"],
                "patterns": patterns,
                "methods": result.methods,
            }
            removed, every = corpus_tables(name, result.methods, args.short_edge)
            print(f"{corpus.title}: {result.settings['num_frames']} frames, input {result.settings['input_size']}")
            print(removed, end="\n\n")
            print(every, end="\n\n")

    blocks = [markdown_block(name, record["corpora"][name], args.short_edge) for name in args.corpora]
    write_json(output / JSON_FILE, record, indent=2)
    (output / MARKDOWN_FILE).write_text("\n\n".join(blocks) + "\n")
    print("Markdown for the README:\n")
    print("\n\n".join(blocks))
    print(f"\nWrote {output / JSON_FILE} and {output / MARKDOWN_FILE}.")
    return record


if __name__ == "__main__":
    main()
