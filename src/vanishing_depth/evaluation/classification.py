"""Streaming top-1 / top-k accuracy and balanced (mean per-class) accuracy for image classification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .streaming import _as_integer_map, _StreamingMetric, _to_tensor, class_key_names

__all__ = ["ClassificationMetrics"]


class ClassificationMetrics(_StreamingMetric):
    """Streaming top-1 (and top-k) accuracy.

    `update` takes class ids (B,) or logits/scores (B, C); top-k for k > 1 needs scores. References equal to
    `ignore_index` (-100, the HF padding value) are skipped. With `num_labels`, a confusion matrix is also kept and
    `mean_per_class_accuracy` (balanced accuracy, nanmean over classes that occur in the references) reported.

    Output keys: `accuracy` (top-1), `top{k}_accuracy` for every k > 1 in `top_k`, `num_samples`, and
    `mean_per_class_accuracy` when `num_labels` is given; with `id2label` also ``accuracy_<name>`` per class (the
    share of its samples predicted as it, NaN for a class absent from the references).

    Args:
        num_labels: number of classes, or None (then taken from `id2label` if given).
        top_k: the k values to report (1 is always reported as `accuracy`).
        ignore_index: reference value to skip.
        id2label: optional class names, ``{id: name}`` (e.g. ``model.config.id2label``) or a list in id order, for
            the per-class keys; made safe for metric keys by `metric_key_name`.
    """

    _state_names = ("_correct", "_count", "_cm")

    def __init__(
        self,
        num_labels: int | None = None,
        top_k: Sequence[int] = (1,),
        ignore_index: int = -100,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if num_labels is None and id2label:
            if isinstance(id2label, Mapping):
                try:
                    num_labels = max(int(key) for key in id2label) + 1
                except (TypeError, ValueError):
                    num_labels = len(id2label)  # class_key_names below names the bad key
            else:
                num_labels = len(id2label)
        if num_labels is not None and (not isinstance(num_labels, (int, np.integer)) or num_labels < 1):
            raise ValueError(f"`num_labels` must be a positive int or None, got {num_labels!r}.")
        self.class_keys = class_key_names(int(num_labels), id2label) if id2label else None
        top_k = tuple(int(k) for k in top_k)
        if not top_k or any(k < 1 for k in top_k):
            raise ValueError(f"`top_k` must be a non-empty sequence of ints >= 1, got {top_k}.")
        if num_labels is not None and max(top_k) > num_labels:
            raise ValueError(f"`top_k` values must be <= num_labels={num_labels}, got {top_k}.")
        self.num_labels = None if num_labels is None else int(num_labels)
        self.top_k = tuple(sorted(set(top_k) | {1}))
        self.ignore_index = ignore_index
        self.reset()

    def _config(self) -> tuple:
        return (self.num_labels, self.top_k, self.ignore_index)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._correct = torch.zeros(len(self.top_k), dtype=torch.int64)
        self._count = torch.zeros(1, dtype=torch.int64)
        size = self.num_labels or 0
        self._cm = torch.zeros((size, size), dtype=torch.int64)
        self._synchronized = False

    def update(self, predictions: Any, references: Any) -> None:
        """Add a batch: `predictions` (B,) class ids or (B, C) scores, `references` (B,) class ids."""
        self._check_not_synchronized()
        preds = _to_tensor(predictions, "predictions")
        refs = _to_tensor(references, "references")
        if refs.ndim == 2 and refs.shape[1] == 1:
            refs = refs[:, 0]
        if refs.ndim == 0:
            refs = refs[None]
        if refs.ndim != 1:
            raise ValueError(f"`references` must be class ids of shape (B,), got {tuple(refs.shape)}.")
        refs = _as_integer_map(refs, "references")
        if preds.ndim == 0:
            preds = preds[None]
        if preds.shape[0] != refs.shape[0]:
            raise ValueError(
                f"`predictions` and `references` must have the same batch size, got {preds.shape[0]} and "
                f"{refs.shape[0]}."
            )
        keep = refs != self.ignore_index
        refs = refs[keep].to(preds.device)
        preds = preds[keep.to(preds.device)]
        if preds.ndim == 2:
            num_classes = preds.shape[1]
            if self.num_labels is not None and num_classes != self.num_labels:
                raise ValueError(
                    f"`predictions` has {num_classes} scores per sample, expected num_labels={self.num_labels}."
                )
            if max(self.top_k) > num_classes:
                raise ValueError(f"`top_k`={self.top_k} needs at least {max(self.top_k)} classes, got {num_classes}.")
            ranked = preds.float().topk(max(self.top_k), dim=1).indices
            top1 = preds.float().argmax(dim=1)
            correct = [
                int((top1 == refs).sum()) if k == 1 else int((ranked[:, :k] == refs[:, None]).any(1).sum())
                for k in self.top_k
            ]
        elif preds.ndim == 1:
            if max(self.top_k) > 1:
                raise ValueError(
                    f"top-k accuracy for top_k={self.top_k} needs scores (B, C); got class ids of shape "
                    f"{tuple(preds.shape)}. Pass logits or use top_k=(1,)."
                )
            top1 = _as_integer_map(preds, "predictions")
            correct = [int((top1 == refs).sum())]
        else:
            raise ValueError(f"`predictions` must be class ids (B,) or scores (B, C), got {tuple(preds.shape)}.")
        if self.num_labels is not None:
            n = self.num_labels
            if refs.numel() and (int(refs.min()) < 0 or int(refs.max()) >= n):
                raise ValueError(
                    f"`references` must be in [0, {n}) or {self.ignore_index}, got {refs.unique().tolist()}."
                )
            pred_ids = top1
            if pred_ids.numel() and (int(pred_ids.min()) < 0 or int(pred_ids.max()) >= n):
                raise ValueError(f"`predictions` class ids must be in [0, {n}), got {pred_ids.unique().tolist()}.")
            self._cm += torch.bincount(refs * n + pred_ids, minlength=n * n).reshape(n, n).cpu()
        self._correct += torch.tensor(correct, dtype=torch.int64)
        self._count += refs.numel()

    def compute(self) -> dict[str, float]:
        """Return accuracy, top-k accuracies, num_samples and (with num_labels) mean_per_class_accuracy."""
        count = int(self._count[0])
        rates = (self._correct.double() / count).tolist() if count else [float("nan")] * len(self.top_k)
        result = {}
        for k, rate in zip(self.top_k, rates):
            result["accuracy" if k == 1 else f"top{k}_accuracy"] = rate
        if self.num_labels is not None:
            cm = self._cm.double()
            support = cm.sum(dim=1)
            per_class = cm.diagonal()[support > 0] / support[support > 0]
            result["mean_per_class_accuracy"] = float(per_class.mean()) if per_class.numel() else float("nan")
            if self.class_keys is not None:
                rates = (cm.diagonal() / support).tolist()  # 0 / 0 = NaN for classes without samples
                for name, rate in zip(self.class_keys, rates):
                    result[f"accuracy_{name}"] = rate
        result["num_samples"] = float(count)
        return result
