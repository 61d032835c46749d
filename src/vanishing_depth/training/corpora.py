"""RGB-D corpora as `datasets`: one documented schema, converters from real folder layouts, equal-probability mixing.

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

Metric depth is ``stored value * depth_scale`` metres, with 0 = no measurement (`decode_rgbd_row`). Depth stays in
its original 16-bit form where the format is a plain scale (``mm``, ``kitti``, ``tum``) and becomes float32 metres
where it needs decoding (``sunrgbd``, ``nyu_raw``, ``float``; see `vanishing_depth.processing.depth_io`).

On disk a corpus is parquet in the Hub layout ``<dir>/data/<split>-00000-of-00001.parquet`` (`save_corpus`), which
``datasets.load_dataset("parquet", data_dir=<dir>)``, ``load_dataset(<dir>)``, a Hub upload of the folder and
`load_corpus` all read. The bundled demo corpus (`load_demo_corpus`) uses it too.

Pretraining (METHOD §2.1, §2.8)
===============================
`prepare_pretraining_corpus` loads several corpora, mixes them so that **every corpus is drawn with equal
probability regardless of its size** (``interleave_datasets(probabilities=[1/n]*n, stopping_strategy=
"all_exhausted")``: small corpora are repeated until the largest is used up), works map-style or streaming, and gives
each process of a multi-process run its own shard (``split_dataset_by_node``). Images stay undecoded in the dataset;
`RGBDSampleDecoder` decodes rows (e.g. as a DataLoader ``collate_fn``) and **skips and counts by cause** rows whose
image cannot be read (``unreadable_image``), whose depth cannot be read (``unreadable_depth``), whose depth is of
another view than the RGB (``size_mismatch``) and rows with fewer than ``min_valid_pixels`` (100) valid depth pixels
(``too_few_valid``), logging the frame ids and file names.

Depth of another resolution than its RGB frame
----------------------------------------------
A corpus row is a registered RGB-D frame. A depth map with the RGB frame's aspect ratio (within 1 %) but another
resolution (e.g. depth stored at half resolution) is the same view sampled more coarsely: it is resized to the RGB
size with **nearest neighbour** and counted as ``resized_depth``. Nearest neighbour is the right interpolation for
metric depth: every output pixel is a depth some pixel actually measured (bilinear or area resampling would invent
depths between a foreground and a background surface, "flying pixels"), and a missing pixel (0) stays missing instead
of dragging its neighbours towards 0 m. A depth map of another aspect ratio cannot be the same view without the
calibration, so it is skipped and counted as ``size_mismatch``. Resizing instead of skipping keeps such corpora in the
equal-probability mix (METHOD §2.8): a corpus stored at two resolutions is not silently drawn less often.

Example::

    corpus = build_corpus_from_folder(
        "nyu/rgb", "nyu/depth", "mm", "nyu_v2", intrinsics=(518.86, 519.47, 325.58, 253.74), match="number"
    )
    save_corpus(corpus, "corpora/nyu_v2", splits={"train": range(1000), "test": range(1000, len(corpus))})

    pretraining = prepare_pretraining_corpus(
        ["corpora/nyu_v2", "redwood_demo"], streaming=True, seed=0, rank=rank, world_size=world_size
    )
    loader = DataLoader(pretraining.dataset, batch_size=8, collate_fn=pretraining.decoder)
    run_stats = RGBDSkipStats()
    for batch in loader:  # a DecodedRGBDBatch
        run_stats.merge(batch.stats)
        for sample in batch.samples:  # RGBDSample: rgb uint8 (H, W, 3), depth_m float32 (H, W)
            ...
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    Image,
    IterableDataset,
    Sequence,
    Value,
    interleave_datasets,
    load_dataset,
)
from datasets.distributed import split_dataset_by_node
from PIL import Image as PILImage
from PIL import ImageOps

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_CORPUS_NAME",
    "RGBD_CORPUS_COLUMNS",
    "RGBD_CORPUS_FEATURES",
    "SKIP_CAUSES",
    "DecodedRGBDBatch",
    "PretrainingCorpus",
    "RGBDCorpusFormatError",
    "RGBDSample",
    "RGBDSampleDecoder",
    "RGBDSkipStats",
    "build_corpus_from_folder",
    "decode_rgbd_row",
    "demo_corpus_path",
    "load_corpus",
    "load_demo_corpus",
    "mix_corpora",
    "prepare_pretraining_corpus",
    "rgbd_corpus_features",
    "save_corpus",
    "to_corpus_schema",
]

RGBD_CORPUS_COLUMNS = ("image", "depth", "depth_scale", "intrinsics", "source", "frame_id")
DEMO_CORPUS_NAME = "redwood_demo"

# Depth formats (names of `depth_io.DEPTH_FORMATS`) kept as their original integer counts plus a scale; the others
# are decoded to float32 metres at conversion time because their mapping is not a plain scale.
COUNT_FORMATS = ("mm", "kitti", "tum")
DECODED_FORMATS = ("sunrgbd", "nyu_raw", "float")

RGB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".npy", ".npz")
MATCH_MODES = ("stem", "sorted", "number")

_EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA")

#: Why a row is skipped, in the order every count of the package lists them.
SKIP_CAUSES = ("unreadable_image", "unreadable_depth", "size_mismatch", "too_few_valid")
#: Largest relative difference of the RGB and depth aspect ratios for which a depth map of another resolution is taken
#: as the same view and resized (nearest neighbour) instead of skipped.
ASPECT_TOLERANCE = 0.01
# What damaged image bytes raise inside PIL / numpy (corrupt, truncated, decompression bombs).
_UNREADABLE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    PILImage.DecompressionBombError,
)


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


# ----------------------------------------------------------------------------------------------------------------------
# Decoding one row
# ----------------------------------------------------------------------------------------------------------------------


def _open_image_value(value: Any, column: str) -> PILImage.Image | np.ndarray:
    """Turn what a corpus row holds (PIL image, ``{"bytes", "path"}`` dict, path, array) into a loaded image/array."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, PILImage.Image):
        image = value
    elif isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            image = PILImage.open(io.BytesIO(data))
        elif path:
            image = PILImage.open(path)
        else:
            raise ValueError(f"row[{column!r}] holds neither bytes nor a path: {value!r}.")
    elif isinstance(value, (str, os.PathLike)):
        image = PILImage.open(value)
    elif value is None:
        raise ValueError(f"row[{column!r}] is None.")
    else:
        raise RGBDCorpusFormatError(
            f"row[{column!r}] must be a PIL image, a {{'bytes', 'path'}} dict, a path or an array, "
            f"got {type(value).__name__}."
        )
    image.load()  # force decoding now, so truncated or corrupt bytes fail here
    if image.getexif().get(0x0112, 1) != 1:  # same EXIF orientation handling as `datasets.Image`
        image = ImageOps.exif_transpose(image)
    return image


