"""Streaming mean IoU for semantic segmentation, with the outputs and semantics of evaluate's ``mean_iou``."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .streaming import _as_integer_map, _StreamingMetric, _to_tensor, class_key_names

logger = logging.getLogger(__name__)

__all__ = ["SegmentationMetrics"]


class SegmentationMetrics(_StreamingMetric):
    """Streaming mean IoU with exactly the outputs and semantics of evaluate's `mean_iou`.

    Keeps one int64 confusion matrix. Per evaluate (`metrics/mean_iou/mean_iou.py`, from mmsegmentation):
    `label_map` is applied first (all mappings read the original labels), then `reduce_labels` (0 -> 255, others
    minus 1, 255 stays 255), then pixels whose label equals `ignore_index` are dropped. A prediction or label
    outside `[0, num_labels)` counts for nothing itself but still counts for the other side (a label out of
    range still adds its prediction to the predicted area), as numpy's histogram does in evaluate; the state is
    therefore a `(num_labels + 1)^2` matrix whose last row/column is "out of range" ([`confusion_matrix`] gives the
    `num_labels^2` part). Results are summed over the whole dataset, then `mean_iou = nanmean(I / U)`,
    `mean_accuracy = nanmean(I / label_area)`, `overall_accuracy = sum(I) / sum(label_area)`; a class absent from
    both predictions and labels gets NaN and is skipped by the means.

    One deliberate addition: labels equal to `pad_index` (-100, the value Trainer pads labels with when it gathers
    batches of different sizes across processes) are dropped too. evaluate has no such rule; pass
    `pad_index=None` to turn it off.

    Args:
        num_labels: number of classes.
        ignore_index: label value left out of the evaluation (255).
        reduce_labels: ADE20K / SUN RGB-D convention, background 0 -> 255 and the rest shifted down by one.
        label_map: optional `{old_label: new_label}` applied to the labels first.
        nan_to_num: if set, NaNs in the results are replaced by this value.
        id2label: optional class names, ``{id: name}`` (e.g. ``model.config.id2label``) or a list in id order. With
            it, `compute` also returns ``iou_<name>`` and ``accuracy_<name>`` per class (floats), and the Trainer
            output uses these keys instead of ``iou_<id>`` / ``accuracy_<id>``. Names are made safe for metric keys
            by `metric_key_name` (``"night stand"`` -> ``iou_night_stand``); a class without a name keeps its id.
        pad_index: extra label value dropped (Trainer's padding), or None.
    """

    _state_names = ("_cm",)

    def __init__(
        self,
        num_labels: int,
        ignore_index: int | None = 255,
        reduce_labels: bool = False,
        label_map: Mapping[int, int] | None = None,
        nan_to_num: float | None = None,
        id2label: Mapping[int, str] | None = None,
        pad_index: int | None = -100,
    ) -> None:
        super().__init__()
        if not isinstance(num_labels, (int, np.integer)) or isinstance(num_labels, bool) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive int, got {num_labels!r}.")
        if label_map is not None and not isinstance(label_map, Mapping):
            raise ValueError(f"`label_map` must be a dict {{old: new}}, got {type(label_map)}.")
        self.num_labels = int(num_labels)
        self.ignore_index = ignore_index
        self.reduce_labels = bool(reduce_labels)
        self.label_map = {int(k): int(v) for k, v in label_map.items()} if label_map else None
        self.nan_to_num = nan_to_num
        # The key piece of each class (checks `id2label`); the names as given stay in `id2label`.
        self.class_keys = class_key_names(self.num_labels, id2label or None)
        self.id2label = None
        if id2label:
            pairs = id2label.items() if isinstance(id2label, Mapping) else enumerate(id2label)
            self.id2label = {int(index): str(name) for index, name in pairs}
        self.pad_index = pad_index
        self._warned_resize = False
        self.reset()

    def _config(self) -> tuple:
        label_map = tuple(sorted(self.label_map.items())) if self.label_map else None
        return (self.num_labels, self.ignore_index, self.reduce_labels, label_map, self.pad_index)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        size = self.num_labels + 1
        self._cm = torch.zeros((size, size), dtype=torch.int64)
        self._synchronized = False

    @property
    def confusion_matrix(self) -> torch.Tensor:
        """(num_labels, num_labels) int64 counts, rows = label, columns = prediction (in-range pixels only)."""
        return self._cm[: self.num_labels, : self.num_labels].clone()

    def update(self, predictions: Any, references: Any) -> None:
        """Add a batch.

        Args:
            predictions: label maps (B, H, W) or (H, W) of ints, or logits (B, C, h, w) with C = num_labels, which
                are bilinearly upsampled to the label size (if it differs) and arg-maxed, one image at a time;
                tensors, numpy arrays, or a list of per-image items of varying sizes.
            references: label maps (B, H, W) or (H, W), or a list of per-image maps matching `predictions`.
        """
        self._check_not_synchronized()
        if isinstance(predictions, (list, tuple)) and isinstance(references, (list, tuple)):
            if len(predictions) != len(references):
                raise ValueError(
                    f"`predictions` and `references` lists must have the same length, got {len(predictions)} and "
                    f"{len(references)}."
                )
            for prediction, reference in zip(predictions, references):
                prediction = _to_tensor(prediction, "predictions")
                reference = _to_tensor(reference, "references")
                if reference.ndim == 2 and prediction.ndim == 3:
                    prediction = prediction[None]  # one image's logits (C, h, w)
                self._update_batch(prediction, reference)
            return
        self._update_batch(_to_tensor(predictions, "predictions"), _to_tensor(references, "references"))

    def _prediction_map(self, predictions: torch.Tensor, label_size: tuple[int, int]) -> torch.Tensor:
        if predictions.ndim == 4:
            if predictions.shape[1] != self.num_labels:
                raise ValueError(
                    f"`predictions` looks like logits (B, C, h, w) but C={predictions.shape[1]} != "
                    f"num_labels={self.num_labels}."
                )
            maps = []
            for logits in predictions:
                logits = logits[None].float()
                if tuple(logits.shape[-2:]) != label_size:
                    if not self._warned_resize:
                        logger.info(
                            "SegmentationMetrics: upsampling logits %s bilinearly to the label size %s before argmax.",
                            tuple(logits.shape[-2:]),
                            label_size,
                        )
                        self._warned_resize = True
                    logits = F.interpolate(logits, size=label_size, mode="bilinear", align_corners=False)
                maps.append(logits.argmax(dim=1))
            return torch.cat(maps)
        if predictions.ndim == 2:
            predictions = predictions[None]
        if predictions.ndim != 3:
            raise ValueError(
                f"`predictions` must be label maps (B, H, W) / (H, W) or logits (B, C, h, w) (or (C, h, w) in a "
                f"per-image list), got shape "
                f"{tuple(predictions.shape)}."
            )
        return _as_integer_map(predictions, "predictions")

    def _update_batch(self, predictions: torch.Tensor, references: torch.Tensor) -> None:
        if references.ndim == 4 and references.shape[1] == 1:
            references = references[:, 0]
        if references.ndim == 2:
            references = references[None]
        if references.ndim != 3:
            raise ValueError(f"`references` must be label maps (B, H, W) or (H, W), got {tuple(references.shape)}.")
        labels = _as_integer_map(references, "references")
        preds = self._prediction_map(predictions, tuple(labels.shape[-2:]))
        if preds.shape != labels.shape:
            raise ValueError(
                f"`predictions` label maps {tuple(preds.shape)} must match `references` {tuple(labels.shape)} "
                "(label maps are never resized; pass logits to have them upsampled)."
            )
        labels = labels.to(preds.device)
        if self.label_map is not None:
            # write into a copy: `labels` may share memory with the caller's array (torch.from_numpy)
            mapped = labels.clone()
            for old, new in self.label_map.items():
                mapped[labels == old] = new
            labels = mapped
        if self.reduce_labels:
            labels = torch.where(labels == 0, torch.full_like(labels, 255), labels) - 1
            labels = torch.where(labels == 254, torch.full_like(labels, 255), labels)
        keep = torch.ones_like(labels, dtype=torch.bool)
        if self.ignore_index is not None:
            keep &= labels != self.ignore_index
        if self.pad_index is not None:
            keep &= labels != self.pad_index
        n = self.num_labels
        labels, preds = labels[keep], preds[keep]
        # out-of-range values go to bucket n: they add to the other side's area but never to an intersection
        labels = torch.where((labels >= 0) & (labels < n), labels, torch.full_like(labels, n))
        preds = torch.where((preds >= 0) & (preds < n), preds, torch.full_like(preds, n))
        counts = torch.bincount(labels * (n + 1) + preds, minlength=(n + 1) ** 2)
        self._cm += counts.reshape(n + 1, n + 1).cpu()

    def compute(self) -> dict[str, Any]:
        """Return evaluate `mean_iou`'s dict: mean_iou, mean_accuracy, overall_accuracy (floats),
        per_category_iou and per_category_accuracy (float64 numpy arrays of length num_labels); with `id2label`
        also ``iou_<name>`` and ``accuracy_<name>`` (floats) for every class."""
        cm = self._cm.double().numpy()
        n = self.num_labels
        intersect = np.diag(cm)[:n]
        area_pred = cm[:, :n].sum(axis=0)
        area_label = cm[:n, :].sum(axis=1)
        union = area_pred + area_label - intersect
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN: empty evaluation -> NaN
            iou = intersect / union
            acc = intersect / area_label
            result = {
                "mean_iou": float(np.nanmean(iou)),
                "mean_accuracy": float(np.nanmean(acc)),
                "overall_accuracy": float(intersect.sum() / area_label.sum()),
                "per_category_iou": iou,
                "per_category_accuracy": acc,
            }
        if self.nan_to_num is not None:
            result = {
                key: (np.nan_to_num(value, nan=self.nan_to_num) if isinstance(value, np.ndarray) else value)
                for key, value in result.items()
            }
            for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
                if math.isnan(result[key]):
                    result[key] = float(self.nan_to_num)
        if self.id2label is not None:
            result.update(self._per_class(result))
        return result

    def _per_class(self, result: Mapping[str, Any]) -> dict[str, float]:
        per_class = {}
        for index, name in enumerate(self.class_keys):
            per_class[f"iou_{name}"] = float(result["per_category_iou"][index])
            per_class[f"accuracy_{name}"] = float(result["per_category_accuracy"][index])
        return per_class

    def _flat(self, result: dict[str, Any]) -> dict[str, float]:
        flat = {key: float(result[key]) for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        flat.update(self._per_class(result))
        return flat
