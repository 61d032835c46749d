# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""RGB-D corpora as `datasets`: building one from real folder layouts, saving and loading it, the bundled demo.

A corpus is a `datasets.Dataset` in the schema of `vanishing_depth.data.schema` (``image``, ``depth``,
``depth_scale``, ``intrinsics``, ``source``, ``frame_id``). `build_corpus_from_folder` converts a folder of RGB
frames and a folder of depth maps, `to_corpus_schema` renames the columns of another RGB-D dataset.

On disk a corpus is parquet in the Hub layout ``<dir>/data/<split>-00000-of-00001.parquet`` (`save_corpus`), which
``datasets.load_dataset("parquet", data_dir=<dir>)``, ``load_dataset(<dir>)``, a Hub upload of the folder and
`load_corpus` all read. The bundled demo corpus (`load_demo_corpus`) uses it too.

Example::

    corpus = build_corpus_from_folder(
        "nyu/rgb", "nyu/depth", "mm", "nyu_v2", intrinsics=(518.86, 519.47, 325.58, 253.74), match="number"
    )
    save_corpus(corpus, "corpora/nyu_v2", splits={"train": range(1000), "test": range(1000, len(corpus))})

Mixing several corpora for pretraining: `vanishing_depth.data.mixing`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as SequenceABC
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Image, IterableDataset, load_dataset
from PIL import Image as PILImage
from tqdm.auto import tqdm

from .depth_io import DEPTH_FORMATS, encode_depth, load_depth
from .image_io import UNREADABLE_IMAGE_ERRORS, rgb_array
from .pointcloud import check_intrinsics
from .rosbag import read_rosbag_frames
from .schema import (
    ASPECT_TOLERANCE,
    COUNT_FORMATS,
    DECODED_FORMATS,
    RGBD_CORPUS_COLUMNS,
    check_corpus_columns,
    check_depth_scale,
    rgbd_corpus_features,
    same_view,
)

logger = logging.getLogger(__name__)

__all__ = [
    "load_split",
    "DEMO_CORPUS_NAME",
    "build_corpus_from_folder",
    "build_corpus_from_rosbag",
    "demo_corpus_path",
    "load_corpus",
    "load_demo_corpus",
    "pair_rgbd_files",
    "save_corpus",
    "to_corpus_schema",
]

DEMO_CORPUS_NAME = "redwood_demo"

RGB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".npy", ".npz")
MATCH_MODES = ("stem", "sorted", "number")


# ----------------------------------------------------------------------------------------------------------------------
# Folder conversion
# ----------------------------------------------------------------------------------------------------------------------


def _check_depth_format(depth_format: str) -> None:
    known = [name for name in DEPTH_FORMATS if name in COUNT_FORMATS + DECODED_FORMATS]
    if depth_format not in known:
        raise ValueError(f"`depth_format` must be one of {known}, got {depth_format!r}.")


def _list_files(directory: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"`{what}` must be an existing directory, got {str(directory)!r}.")
    files, ignored = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (files if path.suffix.lower() in suffixes else ignored).append(path)
    if ignored:
        logger.info(
            "%s: ignoring %d file(s) without a %s suffix: %s",
            what,
            len(ignored),
            suffixes,
            [p.name for p in ignored[:10]],
        )
    if not files:
        raise ValueError(f"`{what}` {str(directory)!r} holds no files with suffixes {suffixes}.")
    return files


def _last_number(stem: str) -> str | None:
    numbers = re.findall(r"\d+", stem)
    return str(int(numbers[-1])) if numbers else None


