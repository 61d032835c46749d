# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""The RGB-D corpus schema: its columns and `datasets` features, and how one row decodes into RGB and metric depth.

Schema (`RGBD_CORPUS_FEATURES`, one row per RGB-D frame)
=========================================================

=============== ================================== ==============================================================
column          feature                            meaning
=============== ================================== ==============================================================
``image``       ``Image()``                        the RGB frame (any PIL-readable file; decoded to RGB uint8)
``depth``       ``Image()``                        the depth map, either a **16-bit PNG** (PIL mode ``I;16``) of
                                                   integer counts or a **float32 TIFF** (PIL mode ``F``); never
                                                   8-bit (mode ``L``), which cannot hold metric depth
``depth_scale`` ``Value("float32")``               metres per stored unit: 0.001 for a millimetre PNG, 1/256 for
                                                   KITTI, 1/5000 for TUM, 1.0 for float metres
``intrinsics``  ``Sequence(Value("float32"), 4)``  ``(fx, fy, cx, cy)`` in pixels of this image, or null if unknown
``source``      ``Value("string")``                corpus name, e.g. ``"redwood_livingroom1"``
``frame_id``    ``Value("string")``                identifier of the frame inside its corpus (file stem)
=============== ================================== ==============================================================

Metric depth is ``stored value * depth_scale`` metres, with 0 = no measurement (`decode_rgbd_row`, which calls the
package's one depth decoder, `vanishing_depth.data.depth_io.decode_depth`, and its one image opener,
`vanishing_depth.data.image_io.rgb_array`; the fine-tuning collator calls the same two). Depth stays in its original
16-bit form where the format is a plain scale (``mm``, ``kitti``, ``tum``) and becomes float32 metres where it needs
decoding (``sunrgbd``, ``nyu_raw``, ``float``; see `vanishing_depth.data.depth_io`).

Depth of another resolution than its RGB frame
----------------------------------------------
A corpus row is a registered RGB-D frame. A depth map with the RGB frame's aspect ratio (within 1 %, `same_view`) but
another resolution (e.g. depth stored at half resolution) is the same view sampled more coarsely: it is resized to the
RGB size with **nearest neighbour** (`resize_depth_nearest`). Nearest neighbour is the right interpolation for metric
depth: every output pixel is a depth some pixel actually measured (bilinear or area resampling would invent depths
between a foreground and a background surface, "flying pixels"), and a missing pixel (0) stays missing instead of
dragging its neighbours towards 0 m. A depth map of another aspect ratio cannot be the same view without the
calibration. Resizing instead of skipping keeps such corpora in the equal-probability mix (`vanishing_depth.data.
mixing`): a corpus stored at two resolutions is not silently drawn less often.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from datasets import Features, Image, Sequence, Value

from .depth_io import decode_depth
from .image_io import UnsupportedImageError, rgb_array

__all__ = [
    "ASPECT_TOLERANCE",
    "COUNT_FORMATS",
    "DECODED_FORMATS",
    "RGBD_CORPUS_COLUMNS",
    "RGBD_CORPUS_FEATURES",
    "RGBDCorpusFormatError",
    "decode_rgbd_row",
    "resize_depth_nearest",
    "rgbd_corpus_features",
    "same_view",
]

RGBD_CORPUS_COLUMNS = ("image", "depth", "depth_scale", "intrinsics", "source", "frame_id")

# Depth formats (names of `depth_io.DEPTH_FORMATS`) kept as their original integer counts plus a scale; the others
# are decoded to float32 metres at conversion time because their mapping is not a plain scale.
COUNT_FORMATS = ("mm", "kitti", "tum")
DECODED_FORMATS = ("sunrgbd", "nyu_raw", "float")

#: Largest relative difference of the RGB and depth aspect ratios for which a depth map of another resolution is taken
#: as the same view and resized (nearest neighbour) instead of skipped.
ASPECT_TOLERANCE = 0.01


def rgbd_corpus_features(decode: bool = True) -> Features:
    """The corpus schema as `datasets.Features`; `decode=False` keeps images as ``{"bytes", "path"}`` dicts."""
    return Features(
        {
            "image": Image(decode=decode),
            "depth": Image(decode=decode),
            "depth_scale": Value("float32"),
            "intrinsics": Sequence(Value("float32"), length=4),
            "source": Value("string"),
            "frame_id": Value("string"),
        }
    )


RGBD_CORPUS_FEATURES = rgbd_corpus_features(decode=True)


class RGBDCorpusFormatError(ValueError):
    """A row breaks the corpus schema (8-bit or colour depth, missing column, bad `depth_scale`).

    Such an error concerns the whole corpus rather than one damaged frame, so `RGBDSampleDecoder` re-raises it
    instead of skipping the row.
    """


