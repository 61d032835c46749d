# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Robust decoding of corpus rows for long runs: `RGBDSampleDecoder` decodes rows (e.g. as a DataLoader
``collate_fn``) and **skips and counts by cause** rows whose image cannot be read (``unreadable_image``), whose depth
cannot be read (``unreadable_depth``), whose depth is of another view than the RGB (``size_mismatch``) and rows with
fewer than ``min_valid_pixels`` (100) valid depth pixels (``too_few_valid``), logging the frame ids and file names.

Rows decode with `vanishing_depth.data.schema.decode_rgbd_row`'s rules; depth of the RGB's aspect ratio but another
resolution is resized with nearest neighbour (the schema module says why) and counted as ``resized_depth``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from datasets import Dataset, Image, IterableDataset

from .image_io import UNREADABLE_IMAGE_ERRORS
from .schema import (
    ASPECT_TOLERANCE,
    RGBDCorpusFormatError,
    check_row,
    decode_depth_cell,
    decode_rgb_cell,
    resize_depth_nearest,
    same_view,
)

logger = logging.getLogger(__name__)

__all__ = ["SKIP_CAUSES", "DecodedRGBDBatch", "RGBDSample", "RGBDSampleDecoder", "RGBDSkipStats"]

#: Why a row is skipped, in the order every count of the package lists them.
SKIP_CAUSES = ("unreadable_image", "unreadable_depth", "size_mismatch", "too_few_valid")


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
    than ``min_valid_pixels`` valid depth pixels; the authors' representation_dataset.py draws another frame instead,
    and in a stream skipping them is the same). A depth map of the RGB's aspect ratio but another resolution is
    resized to the RGB size with nearest neighbour and counted in ``resized_depth`` (`vanishing_depth.data.schema`
    says why). One bad file cannot end a long run, but a skip is never silent: it is counted in ``stats`` (and in
    the ``stats`` of the returned batch), its ``source/frame_id`` and file name are logged (up to ``max_logged`` per
    cause, then only counted) and the ids are kept in ``skipped_ids`` (the latest ``max_logged`` per cause). Schema errors (`RGBDCorpusFormatError`: 8-bit
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
        scale = check_row(row)  # schema errors concern the corpus: raised
        # PIL reports corrupt files as OSError / UnidentifiedImageError, some truncated ones as SyntaxError.
        try:
            rgb = decode_rgb_cell(row["image"])
        except RGBDCorpusFormatError:
            raise
        except UNREADABLE_IMAGE_ERRORS as error:
            file = _cell_path(row, "image")
            where = f"image {file!r}" if file else "image"
            self._record_skip("unreadable_image", label, f"unreadable {where}: {type(error).__name__}: {error}", _batch)
            return None
        try:
            depth_m = decode_depth_cell(row["depth"], scale)
        except RGBDCorpusFormatError:
            raise
        except UNREADABLE_IMAGE_ERRORS as error:
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
