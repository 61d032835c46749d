"""Offline, streaming evaluation metrics for segmentation, depth and classification.

Nothing here downloads anything: `evaluate.load("mean_iou")` does not work offline (ENVIRONMENT §A.3), so the
metrics are written in torch and exposed three ways:

* stateful classes with `update` / `compute` / `reset` / `merge` / `synchronize`
  ([`SegmentationMetrics`], [`DepthMetrics`], [`ClassificationMetrics`]); only small sufficient statistics are
  kept between batches (a confusion matrix, per-image metric sums), never full-resolution logits;
* the same objects are directly usable as `Trainer(compute_metrics=...)` with
  `TrainingArguments(batch_eval_metrics=True)`: Trainer calls `compute_metrics(EvalPrediction, compute_result=...)`
  once per batch (predictions/labels already gathered across processes) and `compute_result=True` on the last one,
  when a flat `dict[str, float]` is returned and the state reset. Without `batch_eval_metrics` Trainer calls them
  once with everything, which also works (`compute_result` defaults to True);
* [`PretrainingValidationMetrics`]: the pretraining validation of METHOD §2.9 (SI error and |error| split by
  depth range, per input-depth density, with an AUC over density);
* `evaluate.Metric` subclasses defined in-process ([`MeanIoU`], [`DepthErrors`], [`Accuracy`]) so that
  `evaluate.combine([...])`, `add_batch` and `compute` work with `HF_HUB_OFFLINE=1`.

Depth is float metres everywhere, 0 = no measurement.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
import torch.nn.functional as F

from .losses import scale_invariant_log_loss

logger = logging.getLogger(__name__)

__all__ = [
    "DEPTH_METRIC_KEYS",
    "Accuracy",
    "ClassificationMetrics",
    "DepthErrors",
    "DepthMetrics",
    "MeanIoU",
    "PRETRAINING_DENSITIES",
    "PRETRAINING_DEPTH_BINS_M",
    "PretrainingValidationMetrics",
    "SegmentationMetrics",
    "class_key_names",
    "compute_depth_metrics",
    "metric_key_name",
]


# --------------------------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------------------------


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    """Tensor view of a tensor / numpy array / nested list (no copy for tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple, int, float, np.generic)):
        return torch.as_tensor(np.asarray(value))
    raise ValueError(f"`{name}` must be a torch.Tensor, numpy array or nested list, got {type(value)}.")


def _first_if_tuple(value: Any) -> Any:
    """Trainer passes a tuple when the model returns several outputs besides the loss (or there are several
    label names): the first one is used. Lists are not touched (they mean "one entry per batch")."""
    if isinstance(value, tuple) and len(value) > 0:
        return value[0]
    return value


def _as_integer_map(value: torch.Tensor, name: str) -> torch.Tensor:
    """int64 label map (may share memory with the input: never modify it in place); floating input must hold
    whole numbers (it may come out of a float collator)."""
    if value.dtype == torch.bool:
        return value.long()
    if value.is_floating_point():
        if not bool(torch.all(value == torch.round(value))):
            raise ValueError(f"`{name}` must hold integer class ids, got non-integral floating values.")
    return value.long()