def _pair_by_key(rgb_files: list[Path], depth_files: list[Path], key, what: str) -> list[tuple[Path, Path]]:
    def index(files: list[Path], side: str) -> dict[str, Path]:
        table: dict[str, Path] = {}
        for path in files:
            k = key(path)
            if k is None:
                raise ValueError(f"match={what!r}: {side} file {path.name!r} has no number in its name.")
            if k in table:
                raise ValueError(
                    f"match={what!r}: {side} files {table[k].name!r} and {path.name!r} share the key {k!r}."
                )
            table[k] = path
        return table

    rgb_by_key, depth_by_key = index(rgb_files, "RGB"), index(depth_files, "depth")
    rgb_only = sorted(p.name for k, p in rgb_by_key.items() if k not in depth_by_key)
    depth_only = sorted(p.name for k, p in depth_by_key.items() if k not in rgb_by_key)
    if rgb_only or depth_only:
        raise ValueError(
            f"match={what!r}: {len(rgb_only)} RGB file(s) without depth {rgb_only[:20]} and {len(depth_only)} depth "
            f"file(s) without RGB {depth_only[:20]}. Remove them, use match='sorted', or pass pairs_file."
        )
    return [(rgb_by_key[k], depth_by_key[k]) for k in sorted(rgb_by_key, key=lambda k: rgb_by_key[k].name)]


