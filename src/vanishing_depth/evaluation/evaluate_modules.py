"""The streaming metrics as `evaluate.Metric` subclasses defined in-process ([`MeanIoU`], [`DepthErrors`],
[`Accuracy`]), so that `evaluate.combine([...])`, `add_batch` and `compute` work offline (``HF_HUB_OFFLINE=1``):
`evaluate.load("mean_iou")` fetches its script from the Hub and fails without the network."""

from __future__ import annotations

import inspect
from typing import Any

import datasets
import evaluate
import numpy as np

from .classification import ClassificationMetrics
from .depth import DepthMetrics
from .segmentation import SegmentationMetrics

__all__ = ["Accuracy", "DepthErrors", "MeanIoU"]

_List = getattr(datasets, "List", datasets.Sequence)  # datasets >= 4 spells it List


def _map_features(dtype: str) -> datasets.Features:
    """Features of a per-example 2-D map (variable height and width)."""
    return datasets.Features(
        {
            "predictions": _List(_List(datasets.Value(dtype))),
            "references": _List(_List(datasets.Value(dtype))),
        }
    )


_EVALUATE_INIT_ARGS = frozenset(inspect.signature(evaluate.EvaluationModule.__init__).parameters) - {"self", "kwargs"}


class _ConfiguredMetric(evaluate.Metric):
    """Metric settings (`_defaults`) come from the constructor and can be overridden per `compute(**kwargs)`
    call; the other constructor arguments (`keep_in_memory`, `cache_dir`, ...) go to `evaluate.Metric`."""

    _defaults: dict[str, Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self._defaults) - _EVALUATE_INIT_ARGS
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown arguments {sorted(unknown)}; metric settings are "
                f"{sorted(self._defaults)}, evaluate.Metric arguments are {sorted(_EVALUATE_INIT_ARGS)}."
            )
        self._settings = {**self._defaults, **{k: v for k, v in kwargs.items() if k in self._defaults}}
        super().__init__(**{k: v for k, v in kwargs.items() if k not in self._defaults})

    def _resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - set(self._defaults)
        if unknown:
            raise ValueError(f"{type(self).__name__}.compute got unknown arguments {sorted(unknown)}.")
        return {**self._settings, **overrides}


class MeanIoU(_ConfiguredMetric):
    """Offline drop-in for `evaluate.load("mean_iou")`, backed by [`SegmentationMetrics`].

    Same compute arguments (`num_labels`, `ignore_index`, `nan_to_num`, `label_map`, `reduce_labels`) and the same
    result dict; they may also be given once to the constructor. Each example is one (H, W) integer label map.
    Other constructor arguments go to `evaluate.Metric` (e.g. `keep_in_memory=True`).
    """

    _defaults = {"num_labels": None, "ignore_index": 255, "nan_to_num": None, "label_map": None, "reduce_labels": False}

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Mean intersection-over-union over classes (streaming confusion matrix, evaluate semantics).",
            citation="",
            inputs_description="predictions, references: lists of (H, W) integer label maps.",
            features=_map_features("int64"),
        )

    def _compute(self, predictions, references, **overrides):
        settings = self._resolve(overrides)
        if settings["num_labels"] is None:
            raise ValueError("MeanIoU needs `num_labels` (constructor or compute argument).")
        metric = SegmentationMetrics(
            num_labels=settings["num_labels"],
            ignore_index=settings["ignore_index"],
            reduce_labels=settings["reduce_labels"],
            label_map=settings["label_map"],
            nan_to_num=settings["nan_to_num"],
            pad_index=None,  # exact evaluate semantics
        )
        metric.update([np.asarray(p) for p in predictions], [np.asarray(r) for r in references])
        return metric.compute()


class DepthErrors(_ConfiguredMetric):
    """Depth-error metrics as an `evaluate.Metric`, backed by [`DepthMetrics`] (same keys and definitions).

    Each example is one (H, W) depth map in metres (stored as float32). Settings: `min_depth_m`, `max_depth_m`,
    `clamp_predictions`, `per_image`. Other constructor arguments go to `evaluate.Metric`.
    """

    _defaults = {"min_depth_m": 1e-3, "max_depth_m": None, "clamp_predictions": True, "per_image": True}

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Depth errors (AbsRel, RMSE, MAE, iRMSE, delta, SILog, ...) per image, averaged over images.",
            citation="",
            inputs_description="predictions, references: lists of (H, W) depth maps in metres, 0 = invalid.",
            features=_map_features("float32"),
        )

    def _compute(self, predictions, references, **overrides):
        metric = DepthMetrics(**self._resolve(overrides))
        for prediction, reference in zip(predictions, references):
            metric.update(np.asarray(prediction, dtype=np.float32), np.asarray(reference, dtype=np.float32))
        return metric.compute()


class Accuracy(_ConfiguredMetric):
    """Top-1 accuracy as an `evaluate.Metric` (class ids), backed by [`ClassificationMetrics`].

    Settings: `num_labels` (adds `mean_per_class_accuracy`). Other constructor arguments go to `evaluate.Metric`.
    """

    _defaults = {"num_labels": None}

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Top-1 classification accuracy.",
            citation="",
            inputs_description="predictions, references: class ids.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, **overrides):
        metric = ClassificationMetrics(num_labels=self._resolve(overrides)["num_labels"])
        metric.update(np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64))
        return metric.compute()