def _all_reduce_sum(tensor: torch.Tensor, accelerator: Any = None) -> torch.Tensor:
    """Sum `tensor` over processes (through `accelerator.reduce` or torch.distributed); returns a CPU tensor."""
    if accelerator is not None:
        reduced = accelerator.reduce(tensor.to(accelerator.device), reduction="sum")
        return reduced.to("cpu", dtype=tensor.dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = torch.device("cpu")
        if torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        buffer = tensor.to(device).clone()
        torch.distributed.all_reduce(buffer, op=torch.distributed.ReduceOp.SUM)
        return buffer.to("cpu", dtype=tensor.dtype)
    return tensor


_UNSAFE_KEY_CHARACTERS = re.compile(r"[^0-9A-Za-z_.-]+")


def metric_key_name(name: Any) -> str:
    """A class name as a piece of a metric key: every run of characters other than ASCII letters, digits, ``_``,
    ``.`` and ``-`` becomes one ``_``, with none left at either end (``"night stand"`` -> ``"night_stand"``,
    ``"TV/monitor"`` -> ``"TV_monitor"``); what loggers (TensorBoard, MLflow, W&B) accept in a key. May be empty."""
    return _UNSAFE_KEY_CHARACTERS.sub("_", str(name)).strip("_")


def class_key_names(num_labels: int, id2label: Mapping[Any, Any] | Sequence[str] | None) -> list[str]:
    """The key piece of each class `0 .. num_labels - 1`: its `metric_key_name` from `id2label`, or the class id
    where it has no name (or none left after cleaning); names that coincide after cleaning get ``_<id>`` appended.

    Args:
        num_labels: number of classes.
        id2label: ``{id: name}`` (e.g. ``model.config.id2label``; ids may be strings of digits, as in a config.json),
            a sequence of names in id order, or None (ids only).

    Raises:
        ValueError: `id2label` is not a mapping / sequence of names, or holds an id outside ``[0, num_labels)``.
    """
    if id2label is None:
        return [str(index) for index in range(num_labels)]
    if isinstance(id2label, Sequence) and not isinstance(id2label, (str, bytes)):
        id2label = dict(enumerate(id2label))
    if not isinstance(id2label, Mapping):
        raise ValueError(
            f"`id2label` must be a dict {{class id: name}} (e.g. model.config.id2label) or a list of names, got "
            f"{type(id2label).__name__}."
        )
    names: dict[int, str] = {}
    for key, value in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            index = None
        if index is None or isinstance(key, bool) or str(index) != str(key).strip() or not 0 <= index < num_labels:
            raise ValueError(
                f"`id2label` keys must be class ids in [0, {num_labels}) (num_labels={num_labels}), got {key!r}."
            )
        names[index] = metric_key_name(value)
    keys = [names.get(index) or str(index) for index in range(num_labels)]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return [key if counts[key] == 1 or key == str(index) else f"{key}_{index}" for index, key in enumerate(keys)]


class _StreamingState(ABC):
    """reset / compute / merge / synchronize over a state made only of summable tensors.

    Subclasses keep their whole state in the tensors named by `_state_names` (summed by `merge` and
    `synchronize`); `_config` returns the settings that must agree for two states to be merged.
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._synchronized = False

    @abstractmethod
    def reset(self) -> None:
        """Forget every batch seen so far."""

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Metrics of every batch seen so far."""

    @abstractmethod
    def _config(self) -> tuple:
        """Settings that must be equal for `merge`."""

    # -- shared -------------------------------------------------------------------------------------------------------
    def _check_not_synchronized(self) -> None:
        if self._synchronized:
            raise RuntimeError(
                f"{type(self).__name__} was synchronized across processes; call reset() before adding new batches "
                "(a second synchronize would count the earlier batches twice)."
            )

    def merge(self, other: _StreamingState) -> _StreamingState:
        """Add the state of `other` (same class and settings) into this one; returns `self`."""
        if type(other) is not type(self):
            raise ValueError(f"`other` must be a {type(self).__name__}, got {type(other).__name__}.")
        if other._config() != self._config():
            raise ValueError(
                f"`other` was built with different settings: {other._config()} instead of {self._config()}."
            )
        self._check_not_synchronized()
        for name in self._state_names:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def synchronize(self, accelerator: Any = None) -> _StreamingState:
        """Sum the state over all processes, in place, so `compute()` gives the global result everywhere.

        Uses `accelerator.reduce` when an `accelerate.Accelerator` is given, else `torch.distributed.all_reduce`
        when a process group is initialised, else does nothing. Call it once, after the last `update` (a custom
        loop where every process saw a different shard). Do **not** call it under `Trainer`: Trainer already
        gathers every batch across processes before calling the metric.
        """
        if self._synchronized:
            raise RuntimeError(f"{type(self).__name__}.synchronize() was already called; call reset() first.")
        for name in self._state_names:
            setattr(self, name, _all_reduce_sum(getattr(self, name), accelerator))
        self._synchronized = True
        return self


class _StreamingMetric(_StreamingState):
    """A `_StreamingState` fed with (predictions, references) that also follows Trainer's `compute_metrics`
    convention (with and without `batch_eval_metrics`)."""

    @abstractmethod
    def update(self, predictions: Any, references: Any) -> None:
        """Add one batch."""

    def _flat(self, result: dict[str, Any]) -> dict[str, float]:
        return {key: float(value) for key, value in result.items()}

    def __call__(self, eval_pred: Any, compute_result: bool = True) -> dict[str, float]:
        """Trainer `compute_metrics` hook.

        Args:
            eval_pred: `transformers.EvalPrediction` (or anything with `.predictions` and `.label_ids`). With
                `batch_eval_metrics=True` it holds one (gathered) batch as tensors. A tuple of predictions (model
                outputs besides the loss) uses its first element.
            compute_result: True on the last batch: return the flat metric dict and reset. False: accumulate and
                return an empty dict.
        """
        predictions, references = eval_pred.predictions, eval_pred.label_ids
        if isinstance(references, list):
            # `eval_do_concat_batches=False`: Trainer hands over one entry per batch
            if not isinstance(predictions, list) or len(predictions) != len(references):
                raise ValueError(
                    "`eval_pred.label_ids` is a list of batches, so `eval_pred.predictions` must be a list of the same "
                    f"length, got {type(predictions).__name__}."
                )
            for batch_predictions, batch_references in zip(predictions, references):
                self.update(_first_if_tuple(batch_predictions), _first_if_tuple(batch_references))
        else:
            self.update(_first_if_tuple(predictions), _first_if_tuple(references))
        if not compute_result:
            return {}
        result = self._flat(self.compute())
        self.reset()
        return result


# --------------------------------------------------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# depth
# --------------------------------------------------------------------------------------------------------------------

# Result keys, in the order of the per-image metric vector.
DEPTH_METRIC_KEYS = (
    "abs_rel",
    "sq_rel",
    "rmse_m",
    "rmse_mm",
    "rmse_log",
    "mae_m",
    "mae_mm",
    "irmse_inv_km",
    "imae_inv_km",
    "delta1",
    "delta2",
    "delta3",
    "silog",
    "log10",
)
# Per-image pixel sums from which every metric follows (pooled mode keeps these).
_N, _ABS_REL, _SQ_REL, _SQ, _ABS, _LOG_SQ, _LOG, _INV_SQ, _INV_ABS, _D1, _D2, _D3, _LOG10 = range(13)
_NUM_SUMS = 13


def _finalize_depth(sums: torch.Tensor) -> torch.Tensor:
    """(N, 13) pixel sums with n > 0 -> (N, len(DEPTH_METRIC_KEYS)) metrics."""
    n = sums[:, _N]
    mean = sums / n[:, None]
    rmse_m = mean[:, _SQ].sqrt()
    mae_m = mean[:, _ABS]
    # KITTI SILog: 100 * sqrt(mean(d^2) - mean(d)^2), d = ln(pred) - ln(gt); clamp tiny negative rounding
    silog = 100.0 * (mean[:, _LOG_SQ] - mean[:, _LOG].square()).clamp(min=0).sqrt()
    columns = [
        mean[:, _ABS_REL],
        mean[:, _SQ_REL],
        rmse_m,
        1000.0 * rmse_m,
        mean[:, _LOG_SQ].sqrt(),
        mae_m,
        1000.0 * mae_m,
        mean[:, _INV_SQ].sqrt(),
        mean[:, _INV_ABS],
        mean[:, _D1],
        mean[:, _D2],
        mean[:, _D3],
        silog,
        mean[:, _LOG10],
    ]
    return torch.stack(columns, dim=1)


def _as_depth_batch(value: torch.Tensor, name: str) -> torch.Tensor:
    if value.ndim == 4 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim == 2:
        value = value[None]
    if value.ndim != 3:
        raise ValueError(f"`{name}` must be depth maps (B, H, W), (B, 1, H, W) or (H, W), got {tuple(value.shape)}.")
    return value


class DepthMetrics(_StreamingMetric):
    """Streaming depth-error metrics, per image then averaged over images (METHOD §3.2).

    For every image, on the valid pixels (GT finite, `min_depth_m < GT`, `GT <= max_depth_m` when set, and the
    optional `valid_mask`; so GT 0 = no measurement is always out), with `e = pred - gt`:

    * `abs_rel` mean |e|/gt; `sq_rel` mean e^2/gt (metres); `rmse_m` / `rmse_mm`; `mae_m` / `mae_mm`
      (VOID reports millimetres);
    * `rmse_log` sqrt(mean (ln pred - ln gt)^2); `log10` mean |log10 pred - log10 gt|;
    * `irmse_inv_km` / `imae_inv_km`: inverse-depth errors in 1/km (KITTI depth completion and VOID convention);
    * `delta1..3`: fraction with max(pred/gt, gt/pred) < 1.25^k;
    * `silog`: KITTI convention, `100 * sqrt(mean(d^2) - mean(d)^2)`, d = ln pred - ln gt (variance focus 1,
      x100; not the 10x / 0.85 training loss).

    With `per_image=True` (default) every metric is computed per image and the mean over images is reported
    (images without a valid pixel are skipped and counted in `num_skipped_images`); with `per_image=False` all
    valid pixels of the dataset are pooled. Predictions are clamped to `[min_depth_m, max_depth_m]` when
    `clamp_predictions` (METHOD §3.2); otherwise non-positive predictions make the log/inverse metrics inf/NaN
    (a warning is logged). If a prediction's spatial size differs from its label, the **prediction** is resized
    bilinearly (align_corners=False) to the label size (logged once). Computation is in float64.

    The Trainer hook expects `predictions` = `predicted_depth` (B, H, W) or (B, 1, H, W) in metres and labels =
    GT depth (B, H, W) in metres (Trainer's -100 padding is negative, hence invalid).

    Args:
        min_depth_m: lower bound of the evaluation range (GT must be strictly above it), metres.
        max_depth_m: upper bound (inclusive), metres, or None for no bound.
        unit: unit of the inputs; only "m" is accepted (depth is metres throughout the project).
        clamp_predictions: clamp predictions into the evaluation range first.
        per_image: per-image averaging (True) or pooling over pixels (False).
    """

    _state_names = ("_metric_sums", "_pixel_sums", "_counts")

    def __init__(
        self,
        min_depth_m: float = 1e-3,
        max_depth_m: float | None = None,
        unit: str = "m",
        clamp_predictions: bool = True,
        per_image: bool = True,
    ) -> None:
        super().__init__()
        if unit != "m":
            raise ValueError(f"`unit` must be 'm' (depth is metres in vanishing-depth), got {unit!r}.")
        if not min_depth_m >= 0:
            raise ValueError(f"`min_depth_m` must be >= 0 metres, got {min_depth_m}.")
        if max_depth_m is not None and not max_depth_m > min_depth_m:
            raise ValueError(f"`max_depth_m` must be > min_depth_m={min_depth_m}, got {max_depth_m}.")
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = None if max_depth_m is None else float(max_depth_m)
        self.unit = unit
        self.clamp_predictions = bool(clamp_predictions)
        self.per_image = bool(per_image)
        self._warned_resize = False
        self._warned_nonpositive = False
        self._warned_skipped = False
        self.reset()

    def _config(self) -> tuple:
        return (self.min_depth_m, self.max_depth_m, self.clamp_predictions, self.per_image)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._metric_sums = torch.zeros(len(DEPTH_METRIC_KEYS), dtype=torch.float64)
        self._pixel_sums = torch.zeros(_NUM_SUMS, dtype=torch.float64)
        # images with valid pixels, images skipped, valid pixels
        self._counts = torch.zeros(3, dtype=torch.int64)
        self._synchronized = False

    def _pixel_sums_per_image(
        self, predictions: torch.Tensor, references: torch.Tensor, valid_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, H, W) inputs -> (B, 13) float64 pixel sums over each image's valid pixels."""
        gt = references.to(torch.float64)
        pred = predictions.to(device=gt.device, dtype=torch.float64)
        valid = torch.isfinite(gt) & (gt > self.min_depth_m)
        if self.max_depth_m is not None:
            valid &= gt <= self.max_depth_m
        if valid_mask is not None:
            valid &= valid_mask.to(device=gt.device, dtype=torch.bool)
        if self.clamp_predictions:
            pred = pred.clamp(min=self.min_depth_m, max=self.max_depth_m)
        if not self._warned_nonpositive and bool((valid & ~(pred > 0)).any()):
            logger.warning(
                "DepthMetrics: some predictions on valid pixels are <= 0 or NaN (clamp_predictions=%s, min_depth_m=%s);"
                " log and inverse-depth metrics will be inf/NaN.",
                self.clamp_predictions,
                self.min_depth_m,
            )
            self._warned_nonpositive = True
        ones = torch.ones_like(gt)
        p = torch.where(valid, pred, ones)
        d = torch.where(valid, gt, ones)
        err = p - d
        log_diff = torch.log(p) - torch.log(d)
        inv_diff = 1000.0 / p - 1000.0 / d  # 1/km
        ratio = torch.maximum(p / d, d / p)
        zero = torch.zeros((), dtype=gt.dtype, device=gt.device)
        terms = [
            torch.ones_like(gt),
            err.abs() / d,
            err.square() / d,
            err.square(),
            err.abs(),
            log_diff.square(),
            log_diff,
            inv_diff.square(),
            inv_diff.abs(),
            (ratio < 1.25).double(),
            (ratio < 1.25**2).double(),
            (ratio < 1.25**3).double(),
            (torch.log10(p) - torch.log10(d)).abs(),
        ]
        # masked sum term by term: a stacked (B, 13, H, W) float64 tensor would be large for full-resolution maps
        return torch.stack([torch.where(valid, term, zero).flatten(1).sum(dim=1) for term in terms], dim=1)

    def update(self, predictions: Any, references: Any, valid_mask: Any = None) -> None:
        """Add a batch.

        Args:
            predictions: predicted depth in metres, (B, H, W), (B, 1, H, W) or (H, W); tensor or numpy.
            references: ground-truth depth in metres, same batch size, (B, H, W), (B, 1, H, W) or (H, W); 0 = invalid.
            valid_mask: optional extra bool mask of the references' shape (e.g. an evaluation crop).
        """
        self._check_not_synchronized()
        pred = _as_depth_batch(_to_tensor(predictions, "predictions"), "predictions")
        gt = _as_depth_batch(_to_tensor(references, "references"), "references")
        if pred.shape[0] != gt.shape[0]:
            raise ValueError(
                f"`predictions` and `references` must have the same batch size, got {pred.shape[0]} and {gt.shape[0]}."
            )
        mask = None
        if valid_mask is not None:
            mask = _as_depth_batch(_to_tensor(valid_mask, "valid_mask"), "valid_mask")
            if mask.shape != gt.shape:
                raise ValueError(f"`valid_mask` must have shape {tuple(gt.shape)}, got {tuple(mask.shape)}.")
        if pred.shape[-2:] != gt.shape[-2:]:
            if not self._warned_resize:
                logger.warning(
                    "DepthMetrics: resizing predictions %s bilinearly to the ground-truth size %s.",
                    tuple(pred.shape[-2:]),
                    tuple(gt.shape[-2:]),
                )
                self._warned_resize = True
            pred = F.interpolate(pred[:, None].double(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
            pred = pred[:, 0]
        sums = self._pixel_sums_per_image(pred, gt, mask)
        has_pixels = sums[:, _N] > 0
        num_valid_images = int(has_pixels.sum())
        num_skipped = sums.shape[0] - num_valid_images
        if num_skipped and not self._warned_skipped:
            logger.warning(
                "DepthMetrics: %d image(s) have no valid ground-truth pixel in (%s, %s] m and are left out "
                "(counted in num_skipped_images).",
                num_skipped,
                self.min_depth_m,
                self.max_depth_m,
            )
            self._warned_skipped = True
        sums = sums[has_pixels]
        if self.per_image and num_valid_images:
            self._metric_sums += _finalize_depth(sums).sum(dim=0).cpu()
        self._pixel_sums += sums.sum(dim=0).cpu()
        self._counts += torch.tensor([num_valid_images, num_skipped, int(sums[:, _N].sum())], dtype=torch.int64)

    def compute(self) -> dict[str, float]:
        """Return `{metric: float}` for every key of `DEPTH_METRIC_KEYS` plus `num_images` (images evaluated),
        `num_skipped_images` and `num_valid_pixels`. Metrics are NaN if no image had a valid pixel."""
        num_images = int(self._counts[0])
        if num_images == 0:
            values = [float("nan")] * len(DEPTH_METRIC_KEYS)
        elif self.per_image:
            values = (self._metric_sums / num_images).tolist()
        else:
            values = _finalize_depth(self._pixel_sums[None])[0].tolist()
        result = dict(zip(DEPTH_METRIC_KEYS, values))
        result["num_images"] = float(num_images)
        result["num_skipped_images"] = float(self._counts[1])
        result["num_valid_pixels"] = float(self._counts[2])
        return result


def compute_depth_metrics(
    pred_m: Any,
    target_m: Any,
    valid_mask: Any = None,
    min_depth_m: float = 1e-3,
    max_depth_m: float | None = None,
    clamp_predictions: bool = True,
    per_image: bool = True,
) -> dict[str, float]:
    """Depth metrics of one batch; see [`DepthMetrics`] for the definitions, range rule and keys.

    Args:
        pred_m: predicted depth in metres, (B, H, W), (B, 1, H, W) or (H, W).
        target_m: ground-truth depth in metres, same layout; 0 = no measurement.
        valid_mask: optional extra bool mask of the target's shape.
        min_depth_m: GT must be strictly above this (metres).
        max_depth_m: GT must be at most this (metres), or None.
        clamp_predictions: clamp predictions into `[min_depth_m, max_depth_m]`.
        per_image: average per-image metrics (True) or pool pixels (False).
    """
    metrics = DepthMetrics(
        min_depth_m=min_depth_m, max_depth_m=max_depth_m, clamp_predictions=clamp_predictions, per_image=per_image
    )
    metrics.update(pred_m, target_m, valid_mask=valid_mask)
    return metrics.compute()


# Pretraining validation (METHOD §2.9): input-depth densities and depth ranges of the |error| split.
PRETRAINING_DENSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PRETRAINING_DEPTH_BINS_M = (0.6, 3.0, 10.0)


def _format_number(value: float) -> str:
    return f"{value:g}"


class PretrainingValidationMetrics(_StreamingState):
    """Pretraining validation metrics of METHOD §2.9, streamed per input-depth density.

    The caller evaluates the model once per density (fraction of input depth pixels kept) and passes each result
    with its `density`. For every density:

    * `si_d{density}`: the scale-invariant error of the training loss (`alpha * sqrt(mean g^2 - lambda mean(g)^2)`,
      g = ln pred - ln gt), per image, averaged over images (see [`scale_invariant_log_loss`]);
    * `mae_m_d{density}`: mean |pred - gt| in metres over all valid pixels (pooled);
    * `mae_m_{lo}-{hi}m_d{density}`: the same split by ground-truth depth into `(0, 0.6]`, `(0.6, 3]`, `(3, 10]` m
      (pixels beyond the last edge count only in the overall MAE).

    and `*_auc`: the area under each metric's curve over density (trapezoid rule), divided by the density span so
    it reads in the metric's unit (a single density gives its value). METHOD does not say how the AUC was
    normalised; this choice is ours. Densities without data are left out of the AUC, with a warning.

    Valid pixels: GT finite and > 0, and `valid_mask` when given (e.g. only the removed pixels).

    Args:
        densities: the densities that will be evaluated (each `update` names one of them).
        bin_edges_m: increasing upper edges of the depth ranges, metres.
        alpha: SI scale (10).
        variance_focus: SI lambda (0.85).
    """

    _state_names = ("_si_sums", "_image_counts", "_abs_sums", "_pixel_counts")

    def __init__(
        self,
        densities: Sequence[float] = PRETRAINING_DENSITIES,
        bin_edges_m: Sequence[float] = PRETRAINING_DEPTH_BINS_M,
        alpha: float = 10.0,
        variance_focus: float = 0.85,
    ) -> None:
        super().__init__()
        densities = tuple(float(d) for d in densities)
        if not densities or any(not 0 < d <= 1 for d in densities) or list(densities) != sorted(set(densities)):
            raise ValueError(f"`densities` must be strictly increasing values in (0, 1], got {densities}.")
        edges = tuple(float(e) for e in bin_edges_m)
        if not edges or edges[0] <= 0 or list(edges) != sorted(set(edges)):
            raise ValueError(f"`bin_edges_m` must be strictly increasing positive depths in metres, got {edges}.")
        self.densities = densities
        self.bin_edges_m = edges
        self.alpha = float(alpha)
        self.variance_focus = float(variance_focus)
        lows = (0.0, *edges[:-1])
        self._bin_names = [f"{_format_number(lo)}-{_format_number(hi)}m" for lo, hi in zip(lows, edges)]
        self.reset()

    def _config(self) -> tuple:
        return (self.densities, self.bin_edges_m, self.alpha, self.variance_focus)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        num_d, num_columns = len(self.densities), len(self.bin_edges_m) + 1  # column 0 = all pixels
        self._si_sums = torch.zeros(num_d, dtype=torch.float64)
        self._image_counts = torch.zeros(num_d, dtype=torch.int64)
        self._abs_sums = torch.zeros((num_d, num_columns), dtype=torch.float64)
        self._pixel_counts = torch.zeros((num_d, num_columns), dtype=torch.int64)
        self._synchronized = False

    def update(self, predictions: Any, references: Any, density: float, valid_mask: Any = None) -> None:
        """Add a batch evaluated at input-depth `density`.

        Args:
            predictions: predicted depth in metres, (B, H, W) or (B, 1, H, W).
            references: ground-truth depth in metres, same shape; 0 = no measurement.
            density: one of `self.densities`.
            valid_mask: optional bool mask of the same shape restricting the evaluated pixels.
        """
        self._check_not_synchronized()
        matches = [i for i, d in enumerate(self.densities) if math.isclose(d, float(density), abs_tol=1e-9)]
        if not matches:
            raise ValueError(f"`density` must be one of {self.densities}, got {density}.")
        index = matches[0]
        pred = _as_depth_batch(_to_tensor(predictions, "predictions"), "predictions").to(torch.float64)
        gt = _as_depth_batch(_to_tensor(references, "references"), "references").to(pred.device, torch.float64)
        if pred.shape != gt.shape:
            raise ValueError(
                f"`predictions` {tuple(pred.shape)} and `references` {tuple(gt.shape)} must have the same shape."
            )
        valid = torch.isfinite(gt) & (gt > 0)
        if valid_mask is not None:
            mask = _as_depth_batch(_to_tensor(valid_mask, "valid_mask"), "valid_mask").to(pred.device, torch.bool)
            if mask.shape != gt.shape:
                raise ValueError(f"`valid_mask` must have shape {tuple(gt.shape)}, got {tuple(mask.shape)}.")
            valid &= mask
        si, has_pixels = scale_invariant_log_loss(
            pred, gt, valid, alpha=self.alpha, variance_focus=self.variance_focus, reduction="none"
        )
        self._si_sums[index] += float(si[has_pixels].sum())
        self._image_counts[index] += int(has_pixels.sum())
        abs_err = (pred - gt).abs()[valid]
        depth = gt[valid]
        edges = torch.tensor(self.bin_edges_m, dtype=torch.float64, device=depth.device)
        # column 1 + k for edges[k-1] < depth <= edges[k]; beyond the last edge: only column 0
        column = torch.bucketize(depth, edges, right=False) + 1
        in_bins = column <= len(self.bin_edges_m)
        abs_sums = torch.zeros(len(edges) + 1, dtype=torch.float64, device=depth.device)
        counts = torch.zeros(len(edges) + 1, dtype=torch.int64, device=depth.device)
        abs_sums.index_add_(0, column[in_bins], abs_err[in_bins])
        counts.index_add_(0, column[in_bins], torch.ones_like(column[in_bins]))
        abs_sums[0], counts[0] = abs_err.sum(), abs_err.numel()
        self._abs_sums[index] += abs_sums.cpu()
        self._pixel_counts[index] += counts.cpu()

    def compute(self) -> dict[str, float]:
        """Return per-density values (`*_d{density}`) and their normalised AUC over density (`*_auc`)."""
        # 0 / 0 -> NaN for a density or range without data
        si = (self._si_sums / self._image_counts).numpy()
        mae = (self._abs_sums / self._pixel_counts).numpy()
        curves = {"si": si, "mae_m": mae[:, 0]}
        for k, name in enumerate(self._bin_names):
            curves[f"mae_m_{name}"] = mae[:, k + 1]
        result: dict[str, float] = {}
        missing = [d for d, n in zip(self.densities, self._image_counts.tolist()) if n == 0]
        if missing and len(missing) < len(self.densities):
            logger.warning("PretrainingValidationMetrics: no data for densities %s; the AUC leaves them out.", missing)
        densities = np.asarray(self.densities)
        for key, values in curves.items():
            for density, value in zip(self.densities, values):
                result[f"{key}_d{_format_number(density)}"] = float(value)
            present = np.isfinite(values)
            if present.sum() == 0:
                result[f"{key}_auc"] = float("nan")
            elif present.sum() == 1:
                result[f"{key}_auc"] = float(values[present][0])
            else:
                x, y = densities[present], values[present]
                area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
                result[f"{key}_auc"] = area / float(x[-1] - x[0])
        return result


# --------------------------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# evaluate.Metric wrappers (in-process, so they work offline and inside evaluate.combine)
# --------------------------------------------------------------------------------------------------------------------

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
