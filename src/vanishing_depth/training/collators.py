"""`Trainer` data collators for RGB-D rows: decode, convert depth to metres, run the image processor, build labels.

[`RGBDCollator`] turns a list of dataset rows into the keyword arguments of the task heads:

* ``pixel_values`` `(B, 3, H, W)` ImageNet-normalised RGB;
* ``depth_values`` `(B, 1, H, W)` input depth in metres, 0 = no measurement (the model computes the PDE itself);
* ``labels``: `(B, H, W)` int64 class ids (segmentation, padding = the processor's ``ignore_index``), `(B, H, W)`
  float32 ground-truth depth in metres (depth completion, 0 = invalid), or `(B,)` int64 class ids (classification).

Rows may follow the RGB-D corpus schema of `vanishing_depth.training.corpora` (``image``, ``depth``, ``depth_scale``,
...) or a public dataset's own schema: a column map names the columns, and the depth unit is declared (a per-row
``depth_scale`` column, a fixed ``depth_scale`` in metres per unit, or a ``depth_format`` of
`vanishing_depth.processing.DEPTH_FORMATS` such as ``"mm"``, ``"kitti"`` (/256) or ``"sunrgbd"``).

For depth completion the input depth is either a column of its own (VOID's sparse depth) or simulated from the
ground truth on the model's input grid by a sensor pattern ([`simulate_depth_input`]): ``"uniform:500"`` (500 random
points), ``"lidar:16"`` (16 scan lines), ``"tof:8"`` (a ToF sensor 8x coarser than the image), ``"holes"`` (dense
with holes along depth edges), ``"fraction:0.05"`` (5 % of the valid pixels), ``"dense"`` (the ground truth itself)
and ``"none"`` (no depth: RGB only).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor, depth_to_metres
from ..processing.augmentation import (
    keep_fraction,
    sample_uniform_points,
    simulate_edge_holes,
    simulate_lidar_lines,
    simulate_low_res_tof,
)
from ..processing.depth_io import DEPTH_FORMATS, decode_depth_array

logger = logging.getLogger(__name__)

__all__ = [
    "DEPTH_INPUT_PATTERNS",
    "TASKS",
    "ColumnMap",
    "RGBDCollator",
    "parse_depth_pattern",
    "simulate_depth_input",
]

TASKS = ("segmentation", "depth", "classification")
DEPTH_INPUT_PATTERNS = ("uniform", "lidar", "tof", "holes", "fraction", "dense", "none")

# Candidate column names, tried in order when the column map leaves a role open.
_CANDIDATES = {
    "image": ("image", "rgb", "pixel_values"),
    "depth": ("depth", "depth_map", "ground_truth"),
    "label": ("label", "labels", "semantic_map", "annotation", "mask", "scene"),
    "input_depth": ("sparse_depth", "input_depth"),
}


# ----------------------------------------------------------------------------------------------------------------------
# Sensor patterns
# ----------------------------------------------------------------------------------------------------------------------
def parse_depth_pattern(spec: str) -> tuple[str, float | None]:
    """Parse a sensor-pattern spec such as ``"uniform:500"`` into ``("uniform", 500)``.

    Patterns: ``uniform:N`` points, ``lidar:N`` lines, ``tof:F`` (a low-resolution sensor F times coarser than the
    image grid, F >= 1), ``fraction:P`` (kept share of valid pixels in [0, 1]), ``holes``, ``dense``, ``none``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`pattern` must be a string such as 'uniform:500', got {spec!r}.")
    kind, _, value = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in DEPTH_INPUT_PATTERNS:
        raise ValueError(f"`pattern` kind must be one of {DEPTH_INPUT_PATTERNS}, got {spec!r}.")
    needs_value = kind in ("uniform", "lidar", "tof", "fraction")
    if not needs_value:
        if value:
            raise ValueError(f"`pattern` {kind!r} takes no value, got {spec!r}.")
        return kind, None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"`pattern` {kind!r} needs a number after ':', e.g. '{kind}:8', got {spec!r}.") from None
    if kind in ("uniform", "lidar") and (number < 1 or number != int(number)):
        raise ValueError(f"`pattern` {kind!r} needs a positive integer count, got {spec!r}.")
    if kind == "tof" and number < 1:
        raise ValueError(f"`pattern` 'tof' needs a downsampling factor >= 1, got {spec!r}.")
    if kind == "fraction" and not 0.0 <= number <= 1.0:
        raise ValueError(f"`pattern` 'fraction' needs a share in [0, 1], got {spec!r}.")
    return kind, int(number) if kind in ("uniform", "lidar") else number


