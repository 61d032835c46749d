"""Streaming depth-error metrics (AbsRel, RMSE, MAE, iRMSE, delta, SILog, ...) in metres, per image then averaged."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from .streaming import _StreamingMetric, _to_tensor

logger = logging.getLogger(__name__)

__all__ = ["DEPTH_METRIC_KEYS", "DepthMetrics", "compute_depth_metrics"]

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
    """Streaming depth-error metrics, per image then averaged over images, as the authors' `utils/stuff.py`
    (`DepthMetric`) of Vanishing Depth (arXiv 2503.19947) computes them.

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
    `clamp_predictions` (as the authors' `DepthMetric` does); otherwise non-positive predictions make the
    log/inverse metrics inf/NaN (a warning is logged). If a prediction's spatial size differs from its label, the
    **prediction** is resized bilinearly (align_corners=False) to the label size (logged once). Computation is in
    float64.

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
