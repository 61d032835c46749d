"""Losses of Vanishing Depth pretraining and of the depth-completion head.

The implementation lives in the flat module `vanishing_depth.loss_vanishing_depth`, beside the modeling file that
computes the losses in `forward` (so a Hub repository's remote code is self-contained); this is its home in the
training API.
"""

from ..loss_vanishing_depth import (
    MIN_LOSS_DEPTH_M,
    VanishingDepthLoss,
    VanishingDepthLossOutput,
    masked_silog_l1_loss,
    scale_invariant_log_loss,
)

__all__ = [
    "MIN_LOSS_DEPTH_M",
    "VanishingDepthLoss",
    "VanishingDepthLossOutput",
    "masked_silog_l1_loss",
    "scale_invariant_log_loss",
]
