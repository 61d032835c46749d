"""vanishing-depth: metric-depth understanding for any pretrained RGB ViT (Vanishing Depth, arXiv 2503.19947).

Importing the package registers every class with the transformers Auto API (`AutoConfig`, `AutoModel`,
`AutoBackbone`, ...), so ``AutoModel.from_pretrained(folder)`` works for a saved Vanishing Depth model, and marks the
classes for remote code so a saved folder also loads with ``trust_remote_code=True`` where the package is missing.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForSemanticSegmentation,
)

from .configuration_vanishing_depth import VanishingDepthConfig, default_fusion_layers
from .convert_checkpoints import convert_dinov2_state_dict, load_rgb_backbone
from .image_processing_vanishing_depth import VanishingDepthImageProcessor
from .modeling_vanishing_depth import (
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

__version__ = "0.1.0"

AutoConfig.register(VanishingDepthConfig.model_type, VanishingDepthConfig, exist_ok=True)
AutoModel.register(VanishingDepthConfig, VanishingDepthModel, exist_ok=True)
AutoBackbone.register(VanishingDepthConfig, VanishingDepthBackbone, exist_ok=True)
AutoModelForSemanticSegmentation.register(VanishingDepthConfig, VanishingDepthForSemanticSegmentation, exist_ok=True)
AutoModelForDepthEstimation.register(VanishingDepthConfig, VanishingDepthForDepthEstimation, exist_ok=True)
AutoModelForImageClassification.register(VanishingDepthConfig, VanishingDepthForImageClassification, exist_ok=True)
AutoModelForPreTraining.register(VanishingDepthConfig, VanishingDepthForPretraining, exist_ok=True)
AutoImageProcessor.register(
    VanishingDepthConfig, image_processor_classes={"pil": VanishingDepthImageProcessor}, exist_ok=True
)

# save_pretrained / push_to_hub then copy the flat modeling files and write `auto_map` into config.json.
VanishingDepthConfig.register_for_auto_class()
VanishingDepthModel.register_for_auto_class("AutoModel")
VanishingDepthBackbone.register_for_auto_class("AutoBackbone")
VanishingDepthForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
VanishingDepthForDepthEstimation.register_for_auto_class("AutoModelForDepthEstimation")
VanishingDepthForImageClassification.register_for_auto_class("AutoModelForImageClassification")
VanishingDepthForPretraining.register_for_auto_class("AutoModelForPreTraining")
VanishingDepthImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "VanishingDepthBackbone",
    "VanishingDepthConfig",
    "VanishingDepthForDepthEstimation",
    "VanishingDepthForImageClassification",
    "VanishingDepthForPretraining",
    "VanishingDepthForSemanticSegmentation",
    "VanishingDepthImageProcessor",
    "VanishingDepthModel",
    "VanishingDepthModelOutput",
    "VanishingDepthPreTrainedModel",
    "convert_dinov2_state_dict",
    "default_fusion_layers",
    "depth_scale_cls_code",
    "load_rgb_backbone",
    "positional_depth_encoding",
]
