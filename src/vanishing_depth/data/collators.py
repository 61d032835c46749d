# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""`Trainer` data collators for RGB-D rows: decode, convert depth to metres, run the image processor, build labels.

[`RGBDCollator`] turns a list of dataset rows into the keyword arguments of the task heads:

* ``pixel_values`` `(B, 3, H, W)` ImageNet-normalised RGB;
* ``depth_values`` `(B, 1, H, W)` input depth in metres, 0 = no measurement (the model computes the PDE itself);
* ``labels``: `(B, H, W)` int64 class ids (segmentation, padding = the processor's ``ignore_index``), `(B, H, W)`
  float32 ground-truth depth in metres (depth completion, 0 = invalid), or `(B,)` int64 class ids (classification).

Rows may follow the RGB-D corpus schema of `vanishing_depth.data.schema` (``image``, ``depth``, ``depth_scale``,
...) or a public dataset's own schema: a column map names the columns, and the depth unit is declared (a per-row
``depth_scale`` column, a fixed ``depth_scale`` in metres per unit, or a ``depth_format`` of
`vanishing_depth.data.DEPTH_FORMATS` such as ``"mm"``, ``"kitti"`` (/256) or ``"sunrgbd"``). Frames and depth maps are
read by the same two functions as the pretraining decoder (`vanishing_depth.data.image_io.rgb_array` and
`vanishing_depth.data.depth_io.decode_depth`), so a corpus row gives the same RGB and metres in both.

For depth completion the input depth is either a column of its own (VOID's sparse depth) or simulated from the
ground truth on the model's input grid by a sensor pattern of `vanishing_depth.data.sensors`
([`simulate_depth_input`]): ``"uniform:500"`` (500 random points), ``"lidar:16"`` (16 scan lines), ``"tof:8"`` (a ToF
sensor 8x coarser than the image), ``"holes"`` (dense with holes along depth edges), ``"fraction:0.05"`` (5 % of the
valid pixels), ``"dense"`` (the ground truth itself) and ``"none"`` (no depth: RGB only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from .depth_io import DEPTH_FORMATS, decode_depth
from .image_io import open_image, rgb_array
from .schema import check_depth_scale
from .sensors import parse_depth_pattern, simulate_depth_input

logger = logging.getLogger(__name__)

__all__ = ["TASKS", "ColumnMap", "RGBDCollator"]

TASKS = ("segmentation", "depth", "classification")

# Candidate column names, tried in order when the column map leaves a role open.
_CANDIDATES = {
    "image": ("image", "rgb", "pixel_values"),
    "depth": ("depth", "depth_map", "ground_truth"),
    "label": ("label", "labels", "semantic_map", "annotation", "mask", "scene"),
    "input_depth": ("sparse_depth", "input_depth"),
}


@dataclass(frozen=True)
class ColumnMap:
    """Which dataset column plays which role. `None` picks the first present of the usual names.

    Attributes:
        image: RGB column (``image`` / ``rgb`` / ``pixel_values``).
        depth: depth column: the model's input depth for segmentation and classification, the **ground truth** for
            depth completion (``depth`` / ``depth_map`` / ``ground_truth``).
        label: segmentation map or class column (``label`` / ``labels`` / ``semantic_map`` / ``annotation`` /
            ``mask`` / ``scene``).
        input_depth: depth completion only: the sparse input depth (``sparse_depth``); without it the input is
            simulated from the ground truth by the collator's pattern.
        depth_scale: column with metres per stored unit, per row (the corpus schema's ``depth_scale``).
    """

    image: str | None = None
    depth: str | None = None
    label: str | None = None
    input_depth: str | None = None
    depth_scale: str | None = "depth_scale"

    @classmethod
    def from_any(cls, value: ColumnMap | Mapping[str, str] | None) -> ColumnMap:
        if value is None:
            return cls()
        if isinstance(value, ColumnMap):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"image", "depth", "label", "input_depth", "depth_scale"})
            if unknown:
                raise ValueError(
                    f"`column_map` keys must be among image, depth, label, input_depth, depth_scale; got {unknown}."
                )
            return cls(**dict(value))
        raise ValueError(f"`column_map` must be a ColumnMap or a dict {{role: column}}, got {type(value)}.")


