"""Losses for Vanishing Depth pretraining and for the downstream depth-completion head.

Everything here works on metric depth in metres, with 0 meaning "no measurement".

* [`scale_invariant_log_loss`]: the BTS/AdaBins form of Eigen's scale-invariant log loss
  (the paper's appendix, the authors' utils/loss.py), `alpha * sqrt(mean(g^2) - lambda * mean(g)^2)` with
  `g = log p - log d`.
* [`VanishingDepthLoss`]: the balanced multi-scale pretraining loss (the authors' utils/loss.py): at every scale, half
  "predict the removed pixels", half "reconstruct the visible pixels", averaged over the scales.
* [`masked_silog_l1_loss`]: SILog plus a masked L1 in metres, for `VanishingDepthForDepthEstimation`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_LOSS_DEPTH_M",
    "VanishingDepthLoss",
    "VanishingDepthLossOutput",
    "masked_silog_l1_loss",
    "scale_invariant_log_loss",
]

# As the authors' utils/loss.py (`min_depth`): pixels whose target OR prediction is below 1 mm are left out.
MIN_LOSS_DEPTH_M = 1e-3


def _as_bhw(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Return `tensor` as (B, H, W); accepts (B, H, W) or (B, 1, H, W)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape (B, H, W) or (B, 1, H, W), got {type(tensor)}.")
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        return tensor[:, 0]
    if tensor.ndim == 3:
        return tensor
    raise ValueError(f"`{name}` must have shape (B, H, W) or (B, 1, H, W), got {tuple(tensor.shape)}.")


def _zero_with_grad(reference: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that stays connected to `reference`'s graph, so `backward()` works and gives zero gradients.

    Non-finite entries are replaced first: `nan * 0` would be NaN.
    """
    return torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference)).sum() * 0


def _safe_sqrt(x: torch.Tensor, eps: float) -> torch.Tensor:
    """`sqrt(max(x, 0))` with an exact value and a finite gradient everywhere.

    `d sqrt(x) / dx` is infinite at 0, so for `x <= eps` the gradient is cut (set to 0) instead of
    clamping the value, which keeps the loss exactly 0 when prediction equals target.
    """
    above = x > eps
    grad_path = torch.sqrt(torch.where(above, x, torch.ones_like(x)))
    value_only = torch.sqrt(x.detach().clamp(min=0))
    return torch.where(above, grad_path, value_only)


