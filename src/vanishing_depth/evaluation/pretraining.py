"""The pretraining validation of Vanishing Depth (arXiv 2503.19947): scale-invariant error and |error| split by depth
range, per input-depth density, with their area under the curve over density."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..loss_vanishing_depth import scale_invariant_log_loss
from .depth import _as_depth_batch
from .streaming import _StreamingState, _to_tensor

logger = logging.getLogger(__name__)

__all__ = ["PRETRAINING_DENSITIES", "PRETRAINING_DEPTH_BINS_M", "PretrainingValidationMetrics"]

# Pretraining validation of the paper (arXiv 2503.19947): input-depth densities and depth ranges of the |error| split.
PRETRAINING_DENSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PRETRAINING_DEPTH_BINS_M = (0.6, 3.0, 10.0)


def _format_number(value: float) -> str:
    return f"{value:g}"


class PretrainingValidationMetrics(_StreamingState):
    """Pretraining validation metrics of Vanishing Depth (arXiv 2503.19947), streamed per input-depth density.

    The caller evaluates the model once per density (fraction of input depth pixels kept) and passes each result
    with its `density`. For every density:

    * `si_d{density}`: the scale-invariant error of the training loss (`alpha * sqrt(mean g^2 - lambda mean(g)^2)`,
      g = ln pred - ln gt), per image, averaged over images (see [`scale_invariant_log_loss`]);
    * `mae_m_d{density}`: mean |pred - gt| in metres over all valid pixels (pooled);
    * `mae_m_{lo}-{hi}m_d{density}`: the same split by ground-truth depth into `(0, 0.6]`, `(0.6, 3]`, `(3, 10]` m
      (pixels beyond the last edge count only in the overall MAE).

    and `*_auc`: the area under each metric's curve over density (trapezoid rule), divided by the density span so
    it reads in the metric's unit (a single density gives its value). The paper does not say how the AUC was
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
