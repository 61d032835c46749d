"""Training: self-supervised pretraining with Accelerate (`vanishing_depth.training.pretrain`, its checkpoints in
`vanishing_depth.training.checkpoints`) and the `Trainer` recipes for the task heads, with LoRA on the depth stream
(`vanishing_depth.training.finetune`).

Import from the submodules, e.g. ``from vanishing_depth.training.pretrain import PretrainingArguments, pretrain``;
this package imports none of them itself. Data, collators and adapters are in `vanishing_depth.data`, metrics and the
completion sweep in `vanishing_depth.evaluation`, the losses in `vanishing_depth.loss_vanishing_depth`.
"""

from .._deprecation import moved_names

# Names this package used to export, and their one home now; they still resolve, with a FutureWarning.
_MOVED = {
    "RGBDCollator": "vanishing_depth.data",
    "VanishingDepthLoss": "vanishing_depth.loss_vanishing_depth",
    "VanishingDepthLossOutput": "vanishing_depth.loss_vanishing_depth",
    "masked_silog_l1_loss": "vanishing_depth.loss_vanishing_depth",
    "scale_invariant_log_loss": "vanishing_depth.loss_vanishing_depth",
}

__all__: list[str] = []

__getattr__ = moved_names(__name__, _MOVED)