def _pairs_from_file(pairs_file: Path, rgb_files: list[Path], depth_files: list[Path]) -> list[tuple[Path, Path]]:
    rgb_by_name = {p.name: p for p in rgb_files}
    depth_by_name = {p.name: p for p in depth_files}
    pairs = []
    for number, line in enumerate(pairs_file.read_text().splitlines(), start=1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        if len(tokens) == 4:  # TUM `associate.py` output: "t_rgb rgb/x.png t_depth depth/y.png"
            tokens = [tokens[1], tokens[3]]
        if len(tokens) != 2:
            raise ValueError(
                f"`pairs_file` {str(pairs_file)!r} line {number}: expected 'rgb depth' (or TUM 't rgb t depth'), "
                f"got {line!r}."
            )
        first, second = (Path(token).name for token in tokens)
        if first in rgb_by_name and second in depth_by_name:
            pairs.append((rgb_by_name[first], depth_by_name[second]))
        elif first in depth_by_name and second in rgb_by_name:  # e.g. Open3D's rgbd.match lists depth first
            pairs.append((rgb_by_name[second], depth_by_name[first]))
        else:
            raise ValueError(
                f"`pairs_file` {str(pairs_file)!r} line {number}: {tokens} do not name one file of `rgb_dir` and one "
                "of `depth_dir`."
            )
    if not pairs:
        raise ValueError(f"`pairs_file` {str(pairs_file)!r} lists no pairs.")
    return pairs


def pair_rgbd_files(
    rgb_dir: Path, depth_dir: Path, match: str = "stem", pairs_file: str | os.PathLike | None = None
) -> list[tuple[Path, Path]]:
    """(RGB file, depth file) pairs of two folders, matched as `build_corpus_from_folder` describes (`match`,
    `pairs_file`); unmatched files raise a ValueError that lists them."""
    rgb_files = _list_files(rgb_dir, RGB_SUFFIXES, "rgb_dir")
    depth_files = _list_files(depth_dir, DEPTH_SUFFIXES, "depth_dir")
    if pairs_file is not None:
        return _pairs_from_file(Path(pairs_file), rgb_files, depth_files)
    if match not in MATCH_MODES:
        raise ValueError(f"`match` must be one of {list(MATCH_MODES)}, got {match!r}.")
    if match == "sorted":
        if len(rgb_files) != len(depth_files):
            raise ValueError(
                f"match='sorted' needs as many RGB as depth files, got {len(rgb_files)} RGB and {len(depth_files)} "
                f"depth files (first unpaired: "
                f"{[p.name for p in (rgb_files if len(rgb_files) > len(depth_files) else depth_files)][min(len(rgb_files), len(depth_files)) :][:20]})."
            )
        return list(zip(rgb_files, depth_files))
    if match == "stem":
        return _pair_by_key(rgb_files, depth_files, lambda p: p.stem, match)
    return _pair_by_key(rgb_files, depth_files, lambda p: _last_number(p.stem), match)


def _encode_png16(counts: np.ndarray) -> bytes:
    height, width = counts.shape
    buffer = io.BytesIO()
    PILImage.frombytes("I;16", (width, height), counts.astype("<u2").tobytes()).save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_float_tiff(depth_m: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(depth_m, dtype=np.float32)).save(
        buffer, format="TIFF", compression="tiff_adobe_deflate"
    )
    return buffer.getvalue()


def _is_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _depth_entry(path: Path, depth_format: str, checked: bool = False) -> tuple[dict, float]:
    """The ``depth`` cell and its ``depth_scale`` for one depth file (`checked`: `_check_pair` has read it)."""
    if depth_format in COUNT_FORMATS:
        scale = float(DEPTH_FORMATS[depth_format].metres_per_unit)
        if _is_png(path):
            if not checked:
                load_depth(path, depth_format)  # validates: 8-bit, colour, negative values, wrong format
            # Keep the original 16-bit PNG bytes: no re-encoding, exact counts.
            return {"bytes": path.read_bytes(), "path": path.name}, scale
        # 16-bit counts in another container (TIFF, .npy): re-encoding as PNG is lossless for these formats.
        counts = encode_depth(load_depth(path, depth_format), depth_format)
        return {"bytes": _encode_png16(counts), "path": path.stem + ".png"}, scale
    return {"bytes": _encode_float_tiff(load_depth(path, depth_format)), "path": path.stem + ".tiff"}, 1.0


def _check_pair(rgb_path: Path, depth_path: Path, depth_format: str) -> tuple[Path, str] | None:
    """Read one pair fully; ``(bad file, reason)`` when it cannot become a usable row, else None."""
    try:
        # The whole file, as the decoder will open it: a truncated JPEG fails here, not in the middle of a run.
        rgb_size = rgb_array(rgb_path, str(rgb_path)).shape[:2]
    except UNREADABLE_IMAGE_ERRORS as error:
        return rgb_path, f"unreadable RGB image: {type(error).__name__}: {error}"
    try:
        depth_size = tuple(load_depth(depth_path, depth_format).shape)
    except UNREADABLE_IMAGE_ERRORS as error:
        return depth_path, f"unreadable depth ({depth_format!r}): {type(error).__name__}: {error}"
    if rgb_size != depth_size:
        if not same_view(rgb_size, depth_size):
            return depth_path, (
                f"depth {depth_size[0]}x{depth_size[1]} is not the view of RGB {rgb_path.name!r} "
                f"{rgb_size[0]}x{rgb_size[1]} (aspect ratios differ by more than {ASPECT_TOLERANCE:.0%})"
            )
        logger.info(
            "%s: depth %s and RGB %s differ in resolution, not in view; the decoder resizes depth (nearest neighbour).",
            depth_path,
            depth_size,
            rgb_size,
        )
    return None


def _folder_rows(pairs: list[tuple[str, str, str]], depth_format: str, source_name: str, intrinsics: Any, **_stamp):
    for rgb_path, depth_path, frame_id in pairs:
        rgb_path, depth_path = Path(rgb_path), Path(depth_path)
        depth_cell, scale = _depth_entry(depth_path, depth_format, checked=True)
        frame_intrinsics = intrinsics.get(frame_id) if isinstance(intrinsics, Mapping) else intrinsics
        yield {
            "image": {"bytes": rgb_path.read_bytes(), "path": rgb_path.name},
            "depth": depth_cell,
            "depth_scale": scale,
            "intrinsics": None if frame_intrinsics is None else list(frame_intrinsics),
            "source": source_name,
            "frame_id": frame_id,
        }


def _files_stamp(paths: Iterable[str | os.PathLike]) -> str:
    """A digest of the files' paths, sizes and modification times: passed to `Dataset.from_generator` so that its
    cache key changes when a file does, not only when a path does."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build_corpus_from_folder(
    rgb_dir: str | os.PathLike,
    depth_dir: str | os.PathLike,
    depth_format: str,
    source_name: str,
    intrinsics: SequenceABC[float] | Mapping[str, SequenceABC[float]] | None = None,
    match: str = "stem",
    pairs_file: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    on_bad_file: str = "skip",
    bad_files: list | None = None,
):
    """Convert a folder of RGB frames and a folder of depth maps into a corpus `datasets.Dataset`.

    Pairing (files directly inside each folder; hidden files and unknown suffixes are ignored and logged):

    - ``match="stem"``: identical file stems (``00010.jpg`` with ``00010.png``);
    - ``match="number"``: the last number in the stem (``rgb_00010.jpg`` with ``sync_depth_00010.png``);
    - ``match="sorted"``: the i-th RGB file with the i-th depth file in sorted name order (counts must agree);
    - ``pairs_file``: a text file with one pair per line, ``rgb depth`` or ``depth rgb`` (told apart by which folder
      holds the name; Open3D ``rgbd.match`` style) or TUM ``associate.py`` lines ``t rgb t depth``; only the file
      names count, ``#`` starts a comment. Overrides ``match``.

    Unmatched files raise a ValueError that lists them. Rows are in RGB-name order, ``frame_id`` is the RGB stem.

    Storage: RGB keeps the original file bytes. Depth formats that are a plain scale (``"mm"`` 0.001, ``"kitti"``
    1/256, ``"tum"`` 1/5000) keep their 16-bit counts (the original PNG bytes) with that ``depth_scale``; formats that
    need decoding (``"sunrgbd"``, ``"nyu_raw"``, ``"float"``) are stored as float32 metres (TIFF, ``depth_scale``
    1.0).

    Bad files: every pair is read in full first (with a progress bar). A pair whose RGB or depth file cannot be read
    (corrupt, truncated, 8-bit or colour depth, negative values, a wrong format) or whose depth is not the RGB's view
    (another aspect ratio) is a bad pair: with ``on_bad_file="skip"`` it is left out, the file and the reason are
    logged and appended to `bad_files` as ``(path, reason)``; with ``"raise"`` the first one raises a ValueError
    naming the file. Depth of the RGB's aspect ratio but another resolution is kept (the decoder resizes it with
    nearest neighbour).

    Args:
        rgb_dir, depth_dir: the two folders (may be the same folder if the suffixes tell RGB and depth apart, e.g.
            with ``pairs_file``).
        depth_format: a `depth_io.DEPTH_FORMATS` name: "mm", "kitti", "tum", "sunrgbd", "nyu_raw" or "float".
        source_name: the corpus name written to the ``source`` column.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels for every frame, a mapping ``frame_id -> (fx, fy, cx, cy)``
            (frames not in it get null), or None.
        cache_dir: where `datasets` writes the Arrow cache (default: the `datasets` cache).
        on_bad_file: ``"skip"`` (default) or ``"raise"``.
        bad_files: a list that receives ``(path, reason)`` for every skipped pair.

    Returns:
        A `datasets.Dataset` with `RGBD_CORPUS_FEATURES`.

    Raises:
        ValueError: bad arguments, unmatched files, or no good pair at all (the message lists the bad files).
    """
    _check_depth_format(depth_format)
    if not isinstance(source_name, str) or not source_name:
        raise ValueError(f"`source_name` must be a non-empty string, got {source_name!r}.")
    if on_bad_file not in ("skip", "raise"):
        raise ValueError(f"`on_bad_file` must be 'skip' or 'raise', got {on_bad_file!r}.")
    if bad_files is not None and not isinstance(bad_files, list):
        raise ValueError(f"`bad_files` must be a list (it receives (path, reason) pairs) or None, got {bad_files!r}.")
    # Tuples, not lists: `datasets` treats list-valued generator arguments as shards.
    if isinstance(intrinsics, Mapping):
        intrinsics = {str(k): tuple(check_intrinsics(v, f"intrinsics[{k!r}]")) for k, v in intrinsics.items()}
    elif intrinsics is not None:
        intrinsics = tuple(check_intrinsics(intrinsics, "intrinsics"))
    pairs = pair_rgbd_files(Path(rgb_dir), Path(depth_dir), match, pairs_file)
    rows = [(str(rgb), str(depth), rgb.stem) for rgb, depth in pairs]
    frame_ids = [frame_id for _, _, frame_id in rows]
    if len(set(frame_ids)) != len(frame_ids):
        duplicated = sorted({f for f in frame_ids if frame_ids.count(f) > 1})
        raise ValueError(f"RGB stems must be unique to serve as frame ids; duplicated: {duplicated[:20]}.")
    if isinstance(intrinsics, Mapping):
        unknown = sorted(set(intrinsics) - set(frame_ids))
        if unknown:
            raise ValueError(f"`intrinsics` names frame ids that are not in the folders: {unknown[:20]}.")

    good, bad = [], []
    for rgb, depth, frame_id in tqdm(rows, desc="checking RGB-D pairs", unit="pair", leave=False):
        problem = _check_pair(Path(rgb), Path(depth), depth_format)
        if problem is None:
            good.append((rgb, depth, frame_id))
            continue
        path, reason = problem
        if on_bad_file == "raise":
            raise ValueError(f"{path}: {reason}.")
        logger.warning("build_corpus_from_folder: skipping %s: %s.", path, reason)
        bad.append((str(path), reason))
    if bad_files is not None:
        bad_files.extend(bad)
    if not good:
        listed = "; ".join(f"{path}: {reason}" for path, reason in bad[:10])
        raise ValueError(
            f"no usable RGB-D pair in {str(rgb_dir)!r} / {str(depth_dir)!r}: all {len(bad)} are bad ({listed})."
        )
    if bad:
        logger.warning("build_corpus_from_folder: %d of %d pairs skipped as bad files.", len(bad), len(rows))
    if isinstance(intrinsics, Mapping):
        kept = {frame_id for _, _, frame_id in good}
        intrinsics = {k: v for k, v in intrinsics.items() if k in kept}

    stamp = _files_stamp(path for rgb, depth, _ in good for path in (rgb, depth))
    logger.info(
        "build_corpus_from_folder: %d pairs from %s and %s (format %r).", len(good), rgb_dir, depth_dir, depth_format
    )
    return Dataset.from_generator(
        _folder_rows,
        features=rgbd_corpus_features(),
        cache_dir=None if cache_dir is None else str(cache_dir),
        gen_kwargs={
            "pairs": good,
            "depth_format": depth_format,
            "source_name": source_name,
            "intrinsics": intrinsics,
            "stamp": stamp,
        },
    )


def _encode_png_rgb(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _rosbag_rows(reader, source_name: str, **_stamp):
    for frame in tqdm(reader, total=len(reader), desc="reading bag frames", unit="frame", leave=False):
        if frame.depth_is_millimetres:  # integer millimetres: the 16-bit PNG holds them exactly
            depth_cell, scale = {"bytes": _encode_png16(encode_depth(frame.depth_m, "mm"))}, 0.001
        else:  # 32FC1 metres keep their float precision
            depth_cell, scale = {"bytes": _encode_float_tiff(frame.depth_m)}, 1.0
        suffix = ".png" if scale != 1.0 else ".tiff"
        yield {
            "image": {"bytes": _encode_png_rgb(frame.rgb), "path": f"{frame.frame_id}.png"},
            "depth": {**depth_cell, "path": f"{frame.frame_id}{suffix}"},
            "depth_scale": scale,
            "intrinsics": None if frame.intrinsics is None else list(frame.intrinsics),
            "source": source_name,
            "frame_id": frame.frame_id,
        }


def build_corpus_from_rosbag(
    path: str | os.PathLike,
    rgb_topic: str,
    depth_topic: str,
    source_name: str,
    camera_info_topic: str | None = None,
    max_time_offset_ms: float = 20.0,
    every_nth: int = 1,
    resize_depth: bool = False,
    cache_dir: str | os.PathLike | None = None,
):
    """Convert the registered RGB-D frames of a ROS 1 / ROS 2 (sqlite3, MCAP) recording into a corpus `Dataset`.

    Frames come from `vanishing_depth.data.read_rosbag_frames` (its encodings, timestamp pairing, alignment rule and
    `resize_depth`). RGB is stored as lossless PNG; ``16UC1`` / ``mono16`` / compressedDepth 16UC1 depth as 16-bit
    millimetre PNG (``depth_scale`` 0.001, exact), ``32FC1`` depth as float32 TIFF in metres (``depth_scale`` 1.0);
    ``intrinsics`` are the colour ``CameraInfo``'s at the colour size (rescaled when the ``CameraInfo`` is for another
    size), or null without `camera_info_topic`; ``frame_id`` is the colour timestamp in ns (19 digits).

    Returns:
        A `datasets.Dataset` with `RGBD_CORPUS_FEATURES`; save it with `save_corpus`.
    """
    if not isinstance(source_name, str) or not source_name:
        raise ValueError(f"`source_name` must be a non-empty string, got {source_name!r}.")
    reader = read_rosbag_frames(
        path,
        rgb_topic=rgb_topic,
        depth_topic=depth_topic,
        camera_info_topic=camera_info_topic,
        max_time_offset_ms=max_time_offset_ms,
        every_nth=every_nth,
        resize_depth=resize_depth,
    )
    # The `datasets` cache key follows the recording's files' sizes and mtimes, not only its path.
    files_in_bag = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
    stamp = _files_stamp(file.resolve() for file in files_in_bag)
    return Dataset.from_generator(
        _rosbag_rows,
        features=rgbd_corpus_features(),
        cache_dir=None if cache_dir is None else str(cache_dir),
        gen_kwargs={
            "reader": reader,
            "source_name": source_name,
            "stamp": stamp,
        },
    )


def to_corpus_schema(
    dataset,
    source_name: str,
    depth_scale: float,
    image_column: str | None = None,
    depth_column: str | None = None,
    intrinsics: SequenceABC[float] | None = None,
    frame_id_column: str | None = None,
):
    """Bring an RGB-D `datasets.Dataset` / `IterableDataset` with other column names into the corpus schema.

    Finds the RGB column among ``image``, ``rgb``, ``pixel_values`` and the depth column among ``depth``,
    ``depth_map`` unless named, adds ``depth_scale`` (e.g. 1.0 for ``sayakpaul/nyu_depth_v2``'s float metres, 0.001
    for millimetre PNGs), ``intrinsics`` (or null), ``source`` and ``frame_id`` (``frame_id_column`` or the row
    index as 8 digits), and drops other columns. Depth must be 16-bit or float, which `decode_rgbd_row` checks.
    """
    columns = list(dataset.column_names or [])

    def pick(given: str | None, candidates: tuple[str, ...], what: str) -> str:
        if given is not None:
            if given not in columns:
                raise ValueError(f"`{what}` {given!r} is not a column; columns are {columns}.")
            return given
        for name in candidates:
            if name in columns:
                return name
        raise ValueError(
            f"no {what.replace('_column', '')} column among {list(candidates)}; columns are {columns}. Pass `{what}`."
        )

    image_column = pick(image_column, ("image", "rgb", "pixel_values"), "image_column")
    depth_column = pick(depth_column, ("depth", "depth_map"), "depth_column")
    scale = check_depth_scale(depth_scale, "`depth_scale`")
    fixed_intrinsics = None if intrinsics is None else check_intrinsics(intrinsics, "intrinsics")
    if frame_id_column is not None and frame_id_column not in columns:
        raise ValueError(f"`frame_id_column` {frame_id_column!r} is not a column; columns are {columns}.")

    def add_columns(row: dict, index: int) -> dict:
        return {
            "image": row[image_column],
            "depth": row[depth_column],
            "depth_scale": scale,
            "intrinsics": fixed_intrinsics,
            "source": source_name,
            "frame_id": str(row[frame_id_column]) if frame_id_column else f"{index:08d}",
        }

    # Undecoded images pass through `map` as bytes, so nothing is re-encoded.
    dataset = dataset.cast_column(image_column, Image(decode=False)).cast_column(depth_column, Image(decode=False))
    drop = [c for c in columns if c not in RGBD_CORPUS_COLUMNS or c in (image_column, depth_column)]
    mapped = dataset.map(
        add_columns, with_indices=True, remove_columns=drop, features=rgbd_corpus_features(decode=False)
    )
    return mapped.cast(rgbd_corpus_features(decode=True))


# ----------------------------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------------------------


def save_corpus(
    dataset,
    out_dir: str | os.PathLike,
    splits: Mapping[str, SequenceABC[int]] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a corpus as parquet in the Hub layout ``<out_dir>/data/<split>-00000-of-00001.parquet``.

    Args:
        dataset: a corpus `datasets.Dataset` (or a `DatasetDict`, whose keys become the splits).
        out_dir: target folder (created).
        splits: for a `Dataset`, ``{split name: row indices}``; the index sets must not overlap. Default: all rows
            as ``"train"``.
        overwrite: replace existing ``*.parquet`` files in ``<out_dir>/data`` (all of them, so that no stale split
            survives); without it existing parquet files raise.

    Returns:
        ``{split: parquet path}``. Read it back with `load_corpus` or ``datasets.load_dataset(out_dir)``.
    """
    if isinstance(dataset, DatasetDict):
        if splits is not None:
            raise ValueError("`splits` must be None when `dataset` is a DatasetDict (its keys are the splits).")
        parts = dict(dataset)
    elif isinstance(dataset, Dataset):
        if splits is None:
            splits = {"train": range(len(dataset))}
        seen: dict[int, str] = {}
        parts = {}
        for name, indices in splits.items():
            indices = [int(i) for i in indices]
            bad = [i for i in indices if not 0 <= i < len(dataset)]
            if bad:
                raise ValueError(f"`splits[{name!r}]` has indices outside [0, {len(dataset)}): {bad[:10]}.")
            overlap = sorted(i for i in indices if i in seen)
            if overlap:
                raise ValueError(f"`splits` overlap: rows {overlap[:10]} are in {name!r} and {seen[overlap[0]]!r}.")
            seen.update(dict.fromkeys(indices, name))
            parts[name] = dataset.select(indices)
    else:
        raise ValueError(f"`dataset` must be a datasets.Dataset or DatasetDict, got {type(dataset).__name__}.")
    for name, part in parts.items():
        if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise ValueError(f"split names must match [A-Za-z0-9_.]+, got {name!r}.")
        check_corpus_columns(part, f"split {name!r}")

    data_dir = Path(out_dir) / "data"
    existing = sorted(data_dir.glob("*.parquet")) if data_dir.is_dir() else []
    if existing and not overwrite:
        raise ValueError(
            f"`out_dir` {str(out_dir)!r} already holds {[p.name for p in existing]}; pass overwrite=True to replace."
        )
    for path in existing:
        logger.info("save_corpus: removing %s", path)
        path.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, part in parts.items():
        path = data_dir / f"{name}-00000-of-00001.parquet"
        part = part.select_columns([c for c in RGBD_CORPUS_COLUMNS if c in part.column_names])
        part.to_parquet(str(path))
        written[name] = path
        logger.info("save_corpus: %d rows -> %s", len(part), path)
    return written


