# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Dataset adapters: what the columns of a public RGB-D dataset mean, in which unit its depth is stored, and which
label convention it uses, so that [`RGBDCollator`] and the metrics can be built without guessing.

Shipped adapters (each a function returning an [`RGBDDatasetAdapter`], registered in `ADAPTERS`):

* ``"nyu_depth_v2"``: NYU Depth v2, 40-class segmentation (labels 1..40, 0 = unlabelled, so `reduce_labels`), scene
  classification into the 10 classes of the authors' datasets/nyu_depth_v2.py (other scene names -> ``others``), or
  depth completion with the input simulated from the dense depth. Depth: millimetre 16-bit PNGs (``"mm"``) by
  default; float metres (``"float"``, e.g. ``sayakpaul/nyu_depth_v2``'s ``depth_map``) on request.
* ``"sunrgbd"``: SUN RGB-D, 37 classes with `reduce_labels` (0 = unlabelled). Depth: the toolbox's bit-rotated
  millimetre PNGs (``"sunrgbd"``) by default; pass ``depth_format="mm"`` for exports that store plain millimetres.
* ``"void"``: VOID-style depth completion: RGB, a sparse input depth and a dense ground truth, both 16-bit PNGs with
  value / 256 = metres (``"kitti"``, as the authors' datasets/void.py reads them); evaluated on 0.2-5.0 m, errors in
  millimetres (the VOID benchmark's convention).
* ``"corpus"``: the project's RGB-D corpus schema (``image``, ``depth``, per-row ``depth_scale``, ...).

The column names are the common ones on the Hub (`wyrx/NYUDepthv2_seg`, `wyrx/SUNRGBD_seg`: ``image``, ``depth``,
``label``); every adapter takes overrides for datasets that name them differently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from .collators import TASKS, RGBDCollator
from .depth_io import DEPTH_FORMATS

logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTERS",
    "NYU40_CLASSES",
    "NYU_SCENE_CLASSES",
    "SUNRGBD37_CLASSES",
    "RGBDDatasetAdapter",
    "corpus_adapter",
    "get_adapter",
    "nyu_depth_v2_adapter",
    "nyu_scene_label",
    "sunrgbd_adapter",
    "void_adapter",
]

# NYUv2 40-class protocol (Gupta et al. 2013), label 1..40 in this order; 0 = unlabelled.
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip
# SUN RGB-D 37 classes: the first 37 of the NYU40 list, label 1..37; 0 = unlabelled.
SUNRGBD37_CLASSES = NYU40_CLASSES[:37]
# NYUv2 scene classification (authors' datasets/nyu_depth_v2.py): 9 named scene types, everything else -> "others".
NYU_SCENE_CLASSES = (
    "bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office", "home_office", "classroom",
    "bookstore", "others",
)  # fmt: skip

_SCENE_SUFFIX = re.compile(r"_\d+[a-z]?$")  # "living_room_0001a" -> "living_room"
_logged_other_scenes: set[str] = set()


def nyu_scene_label(scene: Any) -> int:
    """Class id (0..9) of an NYUv2 scene name in the 10-class protocol of the authors' datasets/nyu_depth_v2.py.

    Accepts scene types (``"living_room"``, ``"Living Room"``), scene ids (``"living_room_0001a"``) and ids that are
    already ints in [0, 10). Any other scene type (``"basement"``, ``"office_kitchen"``, ...) is ``others`` (9); each
    such name is logged once at INFO.
    """
    if isinstance(scene, bytes):
        scene = scene.decode()
    if isinstance(scene, int) and not isinstance(scene, bool):
        if not 0 <= scene < len(NYU_SCENE_CLASSES):
            raise ValueError(f"`scene` as an id must be in [0, {len(NYU_SCENE_CLASSES)}), got {scene}.")
        return scene
    if not isinstance(scene, str) or not scene.strip():
        raise ValueError(f"`scene` must be a scene name such as 'living_room' or an id, got {scene!r}.")
    name = re.sub(r"[\s\-]+", "_", scene.strip().lower())
    name = _SCENE_SUFFIX.sub("", name)
    if name in NYU_SCENE_CLASSES:
        return NYU_SCENE_CLASSES.index(name)
    if name not in _logged_other_scenes:
        logger.info("NYUv2 scene type %r is not one of the 9 named classes: counted as 'others'.", name)
        _logged_other_scenes.add(name)
    return NYU_SCENE_CLASSES.index("others")


@dataclass(frozen=True)
class RGBDDatasetAdapter:
    """How to read one public dataset for one task.

    Attributes:
        name: short name (``"nyu_depth_v2"``).
        task: ``"segmentation"``, ``"depth"`` or ``"classification"``.
        column_map: ``{role: column}`` for the roles of [`ColumnMap`] (image, depth, label, input_depth).
        depth_format / depth_scale: unit of the depth column (a `DEPTH_FORMATS` name, or metres per unit).
        input_depth_format: unit of the input-depth column (depth completion), default as `depth_format`.
        num_labels / id2label: classes (segmentation, classification).
        reduce_labels: segmentation ids 1..N with 0 = unlabelled are shifted to 0..N-1 and 0 ignored.
        label_map: classification: maps a row's label (e.g. a scene name) to an id.
        input_depth_pattern: depth completion without an input column: the simulated sensor pattern.
        eval_range_m: `(min, max)` metres of the depth evaluation (None: everything above 1 mm).
        description: one line for logs and model cards.
    """

    name: str
    task: str
    column_map: Mapping[str, str] = field(default_factory=dict)
    depth_format: str | None = None
    depth_scale: float | None = None
    input_depth_format: str | None = None
    num_labels: int | None = None
    id2label: Mapping[int, str] | None = None
    reduce_labels: bool = False
    label_map: Mapping[Any, int] | Callable[[Any], int] | None = None
    input_depth_pattern: str | None = None
    eval_range_m: tuple[float, float] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {self.task!r}.")
        for name in ("depth_format", "input_depth_format"):
            value = getattr(self, name)
            if value is not None and value not in DEPTH_FORMATS:
                raise ValueError(f"`{name}` must be one of {sorted(DEPTH_FORMATS)}, got {value!r}.")
        if self.task in ("segmentation", "classification") and not self.num_labels:
            raise ValueError(f"a {self.task} adapter needs `num_labels`, got {self.num_labels!r}.")

    @property
    def label2id(self) -> dict[str, int] | None:
        return None if self.id2label is None else {name: index for index, name in self.id2label.items()}

    def required_columns(self) -> list[str]:
        """Columns the collator reads for this task."""
        roles = ["image", "depth"] + (["label"] if self.task != "depth" else [])
        if self.task == "depth" and "input_depth" in self.column_map:
            roles.append("input_depth")
        return [self.column_map.get(role, role) for role in roles]

    def check_columns(self, column_names: list[str] | None) -> None:
        """Raise a ValueError naming the missing columns (skipped when the dataset does not know its columns)."""
        if column_names is None:
            return
        missing = [c for c in self.required_columns() if c not in column_names]
        if missing:
            raise ValueError(
                f"dataset lacks column(s) {missing} that the {self.name!r} adapter ({self.task}) reads; it has "
                f"{list(column_names)}. Pass the right names, e.g. get_adapter({self.name!r}, "
                f"column_map={{'depth': ...}})."
            )

    def collator(self, processor: VanishingDepthImageProcessor, **overrides: Any) -> RGBDCollator:
        """An [`RGBDCollator`] reading this dataset; `overrides` are passed on (e.g. `seed`)."""
        kwargs: dict[str, Any] = {
            "task": self.task,
            "column_map": dict(self.column_map),
            "depth_format": self.depth_format,
            "depth_scale": self.depth_scale,
            "input_depth_format": self.input_depth_format,
            "reduce_labels": self.reduce_labels if self.task == "segmentation" else None,
            "label_map": self.label_map,
            "input_depth_pattern": self.input_depth_pattern,
        }
        kwargs.update(overrides)
        return RGBDCollator(processor, **kwargs)

    def metrics(self, ignore_index: int = 255):
        """The streaming metric of the task, usable as `Trainer(compute_metrics=...)` with `batch_eval_metrics`."""
        # Imported here: the evaluation package imports the adapters (its completion sweep reads datasets through them).
        from ..evaluation import ClassificationMetrics, DepthMetrics, SegmentationMetrics

        if self.task == "segmentation":
            return SegmentationMetrics(num_labels=self.num_labels, ignore_index=ignore_index, id2label=self.id2label)
        if self.task == "classification":
            return ClassificationMetrics(num_labels=self.num_labels, id2label=self.id2label)
        low, high = self.eval_range_m if self.eval_range_m is not None else (1e-3, None)
        return DepthMetrics(min_depth_m=low, max_depth_m=high)


def _labels(names) -> dict[int, str]:
    return {index: name for index, name in enumerate(names)}


def nyu_depth_v2_adapter(
    task: str = "segmentation",
    column_map: Mapping[str, str] | None = None,
    depth_format: str = "mm",
    reduce_labels: bool = True,
    input_depth_pattern: str = "uniform:500",
) -> RGBDDatasetAdapter:
    """NYU Depth v2 (labelled set: 795 train / 654 test).

    Args:
        task: ``"segmentation"`` (40 classes, column ``label``), ``"classification"`` (10 scene classes, column
            ``scene``: names or ids, mapped by [`nyu_scene_label`]) or ``"depth"`` (completion from a simulated
            sensor on the dense ``depth``).
        column_map: overrides of ``{"image": "image", "depth": "depth", "label": "label" | "scene"}``.
        depth_format: ``"mm"`` (16-bit millimetre PNG) or ``"float"`` (metres).
        reduce_labels: segmentation labels are 1..40 with 0 = unlabelled (True); False if your export already
            stores 0..39 with 255 = ignore.
        input_depth_pattern: the simulated input for ``task="depth"``.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    columns = {"image": "image", "depth": "depth"}
    if task == "segmentation":
        columns["label"] = "label"
    elif task == "classification":
        columns["label"] = "scene"
    columns.update(column_map or {})
    common = {"name": "nyu_depth_v2", "task": task, "column_map": columns, "depth_format": depth_format}
    if task == "segmentation":
        return RGBDDatasetAdapter(
            **common,
            num_labels=40,
            id2label=_labels(NYU40_CLASSES),
            reduce_labels=reduce_labels,
            description="NYU Depth v2, 40-class semantic segmentation",
        )
    if task == "classification":
        return RGBDDatasetAdapter(
            **common,
            num_labels=len(NYU_SCENE_CLASSES),
            id2label=_labels(NYU_SCENE_CLASSES),
            label_map=nyu_scene_label,
            description="NYU Depth v2, 10-class scene classification",
        )
    return RGBDDatasetAdapter(
        **common,
        input_depth_pattern=input_depth_pattern,
        eval_range_m=(1e-3, 10.0),
        description=f"NYU Depth v2, depth completion from {input_depth_pattern} (0.001-10 m)",
    )


def sunrgbd_adapter(
    task: str = "segmentation",
    column_map: Mapping[str, str] | None = None,
    depth_format: str = "sunrgbd",
    reduce_labels: bool = True,
) -> RGBDDatasetAdapter:
    """SUN RGB-D (5285 train / 5050 test), 37-class segmentation with `reduce_labels` (0 = unlabelled).

    Args:
        column_map: overrides of ``{"image": "image", "depth": "depth", "label": "label"}``.
        depth_format: ``"sunrgbd"`` (the toolbox's bit-rotated millimetre PNG), ``"mm"`` for plain millimetres.
    """
    if task != "segmentation":
        raise ValueError(f"the SUN RGB-D adapter supports task='segmentation' only, got {task!r}.")
    columns = {"image": "image", "depth": "depth", "label": "label"}
    columns.update(column_map or {})
    return RGBDDatasetAdapter(
        name="sunrgbd",
        task="segmentation",
        column_map=columns,
        depth_format=depth_format,
        num_labels=37,
        id2label=_labels(SUNRGBD37_CLASSES),
        reduce_labels=reduce_labels,
        description="SUN RGB-D, 37-class semantic segmentation",
    )


def void_adapter(
    task: str = "depth",
    column_map: Mapping[str, str] | None = None,
    depth_format: str = "kitti",
    eval_range_m: tuple[float, float] = (0.2, 5.0),
) -> RGBDDatasetAdapter:
    """VOID-style depth completion: ``image``, ``sparse_depth`` (input) and ``ground_truth`` (target), both 16-bit
    PNGs with value / 256 = metres (``"kitti"``). Evaluated on 0.2-5.0 m; report `rmse_mm` / `mae_mm`."""
    if task != "depth":
        raise ValueError(f"the VOID adapter supports task='depth' only, got {task!r}.")
    columns = {"image": "image", "depth": "ground_truth", "input_depth": "sparse_depth"}
    columns.update(column_map or {})
    return RGBDDatasetAdapter(
        name="void",
        task="depth",
        column_map=columns,
        depth_format=depth_format,
        input_depth_format=depth_format,
        eval_range_m=tuple(eval_range_m),
        description="VOID depth completion (sparse depth -> dense ground truth, /256 PNGs, 0.2-5.0 m)",
    )


def corpus_adapter(
    task: str = "depth", input_depth_pattern: str = "uniform:500", eval_range_m: tuple[float, float] | None = None
) -> RGBDDatasetAdapter:
    """The project's RGB-D corpus schema (`vanishing_depth.data.schema`): depth in `depth_scale` units per row, no
    labels, so depth completion only, with the input simulated from the depth by `input_depth_pattern`."""
    if task != "depth":
        raise ValueError(f"the corpus schema has no labels: only task='depth' (completion), got {task!r}.")
    return RGBDDatasetAdapter(
        name="corpus",
        task="depth",
        column_map={"image": "image", "depth": "depth"},
        input_depth_pattern=input_depth_pattern,
        eval_range_m=eval_range_m,
        description=f"RGB-D corpus schema, depth completion from {input_depth_pattern}",
    )


ADAPTERS: dict[str, Callable[..., RGBDDatasetAdapter]] = {
    "nyu_depth_v2": nyu_depth_v2_adapter,
    "sunrgbd": sunrgbd_adapter,
    "void": void_adapter,
    "corpus": corpus_adapter,
}


def get_adapter(name: str, task: str | None = None, **kwargs: Any) -> RGBDDatasetAdapter:
    """The adapter called `name` (a key of `ADAPTERS`) for `task` (default: the adapter's own default task)."""
    if name not in ADAPTERS:
        raise ValueError(f"`name` must be one of {sorted(ADAPTERS)}, got {name!r}.")
    if task is not None:
        kwargs["task"] = task
    return ADAPTERS[name](**kwargs)
