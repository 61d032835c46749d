"""vanishing-depth: metric-depth understanding for any pretrained RGB ViT (Vanishing Depth, arXiv 2503.19947).

Importing the package registers every class with the transformers Auto API (`AutoConfig`, `AutoModel`,
`AutoBackbone`, ...), so ``AutoModel.from_pretrained(folder)`` works for a saved Vanishing Depth model, and marks the
classes for remote code so a saved folder also loads with ``trust_remote_code=True`` where the package is missing.
"""

import transformers
from transformers import AutoConfig, AutoImageProcessor
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING
from transformers.pipelines import PIPELINE_REGISTRY

from . import modeling_vanishing_depth
from .configuration_vanishing_depth import VanishingDepthConfig, default_fusion_layers
from .convert_checkpoints import convert_dinov2_state_dict, load_rgb_backbone
from .image_processing_vanishing_depth import VanishingDepthImageProcessor
from .loss_vanishing_depth import (
    VanishingDepthLoss,
    VanishingDepthLossOutput,
    masked_silog_l1_loss,
    scale_invariant_log_loss,
)
from .modeling_vanishing_depth import (
    AUTO_CLASS_NAMES,
    DEPTH_COMPLETION_TASK,
    VanishingDepthBackbone,
    VanishingDepthForDepthEstimation,
    VanishingDepthForImageClassification,
    VanishingDepthForPretraining,
    VanishingDepthForSemanticSegmentation,
    VanishingDepthModel,
    VanishingDepthModelOutput,
    VanishingDepthPreTrainedModel,
    depth_scale_cls_code,
    positional_depth_encoding,
)
from .pipeline_vanishing_depth import (
    AutoModelForDepthCompletion,
    DepthCompletionPipeline,
    colorize_depth,
    load_completion_model,
)
from .streams_vanishing_depth import (
    VanishingDepthStreamAdapter,
    register_stream_adapter,
    stream_adapter,
    supported_model_types,
)

__version__ = "0.1.0"

AutoConfig.register(VanishingDepthConfig.model_type, VanishingDepthConfig, exist_ok=True)
# One table (`AUTO_CLASS_NAMES`) says which class each Auto class loads, here and in every saved folder's `auto_map`;
# `register_for_auto_class` makes save_pretrained / push_to_hub copy the flat modeling files next to the weights.
for _auto_name, _class_name in AUTO_CLASS_NAMES.items():
    _model_class = getattr(modeling_vanishing_depth, _class_name)
    getattr(transformers, _auto_name).register(VanishingDepthConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_name)
VanishingDepthConfig.register_for_auto_class()
AutoImageProcessor.register(
    VanishingDepthConfig, image_processor_classes={"pil": VanishingDepthImageProcessor}, exist_ok=True
)
VanishingDepthImageProcessor.register_for_auto_class("AutoImageProcessor")
# There is no video processor. Without an entry, transformers' pipelines (their `_load_video_processor` is None)
# derive a remote "VanishingDepthVideoProcessor" from the image processor's auto_map and ask "run custom code? [y/N]"
# although the package is imported; an empty entry makes that lookup fail quietly, as for any image-only model.
# (The mapping itself: `AutoVideoProcessor.register` is unavailable without torchvision.)
VIDEO_PROCESSOR_MAPPING.register(VanishingDepthConfig, {}, exist_ok=True)

# `pipeline("depth-completion", model=...)`: RGB + sensor depth -> dense metric depth.
PIPELINE_REGISTRY.register_pipeline(
    DEPTH_COMPLETION_TASK,
    pipeline_class=DepthCompletionPipeline,
    pt_model=AutoModelForDepthCompletion,
    type="multimodal",
)

__all__ = [
    "AutoModelForDepthCompletion",
    "DepthCompletionPipeline",
    "VanishingDepthBackbone",
    "VanishingDepthConfig",
    "VanishingDepthForDepthEstimation",
    "VanishingDepthForImageClassification",
    "VanishingDepthForPretraining",
    "VanishingDepthForSemanticSegmentation",
    "VanishingDepthImageProcessor",
    "VanishingDepthLoss",
    "VanishingDepthLossOutput",
    "VanishingDepthModel",
    "VanishingDepthModelOutput",
    "VanishingDepthPreTrainedModel",
    "VanishingDepthStreamAdapter",
    "convert_dinov2_state_dict",
    "colorize_depth",
    "default_fusion_layers",
    "depth_scale_cls_code",
    "load_completion_model",
    "load_rgb_backbone",
    "masked_silog_l1_loss",
    "positional_depth_encoding",
    "register_stream_adapter",
    "scale_invariant_log_loss",
    "stream_adapter",
    "supported_model_types",
]