def demo_corpus_path() -> Path:
    """Folder of the bundled Redwood living-room demo corpus (inside the installed package)."""
    return Path(str(files("vanishing_depth").joinpath("data", DEMO_CORPUS_NAME)))


def _local_split_files(folder: Path, split: str) -> list[str]:
    candidates = [
        sorted(folder.glob(f"data/{split}-*.parquet")),
        sorted(folder.glob(f"{split}-*.parquet")),
        sorted(folder.glob(f"data/{split}/*.parquet")),
        sorted(folder.glob(f"{split}/*.parquet")),
    ]
    for found in candidates:
        if found:
            return [str(p) for p in found]
    available = sorted(
        {
            re.sub(r"-\d+-of-\d+$", "", p.stem)
            for p in list(folder.glob("data/*.parquet")) + list(folder.glob("*.parquet"))
        }
    )
    raise ValueError(f"no parquet files for split {split!r} in {str(folder)!r}; available splits: {available}.")


def load_corpus(path_or_repo_id: str | os.PathLike, split: str = "train", streaming: bool = False, **load_kwargs):
    """Load one split of a corpus saved by `save_corpus`, from a folder, a parquet file or a Hub dataset repo.

    Args:
        path_or_repo_id: a local folder (``data/<split>-*.parquet``, ``<split>-*.parquet`` or ``<split>/*.parquet``),
            a ``.parquet`` file (``split`` is then ignored), ``"redwood_demo"`` for the bundled demo corpus, or a Hub
            repo id (read with ``datasets.load_dataset``).
        split: split name.
        streaming: return an `IterableDataset` that reads lazily.
        **load_kwargs: passed to ``datasets.load_dataset`` (e.g. ``revision``, ``cache_dir``).

    Returns:
        `datasets.Dataset` or `IterableDataset` with the corpus columns (images decode to PIL on access).
    """
    if str(path_or_repo_id) == DEMO_CORPUS_NAME:
        return load_demo_corpus(split, streaming=streaming)
    path = Path(path_or_repo_id)
    if path.is_dir():
        dataset = load_dataset(
            "parquet", data_files=_local_split_files(path, split), split="train", streaming=streaming, **load_kwargs
        )
    elif path.is_file():
        if path.suffix != ".parquet":
            raise ValueError(f"`path_or_repo_id` as a file must be .parquet, got {str(path)!r}.")
        dataset = load_dataset("parquet", data_files=[str(path)], split="train", streaming=streaming, **load_kwargs)
    else:
        dataset = load_dataset(str(path_or_repo_id), split=split, streaming=streaming, **load_kwargs)
    check_corpus_columns(dataset, f"corpus {str(path_or_repo_id)!r}")
    return dataset


