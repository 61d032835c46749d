"""``vanishing-depth build-corpus``: an RGB folder and a depth folder of a real format, or a ROS 1 / ROS 2 (sqlite3,
MCAP) recording, -> the RGB-D corpus schema."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import build_corpus_from_folder, build_corpus_from_rosbag, save_corpus
from ..output_paths import inputs_inside, prepare_output_dir


def add_rosbag_arguments(parser: argparse.ArgumentParser, camera_info_use: str) -> None:
    """The ROS-bag input flags `build-corpus` and `complete` share (`vanishing_depth.data.read_rosbag_frames`);
    `camera_info_use` says what the colour CameraInfo is used for."""
    bag = parser.add_argument_group("a ROS 1 / ROS 2 recording (pip install 'vanishing-depth[robotics]')")
    bag.add_argument("--rosbag", help="A .bag, .mcap or .db3 file or a ROS 2 bag folder (instead of the folders).")
    bag.add_argument("--rgb-topic", help="sensor_msgs/Image or CompressedImage colour topic.")
    bag.add_argument("--depth-topic", help="Depth topic registered to colour (e.g. .../aligned_depth_to_color/...).")
    bag.add_argument("--camera-info-topic", help=f"Colour CameraInfo topic: {camera_info_use}.")
    bag.add_argument("--max-time-offset-ms", type=float, default=20.0, help="Largest colour-depth stamp gap of a pair.")
    bag.add_argument("--every-nth", type=int, default=1, help="Keep every n-th paired frame.")
    bag.add_argument(
        "--resize-depth",
        action="store_true",
        help="Accept unaligned depth of the colour's aspect ratio, resized (nearest neighbour) to the colour size.",
    )


def rosbag_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of `read_rosbag_frames` (and `build_corpus_from_rosbag`) that the flags of
    `add_rosbag_arguments` set."""
    return {
        "rgb_topic": args.rgb_topic,
        "depth_topic": args.depth_topic,
        "camera_info_topic": args.camera_info_topic,
        "max_time_offset_ms": args.max_time_offset_ms,
        "every_nth": args.every_nth,
        "resize_depth": args.resize_depth,
    }


def add_build_corpus_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-corpus",
        help="Convert an RGB folder + depth folder of a real format, or a ROS bag (--rosbag), into the RGB-D corpus "
        "schema.",
    )
    parser.add_argument("--rgb-dir")
    parser.add_argument("--depth-dir")
    parser.add_argument("--depth-format", help="mm, kitti, tum, sunrgbd, nyu_raw or float (folders).")
    parser.add_argument("--source-name", required=True, help="Corpus name stored in every row.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--match", default="stem", choices=["stem", "sorted", "number"])
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"))
    add_rosbag_arguments(parser, "the corpus' intrinsics column")
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
    for source in inputs_inside(output_dir, (args.rgb_dir, args.depth_dir, args.rosbag)):
        raise ValueError(f"--output-dir {str(output_dir)!r} holds the input {source!r}; choose another.")
    if args.rosbag:
        return _run_from_rosbag(args, output_dir, what)
    missing = [flag for flag, value in (("--rgb-dir", args.rgb_dir), ("--depth-dir", args.depth_dir),
                                        ("--depth-format", args.depth_format)) if not value]  # fmt: skip
    if missing:
        raise ValueError(f"build-corpus needs {', '.join(missing)} (or --rosbag with --rgb-topic and --depth-topic).")
    bag_flags = [flag for flag, value in (("--rgb-topic", args.rgb_topic), ("--depth-topic", args.depth_topic),
                                          ("--camera-info-topic", args.camera_info_topic)) if value]  # fmt: skip
    if bag_flags:
        raise ValueError(f"{', '.join(bag_flags)} need(s) --rosbag.")
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


def _run_from_rosbag(args: argparse.Namespace, output_dir: Path, what: str) -> int:
    folder_flags = [flag for flag, value in (("--rgb-dir", args.rgb_dir), ("--depth-dir", args.depth_dir),
                                             ("--depth-format", args.depth_format), ("--intrinsics", args.intrinsics))
                    if value]  # fmt: skip
    if folder_flags:
        raise ValueError(
            f"{', '.join(folder_flags)} do(es) not apply to --rosbag (units come from the encodings, intrinsics from "
            "--camera-info-topic)."
        )
    if not args.rgb_topic or not args.depth_topic:
        raise ValueError("--rosbag needs --rgb-topic and --depth-topic.")
    dataset = build_corpus_from_rosbag(args.rosbag, source_name=args.source_name, **rosbag_options(args))
    prepare_output_dir(output_dir, overwrite=args.overwrite, what=what)
    paths = save_corpus(dataset, output_dir, splits={args.split: list(range(len(dataset)))})
    print(f"{len(dataset)} frames of {args.rosbag} -> {paths}")
    return 0