def _per_sample_silog(
    pred_m: torch.Tensor,
    target_m: torch.Tensor,
    valid_mask: torch.Tensor | None,
    alpha: float,
    variance_focus: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample SI loss. Inputs (B, H, W); returns `(loss (B,), has_pixels (B,) bool)`, loss 0 where empty."""
    # at least float32: logs of half-precision depths (e.g. under autocast) lose the small differences that matter
    dtype = torch.promote_types(pred_m.dtype, torch.float32)
    pred_m, target_m = pred_m.to(dtype), target_m.to(dtype)
    pixel_set = (target_m >= MIN_LOSS_DEPTH_M) & (pred_m >= MIN_LOSS_DEPTH_M)
    if valid_mask is not None:
        pixel_set = pixel_set & valid_mask
    # log() only ever sees values >= 1 mm: excluded pixels are replaced by 1 so neither value nor gradient is NaN.
    ones = torch.ones_like(pred_m)
    g = torch.log(torch.where(pixel_set, pred_m, ones)) - torch.log(torch.where(pixel_set, target_m, ones))
    g = torch.where(pixel_set, g, torch.zeros_like(g))
    count = pixel_set.flatten(1).sum(dim=1)
    has_pixels = count > 0
    denom = count.clamp(min=1).to(g.dtype)
    mean_g = g.flatten(1).sum(dim=1) / denom
    # mean(g^2) - lambda mean(g)^2 written as Var(g) + (1 - lambda) mean(g)^2: the same value, but the centred variance
    # is exactly 0 for a pure scale error, where the raw difference leaves float32 rounding of ~1e-7 under the sqrt.
    centred = torch.where(pixel_set, g - mean_g[:, None, None], torch.zeros_like(g))
    variance = centred.square().flatten(1).sum(dim=1) / denom
    loss = alpha * _safe_sqrt(variance + (1.0 - variance_focus) * mean_g.square(), eps)
    loss = torch.where(has_pixels, loss, torch.zeros_like(loss))
    return loss, has_pixels


def _check_loss_args(pred_m: torch.Tensor, target_m: torch.Tensor, valid_mask: torch.Tensor | None, where: str):
    pred = _as_bhw(pred_m, "pred_m")
    target = _as_bhw(target_m, "target_m")
    if pred.shape != target.shape:
        raise ValueError(
            f"{where}: `pred_m` and `target_m` must have the same (B, H, W) shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; resize the prediction to the target yourself (nothing is resized here)."
        )
    mask = None
    if valid_mask is not None:
        mask = _as_bhw(valid_mask, "valid_mask")
        if mask.dtype != torch.bool:
            raise ValueError(f"{where}: `valid_mask` must be a bool tensor, got dtype {mask.dtype}.")
        if mask.shape != pred.shape:
            raise ValueError(
                f"{where}: `valid_mask` must have shape {tuple(pred.shape)} like the prediction, got {tuple(mask.shape)}."
            )
    return pred, target, mask


def scale_invariant_log_loss(
    pred_m: torch.Tensor,
    target_m: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
    alpha: float = 10.0,
    variance_focus: float = 0.85,
    reduction: str = "mean",
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant log loss `SI(P) = alpha * sqrt(mean_P(g^2) - variance_focus * (mean_P g)^2)`.

    `g = log(pred) - log(target)` over the pixel set `P` = `valid_mask` and `target >= 1e-3 m` and
    `pred >= 1e-3 m`. This is the BTS/AdaBins "SILog" with `variance_focus` = 0.85.

    The pixel set, and hence the loss, is taken **per sample**, then averaged over the samples that have at least
    one pixel. Per sample because the `(mean g)^2` term removes one global log-scale per image: pooling a batch
    of images with different depth distributions (pretraining randomises the depth range per sample) would make
    the loss depend on how the images happen to be batched.

    Args:
        pred_m: predicted depth in metres, (B, H, W) or (B, 1, H, W).
        target_m: target depth in metres, same shape; 0 = no measurement.
        valid_mask: optional bool mask of the same shape; pixels where it is False are left out.
        alpha: overall scale, 10 in the paper.
        variance_focus: lambda, 0.85 in the paper (1 is fully scale-invariant).
        reduction: `"mean"` for a scalar, `"none"` for per-sample values.
        eps: below this the sqrt argument passes no gradient (d sqrt/dx is infinite at 0); the value stays exact.

    Returns:
        `(loss, has_pixels)`. With `reduction="mean"`: a scalar loss (0, still attached to the graph, when no
        sample has a pixel) and a scalar bool tensor. With `reduction="none"`: `(B,)` losses, 0 where the sample
        has no pixel, and a `(B,)` bool tensor. Never NaN for empty sets.
    """
    pred, target, mask = _check_loss_args(pred_m, target_m, valid_mask, "scale_invariant_log_loss")
    if reduction not in ("mean", "none"):
        raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}.")
    per_sample, has_pixels = _per_sample_silog(pred, target, mask, alpha, variance_focus, eps)
    if reduction == "none":
        return per_sample, has_pixels
    num = has_pixels.sum()
    if num == 0:
        return _zero_with_grad(pred), num > 0
    return per_sample.sum() / num.to(per_sample.dtype), num > 0


@dataclass
class VanishingDepthLossOutput:
    """Result of [`VanishingDepthLoss`].

    Args:
        loss: scalar tensor to back-propagate; 0 (attached to the graph) when no scale has a pixel.
        per_scale: (S,) detached `L_s`, NaN where the scale had no pixel at all.
        removed: (S,) detached `SI(removed)` averaged over the samples that had removed pixels (with
            ``pooling="batch"``: of the batch's pooled removed pixels), NaN if none.
        visible: (S,) detached `SI(visible)`, the same for the visible pixels.
        scale_has_pixels: (S,) bool, whether the scale contributed to `loss`.
    """

    loss: torch.Tensor
    per_scale: torch.Tensor
    removed: torch.Tensor
    visible: torch.Tensor
    scale_has_pixels: torch.Tensor

    def to_dict(self, prefix: str = "loss") -> dict[str, float]:
        """Flat float dict for logging; components that were empty (NaN) are left out rather than logged as NaN."""
        out = {prefix: float(self.loss.detach())}
        for name, values in (
            ("scale", self.per_scale),
            ("removed_scale", self.removed),
            ("visible_scale", self.visible),
        ):
            for index, value in enumerate(values.tolist()):
                if not math.isnan(value):
                    out[f"{prefix}_{name}{index}"] = value
        for name, values in (("removed", self.removed), ("visible", self.visible)):
            present = values[~torch.isnan(values)]
            if present.numel() > 0:
                out[f"{prefix}_{name}"] = float(present.mean())
        return out