def load_demo_corpus(split: str = "train", streaming: bool = False):
    """The bundled demo corpus: 26 Redwood living-room frames (Augmented ICL-NUIM, CC BY 3.0; see its
    ATTRIBUTION.md), 640x480, clean millimetre depth, intrinsics (525, 525, 319.5, 239.5).

    Args:
        split: ``"train"`` (frames 00000-00004 and 00010-00170, 22 rows) or ``"test"`` (00180-00210, 4 rows).
        streaming: return an `IterableDataset`.
    """
    folder = demo_corpus_path()
    if not (folder / "data").is_dir():
        raise FileNotFoundError(
            f"the demo corpus is missing at {folder}: the package was installed without its data files "
            "(package-data 'data/**/*'); rebuild it with scripts/build_redwood_demo.py."
        )
    if split not in ("train", "test"):
        raise ValueError(f"`split` of the demo corpus must be 'train' or 'test', got {split!r}.")
    return load_corpus(folder, split=split, streaming=streaming)


def load_split(dataset: Any, split: str, max_samples: int | None = None):
    """One split as a `datasets.Dataset`: from a `Dataset` (returned as is), a `DatasetDict`, the bundled demo
    corpus name ``"redwood_demo"``, a local folder / parquet file in the Hub layout, or a Hub dataset id."""
    if isinstance(dataset, Dataset | IterableDataset):
        data = dataset
    elif isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"split {split!r} is not in the dataset; it has {sorted(dataset)}.")
        data = dataset[split]
    elif isinstance(dataset, str | os.PathLike):
        path = str(dataset)
        if path == DEMO_CORPUS_NAME:
            data = load_corpus(path, split=split)
        elif Path(path).is_file() and path.endswith(".parquet"):
            data = load_dataset("parquet", data_files=[path], split="train")
        else:
            data = load_dataset(path, split=split)
    else:
        raise ValueError(
            f"`dataset` must be a datasets.Dataset / DatasetDict, a path or a Hub id, got {type(dataset)}."
        )
    if max_samples is not None:
        if isinstance(data, IterableDataset):
            data = data.take(max_samples)
        elif max_samples < len(data):
            logger.info("Using the first %d of %d examples of split %r.", max_samples, len(data), split)
            data = data.select(range(max_samples))
    return data
