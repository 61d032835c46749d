# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Shared helpers of the batched depth ops (`vanishing_depth.augment` and the sensor simulators of
`vanishing_depth.data.sensors`): argument checks, random draws on the generator's device, exact top-k selection.

Conventions shared by every op built on them:

* ``depth`` is a float tensor of shape ``(B, 1, H, W)`` in **metres**; ``0`` means "no measurement". Values are
  expected finite and ``>= 0`` (`vanishing_depth.data.depth_io` produces such maps); the ops do not re-check this
  per call because that would cost a host sync on GPU.
* Everything is batched and runs on any device. Per-sample choices (branch, fraction, lattice size, ...) are tensors,
  not Python loops. The only loop over the batch is the exact k-th-value selection on CPU (`_select_top_k`).
* Randomness: every randomised op takes ``generator=`` (a ``torch.Generator``). **Random numbers are drawn on the
  generator's device and then moved to the depth's device**, so a CPU generator replays the same masks for CPU and
  GPU tensors, and a CUDA generator keeps everything on the GPU. ``generator=None`` uses torch's global RNG on the
  depth's device. Each op draws a fixed number of values per call (independent of which branches are taken), so one
  generator seeded once replays a whole pipeline.
* Nothing is dropped silently: counts of pixels set to 0 by a range rule are logged at DEBUG (they are part of the
  method), and `rescale_far_depth` returns its count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)

FractionLike = float | Sequence[float] | torch.Tensor


def _check_depth(depth: torch.Tensor, name: str = "depth") -> None:
    if not isinstance(depth, torch.Tensor):
        raise ValueError(
            f"`{name}` must be a torch.Tensor of shape (B, 1, H, W) in metres, got {type(depth).__name__}."
        )
    if depth.ndim != 4 or depth.shape[1] != 1 or not depth.is_floating_point():
        raise ValueError(
            f"`{name}` must be a float tensor of shape (B, 1, H, W) in metres (0 = missing), "
            f"got dtype {depth.dtype} and shape {tuple(depth.shape)}."
        )


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 drawn on the generator's device, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _per_sample(value: FractionLike, batch_size: int, device: torch.device, name: str) -> torch.Tensor:
    """A scalar or (B,) fraction in [0, 1] as a (B,) float32 tensor."""
    tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
    if tensor.ndim == 0:
        tensor = tensor.expand(batch_size)
    if tensor.shape != (batch_size,):
        raise ValueError(f"`{name}` must be a float or a ({batch_size},) tensor, got shape {tuple(tensor.shape)}.")
    if bool(((tensor < 0) | (tensor > 1) | tensor.isnan()).any()):
        raise ValueError(f"`{name}` must lie in [0, 1], got {tensor.tolist()}.")
    return tensor


def _valid_count(depth: torch.Tensor) -> torch.Tensor:
    return torch.count_nonzero(depth.flatten(1) > 0, dim=1)


def _log_dropped(what: str, dropped: torch.Tensor) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s: set %s pixel(s) per sample to 0.", what, dropped.tolist())


def _select_top_k(
    scores: torch.Tensor, valid: torch.Tensor, k: torch.Tensor, method: str | None = None
) -> torch.Tensor:
    """Select, per row, the ``k[b]`` valid entries with the highest score; ties go to the lower index.

    Args:
        scores: (B, N) float scores.
        valid: (B, N) bool; only these can be selected.
        k: (B,) int64 counts, ``0 <= k[b] <= valid[b].sum()``.
        method: ``"sort"`` (one batched stable sort; used on GPU) or ``"kthvalue"`` (per-row quickselect, about 6x
            faster on CPU). Both select exactly the same pixels.

    Returns:
        (B, N) bool selection with exactly ``k[b]`` True entries per row.
    """
    batch_size, count = scores.shape
    masked = scores.float().masked_fill(~valid, float("-inf"))
    method = method or ("kthvalue" if scores.device.type == "cpu" else "sort")
    if method == "sort":
        order = torch.sort(masked, dim=1, descending=True, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(count, device=scores.device).expand(batch_size, count))
        return (ranks < k[:, None]) & valid
    if method != "kthvalue":
        raise ValueError(f"`method` must be 'sort' or 'kthvalue', got {method!r}.")
    selected = torch.zeros_like(valid)
    # Per-sample k differs, so the quantile is found per row (an O(N) quickselect, no full sort).
    for row, k_row in enumerate(k.tolist()):
        if k_row == 0:
            continue
        values = masked[row]
        threshold = torch.kthvalue(values, count - k_row + 1).values
        above = values > threshold
        selected[row] = above
        missing = k_row - int(above.sum())
        if missing > 0:  # ties at the threshold: take the first ones in raster order, like the stable sort
            ties = (values == threshold).nonzero().squeeze(1)[:missing]
            selected[row, ties] = True
    return selected & valid