class VanishingDepthLoss(nn.Module):
    """Balanced multi-scale scale-invariant log loss of Vanishing Depth pretraining (the authors' utils/loss.py).

    Per scale `s`: `L_s = 1/2 [SI(removed) + SI(visible)]`, where "removed" are the pixels that the input masking
    took away (`removed_masks[s]` True) and "visible" the others; invalid targets (< 1 mm, including 0 = no
    measurement) and predictions < 1 mm are left out of both sets. If one set is empty, the other is used alone.
    A scale with no pixel contributes nothing: the total is the weighted mean of `L_s` over the scales that have
    pixels, `sum_s w_s L_s / sum_s w_s` (all `w_s` = 1 by default: `1/4 sum_s L_s` for 4 scales). If no scale has
    a pixel the loss is 0, still attached to the graph, so `backward()` runs and gives zero gradients instead of NaN.

    `pooling` decides what one SI term covers:

    * ``"sample"`` (default): `L_s` per sample, as above, then the mean over the samples that have a pixel
      (see [`scale_invariant_log_loss`]). Batching does not change any sample's loss.
    * ``"batch"``: the pixels of the whole batch form one removed set and one visible set, `L_s` is computed once
      per scale: the authors' `VanishingDepthLoss.lossv2` (equal to it to float rounding). The `(mean g)^2` term then
      removes one log-scale for the batch, not one per image, so a prediction whose metric scale is wrong for some
      images of the batch and right for others is penalised, which the per-sample form cannot see.

    Args:
        alpha: SI scale, 10.
        variance_focus: lambda, 0.85.
        scale_weights: optional per-scale weights `w_s` (the authors' `lw`, off by default); their number must match
            the number of scales passed to `forward`. (The authors divide the weighted sum by the number of scales,
            not by the sum of the weights: equal when the weights are all 1.)
        pooling: ``"sample"`` or ``"batch"``, see above.
    """

    POOLINGS = ("sample", "batch")

    def __init__(
        self,
        alpha: float = 10.0,
        variance_focus: float = 0.85,
        scale_weights: Sequence[float] | None = None,
        pooling: str = "sample",
    ) -> None:
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"`pooling` must be one of {self.POOLINGS}, got {pooling!r}.")
        if alpha <= 0:
            raise ValueError(f"`alpha` must be > 0, got {alpha}.")
        if not 0.0 <= variance_focus <= 1.0:
            raise ValueError(f"`variance_focus` must be in [0, 1] so the sqrt argument is >= 0, got {variance_focus}.")
        if scale_weights is not None:
            scale_weights = [float(w) for w in scale_weights]
            if not scale_weights or any(w < 0 or math.isnan(w) for w in scale_weights) or sum(scale_weights) <= 0:
                raise ValueError(
                    f"`scale_weights` must be a non-empty list of non-negative floats with a positive sum, "
                    f"got {scale_weights}."
                )
        self.alpha = alpha
        self.variance_focus = variance_focus
        self.scale_weights = scale_weights
        self.pooling = pooling

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, variance_focus={self.variance_focus}, scale_weights={self.scale_weights}, "
            f"pooling={self.pooling!r}"
        )

    def forward(
        self,
        predicted_depths: Sequence[torch.Tensor],
        target_depths: Sequence[torch.Tensor],
        removed_masks: Sequence[torch.Tensor],
    ) -> VanishingDepthLossOutput:
        """Compute the loss.

        Args:
            predicted_depths: S predicted depth maps in metres, **full resolution first**, each (B, 1, h_s, w_s)
                or (B, h_s, w_s).
            target_depths: S target depth maps in metres in the same order and shapes; 0 = no measurement.
            removed_masks: S bool maps in the same order and shapes, True where the pixel was removed from the
                model's input depth.

        Returns:
            [`VanishingDepthLossOutput`].
        """
        for name, value in (
            ("predicted_depths", predicted_depths),
            ("target_depths", target_depths),
            ("removed_masks", removed_masks),
        ):
            if isinstance(value, torch.Tensor) or not isinstance(value, Sequence) or len(value) == 0:
                raise ValueError(f"`{name}` must be a non-empty list of tensors (one per scale), got {type(value)}.")
        num_scales = len(predicted_depths)
        if len(target_depths) != num_scales or len(removed_masks) != num_scales:
            raise ValueError(
                "`predicted_depths`, `target_depths` and `removed_masks` must have one entry per scale each, got "
                f"{num_scales}, {len(target_depths)} and {len(removed_masks)}."
            )
        weights = self.scale_weights if self.scale_weights is not None else [1.0] * num_scales
        if len(weights) != num_scales:
            raise ValueError(f"`scale_weights` has {len(weights)} entries but {num_scales} scales were passed.")

        scale_losses, removed_log, visible_log, has_log = [], [], [], []
        for s in range(num_scales):
            pred, target, removed = _check_loss_args(
                predicted_depths[s], target_depths[s], removed_masks[s], f"VanishingDepthLoss scale {s}"
            )
            if self.pooling == "batch":  # the whole batch as one sample: (B, H, W) -> (1, B * H, W)
                pred, target, removed = (x.reshape(1, -1, x.shape[-1]) for x in (pred, target, removed))
            si_removed, has_removed = _per_sample_silog(
                pred, target, removed, self.alpha, self.variance_focus, eps=1e-12
            )
            si_visible, has_visible = _per_sample_silog(
                pred, target, ~removed, self.alpha, self.variance_focus, eps=1e-12
            )
            both = has_removed & has_visible
            # Per sample: the mean of both sets, or the only set present (the other one is 0 there).
            per_sample = torch.where(both, 0.5 * (si_removed + si_visible), si_removed + si_visible)
            has_any = has_removed | has_visible
            num = has_any.sum()
            has_log.append(bool(num > 0))
            scale_losses.append(per_sample.sum() / num.clamp(min=1).to(per_sample.dtype))
            nan = torch.tensor(float("nan"), dtype=pred.dtype, device=pred.device)
            removed_log.append(si_removed.detach().sum() / has_removed.sum() if has_removed.any() else nan)
            visible_log.append(si_visible.detach().sum() / has_visible.sum() if has_visible.any() else nan)

        reference = predicted_depths[0]
        # Every scale's prediction stays in the graph (zero gradient when it has no pixel), so backward() always
        # runs and DDP does not see an unused decoder head.
        loss = sum(_zero_with_grad(p) for p in predicted_depths)
        total_weight = sum(w for w, has in zip(weights, has_log) if has)
        if total_weight > 0:
            loss = loss + sum(w * term for w, term, has in zip(weights, scale_losses, has_log) if has) / total_weight
        else:
            logger.debug("VanishingDepthLoss: no scale has a valid pixel; returning a zero loss.")
        has_tensor = torch.tensor(has_log, device=reference.device)
        per_scale = torch.stack([term.detach() for term in scale_losses])
        per_scale = torch.where(has_tensor, per_scale, torch.full_like(per_scale, float("nan")))
        return VanishingDepthLossOutput(
            loss=loss,
            per_scale=per_scale,
            removed=torch.stack(removed_log),
            visible=torch.stack(visible_log),
            scale_has_pixels=has_tensor,
        )