def simulate_depth_input(depth_m: torch.Tensor, pattern: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulate what a sensor would measure of a dense ground truth.

    Args:
        depth_m: `(B, 1, H, W)` ground-truth depth in metres, 0 = no measurement.
        pattern: a spec of [`parse_depth_pattern`] (``"uniform:500"``, ``"lidar:16"``, ``"tof:8"``, ``"holes"``,
            ``"fraction:0.05"``, ``"dense"``, ``"none"``).
        generator: drives the random patterns (``uniform``, ``lidar``, ``fraction``), so a run can be replayed.

    Returns:
        `(B, 1, H, W)` metres; only valid ground-truth pixels can be non-zero (``tof`` copies each cell's value over
        the cell, where the cell centre is valid).
    """
    kind, value = parse_depth_pattern(pattern)
    if depth_m.ndim != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"`depth_m` must have shape (B, 1, H, W) in metres, got {tuple(depth_m.shape)}.")
    height, width = depth_m.shape[-2:]
    if kind == "uniform":
        return sample_uniform_points(depth_m, int(value), generator=generator)
    if kind == "lidar":
        if value > height:
            raise ValueError(f"`pattern` {pattern!r} asks for more scan lines than the {height} image rows.")
        return simulate_lidar_lines(depth_m, int(value), generator=generator)
    if kind == "tof":
        size = (max(1, round(height / value)), max(1, round(width / value)))
        return simulate_low_res_tof(depth_m, size=size)
    if kind == "fraction":
        return keep_fraction(depth_m, float(value), generator=generator)
    if kind == "holes":
        return simulate_edge_holes(depth_m)
    if kind == "dense":
        return depth_m.clone()
    return torch.zeros_like(depth_m)  # "none": RGB only


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------
def _open(value: Any, what: str) -> Any:
    """A PIL image, a `{"bytes", "path"}` dict (undecoded `datasets.Image`), a path, an array or a tensor -> a PIL
    image or a numpy array."""
    if isinstance(value, Image.Image | np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            return Image.open(io.BytesIO(data))
        if path:
            return Image.open(path)
        raise ValueError(f"{what} holds neither bytes nor a path: {sorted(value)}.")
    if isinstance(value, str | os.PathLike):
        return Image.open(value)
    if isinstance(value, list):
        return np.asarray(value)
    raise ValueError(f"{what} must be an image, an array, a path or a {{'bytes', 'path'}} dict, got {type(value)}.")


def _depth_in_metres(value: Any, depth_scale: float | None, depth_format: str | None, what: str) -> np.ndarray:
    """One depth map as float32 `(H, W)` metres, 0 = missing; 8-bit and colour maps are refused."""
    opened = _open(value, what)
    try:
        if depth_format is not None:
            return decode_depth_array(opened, depth_format)
        return depth_to_metres(opened, depth_scale)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


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
        depth_scale: metres per unit of integer depth maps without a per-row ``depth_scale`` column (0.001 for mm).
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
            scale = float(row[column])
            if not scale > 0:
                raise ValueError(f"row[{column!r}] must be a positive number of metres per unit, got {row[column]!r}.")
            return scale
        return fallback

    # -- labels ---------------------------------------------------------------------------------------------------------
    def _segmentation_label(self, value: Any, index: int) -> np.ndarray:
        label = np.asarray(_open(value, f"row {index} label"))
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
            images.append(_open(row[self._column(row, "image", True)], f"row {index} image"))
            depth_column = self._column(row, "depth", self.task == "depth")
            if depth_column is None:
                depths.append(None)
            else:
                depths.append(
                    _depth_in_metres(
                        row[depth_column],
                        self._row_scale(row, self.depth_scale),
                        self.depth_format,
                        f"row {index} column {depth_column!r}",
                    )
                )
            if self.task == "depth":
                input_column = self._column(row, "input_depth", False)
                if input_column is not None:
                    own_unit = self.input_depth_format is not None or self.input_depth_scale is not None
                    input_format = self.input_depth_format if own_unit else self.depth_format
                    input_scale = self.input_depth_scale if own_unit else self._row_scale(row, self.depth_scale)
                    sparse = _depth_in_metres(
                        row[input_column], input_scale, input_format, f"row {index} column {input_column!r}"
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
