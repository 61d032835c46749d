"""Training: losses, metrics, RGB-D corpora as `datasets`, Accelerate pretraining, Trainer recipes.

Submodules import their heavy dependencies (datasets, evaluate, accelerate) themselves; import what you need, e.g.
``from vanishing_depth.training.metrics import SegmentationMetrics``.
"""

from .collators import RGBDCollator
from .losses import VanishingDepthLoss, VanishingDepthLossOutput, masked_silog_l1_loss, scale_invariant_log_loss

__all__ = [
    "RGBDCollator",
    "VanishingDepthLoss",
    "VanishingDepthLossOutput",
    "masked_silog_l1_loss",
    "scale_invariant_log_loss",
]