def _decode_rgb(value: Any) -> np.ndarray:
    image = _open_image_value(value, "image")
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
            raise RGBDCorpusFormatError(
                f"row['image'] as an array must be uint8 (H, W, 3), got {array.dtype} {array.shape}."
            )
        return np.ascontiguousarray(array[..., :3])
    if image.mode != "RGB":
        logger.debug("Converting an RGB frame from PIL mode %s to RGB.", image.mode)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _check_depth_scale(value: Any) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise RGBDCorpusFormatError(
            f"row['depth_scale'] must be a positive float (metres per stored unit), got {value!r}."
        ) from None
    if not np.isfinite(scale) or scale <= 0:
        raise RGBDCorpusFormatError(f"row['depth_scale'] must be a finite float > 0 (metres per unit), got {value!r}.")
    # The column is float32; its shortest decimal form gives back the intended value (0.001, not 0.0010000000475).
    return float(str(np.float32(scale)))


def _depth_values(value: Any) -> np.ndarray:
    """Stored depth values (H, W) as uint16 / int32 counts or float32, refusing 8-bit and colour depth."""
    depth = _open_image_value(value, "depth")
    if isinstance(depth, PILImage.Image):
        mode = depth.mode
        if mode in _EIGHT_BIT_MODES:
            raise RGBDCorpusFormatError(
                f"row['depth'] is 8-bit (PIL mode {mode!r}), which cannot hold metric depth; store depth as a 16-bit "
                "PNG (mode 'I;16') with depth_scale, or as a float32 TIFF (mode 'F') in metres."
            )
        if mode not in ("I", "F") and not mode.startswith("I;16"):
            raise RGBDCorpusFormatError(
                f"row['depth'] must be single-channel 16-bit or float (PIL mode 'I;16', 'I' or 'F'), got mode {mode!r} "
                "(a colour image or a colourised depth visualisation?)."
            )
        array = np.asarray(depth)
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)  # I;16B decodes to a big-endian dtype
        return array
    array = depth
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise RGBDCorpusFormatError(f"row['depth'] must be an (H, W) map, got an array of shape {array.shape}.")
    if array.dtype == np.bool_ or (np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize == 1):
        raise RGBDCorpusFormatError(
            f"row['depth'] is an 8-bit array ({array.dtype}), which cannot hold metric depth; use uint16 counts with "
            "depth_scale, or float32 metres."
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise RGBDCorpusFormatError(f"row['depth'] must be an integer or float array, got {array.dtype}.")
    return array


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
        RGBDCorpusFormatError (a ValueError): a missing column, 8-bit (mode ``L``) or colour depth, or a
            non-positive `depth_scale`.
        ValueError: negative depth values.
        OSError / PIL.UnidentifiedImageError: unreadable image bytes.
    NaN / inf depth values are set to 0 with a `RuntimeWarning`.
    """
    scale = _check_row(row)
    return _decode_rgb(row["image"]), _decode_depth(row["depth"], scale)


def _check_row(row: Mapping[str, Any]) -> float:
    """The row's schema (columns, `depth_scale`); returns the scale."""
    missing = [name for name in ("image", "depth", "depth_scale") if name not in row]
    if missing:
        raise RGBDCorpusFormatError(
            f"`row` lacks column(s) {missing}; a corpus row needs {list(RGBD_CORPUS_COLUMNS)}, got {sorted(row)}."
        )
    return _check_depth_scale(row["depth_scale"])


def _decode_depth(value: Any, scale: float) -> np.ndarray:
    """A ``depth`` cell -> float32 metres (H, W), 0 = missing."""
    from vanishing_depth.processing.depth_io import decode_depth_array

    values = _depth_values(value)
    if np.issubdtype(values.dtype, np.floating):
        # Warns on NaN/inf (-> 0) and raises on negative values.
        depth_m = decode_depth_array(values.astype(np.float32, copy=False), "float")
        if scale != 1.0:
            depth_m = (depth_m.astype(np.float64) * scale).astype(np.float32)
        return depth_m
    if values.size and values.min() < 0:
        raise ValueError(
            f"row['depth'] must be >= 0 (0 = missing), got {int(np.count_nonzero(values < 0))} negative "
            f"value(s), min {int(values.min())}."
        )
    return (values.astype(np.float64) * scale).astype(np.float32)


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


# ----------------------------------------------------------------------------------------------------------------------
# Robust decoding for long runs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class RGBDSample:
    """One decoded frame: ``rgb`` uint8 (H, W, 3), ``depth_m`` float32 (H, W) metres (0 = missing),
    ``intrinsics`` float32 (4,) ``(fx, fy, cx, cy)`` in pixels or None, and the row's ``source`` / ``frame_id``."""

    rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: np.ndarray | None
    source: str
    frame_id: str


@dataclass
class RGBDSkipStats:
    """Counts of decoded and skipped rows, by cause (`SKIP_CAUSES`). Add the ``stats`` of every batch to one instance
    in the training loop (``run_stats.merge(batch.stats)``): with DataLoader workers the decoder's own counters live in
    the workers.

    ``decoded`` counts the good rows, ``resized_depth`` those of them whose depth was resized to the RGB size
    (nearest neighbour, same view at another resolution); ``rows_read`` = good + skipped rows.
    """

    decoded: int = 0
    skipped_unreadable_image: int = 0
    skipped_unreadable_depth: int = 0
    skipped_size_mismatch: int = 0
    skipped_too_few_valid: int = 0
    resized_depth: int = 0

    @property
    def skipped_unreadable(self) -> int:
        return self.skipped_unreadable_image + self.skipped_unreadable_depth

    @property
    def skipped(self) -> int:
        return sum(getattr(self, f"skipped_{cause}") for cause in SKIP_CAUSES)

    @property
    def rows_read(self) -> int:
        return self.decoded + self.skipped

    def skipped_by_cause(self) -> dict[str, int]:
        """``{cause: count}`` for every cause of `SKIP_CAUSES`, zeros included."""
        return {cause: getattr(self, f"skipped_{cause}") for cause in SKIP_CAUSES}

    def merge(self, other: RGBDSkipStats) -> RGBDSkipStats:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class DecodedRGBDBatch:
    """What `RGBDSampleDecoder` returns for a list of rows: the good samples, the ids of skipped rows by cause,
    and the counts of this batch in ``stats``."""

    samples: list[RGBDSample] = field(default_factory=list)
    skipped_unreadable_image: list[str] = field(default_factory=list)
    skipped_unreadable_depth: list[str] = field(default_factory=list)
    skipped_size_mismatch: list[str] = field(default_factory=list)
    skipped_too_few_valid: list[str] = field(default_factory=list)
    stats: RGBDSkipStats = field(default_factory=RGBDSkipStats)

    @property
    def skipped_unreadable(self) -> list[str]:
        return self.skipped_unreadable_image + self.skipped_unreadable_depth

    def __len__(self) -> int:
        return len(self.samples)


def _cell_path(row: Any, column: str) -> str | None:
    value = row.get(column) if isinstance(row, Mapping) else None
    if isinstance(value, Mapping) and value.get("path"):
        return str(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    filename = getattr(value, "filename", None)  # a PIL image opened from a file
    return str(filename) if filename else None


def _row_label(row: Any, index: int | None) -> str:
    source = row.get("source") if isinstance(row, Mapping) else None
    frame_id = row.get("frame_id") if isinstance(row, Mapping) else None
    label = f"{source or '?'}/{frame_id if frame_id is not None else '?'}"
    return label if index is None else f"{label} (row {index})"


def _undecoded(rows: Any) -> Any:
    """A `datasets` corpus whose image columns decode on access would raise inside `datasets` on one corrupt row;
    switch them to ``decode=False`` (a schema change only) so the decoder sees the bytes and can skip the row."""
    if not isinstance(rows, (Dataset, IterableDataset)) or rows.features is None:
        return rows
    for column in ("image", "depth"):
        feature = rows.features.get(column)
        if isinstance(feature, Image) and feature.decode:
            rows = rows.cast_column(column, Image(decode=False))
    return rows


class RGBDSampleDecoder:
    """Decode corpus rows, skipping (and counting, by cause) rows that cannot be used.

    Causes (`SKIP_CAUSES`): ``unreadable_image`` / ``unreadable_depth`` (corrupt or truncated bytes, negative depth),
    ``size_mismatch`` (depth of another aspect ratio than the RGB, so not the same view) and ``too_few_valid`` (fewer
    than ``min_valid_pixels`` valid depth pixels; METHOD §2.1 resamples such frames, and in a stream skipping them is
    the same). A depth map of the RGB's aspect ratio but another resolution is resized to the RGB size with nearest
    neighbour and counted in ``resized_depth`` (see the module docstring for why). One bad file cannot end a long run,
    but a skip is never silent: it is counted in ``stats`` (and in the ``stats`` of the returned batch), its
    ``source/frame_id`` and file name are logged (up to ``max_logged`` per cause, then only counted) and the ids are
    kept in ``skipped_ids`` (the latest ``max_logged`` per cause). Schema errors (`RGBDCorpusFormatError`: 8-bit
    depth, a missing column, ...) concern the whole corpus and are raised.

    Use it as a ``collate_fn`` over undecoded rows (``Image(decode=False)``, as `prepare_pretraining_corpus` gives):
    ``DataLoader(corpus.dataset, batch_size=8, collate_fn=RGBDSampleDecoder())`` yields `DecodedRGBDBatch` objects
    (possibly with fewer samples than rows, possibly empty); ``iterate(dataset)`` accepts decoding datasets too.

    Args:
        min_valid_pixels: rows whose depth has fewer valid (> 0) pixels are skipped.
        require_same_size: skip rows whose depth is not of the RGB's view (another aspect ratio); False returns them
            unresized.
        resize_depth: resize depth of the RGB's aspect ratio but another resolution to the RGB size (nearest
            neighbour); False treats it as a size mismatch.
        max_logged: how many skips per cause are logged and remembered.
    """

    def __init__(
        self,
        min_valid_pixels: int = 100,
        require_same_size: bool = True,
        max_logged: int = 1000,
        resize_depth: bool = True,
    ):
        if not isinstance(min_valid_pixels, (int, np.integer)) or min_valid_pixels < 0:
            raise ValueError(f"`min_valid_pixels` must be an int >= 0, got {min_valid_pixels!r}.")
        if not isinstance(max_logged, (int, np.integer)) or max_logged < 0:
            raise ValueError(f"`max_logged` must be an int >= 0, got {max_logged!r}.")
        self.min_valid_pixels = int(min_valid_pixels)
        self.require_same_size = bool(require_same_size)
        self.resize_depth = bool(resize_depth)
        self.max_logged = int(max_logged)
        self.stats = RGBDSkipStats()
        self.skipped_ids: dict[str, list[str]] = {cause: [] for cause in SKIP_CAUSES}

    @property
    def skipped_too_few_valid(self) -> int:
        return self.stats.skipped_too_few_valid

    @property
    def skipped_unreadable(self) -> int:
        return self.stats.skipped_unreadable

    def reset_counts(self) -> None:
        self.stats = RGBDSkipStats()
        self.skipped_ids = {key: [] for key in self.skipped_ids}

    def _record_skip(self, cause: str, label: str, message: str, batch: DecodedRGBDBatch | None) -> None:
        attribute = f"skipped_{cause}"
        setattr(self.stats, attribute, getattr(self.stats, attribute) + 1)
        if batch is not None:
            setattr(batch.stats, attribute, getattr(batch.stats, attribute) + 1)
            getattr(batch, attribute).append(label)
        ids = self.skipped_ids[cause]
        ids.append(label)
        if len(ids) > self.max_logged:
            del ids[0]
        count = getattr(self.stats, attribute)
        if count <= self.max_logged:
            logger.warning("Skipping %s: %s (%s #%d).", label, message, attribute, count)
            if count == self.max_logged:
                logger.warning("Further %s rows are counted but no longer logged.", attribute)

    def decode(self, row: Mapping[str, Any], index: int | None = None) -> RGBDSample | None:
        """Decode one row (``index``: its position in a stream, for the log); None (counted) for a skipped row."""
        return self._decode(row, index, None)

    def _decode(self, row: Mapping[str, Any], index: int | None, _batch: DecodedRGBDBatch | None) -> RGBDSample | None:
        label = _row_label(row, index)
        scale = _check_row(row)  # schema errors concern the corpus: raised
        # PIL reports corrupt files as OSError / UnidentifiedImageError, some truncated ones as SyntaxError.
        try:
            rgb = _decode_rgb(row["image"])
        except RGBDCorpusFormatError:
            raise
        except _UNREADABLE_ERRORS as error:
            file = _cell_path(row, "image")
            where = f"image {file!r}" if file else "image"
            self._record_skip("unreadable_image", label, f"unreadable {where}: {type(error).__name__}: {error}", _batch)
            return None
        try:
            depth_m = _decode_depth(row["depth"], scale)
        except RGBDCorpusFormatError:
            raise
        except _UNREADABLE_ERRORS as error:
            file = _cell_path(row, "depth")
            where = f"depth {file!r}" if file else "depth"
            self._record_skip("unreadable_depth", label, f"unreadable {where}: {type(error).__name__}: {error}", _batch)
            return None
        resized = False
        if rgb.shape[:2] != depth_m.shape:
            if self.resize_depth and same_view(rgb.shape[:2], depth_m.shape):
                depth_m = resize_depth_nearest(depth_m, *rgb.shape[:2])
                resized = True
            elif self.require_same_size:
                self._record_skip(
                    "size_mismatch",
                    label,
                    f"RGB {rgb.shape[:2]} and depth {depth_m.shape} are not one view (aspect ratios differ by more "
                    f"than {ASPECT_TOLERANCE:.0%})",
                    _batch,
                )
                return None
        num_valid = int(np.count_nonzero(depth_m > 0))
        if num_valid < self.min_valid_pixels:
            self._record_skip(
                "too_few_valid",
                label,
                f"{num_valid} valid depth pixels < min_valid_pixels={self.min_valid_pixels}",
                _batch,
            )
            return None
        intrinsics = row.get("intrinsics")
        for stats in (self.stats, None if _batch is None else _batch.stats):
            if stats is not None:
                stats.decoded += 1
                stats.resized_depth += int(resized)
        return RGBDSample(
            rgb=rgb,
            depth_m=depth_m,
            intrinsics=None if intrinsics is None else np.asarray(intrinsics, dtype=np.float32),
            source=str(row.get("source", "")),
            frame_id=str(row.get("frame_id", "")),
        )

    def __call__(self, rows: SequenceABC[Mapping[str, Any]]) -> DecodedRGBDBatch:
        """Decode a list of rows (a DataLoader batch) into a `DecodedRGBDBatch`."""
        batch = DecodedRGBDBatch()
        for row in rows:
            # Rows are named by source/frame_id; a position inside a shuffled batch would identify nothing.
            sample = self._decode(row, None, batch)
            if sample is not None:
                batch.samples.append(sample)
        return batch

    def iterate(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[RGBDSample]:
        """Decode rows one by one (a list, or a `Dataset` / `IterableDataset` such as `load_corpus` returns: its image
        columns are read undecoded, so a corrupt row is skipped and counted rather than raised inside `datasets`),
        yielding only the good samples."""
        for index, row in enumerate(_undecoded(rows)):
            sample = self.decode(row, index)
            if sample is not None:
                yield sample


# ----------------------------------------------------------------------------------------------------------------------
# Folder conversion
# ----------------------------------------------------------------------------------------------------------------------


def _check_depth_format(depth_format: str) -> None:
    from vanishing_depth.processing.depth_io import DEPTH_FORMATS

    known = [name for name in DEPTH_FORMATS if name in COUNT_FORMATS + DECODED_FORMATS]
    if depth_format not in known:
        raise ValueError(f"`depth_format` must be one of {known}, got {depth_format!r}.")


def _check_intrinsics(value: Any, name: str) -> list[float]:
    try:
        values = [float(x) for x in value]
    except TypeError:
        raise ValueError(f"`{name}` must be 4 numbers (fx, fy, cx, cy) in pixels, got {value!r}.") from None
    if len(values) != 4 or not all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(
            f"`{name}` must be 4 finite numbers (fx, fy, cx, cy) in pixels with fx, fy > 0, got {value!r}."
        )
    return values


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


def _pair_files(
    rgb_dir: Path, depth_dir: Path, match: str, pairs_file: str | os.PathLike | None
) -> list[tuple[Path, Path]]:
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
    from vanishing_depth.processing.depth_io import DEPTH_FORMATS, encode_depth, load_depth

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
    from vanishing_depth.processing.depth_io import load_depth

    try:
        with PILImage.open(rgb_path) as image:
            image.load()  # the whole file: a truncated JPEG fails here, not in the middle of a training run
            rgb_size = (image.height, image.width)
    except _UNREADABLE_ERRORS as error:
        return rgb_path, f"unreadable RGB image: {type(error).__name__}: {error}"
    try:
        depth_size = tuple(load_depth(depth_path, depth_format).shape)
    except _UNREADABLE_ERRORS as error:
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
    from tqdm.auto import tqdm

    _check_depth_format(depth_format)
    if not isinstance(source_name, str) or not source_name:
        raise ValueError(f"`source_name` must be a non-empty string, got {source_name!r}.")
    if on_bad_file not in ("skip", "raise"):
        raise ValueError(f"`on_bad_file` must be 'skip' or 'raise', got {on_bad_file!r}.")
    if bad_files is not None and not isinstance(bad_files, list):
        raise ValueError(f"`bad_files` must be a list (it receives (path, reason) pairs) or None, got {bad_files!r}.")
    # Tuples, not lists: `datasets` treats list-valued generator arguments as shards.
    if isinstance(intrinsics, Mapping):
        intrinsics = {str(k): tuple(_check_intrinsics(v, f"intrinsics[{k!r}]")) for k, v in intrinsics.items()}
    elif intrinsics is not None:
        intrinsics = tuple(_check_intrinsics(intrinsics, "intrinsics"))
    pairs = _pair_files(Path(rgb_dir), Path(depth_dir), match, pairs_file)
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

    # The stamp makes the `datasets` cache key depend on the files' sizes and mtimes, not only their paths.
    digest = hashlib.sha256()
    for rgb, depth, _ in good:
        for path in (rgb, depth):
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
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
            "stamp": digest.hexdigest(),
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
    scale = _check_depth_scale(depth_scale)
    fixed_intrinsics = None if intrinsics is None else _check_intrinsics(intrinsics, "intrinsics")
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


def _check_corpus_columns(dataset, what: str) -> None:
    columns = dataset.column_names
    if columns is None:  # an IterableDataset of unknown features: checked when rows are decoded
        return
    missing = [c for c in RGBD_CORPUS_COLUMNS if c not in columns and c != "intrinsics"]
    if missing:
        raise ValueError(
            f"{what} lacks corpus column(s) {missing}; got columns {columns}. Convert it with to_corpus_schema()."
        )


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
        _check_corpus_columns(part, f"split {name!r}")

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
    from importlib.resources import files

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
    _check_corpus_columns(dataset, f"corpus {str(path_or_repo_id)!r}")
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


# ----------------------------------------------------------------------------------------------------------------------
# Mixing and sharding for pretraining
# ----------------------------------------------------------------------------------------------------------------------


def _standardise(dataset, decode: bool):
    """Same columns, order and features for every corpus, as `interleave_datasets` requires."""
    _check_corpus_columns(dataset, "a corpus")
    columns = dataset.column_names
    if columns is not None and "intrinsics" not in columns:
        if isinstance(dataset, IterableDataset):
            dataset = dataset.map(lambda row: {"intrinsics": None})
        else:
            dataset = dataset.add_column("intrinsics", [None] * len(dataset))
    dataset = dataset.select_columns(list(RGBD_CORPUS_COLUMNS))
    target = rgbd_corpus_features(decode=decode)
    if dataset.features is None:
        return dataset.cast(target)
    # Switching the decode flag of an Image column is a schema change only; `cast` would rewrite every row.
    for name in ("image", "depth"):
        if dataset.features[name] != target[name]:
            dataset = dataset.cast_column(name, target[name])
    if dict(dataset.features) != dict(target):
        dataset = dataset.cast(target)
    return dataset


def mix_corpora(
    corpora: SequenceABC,
    seed: int = 0,
    probabilities: SequenceABC[float] | None = None,
    stopping_strategy: str = "all_exhausted",
    decode: bool = True,
):
    """Interleave corpora so that each draw picks a corpus with the given probability (default: equal, METHOD §2.8).

    All corpora must be of one kind: `datasets.Dataset` (result: a `Dataset`) or `IterableDataset` (result: an
    `IterableDataset`). With ``"all_exhausted"`` the mix ends once every corpus has been used up at least once, so
    smaller corpora are repeated (oversampled) rather than the mix stopping at the smallest.

    Args:
        corpora: the corpus datasets (corpus schema; a missing ``intrinsics`` column is added as null).
        seed: seeds the choice of corpus at each draw.
        probabilities: one per corpus (normalised); default ``[1/n] * n``.
        stopping_strategy: passed to ``datasets.interleave_datasets``.
        decode: whether images decode to PIL (False keeps ``{"bytes", "path"}`` for `RGBDSampleDecoder`).
    """
    if not corpora:
        raise ValueError("`corpora` must hold at least one dataset, got an empty list.")
    kinds = {type(c).__name__ for c in corpora}
    if not (all(isinstance(c, Dataset) for c in corpora) or all(isinstance(c, IterableDataset) for c in corpora)):
        raise ValueError(f"`corpora` must be all Dataset or all IterableDataset, got {sorted(kinds)}.")
    n = len(corpora)
    if probabilities is None:
        probabilities = [1.0 / n] * n
    probabilities = [float(p) for p in probabilities]
    if len(probabilities) != n or any(not np.isfinite(p) or p < 0 for p in probabilities) or sum(probabilities) <= 0:
        raise ValueError(f"`probabilities` must be {n} non-negative numbers with a positive sum, got {probabilities}.")
    total = sum(probabilities)
    probabilities = [p / total for p in probabilities]
    standard = [_standardise(c, decode) for c in corpora]
    return interleave_datasets(standard, probabilities=probabilities, seed=seed, stopping_strategy=stopping_strategy)


@dataclass
class PretrainingCorpus:
    """The mixed, sharded pretraining stream of one process and the decoder that turns its rows into samples.

    ``dataset`` holds undecoded rows (``{"bytes", "path"}`` images); pass ``decoder`` as the DataLoader
    ``collate_fn`` or iterate ``corpus`` directly for decoded `RGBDSample` objects. Skip counts: ``decoder.stats``
    (in this process) or the ``stats`` of each `DecodedRGBDBatch`.
    """

    dataset: Any
    decoder: RGBDSampleDecoder
    source_names: list[str]
    probabilities: list[float]

    def __iter__(self) -> Iterator[RGBDSample]:
        return self.decoder.iterate(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a streaming corpus for a new epoch (map-style datasets are shuffled once, by seed)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def prepare_pretraining_corpus(
    sources: SequenceABC,
    split: str = "train",
    streaming: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    min_valid_pixels: int = 100,
    shuffle: bool = True,
    shuffle_buffer_size: int = 1000,
    num_shards: int | None = None,
) -> PretrainingCorpus:
    """Load, shuffle, mix (equal probability per corpus) and shard the pretraining corpora for one process.

    Args:
        sources: corpora as names for `load_corpus` (folder, parquet file, ``"redwood_demo"``, Hub repo id) or as
            `Dataset` / `IterableDataset` objects in the corpus schema.
        split: split to load for named sources.
        streaming: read lazily as an `IterableDataset` (in-memory `Dataset` sources are converted with
            ``to_iterable_dataset(num_shards)``); otherwise map-style (`IterableDataset` sources then raise).
        seed: seeds the per-corpus shuffles and the corpus choice at each draw; every process must use the same
            seed so that the shards are disjoint.
        rank, world_size: this process and the number of processes; each reads its own part of the mix via
            ``datasets.distributed.split_dataset_by_node``.
        min_valid_pixels: the decoder skips (and counts) frames with fewer valid depth pixels (METHOD §2.1: 100).
        shuffle: shuffle each corpus before mixing (map-style: a full permutation; streaming: a buffer of
            ``shuffle_buffer_size`` rows), so a draw from a corpus is a random frame of it (METHOD §2.8).
        num_shards: shards for in-memory sources turned into streams (default ``max(world_size, 1)``).

    Returns:
        A `PretrainingCorpus` (dataset of undecoded rows, decoder, source names, probabilities).
    """
    if not sources:
        raise ValueError("`sources` must name at least one corpus, got an empty list.")
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(
            f"`rank` must be in [0, world_size) and `world_size` >= 1, got rank={rank}, world_size={world_size}."
        )
    corpora, names = [], []
    for index, source in enumerate(sources):
        if isinstance(source, (str, os.PathLike)):
            corpus = load_corpus(source, split=split, streaming=streaming)
            names.append(str(source))
        elif isinstance(source, (Dataset, IterableDataset)):
            corpus = source
            names.append(f"<{type(source).__name__} #{index}>")
        else:
            raise ValueError(
                f"`sources[{index}]` must be a corpus name/path or a datasets Dataset/IterableDataset, "
                f"got {type(source).__name__}."
            )
        if streaming and isinstance(corpus, Dataset):
            corpus = corpus.to_iterable_dataset(num_shards=num_shards or max(world_size, 1))
        elif not streaming and isinstance(corpus, IterableDataset):
            raise ValueError(f"`sources[{index}]` is an IterableDataset; pass streaming=True to mix it.")
        if shuffle:
            if streaming:
                corpus = corpus.shuffle(seed=seed + index, buffer_size=shuffle_buffer_size)
            else:
                corpus = corpus.shuffle(seed=seed + index)
        corpora.append(corpus)

    probabilities = [1.0 / len(corpora)] * len(corpora)
    mixed = mix_corpora(corpora, seed=seed, probabilities=probabilities, decode=False)
    if world_size > 1:
        mixed = split_dataset_by_node(mixed, rank=rank, world_size=world_size)
    logger.info(
        "Pretraining corpus: %s mixed with equal probability (streaming=%s), rank %d of %d.",
        names,
        streaming,
        rank,
        world_size,
    )
    return PretrainingCorpus(
        dataset=mixed,
        decoder=RGBDSampleDecoder(min_valid_pixels=min_valid_pixels),
        source_names=names,
        probabilities=probabilities,
    )