# ----------------------------------------------------------------------------------------------------------------------
# The collator
# ----------------------------------------------------------------------------------------------------------------------
class RGBDCollator:
    """Trainer `data_collator` for RGB-D rows (see the module docstring for the output keys).

    Args:
        processor: a [`VanishingDepthImageProcessor`] (resizing, ImageNet normalisation, padding to a multiple of 14).
            Its `do_depth_encoding` is overridden to False: the collator returns metres.
        task: ``"segmentation"``, ``"depth"`` (completion) or ``"classification"``.
        column_map: a [`ColumnMap`] or a dict ``{role: column}``.
        depth_scale: metres per stored unit for rows without a per-row ``depth_scale`` column (0.001 for millimetre
            PNGs); as in the corpus schema, a float map is multiplied by it too (metres as stored when it is None).
        depth_format: a `DEPTH_FORMATS` name for the depth column instead of `depth_scale` (e.g. ``"sunrgbd"``).
        input_depth_scale / input_depth_format: the same for the `input_depth` column (default: as `depth`).
        reduce_labels: segmentation: ``True`` maps 0 -> ignore index and shifts the other ids down by one (SUN RGB-D,
            NYUv2-40 with 0 = unlabelled); ``None`` leaves it to the processor's ``do_reduce_labels``.
        label_map: segmentation: ``{old_id: new_id}`` applied first (ids not in it are kept); classification: a dict
            or callable mapping each row's label (e.g. a scene name) to a class id.
        input_depth_pattern: depth completion without an `input_depth` column: the simulated sensor pattern
            ([`simulate_depth_input`]); segmentation/classification: optionally degrade the input depth the same way
            (robustness studies). ``None``: use the depth as it is.
        generator / seed: random patterns are drawn from `generator` (or a CPU generator seeded with `seed`).
        return_resized_sizes: also return the processor's ``resized_sizes`` `(B, 2)` (not a model input).
    """

    def __init__(
        self,
        processor: VanishingDepthImageProcessor,
        task: str = "segmentation",
        column_map: ColumnMap | Mapping[str, str] | None = None,
        depth_scale: float | None = None,
        depth_format: str | None = None,
        input_depth_scale: float | None = None,
        input_depth_format: str | None = None,
        reduce_labels: bool | None = None,
        label_map: Mapping[Any, int] | Callable[[Any], int] | None = None,
        input_depth_pattern: str | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        return_resized_sizes: bool = False,
    ) -> None:
        if not isinstance(processor, VanishingDepthImageProcessor):
            raise ValueError(f"`processor` must be a VanishingDepthImageProcessor, got {type(processor).__name__}.")
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
        for name, fmt, scale in (
            ("depth", depth_format, depth_scale),
            ("input_depth", input_depth_format, input_depth_scale),
        ):
            if fmt is not None and fmt not in DEPTH_FORMATS:
                raise ValueError(f"`{name}_format` must be one of {sorted(DEPTH_FORMATS)}, got {fmt!r}.")
            if fmt is not None and scale is not None:
                raise ValueError(f"Pass either `{name}_format` or `{name}_scale`, not both ({fmt!r}, {scale!r}).")
            if scale is not None and not scale > 0:
                raise ValueError(f"`{name}_scale` must be a positive number of metres per unit, got {scale!r}.")
        if reduce_labels and processor.do_reduce_labels:
            raise ValueError(
                "`reduce_labels=True` and the processor's `do_reduce_labels=True` would shift the labels twice; "
                "set one of them only."
            )
        if input_depth_pattern is not None:
            parse_depth_pattern(input_depth_pattern)
        if label_map is not None and not (isinstance(label_map, Mapping) or callable(label_map)):
            raise ValueError(f"`label_map` must be a dict or a callable, got {type(label_map).__name__}.")
        if task == "segmentation" and label_map is not None and not isinstance(label_map, Mapping):
            raise ValueError("`label_map` for segmentation must be a dict {old_id: new_id}.")
        self.processor = processor
        self.task = task
        self.column_map = ColumnMap.from_any(column_map)
        self.depth_scale = depth_scale
        self.depth_format = depth_format
        self.input_depth_scale = input_depth_scale
        self.input_depth_format = input_depth_format
        self.reduce_labels = reduce_labels
        self.label_map = label_map
        self.input_depth_pattern = input_depth_pattern
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.return_resized_sizes = return_resized_sizes
        self._warned_sparse = False

    # -- columns --------------------------------------------------------------------------------------------------------
    def _column(self, row: Mapping[str, Any], role: str, required: bool) -> str | None:
        given = getattr(self.column_map, role)
        if given is not None:
            if given not in row:
                if not required:
                    return None
                raise ValueError(f"column {given!r} (role {role!r}) is not in the row; the row has {sorted(row)}.")
            return given
        for name in _CANDIDATES[role]:
            if name in row:
                return name
        if required:
            raise ValueError(
                f"no {role} column among {list(_CANDIDATES[role])} in the row (columns {sorted(row)}); name it in "
                f"`column_map={{'{role}': ...}}`."
            )
        return None

    def _row_scale(self, row: Mapping[str, Any], fallback: float | None) -> float | None:
        column = self.column_map.depth_scale
        if column is not None and column in row and row[column] is not None:
            return check_depth_scale(row[column], f"row[{column!r}]")  # as the pretraining decoder reads it
        return fallback

    # -- labels ---------------------------------------------------------------------------------------------------------
    def _segmentation_label(self, value: Any, index: int) -> np.ndarray:
        label = np.asarray(open_image(value, f"row {index} label"))
        if label.ndim == 3 and label.shape[-1] == 1:
            label = label[..., 0]
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(
                f"row {index}: a segmentation label must be an (H, W) map of integer class ids, got {label.dtype} "
                f"{label.shape} (a colour-coded PNG needs converting to ids first)."
            )
        label = label.astype(np.int64)
        if isinstance(self.label_map, Mapping):
            mapped = label.copy()
            for old, new in self.label_map.items():
                mapped[label == int(old)] = int(new)
            label = mapped
        if self.reduce_labels:
            ignore = self.processor.ignore_index
            # 0 (unlabelled) -> ignore, the rest shifted down; the ignore value itself stays ignored.
            label = np.where(label == 0, ignore, np.where(label == ignore, ignore, label - 1))
        return label

    def _class_label(self, value: Any, index: int) -> int:
        if self.label_map is not None:
            value = self.label_map(value) if callable(self.label_map) else self.label_map.get(value, None)
            if value is None:
                raise ValueError(f"row {index}: label not found in `label_map` (keys {list(self.label_map)[:10]}).")
        if isinstance(value, np.ndarray | torch.Tensor) and value.size == 1:
            value = value.item() if isinstance(value, torch.Tensor) else value.reshape(()).item()
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(
                f"row {index}: a classification label must be an integer class id, got {value!r}; pass `label_map` "
                "to map names to ids."
            )
        return int(value)

    # -- call -----------------------------------------------------------------------------------------------------------
    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate `rows` (dicts, one per example) into a batch of tensors."""
        if not rows:
            raise ValueError("`rows` must hold at least one example.")
        images, depths, labels, inputs, input_counts = [], [], [], [], []
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"row {index} must be a dict of columns, got {type(row).__name__}.")
            image_column = self._column(row, "image", True)
            images.append(rgb_array(row[image_column], f"row {index} column {image_column!r}"))
            depth_column = self._column(row, "depth", self.task == "depth")
            if depth_column is None:
                depths.append(None)
            else:
                depths.append(
                    decode_depth(
                        row[depth_column],
                        None if self.depth_format is not None else self._row_scale(row, self.depth_scale),
                        self.depth_format,
                        what=f"row {index} column {depth_column!r}",
                    )
                )
            if self.task == "depth":
                input_column = self._column(row, "input_depth", False)
                if input_column is not None:
                    own_unit = self.input_depth_format is not None or self.input_depth_scale is not None
                    input_format = self.input_depth_format if own_unit else self.depth_format
                    input_scale = self.input_depth_scale if own_unit else self._row_scale(row, self.depth_scale)
                    sparse = decode_depth(
                        row[input_column],
                        None if input_format is not None else input_scale,
                        input_format,
                        what=f"row {index} column {input_column!r}",
                    )
                    inputs.append(sparse)
                    input_counts.append(int(np.count_nonzero(sparse)))
            else:
                label_column = self._column(row, "label", True)
                if self.task == "segmentation":
                    labels.append(self._segmentation_label(row[label_column], index))
                else:
                    labels.append(self._class_label(row[label_column], index))

        if self.task == "depth":
            return self._depth_batch(images, depths, inputs, input_counts)
        processed = self.processor(
            images=images,
            depth=depths if any(d is not None for d in depths) else None,
            segmentation_maps=labels if self.task == "segmentation" else None,
            do_depth_encoding=False,
            return_tensors="pt",
        )
        depth_values = processed["depth_values"]
        if self.input_depth_pattern is not None:
            depth_values = simulate_depth_input(depth_values, self.input_depth_pattern, self.generator)
        batch = {"pixel_values": processed["pixel_values"], "depth_values": depth_values}
        if self.task == "segmentation":
            batch["labels"] = processed["labels"]
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.int64)
        if self.return_resized_sizes:
            batch["resized_sizes"] = processed["resized_sizes"]
        return batch

    def _depth_batch(self, images, ground_truth, inputs, input_counts) -> dict[str, torch.Tensor]:
        processed = self.processor(images=images, depth=ground_truth, do_depth_encoding=False, return_tensors="pt")
        target = processed["depth_values"]
        if inputs:
            if len(inputs) != len(images):
                raise ValueError(
                    f"only {len(inputs)} of {len(images)} rows have an input depth column; all or none must."
                )
            depth_values = self.processor(images=images, depth=inputs, do_depth_encoding=False, return_tensors="pt")[
                "depth_values"
            ]
            if self.input_depth_pattern is not None:
                depth_values = simulate_depth_input(depth_values, self.input_depth_pattern, self.generator)
            kept = torch.count_nonzero(depth_values.flatten(1), dim=1).tolist()
            lost = [(before, after) for before, after in zip(input_counts, kept) if after < 0.9 * before]
            if lost and not self._warned_sparse:
                logger.warning(
                    "RGBDCollator: resizing the sparse input depth onto the %s grid keeps only %s of %s points "
                    "(nearest neighbour drops points when downsampling). For depth completion set the processor's "
                    "size to the native resolution.",
                    tuple(depth_values.shape[-2:]),
                    [after for _, after in lost],
                    [before for before, _ in lost],
                )
                self._warned_sparse = True
        else:
            if self.input_depth_pattern is None:
                raise ValueError(
                    "task='depth' needs an input depth: map an `input_depth` column (e.g. VOID's 'sparse_depth') or "
                    "pass `input_depth_pattern` (e.g. 'uniform:500') to simulate one from the ground truth."
                )
            depth_values = simulate_depth_input(target, self.input_depth_pattern, self.generator)
        batch = {"pixel_values": processed["pixel_values"], "depth_values": depth_values, "labels": target[:, 0]}
        if self.return_resized_sizes:
            batch["resized_sizes"] = processed["resized_sizes"]
        return batch

    def __repr__(self) -> str:
        return (
            f"RGBDCollator(task={self.task!r}, column_map={self.column_map}, depth_scale={self.depth_scale}, "
            f"depth_format={self.depth_format!r}, input_depth_pattern={self.input_depth_pattern!r}, "
            f"reduce_labels={self.reduce_labels})"
        )
