# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Configuration of the Vanishing Depth RGB-D encoder (arXiv 2503.19947).

The config holds the frozen RGB backbone's own config as the sub-config `rgb_config` (`Dinov2Config`,
`Dinov2WithRegistersConfig`, `DINOv3ViTConfig` or `SiglipVisionConfig`: any family with a stream adapter in
`streams_vanishing_depth`), plus the depth-side fields. The depth ViT has the same shape as the RGB ViT; only
its input channel count differs, so its config is derived, never stored.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import AutoConfig, Dinov2Config, PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from .streams_vanishing_depth import (
    POSITION_INTERPOLATIONS,
    VanishingDepthStreamAdapter,
    stream_adapter,
    supported_model_types,
)

DEPTH_NORMALIZATIONS = ("global", "dynamic")
DEPTH_ENCODINGS = ("pde", "normalized", "log_validity")
FEATURE_SOURCES = ("post_fusion", "pre_fusion")
#: `rgb_config.model_type` values with a stream adapter (see `streams_vanishing_depth`), at import time.
SUPPORTED_RGB_MODEL_TYPES = supported_model_types()
SEGMENTATION_HEADS = ("linear", "multiscale")
#: How the depth ViT's fresh C-channel patch-embedding weight is initialised (see `depth_patch_embedding_init`).
DEPTH_PATCH_EMBEDDING_INITS = ("trunc_normal", "pytorch_default")
#: How the pretraining decoder takes its skips (see `decoder_skips`).
DECODER_SKIPS = ("lateral", "raw")
#: Float32 arithmetic of the PDE angles (see `pde_float_order`).
PDE_FLOAT_ORDERS = ("library", "authors")
#: How the depth input is weighted per patch before the depth patch embedding (see `depth_patch_normalization`).
DEPTH_PATCH_NORMALIZATIONS = ("none", "valid_mean")
#: How the pretraining loss pools pixels (see `loss_pooling`).
LOSS_POOLINGS = ("sample", "batch")

# The 1-channel normalisation baseline the paper compares PDE against: (d - 5 m) / 5 m.
NORMALIZED_DEPTH_MEAN_M = 5.0
NORMALIZED_DEPTH_STD_M = 5.0
# The log-depth + validity baseline (the simple encoding OMNI-DC, arXiv 2411.19278, found best): ln(d) mapped linearly
# from [ln LOG_DEPTH_MIN_M, ln max_depth] onto [-1, 1].
LOG_DEPTH_MIN_M = 0.1


#: ViT shapes (DINOv2 sizes; a random-init RGB stream of a real shape when no weights are reachable, e.g. tests, the
#: demo, benchmarks). The one table of them: `training.pretrain` (`--model-shape`), the CLI and the benchmarks use it.
VIT_SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}


def default_fusion_layers(num_hidden_layers: int) -> list[int]:
    """0-based block indices closing each quarter of the network: [2, 5, 8, 11] for 12 blocks,
    [5, 11, 17, 23] for 24, [9, 19, 29, 39] for 40."""
    if num_hidden_layers < 4:
        # Tiny test models: fuse after every block, at most four times.
        return list(range(num_hidden_layers))
    return [round(num_hidden_layers * (q + 1) / 4) - 1 for q in range(4)]


#: `fuse_cls_token` as a choice of pretraining and conversion: "auto" is `authors_fuse_cls_token` of the width.
FUSE_CLS_TOKEN_CHOICES = ("auto", "true", "false")


def authors_fuse_cls_token(hidden_size: int) -> bool:
    """Whether the authors' code fuses the CLS token for a ViT of this width: their ViT-S/14 encoder (width 384) is
    built with ``fuse_cls_tolken=True``, their ViT-B/14 and ViT-L/14 ones with the default False (authors'
    model/vanishing_depth.py, build_encoder). The one rule for fresh pretraining (``fuse_cls_token="auto"``) and for
    converting their checkpoints; their mmseg segmentation backbone never fuses it."""
    return int(hidden_size) == 384


def depth_scale_code_positions(hidden_size: int) -> tuple[int, int]:
    """(units-digit index, first decimal index) of the dynamic max-depth digit code in a `hidden_size` CLS vector:
    either side of the centre ``2D/3 + D/6`` of its last third (the authors' datasets/transforms.py)."""
    centre = 2 * hidden_size // 3 + hidden_size // 6
    return centre - 1, centre