def masked_silog_l1_loss(
    pred_m: torch.Tensor,
    target_m: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
    silog_weight: float = 1.0,
    l1_weight: float = 1.0,
    alpha: float = 10.0,
    variance_focus: float = 0.85,
) -> torch.Tensor:
    """Depth-completion loss: `silog_weight * SILog + l1_weight * L1` on valid ground-truth pixels.

    * SILog: [`scale_invariant_log_loss`] (per sample, averaged over samples; pixels with target or prediction
      below 1 mm are left out, as in pretraining).
    * L1: mean absolute error in metres over all valid pixels of the batch (pooled). It keeps pixels whose
      prediction is below 1 mm, so those still get a gradient pushing them up even though SILog ignores them.

    Valid pixels: `target_m > 0` and finite, and `valid_mask` when given.

    Args:
        pred_m: predicted depth in metres, (B, H, W) or (B, 1, H, W).
        target_m: ground-truth depth in metres, same spatial size; 0 = no measurement.
        valid_mask: optional extra bool mask, same shape.
        silog_weight: weight of the SILog term.
        l1_weight: weight of the L1 term (in metres).
        alpha: SILog scale (10).
        variance_focus: SILog lambda (0.85).

    Returns:
        Scalar loss tensor; 0 (attached to the graph) when no pixel is valid.
    """
    pred, target, mask = _check_loss_args(pred_m, target_m, valid_mask, "masked_silog_l1_loss")
    if silog_weight < 0 or l1_weight < 0:
        raise ValueError(f"`silog_weight` and `l1_weight` must be >= 0, got {silog_weight} and {l1_weight}.")
    valid = (target > 0) & torch.isfinite(target)
    if mask is not None:
        valid = valid & mask
    silog, _ = scale_invariant_log_loss(pred, target, valid, alpha=alpha, variance_focus=variance_focus)
    count = valid.sum()
    if count == 0:
        return _zero_with_grad(pred)
    # Select before subtracting so a NaN/inf prediction on an invalid pixel cannot leak into value or gradient.
    pred_full = pred.to(torch.promote_types(pred.dtype, torch.float32))  # sum in >= float32
    zeros = torch.zeros_like(pred_full)
    abs_err = (torch.where(valid, pred_full, zeros) - torch.where(valid, target.to(pred_full.dtype), zeros)).abs()
    l1 = abs_err.sum() / count.to(pred_full.dtype)
    return silog_weight * silog + l1_weight * l1