def check_corpus_columns(dataset, what: str) -> None:
    """Raise a ValueError naming `what` when `dataset` lacks corpus columns (``intrinsics`` may be missing)."""
    columns = dataset.column_names
    if columns is None:  # an IterableDataset of unknown features: checked when rows are decoded
        return
    missing = [c for c in RGBD_CORPUS_COLUMNS if c not in columns and c != "intrinsics"]
    if missing:
        raise ValueError(
            f"{what} lacks corpus column(s) {missing}; got columns {columns}. Convert it with to_corpus_schema()."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Decoding one row
# ----------------------------------------------------------------------------------------------------------------------


def check_depth_scale(value: Any, what: str = "row['depth_scale']") -> float:
    """A ``depth_scale`` cell as a Python float (metres per stored unit), or an `RGBDCorpusFormatError`.

    The column is float32; its shortest decimal form gives back the intended value (0.001, not 0.0010000000475), so
    every reader of a row multiplies by the same number.
    """
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise RGBDCorpusFormatError(
            f"{what} must be a positive float (metres per stored unit), got {value!r}."
        ) from None
    if not np.isfinite(scale) or scale <= 0:
        raise RGBDCorpusFormatError(f"{what} must be a finite float > 0 (metres per unit), got {value!r}.")
    return float(str(np.float32(scale)))


def check_row(row: Mapping[str, Any]) -> float:
    """The row's schema (columns, `depth_scale`); returns the scale."""
    missing = [name for name in ("image", "depth", "depth_scale") if name not in row]
    if missing:
        raise RGBDCorpusFormatError(
            f"`row` lacks column(s) {missing}; a corpus row needs {list(RGBD_CORPUS_COLUMNS)}, got {sorted(row)}."
        )
    return check_depth_scale(row["depth_scale"])


def decode_rgb_cell(value: Any) -> np.ndarray:
    """A row's ``image`` cell -> uint8 (H, W, 3); an unsupported kind of data is a schema error."""
    try:
        return rgb_array(value, "row['image']")
    except UnsupportedImageError as error:
        raise RGBDCorpusFormatError(str(error)) from None


def decode_depth_cell(value: Any, depth_scale: float) -> np.ndarray:
    """A row's ``depth`` cell -> float32 metres (H, W), 0 = missing; 8-bit or colour depth is a schema error."""
    try:
        return decode_depth(value, depth_scale=depth_scale, what="row['depth']")
    except UnsupportedImageError as error:
        raise RGBDCorpusFormatError(
            f"{error} A corpus stores depth as a 16-bit PNG (mode 'I;16') with depth_scale, or as a float32 TIFF "
            "(mode 'F') in metres."
        ) from None


def decode_rgbd_row(row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one corpus row into RGB and metric depth.

    Args:
        row: a mapping with at least ``image``, ``depth`` and ``depth_scale``; images may be PIL images (decoded
            `datasets` rows), ``{"bytes", "path"}`` dicts (``Image(decode=False)``), file paths or numpy arrays.

    Returns:
        ``rgb``: uint8 (H, W, 3); ``depth_m``: float32 (H', W') metres, ``stored value * depth_scale``, 0 = missing.
        RGB and depth sizes are returned as stored (not resized); `RGBDSampleDecoder` resizes depth of the same
        view (`resize_depth_nearest`) and skips depth of another aspect ratio.

    Raises:
        RGBDCorpusFormatError (a ValueError): a missing column, 8-bit (mode ``L``) or colour depth, a non-uint8 RGB
            array, or a non-positive `depth_scale`.
        ValueError: negative depth values.
        OSError / PIL.UnidentifiedImageError: unreadable image bytes.
    NaN / inf depth values are set to 0 with a `RuntimeWarning`.
    """
    scale = check_row(row)
    return decode_rgb_cell(row["image"]), decode_depth_cell(row["depth"], scale)


def same_view(rgb_size: tuple[int, int], depth_size: tuple[int, int], tolerance: float = ASPECT_TOLERANCE) -> bool:
    """Whether a depth map of (H, W) `depth_size` can be the view of an RGB frame of `rgb_size`: equal aspect ratios
    within `tolerance` (relative)."""
    (rgb_h, rgb_w), (depth_h, depth_w) = rgb_size, depth_size
    if min(rgb_h, rgb_w, depth_h, depth_w) <= 0:
        return False
    return abs(rgb_h * depth_w - rgb_w * depth_h) <= tolerance * rgb_h * depth_w


def resize_depth_nearest(depth_m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a metric depth map to (height, width): every output pixel takes the value of the
    input pixel under its centre, so no depth is invented between surfaces and 0 (missing) stays 0."""
    in_h, in_w = depth_m.shape
    rows = np.minimum(((np.arange(height) + 0.5) * in_h / height).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * in_w / width).astype(np.int64), in_w - 1)
    return np.ascontiguousarray(depth_m[rows[:, None], cols[None, :]])