def stage_index(block: int) -> int:
    """transformers' backbone stage number (`out_indices`) of 0-based block `block`: stage 0 is the embeddings."""
    return block + 1


def block_index(stage: int) -> int:
    """0-based block index of transformers' backbone stage `stage` (>= 1); the inverse of `stage_index`."""
    return stage - 1


def rgb_config_from_any(rgb_config: Any) -> PreTrainedConfig:
    """An RGB backbone config of a supported family from a config (copied), a dict with an optional ``model_type``
    (default ``"dinov2"``; the family's own defaults fill the rest) or None (DINOv2 ViT-B/14 at 518 px)."""
    if rgb_config is None:
        # DINOv2 ViT-B/14, the paper's default RGB encoder. Built locally, no network.
        return Dinov2Config(image_size=518, **VIT_SHAPES["base"])
    if isinstance(rgb_config, dict):
        rgb_config = dict(rgb_config)
        model_type = rgb_config.pop("model_type", "dinov2")
        if model_type not in supported_model_types():
            raise ValueError(f"`rgb_config.model_type` must be one of {supported_model_types()}, got {model_type!r}.")
        return AutoConfig.for_model(model_type, **rgb_config)
    if isinstance(rgb_config, PreTrainedConfig):
        if rgb_config.model_type not in supported_model_types():
            hint = (
                " For a text+vision SigLIP config pass its `vision_config`."
                if getattr(rgb_config, "vision_config", None) is not None
                else ""
            )
            raise ValueError(
                f"`rgb_config` must be the config of a supported ViT family (model_type in {supported_model_types()}), "
                f"got a {type(rgb_config).__name__} with model_type {rgb_config.model_type!r}.{hint}"
            )
        return copy.deepcopy(rgb_config)
    raise ValueError(
        f"`rgb_config` must be a PreTrainedConfig of a supported ViT family ({supported_model_types()}), a dict or "
        f"None, got {type(rgb_config).__name__}."
    )


def _drop_locally_registered_pipelines(kwargs: dict) -> None:
    """A saved folder declares its `depth-completion` pipeline in `custom_pipelines` for users without the package
    (`trust_remote_code=True`). Where the package is imported, the task is registered with `PIPELINE_REGISTRY` and the
    folder's declaration is dropped on loading, so `pipeline("depth-completion", model=folder)` uses the installed code
    without asking to run the folder's (`save_pretrained` writes the declaration again)."""
    custom = kwargs.get("custom_pipelines")
    if not custom:
        return
    from transformers.pipelines import PIPELINE_REGISTRY

    registered = {task for task, info in PIPELINE_REGISTRY.supported_tasks.items() if isinstance(info.get("impl"), type)}
    remaining = {task: info for task, info in custom.items() if task not in registered}
    if remaining:
        kwargs["custom_pipelines"] = remaining
    else:
        kwargs.pop("custom_pipelines")


class VanishingDepthConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of [`VanishingDepthModel`]: a frozen pretrained RGB ViT and a trainable depth ViT of the same
    shape, with squeeze-and-excitation fusion from RGB to depth after `fusion_layers`.

    Layer numbering: one convention, **0-based block indices** (block 0 is the first transformer block; a 12-block ViT
    has blocks 0..11). `fusion_layers`, `VanishingDepthModel(feature_layers=...)` and every key of the model's
    internals use it. `out_indices` / `out_features` are transformers' backbone stage numbering, which `AutoBackbone`
    heads require ("stem" = the embeddings, stage i = the output of block i - 1); they are derived from the block
    indices (`stage_index(block)`, default `[stage_index(b) for b in fusion_layers]`), and `backbone_blocks` gives
    them back as block indices.

    Args:
        rgb_config (`PreTrainedConfig` or `dict`, *optional*):
            The RGB backbone's config: DINOv2 (any size S/B/L/g, with or without registers), DINOv3 ViT
            (`DINOv3ViTConfig`) or a SigLIP vision tower (`SiglipVisionConfig`). Defaults to a DINOv2 ViT-B/14 shape
            at 518 px. Built locally: constructing a config never touches the network.
        pde_channels (`int`, *optional*, defaults to 32):
            Channels C of the positional depth encoding (even: C/2 sin/cos pairs).
        pde_temperature (`float`, *optional*, defaults to 3e-4):
            Temperature T of the frequency ladder; pair k has period `max_depth * T**(2k/C)` metres.
        max_depth (`float`, *optional*, defaults to 15.0):
            Global depth normaliser d_max in metres (`depth_normalization="global"`).
        depth_normalization (`str`, *optional*, defaults to `"global"`):
            `"global"`: d / max_depth. `"dynamic"`: d / max(d) per image, with max(d) written as a digit code
            into the depth CLS token (authors' datasets/transforms.py) so metric scale is kept. Needs a family with a CLS token
            (refused for SigLIP).
        depth_encoding (`str`, *optional*, defaults to `"pde"`):
            `"pde"` (sinusoidal, `pde_channels` channels), `"normalized"`: the 1-channel (d - 5 m) / 5 m
            baseline kept for ablations, or `"log_validity"`: 2 channels, ln(d) mapped linearly from
            [ln 0.1 m, ln max_depth] onto [-1, 1] (not clipped; 0 where depth is missing) and a 0/1 validity channel
            (the simple encoding OMNI-DC found best), for the encoding study.
        pde_missing_depth_m (`float`, *optional*, defaults to 0.0):
            The depth in metres a missing measurement (0) is encoded as by the PDE. 0 gives (sin, cos) = (0, 1) in every
            pair; the authors' code writes 1e-6 m (`zero_eps` of their datasets/transforms.py), which converted
            checkpoints keep. Valid depths (>= 0.05 m) never come near either code.
        depth_patch_normalization (`str`, *optional*, defaults to `"none"`):
            How the depth encoding reaches the depth patch embedding. `"none"` (the authors'): every pixel of a patch
            enters, a missing one with the code of `pde_missing_depth_m`, so the 2 measured pixels of a 14x14 patch at
            1 % density carry 1/100 of the weight of a dense patch. `"valid_mean"`: missing pixels enter as 0 and the
            measured ones are weighted by patch area / measured pixels in their patch (the normalised convolution of
            sparsity-invariant CNNs, Uhrig et al. 2017), so a patch's embedding keeps its scale from dense to sparse
            input; a dense patch embeds exactly as with `"none"` and pixels are never moved between patches.
        pde_float_order (`str`, *optional*, defaults to `"library"`):
            The float32 arithmetic of the PDE angles. `"library"`: `2 pi * (d * (1 / d_max)) * T^(-2k/C)` with the
            inverse periods rounded once from double precision. `"authors"`: `((d / d_max) * 2 pi) / T^(2k/C)` with the
            periods as their float32 `temperature ** dim_t`. The two agree to float32 rounding, which the fastest
            pairs (angles up to ~8000 rad) turn into differences up to 5e-4 in the encoding; converted checkpoints use
            `"authors"`.
        position_interpolation (`str`, *optional*, defaults to `"transformers"`):
            How both streams resize their absolute position table to an input grid other than the table's own.
            `"transformers"`: the RGB family's own embeddings (bicubic to `size=`), so the RGB stream equals the plain
            transformers model (`Dinov2Model`) bit for bit. `"dinov2"`: upstream DINOv2's rule, which the authors'
            encoder keeps (bicubic with `scale_factor=(side + 0.1) / M`, no antialiasing): the RGB stream then equals
            the authors' RGB encoder rather than `Dinov2Model` (they differ by up to 9e-2 at 224 px; at the table's own
            size, 518 px for DINOv2, both return the table unchanged). Only for families with a square absolute
            position table (DINOv2 with or without registers); refused for DINOv3 (RoPE) and SigLIP.
        fusion_layers (`list[int]`, *optional*):
            0-based depth-ViT block indices after which RGB features are fused into the depth stream.
            Defaults to the blocks that close each quarter: [2, 5, 8, 11] for 12 blocks, [5, 11, 17, 23] for 24.
        se_reduction (`int`, *optional*, defaults to 16):
            Reduction ratio of the squeeze-and-excitation gates (hidden -> hidden / r -> hidden).
        fuse_cls_token (`bool`, *optional*, defaults to `False`):
            Whether the CLS (and register) tokens are fused too. The official ViT-B setting leaves them out.
        add_depth_scale_to_cls_token (`bool`, *optional*, defaults to `True`):
            Dynamic mode only: add the max-depth digit code to the depth CLS token (True) or replace it (False).
        feature_source (`str`, *optional*, defaults to `"post_fusion"`):
            Which depth features `feature_maps` returns at each fusion layer: after (`"post_fusion"`) or
            before (`"pre_fusion"`, the PoET pose setting) the fusion at that layer.
        feature_layernorm (`bool`, *optional*, defaults to `True`):
            Apply each stream's final layer norm to the features returned in `feature_maps`.
        freeze_rgb_encoder (`bool`, *optional*, defaults to `True`):
            Keep the RGB stream frozen (`requires_grad=False`, eval mode, run under `no_grad`).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the truncated normal used for newly created weights (fusion blocks, heads).
        decoder_channels (`list[int]`, *optional*):
            Pretraining U-Net decoder widths from coarse to fine (the authors' smp U-Net widths): [512, 256, 128, 64] for hidden >= 768,
            [256, 128, 64, 32] below.
        decoder_skips (`str`, *optional*, defaults to `"lateral"`):
            How the pretraining U-Net decoder takes the 4 fusion-layer depth maps. `"lateral"`: a 1x1 projection of
            each map to its block's width on the 14-px token grid, then the bilinear resize (this library's choice:
            the same function class at a fraction of the cost). `"raw"`: the D-channel maps themselves, resized, as
            the authors' U-Net (model/decoder.py fed by model/dino.py) takes them; at stride 2 a raw D-channel skip
            costs more than the ViT itself.
        depth_patch_embedding_init (`str`, *optional*, defaults to `"trunc_normal"`):
            Initialisation of the depth ViT's patch-embedding weight, the one tensor of the depth stream that no RGB
            checkpoint fits (C input channels). `"trunc_normal"`: truncated normal with std `initializer_range`
            (0.02), this library's choice. `"pytorch_default"`: PyTorch's default for a fresh `nn.Conv2d`
            (Kaiming-uniform with a=sqrt(5), std 1/sqrt(3 fan_in): about 0.007 for C=32 and 14-px patches; bias
            uniform in +-1/sqrt(fan_in)), what the authors' code leaves in place (model/dino.py builds the depth ViT
            and copies only the tensors that fit); its initial depth tokens are about 2.7x smaller beside the copied
            position embeddings. Either way a bias copied from an RGB backbone replaces the initial one.
        decode_dist_weights (`list[float]`, *optional*, defaults to `[10.0, 1.0, 0.1, 0.01]`):
            Metres per channel of the 4-term "decode-dist" depth output of the pretraining (and completion) heads.
        loss_alpha / loss_variance_focus (`float`, *optional*, defaults to 10.0 / 0.85):
            alpha and lambda of the balanced scale-invariant log loss (authors' utils/loss.py); the depth-completion head's SILog
            term uses them too.
        loss_pooling (`str`, *optional*, defaults to `"sample"`):
            How the pretraining loss (`VanishingDepthLoss`) pools pixels for its scale-invariant terms: `"sample"`,
            one term per image, averaged over the batch; `"batch"`, all pixels of the batch in one term, as the
            authors' utils/loss.py does (it also sees scale differences between the images of a batch).
        freeze_encoder (`bool`, *optional*, defaults to `True`):
            Task heads only: keep the whole encoder frozen (`requires_grad=False`, eval mode even under `.train()`),
            the paper's frozen-encoder protocol. `False` trains the depth stream and the fusion blocks with the head; the
            RGB stream stays governed by `freeze_rgb_encoder`.
        segmentation_head (`str`, *optional*, defaults to `"linear"`):
            `VanishingDepthForSemanticSegmentation` decoder: `"linear"` is the linear probe (batch norm
            over the concatenated fusion-layer features, then a 1x1 conv; logits at stride 14); `"multiscale"` a small
            FPN decoder over the features resized to strides 4/8/16/32 (logits at stride 4).
        segmentation_decoder_hidden_size (`int`, *optional*, defaults to 256):
            Channels of the `"multiscale"` segmentation decoder.
        semantic_loss_ignore_index (`int`, *optional*, defaults to 255):
            Label value the segmentation cross-entropy ignores (unlabelled and padded pixels).
        depth_decoder_hidden_size (`int`, *optional*, defaults to 128):
            Channels of the DPT-style decoder of `VanishingDepthForDepthEstimation` (features 128, as the authors' DPT head).
        depth_loss_silog_weight / depth_loss_l1_weight (`float`, *optional*, defaults to 1.0 / 1.0):
            Weights of the SILog and the L1 (metres) terms of the depth-completion loss.
        rgb_backbone_name_or_path (`str`, *optional*):
            Where the RGB weights came from (a Hub id, folder or file), recorded by `from_rgb_backbone` for model cards.
        out_features / out_indices (`list`, *optional*):
            `AutoBackbone` outputs in transformers' stage numbering ("stem", "stage1", ... ; stage i = the output of
            0-based block i - 1, see `stage_index`). Default: the fusion layers, i.e. stages [3, 6, 9, 12] for 12
            blocks (blocks [2, 5, 8, 11]). "stem" is refused: the embeddings are not fused.
        reshape_hidden_states (`bool`, *optional*, defaults to `True`):
            `VanishingDepthBackbone` only (the field of the same name in `Dinov2Config`). `True`: each feature map is
            `(B, 2D, H/14, W/14)`. `False`: each is the token sequence `(B, 1 + N, 2D)`: the CLS token first (RGB CLS
            and depth CLS concatenated), register tokens dropped, then the N = (H/14)(W/14) patch tokens with the same
            values as the maps. This is what transformers' Depth Anything neck reads (`hidden_state[:, 1:]` reshaped to
            the patch grid); build it with `DepthAnythingConfig(reassemble_hidden_size=2 * hidden_size)`.
        backbone_feature_strides (`list[int]`, *optional*):
            `VanishingDepthBackbone` only: the stride in input pixels of each returned feature map, one per
            `out_indices` entry. `None` (default) keeps every map on the ViT patch grid (stride `patch_size`, 14).
            A list such as `[4, 8, 16, 32]` bilinearly resizes (align_corners=False) output i to
            `(ceil(H / s_i), ceil(W / s_i))`: the multi-scale pyramid Mask2Former's pixel decoder expects (UperNet
            works either way). The authors' mmseg backbone does the same with fixed strides 2/4/8/16 of the input
            size floored to a multiple of 32. Needs `reshape_hidden_states=True`.
    """

    model_type = "vanishing_depth"
    sub_configs = {"rgb_config": AutoConfig}

    def __init__(
        self,
        rgb_config: PreTrainedConfig | dict | None = None,
        pde_channels: int = 32,
        pde_temperature: float = 3e-4,
        max_depth: float = 15.0,
        depth_normalization: str = "global",
        depth_encoding: str = "pde",
        pde_missing_depth_m: float = 0.0,
        pde_float_order: str = "library",
        depth_patch_normalization: str = "none",
        position_interpolation: str = "transformers",
        fusion_layers: list[int] | None = None,
        se_reduction: int = 16,
        fuse_cls_token: bool = False,
        add_depth_scale_to_cls_token: bool = True,
        feature_source: str = "post_fusion",
        feature_layernorm: bool = True,
        freeze_rgb_encoder: bool = True,
        initializer_range: float = 0.02,
        decoder_channels: list[int] | None = None,
        decoder_skips: str = "lateral",
        depth_patch_embedding_init: str = "trunc_normal",
        decode_dist_weights: list[float] | None = None,
        loss_alpha: float = 10.0,
        loss_variance_focus: float = 0.85,
        loss_pooling: str = "sample",
        freeze_encoder: bool = True,
        segmentation_head: str = "linear",
        segmentation_decoder_hidden_size: int = 256,
        semantic_loss_ignore_index: int = 255,
        depth_decoder_hidden_size: int = 128,
        depth_loss_silog_weight: float = 1.0,
        depth_loss_l1_weight: float = 1.0,
        rgb_backbone_name_or_path: str | None = None,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        reshape_hidden_states: bool = True,
        backbone_feature_strides: list[int] | None = None,
        **kwargs,
    ):
        self.rgb_config = rgb_config_from_any(rgb_config)
        self.pde_channels = pde_channels
        self.pde_temperature = pde_temperature
        self.max_depth = max_depth
        self.depth_normalization = depth_normalization
        self.depth_encoding = depth_encoding
        self.pde_missing_depth_m = pde_missing_depth_m
        self.pde_float_order = pde_float_order
        self.depth_patch_normalization = depth_patch_normalization
        self.position_interpolation = position_interpolation
        self.fusion_layers = (
            list(fusion_layers)
            if fusion_layers is not None
            else default_fusion_layers(self.rgb_config.num_hidden_layers)
        )
        self.se_reduction = se_reduction
        self.fuse_cls_token = fuse_cls_token
        self.add_depth_scale_to_cls_token = add_depth_scale_to_cls_token
        self.feature_source = feature_source
        self.feature_layernorm = feature_layernorm
        self.freeze_rgb_encoder = freeze_rgb_encoder
        self.initializer_range = initializer_range
        if decoder_channels is None:
            decoder_channels = [512, 256, 128, 64] if self.rgb_config.hidden_size >= 768 else [256, 128, 64, 32]
        self.decoder_channels = list(decoder_channels)
        self.decoder_skips = decoder_skips
        self.depth_patch_embedding_init = depth_patch_embedding_init
        self.decode_dist_weights = (
            list(decode_dist_weights) if decode_dist_weights is not None else [10.0, 1.0, 0.1, 0.01]
        )
        self.loss_alpha = loss_alpha
        self.loss_variance_focus = loss_variance_focus
        self.loss_pooling = loss_pooling
        self.freeze_encoder = freeze_encoder
        self.segmentation_head = segmentation_head
        self.segmentation_decoder_hidden_size = segmentation_decoder_hidden_size
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        self.depth_decoder_hidden_size = depth_decoder_hidden_size
        self.depth_loss_silog_weight = depth_loss_silog_weight
        self.depth_loss_l1_weight = depth_loss_l1_weight
        self.rgb_backbone_name_or_path = rgb_backbone_name_or_path
        self.reshape_hidden_states = reshape_hidden_states
        if isinstance(backbone_feature_strides, tuple):
            backbone_feature_strides = list(backbone_feature_strides)
        self.backbone_feature_strides = backbone_feature_strides
        _drop_locally_registered_pipelines(kwargs)
        super().__init__(**kwargs)
        self.validate_vanishing_depth()
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, self.num_hidden_layers + 1)]
        if out_features is None and out_indices is None:
            out_indices = [stage_index(block) for block in self.fusion_layers]
        self.set_output_features_output_indices(out_features=out_features, out_indices=out_indices)
        self.validate_backbone_fields()

    # ----------------------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.rgb_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.rgb_config.num_hidden_layers

    @property
    def patch_size(self) -> int:
        return self.stream_adapter.patch_size(self.rgb_config)

    @property
    def num_register_tokens(self) -> int:
        return self.stream_adapter.num_register_tokens(self.rgb_config)

    @property
    def backbone_blocks(self) -> list[int]:
        """`out_indices` as 0-based block indices (stage i -> block i - 1); a ValueError for the 'stem' stage."""
        if any(stage == 0 for stage in self.out_indices or []):
            raise ValueError(
                f"`out_indices` names transformers' backbone stages (stage i = 0-based block i - 1); stage 0 ('stem', "
                f"the embeddings) is not fused and cannot be returned, got out_indices={self.out_indices}."
            )
        return [block_index(stage) for stage in self.out_indices or []]

    @property
    def stream_adapter(self) -> VanishingDepthStreamAdapter:
        """How the encoder steps through this RGB family (see `streams_vanishing_depth`)."""
        return stream_adapter(self.rgb_config)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens: CLS (if the family has one) and registers."""
        return self.stream_adapter.num_prefix_tokens(self.rgb_config)

    @property
    def depth_input_channels(self) -> int:
        """Channels the depth ViT's patch embedding takes: C for PDE, 1 for the normalised baseline, 2 for log-depth
        with validity."""
        return {"pde": self.pde_channels, "log_validity": 2}.get(self.depth_encoding, 1)

    @property
    def feature_channels(self) -> int:
        """Channels of each returned feature map: RGB and depth features concatenated."""
        return 2 * self.hidden_size

    def depth_config(self) -> PreTrainedConfig:
        """The depth ViT's config: the RGB config with the depth input channel count."""
        return self.stream_adapter.depth_config(self.rgb_config, self.depth_input_channels)

    def dynamic_cls_digit_positions(self) -> tuple[int, int]:
        """(units-digit index, first decimal index) of the dynamic max-depth code in the CLS vector: the integer digits
        run leftwards from the units (at most 3, < 1000 m), the 6 decimals rightwards from the bin centre
        ``2D/3 + D/6`` (see `depth_scale_cls_code`)."""
        return depth_scale_code_positions(self.hidden_size)

    # ----------------------------------------------------------------------------------------------------------
    def validate_vanishing_depth(self) -> None:
        """Refuse nonsense early, naming the field, the expected form and what was received."""
        hidden, heads = self.rgb_config.hidden_size, self.rgb_config.num_attention_heads
        if hidden % heads != 0:
            raise ValueError(
                f"`rgb_config.hidden_size` ({hidden}) must be divisible by `rgb_config.num_attention_heads` ({heads})."
            )
        if not isinstance(self.pde_channels, int) or self.pde_channels < 2 or self.pde_channels % 2:
            raise ValueError(f"`pde_channels` must be an even integer >= 2 (sin/cos pairs), got {self.pde_channels!r}.")
        if not 0.0 < float(self.pde_temperature):
            raise ValueError(f"`pde_temperature` must be > 0, got {self.pde_temperature!r}.")
        if not float(self.max_depth) > 0.0:
            raise ValueError(f"`max_depth` must be a positive number of metres, got {self.max_depth!r}.")
        if self.depth_normalization not in DEPTH_NORMALIZATIONS:
            raise ValueError(
                f"`depth_normalization` must be one of {DEPTH_NORMALIZATIONS}, got {self.depth_normalization!r}."
            )
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"`depth_encoding` must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}.")
        if self.depth_encoding != "pde" and self.depth_normalization == "dynamic":
            raise ValueError(
                f"`depth_normalization='dynamic'` only applies to `depth_encoding='pde'`, got "
                f"{self.depth_encoding!r}: the normalized and log_validity baselines use fixed ranges in metres."
            )
        missing = self.pde_missing_depth_m
        if isinstance(missing, bool) or not isinstance(missing, (int, float)) or not 0.0 <= missing < self.max_depth:
            raise ValueError(
                f"`pde_missing_depth_m` must be a depth in metres in [0, max_depth={self.max_depth}) (the code of a "
                f"missing measurement, e.g. 1e-6 as the authors' code), got {missing!r}."
            )
        if self.pde_float_order not in PDE_FLOAT_ORDERS:
            raise ValueError(f"`pde_float_order` must be one of {PDE_FLOAT_ORDERS}, got {self.pde_float_order!r}.")
        if self.depth_patch_normalization not in DEPTH_PATCH_NORMALIZATIONS:
            raise ValueError(
                f"`depth_patch_normalization` must be one of {DEPTH_PATCH_NORMALIZATIONS}, got "
                f"{self.depth_patch_normalization!r}."
            )
        supported = self.stream_adapter.position_interpolations
        if self.position_interpolation not in POSITION_INTERPOLATIONS or self.position_interpolation not in supported:
            raise ValueError(
                f"`position_interpolation` must be one of {supported} for the {self.stream_adapter.family!r} family "
                f"({self.rgb_config.model_type}), got {self.position_interpolation!r}."
            )
        if self.loss_pooling not in LOSS_POOLINGS:
            raise ValueError(f"`loss_pooling` must be one of {LOSS_POOLINGS}, got {self.loss_pooling!r}.")
        if self.feature_source not in FEATURE_SOURCES:
            raise ValueError(f"`feature_source` must be one of {FEATURE_SOURCES}, got {self.feature_source!r}.")
        if not isinstance(self.se_reduction, int) or self.se_reduction < 1 or self.se_reduction > hidden:
            raise ValueError(
                f"`se_reduction` must be an integer in [1, hidden_size={hidden}], got {self.se_reduction!r}."
            )
        if len(self.decoder_channels) != 4 or any(not isinstance(c, int) or c < 1 for c in self.decoder_channels):
            raise ValueError(
                f"`decoder_channels` must be 4 positive integers (coarse to fine), got {self.decoder_channels}."
            )
        if self.decoder_skips not in DECODER_SKIPS:
            raise ValueError(f"`decoder_skips` must be one of {DECODER_SKIPS}, got {self.decoder_skips!r}.")
        if self.depth_patch_embedding_init not in DEPTH_PATCH_EMBEDDING_INITS:
            raise ValueError(
                f"`depth_patch_embedding_init` must be one of {DEPTH_PATCH_EMBEDDING_INITS}, got "
                f"{self.depth_patch_embedding_init!r}."
            )
        if not self.decode_dist_weights or any(w <= 0 for w in self.decode_dist_weights):
            raise ValueError(
                f"`decode_dist_weights` must be positive metres per channel, got {self.decode_dist_weights}."
            )
        self._validate_task_head_fields()
        layers = self.fusion_layers
        num_layers = self.rgb_config.num_hidden_layers
        if not layers:
            raise ValueError("`fusion_layers` must name at least one 0-based block index, got an empty list.")
        for index in layers:
            if not isinstance(index, int) or not 0 <= index < num_layers:
                raise ValueError(
                    f"`fusion_layers` holds 0-based block indices in [0, {num_layers - 1}] for a {num_layers}-block "
                    f"ViT; got {index!r} in {layers}."
                )
        if sorted(set(layers)) != list(layers):
            raise ValueError(f"`fusion_layers` must be strictly increasing without repeats, got {layers}.")
        if self.depth_normalization == "dynamic" and not self.stream_adapter.has_cls_token:
            raise ValueError(
                f"`depth_normalization='dynamic'` writes max(depth) into the depth CLS token, but the "
                f"{self.stream_adapter.family!r} family ({self.rgb_config.model_type}) has no CLS token; use "
                "`depth_normalization='global'`."
            )
        if self.depth_normalization == "dynamic":
            units, first_decimal = self.dynamic_cls_digit_positions()
            if first_decimal + 6 > hidden or units - 2 < 2 * hidden // 3:
                raise ValueError(
                    f"`depth_normalization='dynamic'` writes max(depth) as 3 integer and 6 decimal digits into the "
                    f"last third of the CLS vector; hidden_size {hidden} is too small for that (use a larger model or global normalisation)."
                )

    def validate_backbone_fields(self) -> None:
        """The `VanishingDepthBackbone` fields; `out_indices` must be set already. Also run by the backbone's forward,
        since `out_indices` can change after construction."""
        if not isinstance(self.reshape_hidden_states, bool):
            raise ValueError(f"`reshape_hidden_states` must be True or False, got {self.reshape_hidden_states!r}.")
        strides = self.backbone_feature_strides
        if strides is None:
            return
        num_outputs = len(self.out_indices or [])
        if (
            not isinstance(strides, list)
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in strides)
            or len(strides) != num_outputs
        ):
            raise ValueError(
                f"`backbone_feature_strides` must be None or one positive integer stride in pixels per `out_indices` "
                f"entry ({num_outputs} for out_indices={self.out_indices}), e.g. [4, 8, 16, 32]; got {strides!r}."
            )
        if not self.reshape_hidden_states:
            raise ValueError(
                "`backbone_feature_strides` resizes 4-D feature maps; it cannot be combined with "
                "`reshape_hidden_states=False` (token sequences)."
            )

    def _validate_task_head_fields(self) -> None:
        """The fields of the task heads (`VanishingDepthFor*`); the encoder ignores them."""
        if not isinstance(self.freeze_encoder, bool):
            raise ValueError(f"`freeze_encoder` must be True or False, got {self.freeze_encoder!r}.")
        if self.segmentation_head not in SEGMENTATION_HEADS:
            raise ValueError(
                f"`segmentation_head` must be one of {SEGMENTATION_HEADS}, got {self.segmentation_head!r}."
            )
        for name in ("segmentation_decoder_hidden_size", "depth_decoder_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"`{name}` must be an integer >= 2 (channels), got {value!r}.")
        if not isinstance(self.semantic_loss_ignore_index, int) or isinstance(self.semantic_loss_ignore_index, bool):
            raise ValueError(
                f"`semantic_loss_ignore_index` must be an integer label, got {self.semantic_loss_ignore_index!r}."
            )
        silog, l1 = self.depth_loss_silog_weight, self.depth_loss_l1_weight
        if not (float(silog) >= 0 and float(l1) >= 0 and float(silog) + float(l1) > 0):
            raise ValueError(
                f"`depth_loss_silog_weight` and `depth_loss_l1_weight` must be >= 0 with a positive sum, got {silog} "
                f"and {l1}."
            )


__all__ = [
    "VIT_SHAPES",
    "VanishingDepthConfig",
    "authors_fuse_cls_token",
    "rgb_config_from_any",
    "block_index",
    "default_fusion_layers",
    "depth_scale_code_positions",
    "stage_index",
]
