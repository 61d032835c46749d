"""``vanishing-depth complete``: complete sparse or holed depth with a trained model, one file or whole recordings.

- one frame: ``--rgb --depth --out`` (a 16-bit millimetre PNG and a side-by-side picture);
- a folder pair: ``--rgb-dir --depth-dir --depth-format --output-dir`` (files paired as ``build-corpus`` pairs them);
- a ROS 1 / ROS 2 (sqlite3, MCAP) recording: ``--rosbag --rgb-topic --depth-topic [--camera-info-topic] --output-dir``
  (`vanishing_depth.data.read_rosbag_frames`: its encodings, pairing and alignment rule).

Recordings are streamed and completed in batches (``--batch-size``) with a progress bar, into
``<output-dir>/depth/<frame>.png`` (16-bit millimetres, 0 = no prediction) and, with ``--pointcloud``,
``<output-dir>/pointcloud/<frame>.ply`` (binary PLY, metres in the camera frame, coloured). A rerun resumes: frames whose
outputs exist are skipped (and counted) without being decoded again; ``--overwrite`` empties the folder and redoes all.
Each file is written under a temporary name and renamed, so an interrupted run leaves no half-written frame.
``--rerun OUT.rrd`` (with ``rerun-sdk`` installed) also logs each frame's RGB, input and completed depth, pinhole camera
and point cloud for the Rerun viewer.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import depth_to_pointcloud, load_depth, load_rgb, read_rosbag_frames, save_depth, write_ply
from ..data.corpora import pair_rgbd_files
from ..data.pointcloud import check_intrinsics
from ..inference import MAX_PNG_DEPTH_M, complete_depth_file, load_completion_processor
from ..output_paths import inputs_inside, prepare_output_dir, prepare_output_file
from ..pipeline_vanishing_depth import DepthCompletionPipeline, load_completion_model
from .build_corpus import add_rosbag_arguments, rosbag_options

logger = logging.getLogger(__name__)

__all__ = ["add_complete_subcommand", "complete_frames", "run_complete"]

DEPTH_SUBDIR = "depth"
POINTCLOUD_SUBDIR = "pointcloud"
_PARTIAL = ".partial"


def add_complete_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "complete",
        help="Complete sparse or holed depth with a trained model: one file (--rgb/--depth/--out), a folder pair "
        "(--rgb-dir/--depth-dir) or a ROS bag (--rosbag) into --output-dir (16-bit mm PNGs, optional PLY clouds).",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="A folder with a trained decoder: RUN/pretraining (VanishingDepthForPretraining) or a depth head "
        "(VanishingDepthForDepthEstimation). An encoder folder is refused.",
    )
    single = parser.add_argument_group("one frame")
    single.add_argument("--rgb", help="RGB image file.")
    single.add_argument("--depth", help="Sparse or holed depth file.")
    single.add_argument("--out", help="Output 16-bit PNG in millimetres (0 = no prediction).")
    folders = parser.add_argument_group("a folder pair")
    folders.add_argument("--rgb-dir", help="Folder of RGB frames.")
    folders.add_argument("--depth-dir", help="Folder of depth maps (their unit: --depth-format).")
    folders.add_argument("--match", default="stem", choices=["stem", "sorted", "number"], help="Pairing of the files.")
    folders.add_argument(
        "--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="For --pointcloud (pixels)."
    )
    add_rosbag_arguments(parser, "intrinsics for --pointcloud")
    parser.add_argument("--depth-format", default="auto", help="mm, kitti, tum, sunrgbd, nyu_raw, float or auto.")
    parser.add_argument("--output-dir", help="Folder for depth/<frame>.png (and pointcloud/<frame>.ply).")
    parser.add_argument("--pointcloud", action="store_true", help="Also write a binary PLY point cloud per frame.")
    parser.add_argument("--batch-size", type=int, default=4, help="Frames per forward pass.")
    parser.add_argument(
        "--rerun",
        metavar="OUT.rrd",
        help="Also log RGB, input depth, completed depth and the point cloud of each frame completed by this run to a "
        "Rerun recording (needs `pip install rerun-sdk`; open it with `rerun OUT.rrd`).",
    )
    parser.add_argument("--size", type=int, default=None, help="Processing short edge in px (default: the model's).")
    parser.add_argument(
        "--keep-measured", action="store_true", help="Measured pixels pass through unchanged (metres as read)."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --out (and its preview), or empty --output-dir and redo every frame instead of resuming.",
    )
    parser.set_defaults(func=run_complete)
    return parser


def _refuse(args: argparse.Namespace, names: Iterable[str], mode: str) -> None:
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply to {mode}.")


def _require(args: argparse.Namespace, names: Iterable[str], mode: str) -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names if not getattr(args, name)]
    if missing:
        raise ValueError(f"{mode} needs {', '.join(missing)}.")


def run_complete(args: argparse.Namespace) -> int:
    bag_only = ("rgb_topic", "depth_topic", "camera_info_topic", "resize_depth")
    if args.rosbag:
        mode = "--rosbag"
        _require(args, ("rgb_topic", "depth_topic", "output_dir"), mode)
        _refuse(args, ("rgb", "depth", "out", "rgb_dir", "depth_dir", "intrinsics"), mode)
    elif args.rgb_dir or args.depth_dir:
        mode = "--rgb-dir/--depth-dir"
        _require(args, ("rgb_dir", "depth_dir", "output_dir"), mode)
        _refuse(args, ("rgb", "depth", "out", *bag_only), mode)
        if args.pointcloud and not args.intrinsics:
            raise ValueError("--pointcloud over folders needs --intrinsics FX FY CX CY (pixels of the RGB frames).")
    else:
        mode = "--rgb/--depth/--out"
        _require(args, ("rgb", "depth", "out"), "one frame (or --rgb-dir/--depth-dir, --rosbag)")
        _refuse(args, ("output_dir", "pointcloud", "intrinsics", "rerun", *bag_only), f"{mode} (one frame)")
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
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    inputs = (args.rosbag,) if args.rosbag else (args.rgb_dir, args.depth_dir)
    for source in inputs_inside(args.output_dir, inputs):
        raise ValueError(f"--output-dir {args.output_dir!r} holds the input {source!r}; choose another folder.")

    if args.rosbag:
        reader = read_rosbag_frames(args.rosbag, **rosbag_options(args))
        if args.pointcloud and reader.intrinsics is None:
            raise ValueError("--pointcloud needs intrinsics: pass --camera-info-topic (the colour CameraInfo).")
        frame_ids = [f"{stamp:019d}" for stamp in reader.stamps_ns]

        def frames(skip: set[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple | None]]:
            skip_stamps = {int(frame_id) for frame_id in skip}
            for frame in reader.frames(skip_stamps_ns=skip_stamps):
                yield frame.frame_id, frame.rgb, frame.depth_m, frame.intrinsics

    else:
        pairs = pair_rgbd_files(Path(args.rgb_dir), Path(args.depth_dir), args.match)
        frame_ids = [rgb.stem for rgb, _ in pairs]
        if len(set(frame_ids)) != len(frame_ids):
            raise ValueError("RGB file stems must be unique: they name the output files.")
        intrinsics = None if args.intrinsics is None else tuple(check_intrinsics(args.intrinsics, "--intrinsics"))

        def frames(skip: set[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple | None]]:
            for rgb_path, depth_path in pairs:
                if rgb_path.stem not in skip:
                    depth_m = load_depth(depth_path, format=args.depth_format)
                    yield rgb_path.stem, np.asarray(load_rgb(rgb_path)), depth_m, intrinsics

    done, skipped = complete_frames(
        args.model,
        frame_ids,
        frames,
        args.output_dir,
        batch_size=args.batch_size,
        pointcloud=args.pointcloud,
        keep_measured=args.keep_measured,
        size=args.size,
        overwrite=args.overwrite,
        rerun_path=args.rerun,
    )
    print(
        f"{done} frame(s) completed, {skipped} skipped (already written in {args.output_dir}; --overwrite redoes "
        f"them) -> {Path(args.output_dir) / DEPTH_SUBDIR}"
        + (f" and {Path(args.output_dir) / POINTCLOUD_SUBDIR}" if args.pointcloud else "")
    )
    return 0


def _outputs(output_dir: Path, frame_id: str, pointcloud: bool) -> list[Path]:
    paths = [output_dir / DEPTH_SUBDIR / f"{frame_id}.png"]
    if pointcloud:
        paths.append(output_dir / POINTCLOUD_SUBDIR / f"{frame_id}.ply")
    return paths


def _partial(path: Path) -> Path:
    return path.with_name(path.stem + _PARTIAL + path.suffix)


def complete_frames(
    model_dir: str | os.PathLike,
    frame_ids: list[str],
    frames: Callable[[set[str]], Iterable[tuple[str, np.ndarray, np.ndarray, tuple | None]]],
    output_dir: str | os.PathLike,
    batch_size: int = 4,
    pointcloud: bool = False,
    keep_measured: bool = False,
    size: int | None = None,
    overwrite: bool = False,
    rerun_path: str | os.PathLike | None = None,
) -> tuple[int, int]:
    """Complete a stream of frames in batches into `output_dir`, resuming where a previous run stopped.

    Args:
        model_dir: a folder with a trained decoder (refused otherwise, before anything is written).
        frame_ids: every frame's id, in order (names the output files).
        frames: ``frames(skip_ids)`` yields ``(frame_id, rgb (H, W, 3) uint8, depth_m (h, w) metres, intrinsics)``
            for the frames not in `skip_ids`, reading each one only when it is reached.
        output_dir: receives ``depth/<id>.png`` (16-bit millimetres) and, with `pointcloud`, ``pointcloud/<id>.ply``.
        overwrite: empty `output_dir` first and redo every frame; without it frames whose outputs exist are skipped.
        rerun_path: also log each frame this call completes (RGB, input depth, completed depth, pinhole camera, point
            cloud) to this Rerun ``.rrd`` recording; needs ``rerun-sdk`` (an optional package).

    Returns:
        ``(frames completed, frames skipped as already written)``.
    """
    output_dir = Path(output_dir)
    if rerun_path is not None:
        _check_rerun_path(Path(rerun_path), output_dir, overwrite)
    model = load_completion_model(str(model_dir))  # refuses a folder without a trained decoder, before writing
    processor = load_completion_processor(model_dir, model, size=size)
    completion = DepthCompletionPipeline(model=model, image_processor=processor)
    if overwrite:
        prepare_output_dir(output_dir, overwrite=True, what="completed-depth folder")
    else:
        prepare_output_dir(
            output_dir,
            what="completed-depth folder",
            ways_out="a rerun into the same folder resumes only where it holds depth/ and pointcloud/ alone",
            allowed_existing=(DEPTH_SUBDIR, POINTCLOUD_SUBDIR),
        )
    for subdir in (DEPTH_SUBDIR, POINTCLOUD_SUBDIR) if pointcloud else (DEPTH_SUBDIR,):
        (output_dir / subdir).mkdir(exist_ok=True)
        for leftover in (output_dir / subdir).glob(f"*{_PARTIAL}.*"):  # an interrupted write
            leftover.unlink()
    finished = {f for f in frame_ids if all(path.is_file() for path in _outputs(output_dir, f, pointcloud))}
    if finished:
        logger.info("%s: %d of %d frames already written, skipped.", output_dir, len(finished), len(frame_ids))
    todo = len(frame_ids) - len(finished)
    done = 0
    position = {frame_id: index for index, frame_id in enumerate(frame_ids)}
    recording = None if rerun_path is None else _rerun_recording(Path(rerun_path))

    def to_rerun(frame_id, rgb, depth_in_m, completed_m, intrinsics, points, colours) -> None:
        _log_to_rerun(recording, position[frame_id], rgb, depth_in_m, completed_m, intrinsics, points, colours)

    log = None if recording is None else to_rerun

    with tqdm(total=todo, desc="completing depth", unit="frame") as progress:
        batch: list[tuple[str, np.ndarray, np.ndarray, tuple | None]] = []
        for frame in frames(finished):
            batch.append(frame)
            if len(batch) == batch_size:
                done += _complete_batch(completion, batch, output_dir, pointcloud, keep_measured, batch_size, log)
                progress.update(len(batch))
                batch = []
        if batch:
            done += _complete_batch(completion, batch, output_dir, pointcloud, keep_measured, batch_size, log)
            progress.update(len(batch))
    if recording is not None:
        recording.flush()
        recording.disconnect()
    return done, len(finished)


def _complete_batch(
    completion, batch, output_dir: Path, pointcloud: bool, keep_measured: bool, batch_size: int, log
) -> int:
    items = [{"image": rgb, "depth": depth_m} for _, rgb, depth_m, _ in batch]
    results = completion(items, batch_size=batch_size, keep_measured=keep_measured)
    for (frame_id, rgb, depth_in_m, intrinsics), result in zip(batch, results):
        completed = np.clip(result["predicted_depth"].numpy(), 0.0, MAX_PNG_DEPTH_M)
        depth_path, *cloud_path = _outputs(output_dir, frame_id, pointcloud)
        points = colours = None
        if intrinsics is not None and (cloud_path or log is not None):
            points, colours = depth_to_pointcloud(completed, intrinsics, rgb=rgb)
        if cloud_path:
            write_ply(_partial(cloud_path[0]), points, colours)
            os.replace(_partial(cloud_path[0]), cloud_path[0])
        if log is not None:
            log(frame_id, rgb, depth_in_m, completed, intrinsics, points, colours)
        # The depth PNG last: a frame counts as done once it exists (with its point cloud where asked for).
        save_depth(_partial(depth_path), completed, "mm")
        os.replace(_partial(depth_path), depth_path)
    return len(batch)


def _check_rerun_path(path: Path, output_dir: Path, overwrite: bool) -> None:
    """Refuse a ``--rerun`` path before any work: no Rerun SDK, not ``.rrd``, inside `output_dir`, or existing."""
    if importlib.util.find_spec("rerun") is None:  # optional: only --rerun needs it
        raise ValueError("--rerun needs the Rerun SDK: pip install rerun-sdk (or leave --rerun out).")
    if path.suffix != ".rrd":
        raise ValueError(f"--rerun must name a .rrd file, got {str(path)!r}.")
    if path.resolve().is_relative_to(output_dir.resolve()):
        raise ValueError(f"--rerun {str(path)!r} must lie outside --output-dir (it holds only depth/ and pointcloud/).")
    prepare_output_file(path, overwrite=overwrite, what="Rerun recording")


def _rerun_recording(path: Path):
    """A Rerun recording streaming to `path` (checked by `_check_rerun_path`)."""
    import rerun as rr  # optional: only --rerun needs it

    recording = rr.RecordingStream("vanishing-depth complete")
    recording.save(str(path))
    return recording


def _log_to_rerun(recording, index, rgb, depth_in_m, completed_m, intrinsics, points, colours) -> None:
    """One frame on the ``frame`` timeline: the pinhole camera with its RGB, input and completed depth (metres), and the
    point cloud in the camera frame (x right, y down, z forward)."""
    import rerun as rr  # optional, present: `_check_rerun_path` checked it

    recording.set_time("frame", sequence=index)
    height, width = completed_m.shape
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics
        recording.log(
            "camera/image",
            rr.Pinhole(focal_length=[fx, fy], principal_point=[cx, cy], width=width, height=height),
        )
    recording.log("camera/image/rgb", rr.Image(rgb))
    recording.log("camera/image/depth_input", rr.DepthImage(np.asarray(depth_in_m, np.float32), meter=1.0))
    recording.log("camera/image/depth_completed", rr.DepthImage(completed_m.astype(np.float32), meter=1.0))
    if points is not None:
        recording.log("camera/points", rr.Points3D(points, colors=colours))
