# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Vanishing Depth (arXiv 2503.19947): a frozen RGB DINOv2 plus a trainable depth DINOv2 with one-way SE fusion.

Reading order, top to bottom (the positional depth encoding, PDE, and the dynamic max-depth CLS code live in the flat
module `depth_encoding_vanishing_depth`, shared with the image processor): the depth patch projection, the
squeeze-and-excitation fusion, the `PreTrainedModel` base, the encoder (`VanishingDepthModel`), and the
backbone (`VanishingDepthBackbone`). The two ViT streams are stepped through block by block through the public seams
of transformers' own model of the RGB family (DINOv2, DINOv3, SigLIP vision), which the family's stream adapter in
`streams_vanishing_depth` names (embeddings, blocks, rotary embeddings, final norm); no ViT code is copied.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_outputs import (
    BackboneOutput,
    DepthEstimatorOutput,
    ImageClassifierOutput,
    ModelOutput,
    SemanticSegmenterOutput,
)
from transformers.utils import logging

from .configuration_vanishing_depth import VanishingDepthConfig
from .depth_encoding_vanishing_depth import (
    depth_scale_cls_code,
    encode_depth_input,
    normalized_depth_encoding,
    positional_depth_encoding,
)
from .loss_vanishing_depth import VanishingDepthLoss, masked_silog_l1_loss
from .streams_vanishing_depth import VanishingDepthStreamAdapter, all_block_layer_names

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------------
class VanishingDepthPatchProjection(nn.Conv2d):
    """The depth ViT's patch embedding: a stride-equals-kernel convolution computed as a reshape plus one matmul.

    Same parameters (and state-dict keys) as the `nn.Conv2d` it replaces. On CPU a 32-channel 14x14 convolution runs
    far below matmul speed; the two are the same linear map, so this is exact up to float summation order.
    Input sizes must be multiples of the patch size (the model checks this before calling).
    """

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = pixel_values.shape
        patch_h, patch_w = self.kernel_size
        grid_h, grid_w = height // patch_h, width // patch_w
        # One row per patch in (ph, pw, C) order, read from the channels-last view of the input: the PDE is computed
        # channels-last, so (B, H, W, C) is contiguous and this is the only copy. The weight is permuted to match.
        patches = pixel_values.permute(0, 2, 3, 1).reshape(batch, grid_h, patch_h, grid_w, patch_w, channels)
        patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(batch * grid_h * grid_w, patch_h * patch_w * channels)
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        patches = patches.to(weight.dtype)
        tokens = torch.addmm(self.bias, patches, weight.t()) if self.bias is not None else patches @ weight.t()
        # Back to the conv layout (B, D, gh, gw) as a view; DINOv2 flattens and transposes it without a copy.
        return tokens.reshape(batch, grid_h, grid_w, self.out_channels).permute(0, 3, 1, 2)


class VanishingDepthSqueezeExcitation(nn.Module):
    """Per-token channel gate: t * sigmoid(W2 relu(W1 t)) (ESANet's SE on a 1x1 map, as the authors' model/fusion.py applies it per token)."""

    def __init__(self, hidden_size: int, reduction: int) -> None:
        super().__init__()
        bottleneck = max(1, hidden_size // reduction)
        self.squeeze = nn.Linear(hidden_size, bottleneck)
        self.excite = nn.Linear(bottleneck, hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * torch.sigmoid(self.excite(torch.relu(self.squeeze(tokens))))


class VanishingDepthFusion(nn.Module):
    """depth <- SE_depth(depth) + SE_rgb(rgb), token by token; RGB -> depth only, the RGB stream is never changed.

    With ``fuse_cls_token=False`` the prefix tokens (CLS and registers) of the depth stream pass unchanged.
    """

    def __init__(self, hidden_size: int, reduction: int, num_prefix_tokens: int, fuse_cls_token: bool) -> None:
        super().__init__()
        self.se_rgb = VanishingDepthSqueezeExcitation(hidden_size, reduction)
        self.se_depth = VanishingDepthSqueezeExcitation(hidden_size, reduction)
        self.skip_tokens = 0 if fuse_cls_token else num_prefix_tokens

    def forward(self, depth_tokens: torch.Tensor, rgb_tokens: torch.Tensor) -> torch.Tensor:
        # Gate every token, then put the skipped prefix tokens back: cheaper than slicing both inputs and
        # concatenating (three full-size copies per fusion); the P prefix rows gated in vain are 1/(P + N) of the work.
        fused = self.se_depth(depth_tokens) + self.se_rgb(rgb_tokens.to(depth_tokens.dtype))
        skip = self.skip_tokens
        if skip:
            fused[:, :skip] = depth_tokens[:, :skip]
        return fused

    @torch.no_grad()
    def depth_share(self, depth_tokens: torch.Tensor, rgb_tokens: torch.Tensor) -> torch.Tensor:
        """Diagnostic ("rdps"): |SE_depth| / (|SE_rgb| + |SE_depth|), averaged; how much the fused tokens owe to depth."""
        skip = self.skip_tokens
        depth_part = self.se_depth(depth_tokens[:, skip:]).abs().mean()
        rgb_part = self.se_rgb(rgb_tokens[:, skip:].to(depth_tokens.dtype)).abs().mean()
        return depth_part / (depth_part + rgb_part).clamp_min(1e-12)


def _pipeline_being_built() -> str | None:
    """The task name if this load runs inside transformers' `pipeline(...)` factory, else None.

    A pipeline computes right away, so loading a randomly initialised head for one must fail; a plain
    `from_pretrained` (e.g. to train a new head on an encoder) must not. The Auto classes drop the `_from_pipeline`
    keyword before calling the model class, so the task is read from the pipeline loader's frame on the call stack.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in ("load_model", "infer_framework_load_model") and frame.f_globals.get(
            "__name__", ""
        ).startswith("transformers.pipelines"):
            return str(frame.f_locals.get("task") or "pipeline")
        frame = frame.f_back
    return None


_TRAINED_FOLDER_HINT = (
    "Load a folder saved from a trained model of this class: `vanishing-depth finetune` writes heads, "
    "`vanishing-depth pretrain` writes the pretraining decoder to RUN/pretraining."
)

# Initial depth of a freshly initialised decode-dist head, metres: a typical indoor distance, reached with every
# channel positive so that no ReLU starts dead (see `VanishingDepthPreTrainedModel._init_weights`).
_INITIAL_DEPTH_M = 2.5


class VanishingDepthDecodeDistOutput(nn.Conv2d):
    """conv3x3 -> K terms -> ReLU -> soft floor -> weighted sum with `weights_m` metres (the authors' "decode-dist" depth head, model/).

    A conv subclass so that `_init_weights` sees its parameters directly (it sets the initial bias). The unit weights
    are a plain tuple turned into a tensor in `forward`, not a non-persistent buffer: `from_pretrained` materialises
    such buffers uninitialised.
    """

    def __init__(self, in_channels: int, weights_m: Sequence[float]) -> None:
        weights_m = tuple(float(w) for w in weights_m)
        super().__init__(in_channels, len(weights_m), kernel_size=3, padding=1)
        self.weights_m = weights_m

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`(B, C, H, W)` -> `(B, H, W)` metres, float32."""
        terms = torch.relu(super().forward(features)).float()
        terms = torch.where(terms < 1e-4, terms * terms.detach() ** 3, terms)  # soft floor towards exact 0
        weights = torch.tensor(self.weights_m, dtype=terms.dtype, device=terms.device).view(1, -1, 1, 1)
        return (terms * weights).sum(dim=1)


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class VanishingDepthModelOutput(ModelOutput):
    """Outputs of [`VanishingDepthModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, P + N, D)`):
            Depth-stream tokens after the last block and the depth ViT's final layer norm (P prefix tokens: CLS and
            registers; N = (H/14)(W/14) patch tokens).
        pooler_output (`torch.FloatTensor` of shape `(B, 2D)`):
            The final layer-normed RGB and depth CLS tokens, concatenated (RGB first). For a family without a CLS
            token (SigLIP) each stream's part is the mean of its final layer-normed patch tokens.
        rgb_last_hidden_state (`torch.FloatTensor` of shape `(B, P + N, D)`):
            The frozen RGB stream after its final layer norm: identical to the plain transformers model of the RGB
            family (`Dinov2Model`, `DINOv3ViTModel`, `SiglipVisionModel`) on the same weights.
        feature_maps (`tuple(torch.FloatTensor)`, one `(B, 2D, H/14, W/14)` per fusion layer):
            RGB and depth patch features concatenated along channels (RGB first) at each fusion layer, as configured
            by `feature_source` and `feature_layernorm`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, `num_hidden_layers + 1` of `(B, P + N, D)`):
            Depth-stream hidden states (embeddings, then each block after its fusion), when requested.
        rgb_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            RGB-stream hidden states, when requested.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    rgb_last_hidden_state: torch.FloatTensor | None = None
    feature_maps: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    rgb_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VanishingDepthStreams:
    """Raw per-block tokens of both streams (no final layer norm), keyed by 0-based block index."""

    rgb: dict[int, torch.Tensor]
    depth_pre_fusion: dict[int, torch.Tensor]
    depth_post_fusion: dict[int, torch.Tensor]
    last_hidden_state: torch.Tensor | None = None
    rgb_last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    rgb_hidden_states: tuple[torch.Tensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------------------------------
class VanishingDepthPreTrainedModel(PreTrainedModel):
    config_class = VanishingDepthConfig
    config: VanishingDepthConfig
    base_model_prefix = "vanishing_depth"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = all_block_layer_names()
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    #: Top-level modules whose weights a task needs from a trained checkpoint (see `check_trained_weights`).
    trained_modules: tuple[str, ...] = ("vanishing_depth",)
    #: Filled by `from_pretrained`: where the weights came from, and the parameter names the checkpoint lacked (those
    #: are randomly initialised). `None` for a model built from a config in code.
    checkpoint_source: str | None = None
    weights_not_in_checkpoint: list[str] | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        output_loading_info = kwargs.pop("output_loading_info", False)
        from_pipeline = kwargs.get("_from_pipeline") or _pipeline_being_built()
        model, loading_info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        missing = set(loading_info.get("missing_keys", ()))
        for entry in loading_info.get("mismatched_keys", ()):
            missing.add(entry[0] if isinstance(entry, (tuple, list)) else entry)
        model.checkpoint_source = str(pretrained_model_name_or_path)
        model.weights_not_in_checkpoint = sorted(missing)
        # Loading materialises fresh parameters after __init__, so re-apply the frozen-RGB contract afterwards.
        for module in model.modules():
            if isinstance(module, VanishingDepthModel) and module.config.freeze_rgb_encoder:
                module.freeze_rgb_encoder()
        model._after_loading(pretrained_model_name_or_path)
        if from_pipeline:
            # A pipeline (transformers' own included) computes right away: refuse a randomly initialised head.
            model.check_trained_weights(f"the {from_pipeline!r} pipeline", instead=_TRAINED_FOLDER_HINT)
        return (model, loading_info) if output_loading_info else model

    def _after_loading(self, source) -> None:
        """Hook for subclasses, run after `from_pretrained` filled `weights_not_in_checkpoint`."""

    def untrained_modules(self) -> dict[str, int]:
        """`{module: number of tensors}` among `trained_modules` whose weights were NOT in the checkpoint this model was
        loaded from (randomly initialised). Empty for a complete checkpoint and for a model built in code (whose
        weights are whatever the code set)."""
        counts: dict[str, int] = {}
        for key in self.weights_not_in_checkpoint or ():
            top = key.split(".")[0]
            if top in self.trained_modules:
                counts[top] = counts.get(top, 0) + 1
        return counts

    def check_trained_weights(self, purpose: str, instead: str = "") -> None:
        """Refuse to compute from randomly initialised weights: raise a `ValueError` naming the checkpoint, the
        modules it lacked and (`instead`) which folder to use, if any of `trained_modules` was not in it."""
        untrained = self.untrained_modules()
        if not untrained:
            return
        listed = ", ".join(f"{name}.* ({count} tensors)" for name, count in sorted(untrained.items()))
        raise ValueError(
            f"{self.checkpoint_source!r} cannot be used for {purpose}: it holds no trained weights for {listed}; "
            f"{type(self).__name__} would run them randomly initialised. {instead}".rstrip()
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus what a folder needs to be used without the package: the `auto_map`
        of every Vanishing Depth class (so any head loads from any folder with `trust_remote_code=True`), and the
        `depth-completion` pipeline (`custom_pipelines` in `config.json` and its code file)."""
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **remote_code_auto_map()}
        pipeline_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), PIPELINE_MODULE + ".py")
        if os.path.isfile(pipeline_file):
            self.config.custom_pipelines = depth_completion_custom_pipelines(type(self).__name__)
            if kwargs.get("is_main_process", True):
                os.makedirs(save_directory, exist_ok=True)
                shutil.copyfile(pipeline_file, os.path.join(save_directory, PIPELINE_MODULE + ".py"))
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Only the modules this package adds; the DINOv2 sub-models initialise themselves."""
        from transformers import initialization as init

        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
            super()._init_weights(module)
        if isinstance(module, VanishingDepthDecodeDistOutput):
            # Start every term positive (no dead ReLU), at _INITIAL_DEPTH_M in total, the largest-unit term carrying
            # the remainder: a new head predicts plausible metric depth, inside the loss's > 1 mm range.
            weights = list(module.weights_m)
            bias = [0.5] * len(weights)
            largest = max(range(len(weights)), key=weights.__getitem__)
            rest = sum(0.5 * w for i, w in enumerate(weights) if i != largest)
            bias[largest] = max(0.05, (_INITIAL_DEPTH_M - rest) / weights[largest])
            init.copy_(module.bias, torch.tensor(bias, dtype=module.bias.dtype))


# ----------------------------------------------------------------------------------------------------------------------
# The encoder
# ----------------------------------------------------------------------------------------------------------------------
def _refuse_unknown_arguments(where: str, kwargs: dict) -> None:
    """`**kwargs` of a forward exists for transformers' plumbing, never to swallow an argument: a misspelt depth
    argument (`depth=...`) would otherwise be dropped silently and the model would run on RGB alone."""
    kwargs = dict(kwargs)
    if kwargs.pop("output_attentions", None):
        raise ValueError(
            f"{where}: `output_attentions=True` is not supported; the two streams run block by block and return no "
            "attention maps."
        )
    unknown = sorted(key for key, value in kwargs.items() if value is not None)
    if unknown:
        hint = (
            " Depth goes in `depth_values` ((B, 1, H, W) metres) or in channel 3 of `pixel_values`."
            if any("depth" in key for key in unknown)
            else ""
        )
        raise ValueError(f"{where}.forward got unexpected keyword arguments {unknown}.{hint}")


def _check_feature_layers(config: VanishingDepthConfig, feature_layers) -> list[int]:
    """`feature_layers` as a list of 0-based block indices (default: the fusion layers), or a ValueError."""
    if feature_layers is None:
        return list(config.fusion_layers)
    layers = list(feature_layers) if isinstance(feature_layers, (list, tuple)) else None
    count = config.num_hidden_layers
    if not layers or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < count for i in layers):
        raise ValueError(
            f"`feature_layers` must be a non-empty list of 0-based block indices in [0, {count - 1}] for this "
            f"{count}-block ViT, got {feature_layers!r}."
        )
    return layers


def _check_inputs(
    config: VanishingDepthConfig,
    pixel_values: torch.Tensor,
    depth_values: torch.Tensor | None,
    depth_encoding: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Shape, dtype and (eagerly) value checks with errors that say what was expected and what arrived.

    Also splits RGB-D `pixel_values`: depth may ride in the channels after RGB (the layout of the authors' mmseg
    backbone, and the only way to reach the backbone through transformers' own heads, which pass nothing but
    `pixel_values`): `(B, 3 + 1, H, W)` with channel 3 in metres, or `(B, 3 + C, H, W)` with a precomputed C-channel
    PDE (`C = config.depth_input_channels`, C != 1). Returns `(rgb, depth_values, depth_encoding)`, the depth taken
    from `pixel_values` when it was there.
    """
    rgb_channels, code_channels = config.rgb_config.num_channels, config.depth_input_channels
    accepted = {rgb_channels: "normalised RGB", rgb_channels + 1: "RGB + depth in metres (0 = missing)"}
    if code_channels != 1:
        accepted[rgb_channels + code_channels] = f"RGB + a precomputed {code_channels}-channel PDE"
    if pixel_values.ndim != 4 or int(pixel_values.shape[1]) not in accepted:
        forms = ", ".join(f"(B, {channels}, H, W) {what}" for channels, what in accepted.items())
        raise ValueError(f"`pixel_values` must be one of {forms}; got {tuple(pixel_values.shape)}.")
    if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()) and 0 in tuple(pixel_values.shape):
        raise ValueError(
            f"`pixel_values` is empty (shape {tuple(pixel_values.shape)}): the batch needs at least one image of at "
            f"least one patch ({config.patch_size} px) per side."
        )
    depth_name = "`depth_values`"
    if pixel_values.shape[1] > rgb_channels:
        if depth_values is not None or depth_encoding is not None:
            other = "`depth_values`" if depth_values is not None else "`depth_encoding`"
            raise ValueError(
                f"Depth was given twice: inside `pixel_values` {tuple(pixel_values.shape)} (channels {rgb_channels} "
                f"onwards) and as {other}. Pass 3-channel `pixel_values` with {other}, or only the RGB-D `pixel_values`."
            )
        packed = pixel_values[:, rgb_channels:].contiguous()
        pixel_values = pixel_values[:, :rgb_channels].contiguous()
        if packed.shape[1] == 1:
            depth_values, depth_name = packed, f"`pixel_values` channel {rgb_channels} (depth in metres)"
        else:
            depth_encoding = packed
    patch = config.patch_size
    height, width = pixel_values.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(
            f"`pixel_values` height and width must be multiples of the patch size {patch}, got {height}x{width}. "
            "Pad or resize with VanishingDepthImageProcessor (it records the padding so post-processing can undo it)."
        )
    if depth_values is not None and depth_encoding is not None:
        raise ValueError("Pass either `depth_values` (metres) or `depth_encoding` (precomputed PDE), not both.")
    if depth_values is not None:
        if depth_values.ndim != 4 or depth_values.shape[1] != 1:
            raise ValueError(
                f"`depth_values` must be depth in metres of shape (B, 1, H, W), got {tuple(depth_values.shape)}."
            )
        if not torch.is_floating_point(depth_values):
            hint = (
                "8-bit depth looks like a visualisation, not a measurement"
                if depth_values.dtype == torch.uint8
                else "integer sensor units must be converted to metres first"
            )
            raise ValueError(
                f"{depth_name} must be float metres (0 = missing), got dtype {depth_values.dtype}: {hint}. "
                "Use VanishingDepthImageProcessor(depth_scale=...) or vanishing_depth.data.load_depth."
            )
        if depth_values.shape[0] != pixel_values.shape[0] or depth_values.shape[-2:] != pixel_values.shape[-2:]:
            raise ValueError(
                f"`depth_values` {tuple(depth_values.shape)} must match `pixel_values` {tuple(pixel_values.shape)} in "
                "batch size, height and width; resize depth to the RGB grid with nearest neighbour "
                "(VanishingDepthImageProcessor does this)."
            )
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            # One pass and one host sync: min/max propagate NaN, +inf shows in the max, negatives in the min.
            lowest, highest = torch.aminmax(depth_values)
            if not bool((lowest >= 0) & torch.isfinite(highest)):
                invalid = ~torch.isfinite(depth_values) | (depth_values < 0)
                raise ValueError(
                    f"{depth_name} must be finite and >= 0 metres (0 = missing); got {int(invalid.sum())} negative, "
                    "NaN or infinite values. Set missing measurements to 0."
                )
    if depth_encoding is not None:
        channels = config.depth_input_channels
        if depth_encoding.ndim != 4 or depth_encoding.shape[1] != channels:
            raise ValueError(
                f"`depth_encoding` must have shape (B, {channels}, H, W) (the PDE channels), got "
                f"{tuple(depth_encoding.shape)}."
            )
        if depth_encoding.shape[0] != pixel_values.shape[0] or depth_encoding.shape[-2:] != pixel_values.shape[-2:]:
            raise ValueError(
                f"`depth_encoding` {tuple(depth_encoding.shape)} must match `pixel_values` "
                f"{tuple(pixel_values.shape)} in batch size, height and width."
            )
    return pixel_values, depth_values, depth_encoding


class VanishingDepthModel(VanishingDepthPreTrainedModel):
    """The Vanishing Depth RGB-D encoder: frozen RGB DINOv2, trainable depth DINOv2, SE fusion RGB -> depth.

    Example:

    ```python
    >>> import torch
    >>> from transformers import Dinov2Config
    >>> from vanishing_depth import VanishingDepthConfig, VanishingDepthModel
    >>> config = VanishingDepthConfig(
    ...     rgb_config=Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56)
    ... )
    >>> model = VanishingDepthModel(config).eval()
    >>> rgb = torch.randn(1, 3, 56, 56)  # ImageNet-normalised
    >>> depth_m = torch.rand(1, 1, 56, 56) * 5.0  # metres, 0 = missing
    >>> out = model(pixel_values=rgb, depth_values=depth_m)
    >>> [tuple(f.shape) for f in out.feature_maps]
    [(1, 64, 4, 4), (1, 64, 4, 4), (1, 64, 4, 4), (1, 64, 4, 4)]
    ```
    """

    trained_modules = ("rgb_encoder", "depth_encoder", "fusions")

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        adapter = config.stream_adapter
        self.rgb_encoder = AutoModel.from_config(config.rgb_config)
        self.depth_encoder = AutoModel.from_config(config.depth_config())
        old_projection = adapter.patch_projection(self.depth_encoder)
        adapter.replace_patch_projection(
            self.depth_encoder,
            VanishingDepthPatchProjection(
                old_projection.in_channels,
                old_projection.out_channels,
                kernel_size=old_projection.kernel_size,
                stride=old_projection.stride,
                bias=old_projection.bias is not None,
            ),
        )
        # The depth stream never masks patches (DINOv2's iBOT mask token): keep it out of optimisers and DDP.
        mask_token = adapter.mask_token(self.depth_encoder)
        if mask_token is not None:
            mask_token.requires_grad_(False)
        self.num_prefix_tokens = config.num_prefix_tokens
        self.fusions = nn.ModuleList(
            VanishingDepthFusion(config.hidden_size, config.se_reduction, self.num_prefix_tokens, config.fuse_cls_token)
            for _ in config.fusion_layers
        )
        self.post_init()
        if config.depth_patch_embedding_init == "pytorch_default":
            self._reset_depth_patch_embedding()
        if config.freeze_rgb_encoder:
            self.freeze_rgb_encoder()

    @torch.no_grad()
    def _reset_depth_patch_embedding(self) -> None:
        """`depth_patch_embedding_init="pytorch_default"`: the depth patch embedding as a fresh `nn.Conv2d` starts
        (Kaiming-uniform a=sqrt(5), bias uniform in +-1/sqrt(fan_in)), as the authors' code leaves it (model/dino.py).
        Done here, after `post_init`, because the depth ViT (a transformers sub-model) initialises its own modules;
        `transformers.initialization` skips tensors that `from_pretrained` loaded."""
        from transformers import initialization as init

        projection = self.stream_adapter.patch_projection(self.depth_encoder)
        init.kaiming_uniform_(projection.weight, a=math.sqrt(5))
        if projection.bias is not None:
            bound = 1.0 / math.sqrt(projection.weight[0].numel())
            init.uniform_(projection.bias, -bound, bound)

    # -- freezing ------------------------------------------------------------------------------------------------------
    def freeze_rgb_encoder(self) -> None:
        """RGB weights get `requires_grad=False` and the stream stays in eval mode (also across `model.train()`)."""
        self.rgb_encoder.requires_grad_(False)
        self.rgb_encoder.eval()

    def train(self, mode: bool = True) -> VanishingDepthModel:
        super().train(mode)
        if self.config.freeze_rgb_encoder:
            self.rgb_encoder.eval()  # Trainer calls model.train() every step; a frozen encoder keeps eval behaviour.
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.depth_encoder.get_input_embeddings()

    @property
    def stream_adapter(self):
        """The RGB family's adapter (`streams_vanishing_depth`): embeddings, blocks, final norm, prefix tokens."""
        return self.config.stream_adapter

    # -- depth embedding -----------------------------------------------------------------------------------------------
    def encode_depth(self, depth_values: torch.Tensor) -> torch.Tensor:
        """Metres `(B, 1, H, W)` -> the depth ViT's input channels `(B, C, H, W)` float32 (PDE, normalised or
        log-depth with validity: `config.depth_encoding`)."""
        config = self.config
        return encode_depth_input(
            depth_values,
            config.depth_encoding,
            channels=config.pde_channels,
            temperature=config.pde_temperature,
            max_depth=config.max_depth,
            normalization=config.depth_normalization,
            missing_depth_m=config.pde_missing_depth_m,
            float_order=config.pde_float_order,
            patch_normalization=config.depth_patch_normalization,
            patch_size=config.patch_size,
        )

    def _depth_embeddings(
        self, depth_input: torch.Tensor, depth_values: torch.Tensor | None, depth_scale_m: torch.Tensor | None
    ) -> torch.Tensor:
        embeddings = self.stream_adapter.embed(
            self.depth_encoder, depth_input, position_interpolation=self.config.position_interpolation
        )
        if self.config.depth_normalization != "dynamic":
            return embeddings
        if depth_scale_m is None:
            if depth_values is None:
                raise ValueError(
                    "`depth_normalization='dynamic'` with a precomputed `depth_encoding` also needs `depth_scale_m` "
                    "(B,), the per-image max depth in metres the encoding was normalised by."
                )
            depth_scale_m = depth_values.float().amax(dim=(1, 2, 3))
        code = depth_scale_cls_code(depth_scale_m, self.config.hidden_size).to(embeddings.dtype)
        # Adding the code after the position embedding equals adding it to the CLS token before it (authors' vision_transformer.py, prepare_tokens_with_masks).
        if self.config.add_depth_scale_to_cls_token:
            cls_token = embeddings[:, 0] + code
        else:
            cls_token = code
            cls_position = self.stream_adapter.cls_position_embedding(self.depth_encoder)
            if cls_position is not None:
                cls_token = cls_token + cls_position.to(embeddings.dtype)
        return torch.cat((cls_token[:, None], embeddings[:, 1:]), dim=1)

    # -- forward -------------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        feature_layers: list[int] | None = None,
        resized_sizes: torch.Tensor | None = None,
        **kwargs,
    ) -> VanishingDepthModelOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`, `(B, 3 + 1, H, W)` or `(B, 3 + C, H, W)`):
                ImageNet-normalised RGB; H and W multiples of 14. May also carry the depth in the channels after RGB,
                as the authors' mmseg backbone takes it and as transformers' own heads (which pass only
                `pixel_values` to their backbone) need it: `(B, 4, H, W)` with channel 3 the metric depth in metres
                (0 = missing, same checks as `depth_values`), or `(B, 3 + C, H, W)` with a precomputed PDE in channels
                3.. (C = `config.depth_input_channels`, when C != 1). The result is bit-identical to passing the
                depth separately; keep such a tensor float32 (bf16 metres lose centimetres). 3 channels: RGB only.
                `VanishingDepthImageProcessor(..., return_rgbd_pixel_values=True)` builds it.
            depth_values (`torch.FloatTensor` of shape `(B, 1, H, W)`, *optional*):
                Metric depth in metres on the RGB grid, 0 = no measurement. `None` (and 3-channel `pixel_values`)
                means no depth at all: the model runs on RGB alone with an all-missing depth map. Not together with
                RGB-D `pixel_values`.
            depth_encoding (`torch.FloatTensor` of shape `(B, C, H, W)`, *optional*):
                A precomputed PDE (``VanishingDepthImageProcessor(do_depth_encoding=True)``) instead of metres.
            depth_scale_m (`torch.FloatTensor` of shape `(B,)`, *optional*):
                Dynamic normalisation only: the per-image max depth in metres (computed from `depth_values` if absent).
            output_hidden_states (`bool`, *optional*):
                Also return every hidden state of both streams.
            feature_layers (`list[int]`, *optional*):
                0-based blocks whose features `feature_maps` returns; defaults to `config.fusion_layers`.
            resized_sizes (`torch.LongTensor` of shape `(B, 2)`, *optional*):
                Content sizes `(B, 2)` recorded by the image processor for post-processing (padding removal);
                accepted so that `model(**processor(...))` works, not used by the network.
        """
        _refuse_unknown_arguments(type(self).__name__, kwargs)
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        feature_layers = _check_feature_layers(config, feature_layers)
        streams = self.forward_streams(
            pixel_values, depth_values, depth_encoding, depth_scale_m, feature_layers, output_hidden_states
        )
        height, width = pixel_values.shape[-2:]
        depth_source = streams.depth_pre_fusion if config.feature_source == "pre_fusion" else streams.depth_post_fusion
        feature_maps = tuple(
            self._feature_map(streams.rgb[layer], depth_source[layer], height, width) for layer in feature_layers
        )
        rgb_last, depth_last = streams.rgb_last_hidden_state, streams.last_hidden_state
        pooled = torch.cat((self._pooled_token(rgb_last).to(depth_last.dtype), self._pooled_token(depth_last)), dim=-1)
        output = VanishingDepthModelOutput(
            last_hidden_state=depth_last,
            pooler_output=pooled,
            rgb_last_hidden_state=rgb_last,
            feature_maps=feature_maps,
            hidden_states=streams.hidden_states,
            rgb_hidden_states=streams.rgb_hidden_states,
        )
        return output if return_dict else output.to_tuple()

    def forward_streams(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        feature_layers: list[int] | None = None,
        output_hidden_states: bool = False,
    ) -> VanishingDepthStreams:
        """Run both streams block by block; return the raw (no final layer norm) tokens at `feature_layers`.

        The seam used by `forward` and by the pretraining decoder, which needs post-fusion depth tokens without the
        final layer norm (authors' model/dino.py, DinoRGBDWrapper). Inputs as in `forward`, RGB-D `pixel_values` included.
        """
        config = self.config
        pixel_values, depth_values, depth_encoding = _check_inputs(config, pixel_values, depth_values, depth_encoding)
        feature_layers = _check_feature_layers(config, feature_layers)
        batch, _, height, width = pixel_values.shape
        if depth_encoding is None:
            if depth_values is None:
                depth_values = pixel_values.new_zeros(batch, 1, height, width, dtype=torch.float32)
            depth_encoding = self.encode_depth(depth_values)
        depth_hidden = self._depth_embeddings(depth_encoding, depth_values, depth_scale_m)

        adapter = self.stream_adapter
        frozen = config.freeze_rgb_encoder
        rgb_encoder = self.rgb_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            pixel_values = pixel_values.to(adapter.patch_projection(rgb_encoder).weight.dtype)
            rgb_hidden = adapter.embed(rgb_encoder, pixel_values, position_interpolation=config.position_interpolation)
            # Computed once per forward from the patch grid (e.g. DINOv3's RoPE) and passed to every block.
            rgb_context = adapter.block_context(rgb_encoder, pixel_values)
        depth_context = adapter.share_block_context(rgb_context, depth_hidden.dtype)

        fusion_index = {layer: i for i, layer in enumerate(config.fusion_layers)}
        streams = VanishingDepthStreams(rgb={}, depth_pre_fusion={}, depth_post_fusion={})
        all_depth_hidden = [depth_hidden] if output_hidden_states else None
        all_rgb_hidden = [rgb_hidden] if output_hidden_states else None
        for block_index, (rgb_layer, depth_layer) in enumerate(
            zip(adapter.blocks(rgb_encoder), adapter.blocks(self.depth_encoder))
        ):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                rgb_hidden = adapter.call_block(rgb_layer, rgb_hidden, rgb_context)
            depth_hidden = adapter.call_block(depth_layer, depth_hidden, depth_context)
            if block_index in feature_layers:
                streams.depth_pre_fusion[block_index] = depth_hidden
            if block_index in fusion_index:
                depth_hidden = self.fusions[fusion_index[block_index]](depth_hidden, rgb_hidden)
            if block_index in feature_layers:
                streams.rgb[block_index] = rgb_hidden
                streams.depth_post_fusion[block_index] = depth_hidden
            if output_hidden_states:
                all_depth_hidden.append(depth_hidden)
                all_rgb_hidden.append(rgb_hidden)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            streams.rgb_last_hidden_state = adapter.final_norm(rgb_encoder)(rgb_hidden)
        streams.last_hidden_state = adapter.final_norm(self.depth_encoder)(depth_hidden)
        if output_hidden_states:
            streams.hidden_states, streams.rgb_hidden_states = tuple(all_depth_hidden), tuple(all_rgb_hidden)
        return streams

    def _pooled_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """`(B, P + N, D)` -> `(B, D)`: the CLS token, or the mean of the patch tokens for a family without one."""
        if self.stream_adapter.has_cls_token:
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens :].mean(dim=1)

    def rgb_final_norm(self) -> nn.Module:
        return self.stream_adapter.final_norm(self.rgb_encoder)

    def depth_final_norm(self) -> nn.Module:
        return self.stream_adapter.final_norm(self.depth_encoder)

    def tokens_to_map(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Patch tokens `(B, P + N, D)` of an `H x W` input -> `(B, D, H/14, W/14)` (prefix tokens dropped)."""
        patch = self.config.patch_size
        tokens = tokens[:, self.num_prefix_tokens :]
        return tokens.unflatten(1, (height // patch, width // patch)).permute(0, 3, 1, 2).contiguous()

    def _feature_map(
        self, rgb_tokens: torch.Tensor, depth_tokens: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """Layer-normed (if configured) RGB and depth patch tokens -> `(B, 2D, H/14, W/14)`, RGB channels first."""
        if self.config.feature_layernorm:
            rgb_tokens = self.rgb_final_norm()(rgb_tokens)
            depth_tokens = self.depth_final_norm()(depth_tokens)
        return self.tokens_to_map(torch.cat((rgb_tokens.to(depth_tokens.dtype), depth_tokens), dim=-1), height, width)

    # -- construction from an RGB ViT ----------------------------------------------------------------------------------
    @classmethod
    def from_rgb_backbone(
        cls,
        rgb_backbone,
        *,
        allow_pickle: bool = False,
        image_size: int | None = None,
        **config_kwargs,
    ) -> VanishingDepthModel:
        """Build both streams from one pretrained RGB ViT (DINOv2, DINOv3 ViT, SigLIP vision), as the paper does (arXiv 2503.19947: both streams start from the same weights).

        Every tensor whose shape matches is copied into both the RGB and the depth ViT (blocks, CLS, registers, mask
        token, final norm, patch-embedding bias); the depth patch-embedding weight (C input channels instead of 3)
        keeps its fresh random init; absolute position embeddings are bicubically interpolated when `image_size`
        changes the grid (DINOv3 has none: RoPE).

        Args:
            rgb_backbone: a model instance of a supported family (`Dinov2Model`, `Dinov2WithRegistersModel`,
                `DINOv3ViTModel`, `SiglipVisionModel`; a model wrapping one, such as `Dinov2ForImageClassification` or
                a text+vision `SiglipModel`, gives its vision tower); a Hub id such as
                ``"facebook/dinov2-small"`` (online users) or a local folder saved with `save_pretrained` (offline);
                or a path to an original ``dinov2_vit*14[_reg4]_pretrain.pth`` / a `.safetensors` state dict in the
                original or transformers v4/v5 key layout (see `vanishing_depth.convert_dinov2_state_dict`).
            allow_pickle: `.pth` files are pickles that can run code when loaded; pass True to load one anyway
                (tensors only, `weights_only=True`).
            image_size: optional new position-embedding grid size in pixels (e.g. 224 for 224-px training).
            **config_kwargs: any `VanishingDepthConfig` field (pde_channels, fusion_layers, ...).
        """
        # Imported here: a Hub folder's remote code carries the modeling file but not the checkpoint converters, which
        # only this constructor needs.
        from .convert_checkpoints import load_rgb_backbone

        rgb_model = load_rgb_backbone(rgb_backbone, allow_pickle=allow_pickle)
        source_state = {k: v.detach().clone() for k, v in rgb_model.state_dict().items()}
        rgb_config = rgb_model.config.__class__.from_dict(rgb_model.config.to_dict())
        rgb_config.architectures = None
        if image_size is not None:
            rgb_config.image_size = image_size
        source_name = str(rgb_backbone) if isinstance(rgb_backbone, (str, os.PathLike)) else None
        source_name = source_name or getattr(rgb_model.config, "_name_or_path", None) or None
        config_kwargs.setdefault("rgb_backbone_name_or_path", source_name)
        config = VanishingDepthConfig(rgb_config=rgb_config, **config_kwargs)
        model = cls(config)
        report_rgb = load_matching_state_dict(model.rgb_encoder, source_state, config.stream_adapter)
        report_depth = load_matching_state_dict(model.depth_encoder, source_state, config.stream_adapter)
        if report_rgb["skipped"]:
            raise ValueError(f"RGB backbone weights did not fit the RGB stream: {report_rgb['skipped']}")
        logger.info(
            "Initialised both streams from %s: %d tensors copied into the depth stream, kept fresh: %s, interpolated: %s",
            source_name or type(rgb_model).__name__,
            len(report_depth["copied"]),
            report_depth["skipped"] + report_depth["missing"],
            report_depth["interpolated"],
        )
        return model


def load_matching_state_dict(
    module: nn.Module, state_dict: dict[str, torch.Tensor], adapter: VanishingDepthStreamAdapter
) -> dict[str, list[str]]:
    """Shape-tolerant copy of an RGB ViT's weights into a stream: equal shapes are copied, position embeddings of
    another grid are interpolated as the family's `adapter` says, anything else (the depth stream's C-channel patch
    embedding) is skipped and reported. Returns {"copied", "interpolated", "skipped", "missing"} key lists."""
    report = {"copied": [], "interpolated": [], "skipped": [], "missing": []}
    own = module.state_dict()
    with torch.no_grad():
        for key, target in own.items():
            if key not in state_dict:
                report["missing"].append(key)
                continue
            source = state_dict[key]
            if source.shape == target.shape:
                target.copy_(source.to(target.dtype))
                report["copied"].append(key)
            else:
                resized = adapter.interpolate_state_tensor(key, source, target)
                if resized is not None:
                    target.copy_(resized.to(target.dtype))
                    report["interpolated"].append(key)
                else:
                    report["skipped"].append(key)
    return report


# ----------------------------------------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------------------------------------
class VanishingDepthBackbone(BackboneMixin, VanishingDepthPreTrainedModel):
    """`AutoBackbone` view of the encoder, for transformers' own heads (UperNet, Mask2Former, Depth Anything).

    `feature_maps` holds one output per `config.out_indices` entry (transformers' stage numbering: stage i = the output
    of 0-based block i - 1, `config.backbone_blocks`; "stem" is not available), each the RGB and depth features concatenated along channels (RGB first), so
    `backbone.channels == [2 * hidden_size] * len(out_indices)`:

    - default: maps `(B, 2D, H/14, W/14)`, identical to `VanishingDepthModel(...).feature_maps` for the same layers;
    - `config.backbone_feature_strides=[4, 8, 16, 32]`: the maps bilinearly resized to a pyramid `ceil(H / s_i)`,
      for Mask2Former and UperNet;
    - `config.reshape_hidden_states=False`: token sequences `(B, 1 + N, 2D)` (CLS first, registers dropped), for
      Depth Anything (`DepthAnythingConfig(reassemble_hidden_size=2 * hidden_size)`).

    The heads pass only `pixel_values` to their backbone, so give them RGB-D `pixel_values` `(B, 3 + 1, H, W)` (channel
    3 = depth in metres; see `VanishingDepthModel.forward`). DPT (`DPTForDepthEstimation`) does not fit: its neck sizes
    its projections from `backbone_config.hidden_size` (the RGB width D), not the 2D channels returned here.

    Load trained weights with `VanishingDepthBackbone.from_pretrained(folder)`, where `folder` holds a saved
    `VanishingDepthModel` or `VanishingDepthBackbone` (the encoder's keys gain the `vanishing_depth.` prefix). In
    transformers 5.25 `AutoBackbone.from_pretrained(local_folder)` fails inside transformers before loading anything
    (it asks the Hub whether the path is a repository), so call the class directly.
    """

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.vanishing_depth = VanishingDepthModel(config)
        # BackboneMixin derives `channels` (what UperNet / Mask2Former size their input projections from) from
        # `num_features` per stage: RGB + depth concatenated = 2 * hidden_size at every stage.
        self.num_features = [config.feature_channels] * (config.num_hidden_layers + 1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        resized_sizes: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        **kwargs,
    ) -> BackboneOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`, `(B, 3 + 1, H, W)` or `(B, 3 + C, H, W)`):
                ImageNet-normalised RGB, optionally followed by the depth in metres (one channel, 0 = missing) or a
                precomputed C-channel PDE, exactly as in `VanishingDepthModel.forward`.
            depth_values / depth_encoding / depth_scale_m:
                As in `VanishingDepthModel.forward`, for 3-channel `pixel_values`.
            output_hidden_states (`bool`, *optional*):
                Also return the depth stream's hidden states.
            output_attentions (`bool`, *optional*):
                Accepted for the `AutoBackbone` interface; attentions are not returned.
            resized_sizes (`torch.LongTensor` of shape `(B, 2)`, *optional*):
                Content sizes `(B, 2)` recorded by the image processor for post-processing (padding removal);
                accepted so that `model(**processor(...))` works, not used by the network.
        """
        config = self.config
        layers = config.backbone_blocks  # stage numbering -> 0-based blocks; refuses 'stem'
        _refuse_unknown_arguments(type(self).__name__, {"output_attentions": output_attentions, **kwargs})
        config.validate_backbone_fields()  # `out_indices` may have changed since construction
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        model = self.vanishing_depth
        streams = model.forward_streams(
            pixel_values, depth_values, depth_encoding, depth_scale_m, layers, bool(output_hidden_states)
        )
        height, width = pixel_values.shape[-2:]
        depth_source = streams.depth_pre_fusion if config.feature_source == "pre_fusion" else streams.depth_post_fusion
        if config.reshape_hidden_states:
            features = [model._feature_map(streams.rgb[layer], depth_source[layer], height, width) for layer in layers]
            if config.backbone_feature_strides is not None:
                features = [
                    _resize_to_stride(feature, stride, height, width)
                    for feature, stride in zip(features, config.backbone_feature_strides)
                ]
        else:
            features = [_backbone_token_features(model, streams.rgb[layer], depth_source[layer]) for layer in layers]
        output = BackboneOutput(feature_maps=tuple(features), hidden_states=streams.hidden_states)
        return output if return_dict else output.to_tuple()


def _backbone_token_features(
    model: VanishingDepthModel, rgb_tokens: torch.Tensor, depth_tokens: torch.Tensor
) -> torch.Tensor:
    """`(B, 1 + N, 2D)`: the CLS token and the N patch tokens (registers dropped), RGB and depth concatenated along
    channels (RGB first) with the same layer norm as `VanishingDepthModel._feature_map`, so that `[:, 1:]` reshaped to
    the patch grid equals the 4-D feature map."""
    if model.config.feature_layernorm:
        rgb_tokens = model.rgb_final_norm()(rgb_tokens)
        depth_tokens = model.depth_final_norm()(depth_tokens)
    tokens = torch.cat((rgb_tokens.to(depth_tokens.dtype), depth_tokens), dim=-1)
    # A family without a CLS token (SigLIP) puts the mean patch token first, as in `pooler_output`.
    first = tokens[:, :1] if model.stream_adapter.has_cls_token else tokens[:, model.num_prefix_tokens :].mean(1, True)
    return torch.cat((first, tokens[:, model.num_prefix_tokens :]), dim=1)


def _ceil_div(size: int, divisor: int) -> int:
    """ceil(size / divisor) for sizes >= 0, written so that exported graphs keep it: ONNX translates `//` on symbolic
    sizes as a truncating division, which is exact for non-negative operands only (`-(-a // b)` would be off by one)."""
    return (size + divisor - 1) // divisor


def _resize_to_stride(feature_map: torch.Tensor, stride: int, height: int, width: int) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of a map of an `height x width` input to `ceil(H / s) x ceil(W / s)`."""
    size = (_ceil_div(height, stride), _ceil_div(width, stride))
    if not torch.compiler.is_exporting() and tuple(feature_map.shape[-2:]) == size:
        return feature_map
    return nn.functional.interpolate(feature_map, size=size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------------------------------
# Self-supervised pretraining: U-Net decoder with a metric depth head per scale (authors' main.py: smp U-Net decoder; utils/loss.py)
# ----------------------------------------------------------------------------------------------------------------------
class VanishingDepthDecoderBlock(nn.Module):
    """Nearest upsample -> concat skip (if any) -> 2 x (conv3x3, BN, ReLU)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None = None) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        return self.conv2(self.conv1(x))


class VanishingDepthPretrainingDecoder(nn.Module):
    """U-Net decoder over the 4 fusion-layer depth features (strides 16, 8, 4, 2) with a depth head per scale.

    `config.decoder_skips="lateral"` (default): the deepest map and the skips enter through FPN-style 1x1 lateral
    projections applied on the 14-px token grid before the bilinear resize (projection and bilinear resize commute, so
    this equals projecting after resizing at a fraction of the cost). `"raw"`: the D-channel maps enter as they are,
    resized, as in the authors' U-Net (model/decoder.py, fed by model/dino.py); at stride 2 a raw D-channel skip costs
    more than the ViT itself.
    """

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__()
        hidden, channels = config.hidden_size, config.decoder_channels
        if config.decoder_skips == "lateral":
            self.head_projection = nn.Conv2d(hidden, channels[0], kernel_size=1)
            self.skip_projections = nn.ModuleList(nn.Conv2d(hidden, c, kernel_size=1) for c in channels[:3])
            in_channels = [channels[0]] + channels[:3]
            skip_channels = channels[:3] + [0]
        else:  # "raw"
            self.head_projection = nn.Identity()
            self.skip_projections = nn.ModuleList(nn.Identity() for _ in channels[:3])
            in_channels = [hidden] + channels[:3]
            skip_channels = [hidden] * 3 + [0]
        self.blocks = nn.ModuleList(
            VanishingDepthDecoderBlock(i, s, o) for i, s, o in zip(in_channels, skip_channels, channels)
        )
        self.heads = nn.ModuleList(VanishingDepthDecodeDistOutput(c, config.decode_dist_weights) for c in channels)

    def forward(self, depth_maps: list[torch.Tensor], height: int, width: int) -> list[torch.Tensor]:
        """depth_maps: 4 maps `(B, D, H/14, W/14)`, shallow to deep. Returns 4 depth maps `(B, 1, ceil(H/2^k),
        ceil(W/2^k))` in metres, full resolution first (the sizes of `target[..., ::2**k, ::2**k]`)."""
        sizes = [(_ceil_div(height, 2**k), _ceil_div(width, 2**k)) for k in range(5)]
        resize = functools.partial(nn.functional.interpolate, mode="bilinear", align_corners=False)
        # Channels-last activations from here on (the resizes, concatenations, BatchNorms and ReLUs keep the layout):
        # the 3x3 convolutions run faster in NHWC (a ViT-S pretraining step about 10 % faster on CPU, see
        # benchmarks/README.md); the same arithmetic up to float summation order.
        channels_last = functools.partial(torch.Tensor.contiguous, memory_format=torch.channels_last)
        x = channels_last(resize(self.head_projection(depth_maps[3]), size=sizes[4]))
        skips = [
            channels_last(resize(proj(fm), size=sizes[3 - k]))
            for k, (proj, fm) in enumerate(zip(self.skip_projections, depth_maps[2::-1]))
        ]
        predictions = []
        for k, (block, head) in enumerate(zip(self.blocks, self.heads)):
            x = block(x, sizes[3 - k], skips[k] if k < 3 else None)
            predictions.append(head(x)[:, None])
        return predictions[::-1]


@dataclass
class VanishingDepthPretrainingOutput(ModelOutput):
    """Outputs of [`VanishingDepthForPretraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the balanced multi-scale SI loss, when targets are given.
        predicted_depth (`tuple(torch.FloatTensor)`): 4 maps `(B, 1, ceil(H/2^k), ceil(W/2^k))` of metric depth in
            metres, **full resolution first**: `predicted_depth[0]` is the completed depth map.
        loss_per_scale / loss_removed / loss_visible (`torch.FloatTensor` of shape `(4,)`, *optional*): detached
            components for logging (NaN where a set was empty).
        last_hidden_state (`torch.FloatTensor` of shape `(B, P + N, D)`): the depth stream after its final norm.
    """

    loss: torch.FloatTensor | None = None
    predicted_depth: tuple[torch.FloatTensor, ...] | None = None
    loss_per_scale: torch.FloatTensor | None = None
    loss_removed: torch.FloatTensor | None = None
    loss_visible: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class VanishingDepthForPretraining(VanishingDepthPreTrainedModel):
    """The encoder plus the U-Net decoder of self-supervised pretraining; also a working depth-completion model.

    Given partly erased depth (`depth_values`) it predicts the full metric depth at four scales. With `target_depth`
    (and optionally `removed_mask`) it returns the balanced scale-invariant log loss of the paper (authors' utils/loss.py). After
    pretraining, `save_encoder(dir)` writes the encoder alone (loadable with `AutoModel.from_pretrained`); the decoder
    is only for pretraining and completion.
    """

    trained_modules = ("vanishing_depth", "decoder")

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        if len(config.fusion_layers) != 4:
            raise ValueError(
                f"VanishingDepthForPretraining decodes 4 fusion layers (strides 16/8/4/2); `fusion_layers` has "
                f"{len(config.fusion_layers)}: {config.fusion_layers}."
            )
        self.vanishing_depth = VanishingDepthModel(config)
        # The decoder reads pre-norm tokens, so the depth stream's final layer norm gets no gradient here; freezing
        # it keeps it out of the optimiser and lets DDP run without find_unused_parameters.
        self.vanishing_depth.depth_final_norm().requires_grad_(False)
        self.decoder = VanishingDepthPretrainingDecoder(config)
        self.pretraining_loss = VanishingDepthLoss(
            alpha=config.loss_alpha, variance_focus=config.loss_variance_focus, pooling=config.loss_pooling
        )
        self.post_init()

    def save_encoder(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Write the encoder alone (config.json + model.safetensors), loadable with `AutoModel.from_pretrained`."""
        self.vanishing_depth.save_pretrained(save_directory, **kwargs)

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        target_depth: torch.Tensor | None = None,
        removed_mask: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        return_dict: bool | None = None,
        resized_sizes: torch.Tensor | None = None,
        **kwargs,
    ) -> VanishingDepthPretrainingOutput | tuple:
        r"""
        Args:
            pixel_values (`(B, 3, H, W)`): ImageNet-normalised RGB, sides multiples of 14 (or `(B, 3 + 1, H, W)` with
                depth in metres as channel 3, see [`VanishingDepthModel.forward`]).
            depth_values (`(B, 1, H, W)`): the (partly erased) input depth in metres, 0 = missing.
            target_depth (`(B, 1, H, W)`, *optional*): the full depth to predict, metres, 0 = no ground truth.
            removed_mask (`(B, 1, H, W)` bool, *optional*): True where input depth was erased; defaults to
                "valid in the target but missing in the input".
            resized_sizes (`(B, 2)`, *optional*): the image processor's content sizes, for post-processing only;
                accepted so that `model(**processor(...))` works, not used by the network.
        """
        _refuse_unknown_arguments(type(self).__name__, kwargs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        height, width = pixel_values.shape[-2:]
        layers = self.config.fusion_layers
        streams = self.vanishing_depth.forward_streams(pixel_values, depth_values, depth_encoding, None, layers)
        depth_maps = [
            self.vanishing_depth.tokens_to_map(streams.depth_post_fusion[layer], height, width) for layer in layers
        ]
        predictions = self.decoder(depth_maps, height, width)

        loss = per_scale = removed_loss = visible_loss = None
        if target_depth is not None:
            if target_depth.shape != (pixel_values.shape[0], 1, height, width):
                raise ValueError(
                    f"`target_depth` must be metres of shape {(pixel_values.shape[0], 1, height, width)}, got "
                    f"{tuple(target_depth.shape)}."
                )
            if removed_mask is None:
                if depth_values is None:
                    raise ValueError("`removed_mask` is needed when no `depth_values` are given.")
                removed_mask = (target_depth > 0) & (depth_values <= 0)
            targets = [target_depth[..., :: 2**k, :: 2**k] for k in range(4)]
            masks = [removed_mask.bool()[..., :: 2**k, :: 2**k] for k in range(4)]
            result = self.pretraining_loss(predictions, targets, masks)
            loss, per_scale, removed_loss, visible_loss = result.loss, result.per_scale, result.removed, result.visible

        output = VanishingDepthPretrainingOutput(
            loss=loss,
            predicted_depth=tuple(predictions),
            loss_per_scale=per_scale,
            loss_removed=removed_loss,
            loss_visible=visible_loss,
            last_hidden_state=streams.last_hidden_state,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------------
# Task heads on the (frozen) encoder (the paper's frozen-encoder protocol): semantic segmentation, depth completion, scene classification
# ----------------------------------------------------------------------------------------------------------------------
def _stride_sizes(height: int, width: int, count: int) -> list[tuple[int, int]]:
    """Map sizes at strides 4, 8, 16, ... of an `height x width` input (ceil division), one per level, finest first."""
    return [(_ceil_div(height, 2 ** (k + 2)), _ceil_div(width, 2 ** (k + 2))) for k in range(count)]


def _resize(features: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    # Skipping an equal-size resize is only safe eagerly: under export the test on symbolic sizes would freeze one
    # branch into the graph (a bilinear resize to the same size is the identity, so both compute the same numbers).
    if not torch.compiler.is_exporting() and tuple(features.shape[-2:]) == tuple(size):
        return features
    return nn.functional.interpolate(features, size=size, mode="bilinear", align_corners=align_corners)


def _conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: fine-tuning batches are small and the stride-32 level of a small image is 1-2 px wide.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(math.gcd(32, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


class VanishingDepthTaskModel(VanishingDepthPreTrainedModel):
    """Shared plumbing of the task heads: the encoder as `self.vanishing_depth`, the freezing contract and loading.

    * `config.freeze_encoder=True` (default, the paper's protocol): every encoder parameter has `requires_grad=False`
      and the encoder stays in eval mode even under `.train()` (Trainer calls it every step). With `False` the depth
      stream and the fusion blocks train with the head; the RGB stream follows `config.freeze_rgb_encoder`.
    * `from_pretrained` on a bare encoder checkpoint (`VanishingDepthModel.save_pretrained`) loads the encoder and
      initialises only the head (`head_module_names`), and says so in a WARNING naming the new modules.
    """

    head_module_names: tuple[str, ...] = ()
    # The losses are means over pixels / samples; Trainer must scale them for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.vanishing_depth = VanishingDepthModel(config)

    def apply_encoder_freezing(self) -> None:
        """Set `requires_grad` and eval mode of the encoder from `config.freeze_encoder` / `freeze_rgb_encoder`."""
        encoder = self.vanishing_depth
        encoder.requires_grad_(not self.config.freeze_encoder)
        if self.config.freeze_rgb_encoder:
            encoder.freeze_rgb_encoder()
        if self.config.freeze_encoder:
            encoder.eval()

    def train(self, mode: bool = True) -> VanishingDepthTaskModel:
        super().train(mode)
        if self.config.freeze_encoder:
            self.vanishing_depth.eval()  # a frozen encoder keeps eval behaviour (dropout, drop-path) while the head trains
        return self

    def _after_loading(self, source) -> None:
        # Loading materialises fresh parameters after __init__: re-apply the freezing contract.
        self.apply_encoder_freezing()
        self._report_new_modules(source)

    def _report_new_modules(self, source) -> None:
        missing = set(self.weights_not_in_checkpoint or ())
        head_keys = sorted(key for key in missing if key.split(".")[0] in self.head_module_names)
        encoder_keys = sorted(missing.difference(head_keys))
        name = type(self).__name__
        if encoder_keys:
            logger.warning(
                "%s: %d encoder tensors were not found in %s and are RANDOMLY initialised: %s%s",
                name,
                len(encoder_keys),
                source,
                encoder_keys[:8],
                " ..." if len(encoder_keys) > 8 else "",
            )
        if head_keys:
            modules = sorted({key.split(".")[0] for key in head_keys})
            logger.warning(
                "%s: newly initialised task head %s (%d tensors); the encoder was loaded from %s%s. Train the head "
                "before using the model.",
                name,
                modules,
                len(head_keys),
                source,
                " and is frozen (freeze_encoder=True)" if self.config.freeze_encoder else "",
            )

    def _encode(self, pixel_values, depth_values, depth_encoding, depth_scale_m, output_hidden_states):
        return self.vanishing_depth(
            pixel_values,
            depth_values=depth_values,
            depth_encoding=depth_encoding,
            depth_scale_m=depth_scale_m,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )


# -- semantic segmentation ---------------------------------------------------------------------------------------------
class VanishingDepthLinearSegmentationHead(nn.Module):
    """The linear probe (DINOv2-linear style, authors' model/linear_seghead.py): batch norm over the concatenated fusion-layer maps
    (each resized to the first map's size), then a 1x1 conv to the classes. Logits at the token grid (stride 14)."""

    def __init__(self, in_channels: int, num_maps: int, num_labels: int) -> None:
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(in_channels * num_maps)
        self.classifier = nn.Conv2d(in_channels * num_maps, num_labels, kernel_size=1)

    def forward(self, feature_maps: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
        size = tuple(feature_maps[0].shape[-2:])
        features = torch.cat([_resize(fm, size) for fm in feature_maps], dim=1)
        return self.classifier(self.batch_norm(features))


class VanishingDepthMultiscaleSegmentationHead(nn.Module):
    """A small FPN decoder (UPerNet without the pooling module) over the fusion-layer maps.

    The maps (shallow to deep) get a 1x1 lateral projection on the token grid, are resized to strides 4, 8, 16, 32
    of the input (projection and bilinear resize commute, so projecting first is the cheap order), summed top-down,
    smoothed by conv3x3-GN-ReLU, resized to stride 4, concatenated, fused by one more conv3x3-GN-ReLU and classified
    by a 1x1 conv. Logits at stride 4.
    """

    def __init__(self, in_channels: int, num_maps: int, hidden_size: int, num_labels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels, hidden_size, kernel_size=1) for _ in range(num_maps))
        self.smooth = nn.ModuleList(_conv_norm_relu(hidden_size, hidden_size, 3) for _ in range(num_maps))
        self.fuse = _conv_norm_relu(hidden_size * num_maps, hidden_size, 3)
        self.classifier = nn.Conv2d(hidden_size, num_labels, kernel_size=1)

    def forward(self, feature_maps: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
        sizes = _stride_sizes(height, width, len(feature_maps))
        levels = [_resize(lateral(fm), size) for lateral, fm, size in zip(self.lateral, feature_maps, sizes)]
        for index in range(len(levels) - 2, -1, -1):  # top-down: coarse context into the finer level
            levels[index] = levels[index] + _resize(levels[index + 1], sizes[index])
        levels = [_resize(smooth(level), sizes[0]) for smooth, level in zip(self.smooth, levels)]
        return self.classifier(self.fuse(torch.cat(levels, dim=1)))


def _check_segmentation_labels(labels: torch.Tensor, batch: int, num_labels: int, ignore_index: int) -> torch.Tensor:
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 3 or labels.shape[0] != batch:
        raise ValueError(f"`labels` must be class ids of shape ({batch}, H, W), got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must hold integer class ids (int64), got dtype {labels.dtype}.")
    if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_labels))
        if bool(bad.any()):
            raise ValueError(
                f"`labels` must be in [0, {num_labels}) or the ignore index {ignore_index}; got values "
                f"{labels[bad].unique().tolist()[:10]}. Check `num_labels` and `reduce_labels` (0 = background)."
            )
    return labels.long()


class VanishingDepthForSemanticSegmentation(VanishingDepthTaskModel):
    """Semantic segmentation on the Vanishing Depth encoder: a linear probe or a multi-scale decoder.

    `config.segmentation_head` picks the decoder (`"linear"`: batch norm + 1x1 conv on the concatenated RGB + depth
    fusion-layer features, logits at stride 14; `"multiscale"`: an FPN decoder, logits at stride 4). The loss is
    pixel-wise cross-entropy with `config.semantic_loss_ignore_index` (255), computed on logits bilinearly upsampled to
    the label size. Labels follow the image processor's convention: with `do_reduce_labels` (SUN RGB-D, ADE20K) the
    background 0 becomes 255 and is ignored.

    Example:

    ```python
    >>> from transformers import AutoModelForSemanticSegmentation
    >>> model = AutoModelForSemanticSegmentation.from_pretrained("path/to/encoder", num_labels=37)  # head new, encoder frozen
    ```
    """

    head_module_names = ("decode_head",)
    trained_modules = ("vanishing_depth", "decode_head")

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        if config.num_labels < 2:
            raise ValueError(
                f"`num_labels` must be >= 2 for semantic segmentation (cross-entropy over classes), got {config.num_labels}."
            )
        num_maps = len(config.fusion_layers)
        if config.segmentation_head == "linear":
            self.decode_head = VanishingDepthLinearSegmentationHead(
                config.feature_channels, num_maps, config.num_labels
            )
        else:
            self.decode_head = VanishingDepthMultiscaleSegmentationHead(
                config.feature_channels, num_maps, config.segmentation_decoder_hidden_size, config.num_labels
            )
        self.post_init()
        self.apply_encoder_freezing()

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        upsample_logits: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        resized_sizes: torch.Tensor | None = None,
    ) -> SemanticSegmenterOutput | tuple:
        r"""
        Args:
            pixel_values (`(B, 3, H, W)`): ImageNet-normalised RGB, sides multiples of 14.
            depth_values (`(B, 1, H, W)`, *optional*): depth in metres, 0 = no measurement (`None`: RGB only).
            labels (`(B, H_l, W_l)` int64, *optional*): class ids; `semantic_loss_ignore_index` pixels are ignored.
            depth_encoding / depth_scale_m: as in [`VanishingDepthModel.forward`].
            resized_sizes (`(B, 2)`, *optional*): the image processor's content sizes, for
                `post_process_semantic_segmentation` only; accepted so that `model(**processor(...))` works.
            upsample_logits (`bool`): return logits bilinearly upsampled to `(H, W)` instead of the decoder's
                resolution (stride 14 for the linear probe, 4 for the multi-scale decoder).

        Returns:
            `SemanticSegmenterOutput` with `loss` (when `labels` are given) and `logits` `(B, num_labels, h, w)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        height, width = pixel_values.shape[-2:]
        outputs = self._encode(pixel_values, depth_values, depth_encoding, depth_scale_m, output_hidden_states)
        logits = self.decode_head(outputs.feature_maps, height, width)

        loss = None
        if labels is not None:
            ignore_index = self.config.semantic_loss_ignore_index
            labels = _check_segmentation_labels(labels, logits.shape[0], self.config.num_labels, ignore_index)
            upsampled = _resize(logits, tuple(labels.shape[-2:]))
            # Sum / count instead of "mean": a batch whose pixels are all ignored gives 0 (still in the graph), not NaN.
            summed = nn.functional.cross_entropy(upsampled.float(), labels, ignore_index=ignore_index, reduction="sum")
            loss = summed / (labels != ignore_index).sum().clamp(min=1)
        if upsample_logits:
            logits = _resize(logits, (height, width))

        output = SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


# -- depth completion -------------------------------------------------------------------------------------------------
class VanishingDepthResidualConvUnit(nn.Module):
    """Pre-activation residual unit of RefineNet / DPT: x + conv3x3(relu(conv3x3(relu(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.conv2(torch.relu(self.conv1(torch.relu(features))))


class VanishingDepthFeatureFusionBlock(nn.Module):
    """DPT fusion block: (x + RCU(skip)) -> RCU -> bilinear resize to the next level's size -> 1x1 projection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual_skip = VanishingDepthResidualConvUnit(channels)
        self.residual = VanishingDepthResidualConvUnit(channels)
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, features: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if skip is not None:
            features = features + self.residual_skip(skip)
        features = self.residual(features)
        return self.projection(_resize(features, size, align_corners=True))


class VanishingDepthCompletionDecoder(nn.Module):
    """DPT-style decoder with the decode-dist output of the pretraining heads.

    Reassemble: the fusion-layer maps (RGB + depth, shallow to deep) get a 1x1 projection to `hidden_size` on the
    token grid and are bilinearly resized to strides 4, 8, 16, 32, then a 3x3 conv. Fusion: RefineNet-style blocks
    from the deepest level up to stride 2. Head: conv3x3 (hidden/2) -> bilinear upsample to the input size -> conv3x3
    (32) -> ReLU -> conv3x3 to 4 terms -> ReLU, soft floor, weighted sum with `decode_dist_weights` metres.
    """

    def __init__(self, in_channels: int, num_maps: int, hidden_size: int, decode_dist_weights: list[float]) -> None:
        super().__init__()
        self.reassemble = nn.ModuleList(nn.Conv2d(in_channels, hidden_size, kernel_size=1) for _ in range(num_maps))
        self.convs = nn.ModuleList(
            nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1, bias=False) for _ in range(num_maps)
        )
        self.fusions = nn.ModuleList(VanishingDepthFeatureFusionBlock(hidden_size) for _ in range(num_maps))
        self.head_conv1 = nn.Conv2d(hidden_size, hidden_size // 2, kernel_size=3, padding=1)
        self.head_conv2 = nn.Conv2d(hidden_size // 2, 32, kernel_size=3, padding=1)
        self.output = VanishingDepthDecodeDistOutput(32, decode_dist_weights)

    def forward(self, feature_maps: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """`feature_maps`: `(B, 2D, H/14, W/14)` each, shallow to deep. Returns `(B, H, W)` metres, float32."""
        sizes = _stride_sizes(height, width, len(feature_maps))
        levels = [
            conv(_resize(project(fm), size))
            for project, conv, fm, size in zip(self.reassemble, self.convs, feature_maps, sizes)
        ]
        targets = [(_ceil_div(height, 2), _ceil_div(width, 2))] + sizes[:-1]  # each block ends at the next finer level
        features = None
        for index in range(len(levels) - 1, -1, -1):
            fusion = self.fusions[index]
            if features is None:
                features = fusion(levels[index], None, targets[index])
            else:
                features = fusion(features, levels[index], targets[index])
        features = _resize(self.head_conv1(features), (height, width))
        features = torch.relu(self.head_conv2(features))
        return self.output(features)


class VanishingDepthForDepthEstimation(VanishingDepthTaskModel):
    """Metric depth completion on the Vanishing Depth encoder: a DPT-style decoder predicting metres.

    Input: RGB plus whatever depth is available (sparse points, LiDAR lines, a low-resolution ToF map, a dense map with
    holes, or nothing). Output: dense metric depth in metres at the input resolution. Unlike transformers' own depth
    heads it trains: with `labels` (ground-truth depth, 0 = invalid) it returns the masked SILog + L1 loss of
    `vanishing_depth.loss_vanishing_depth.masked_silog_l1_loss` on the valid pixels.
    """

    head_module_names = ("depth_head",)
    trained_modules = ("vanishing_depth", "depth_head")

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.depth_head = VanishingDepthCompletionDecoder(
            config.feature_channels,
            len(config.fusion_layers),
            config.depth_decoder_hidden_size,
            config.decode_dist_weights,
        )
        self.post_init()
        self.apply_encoder_freezing()

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        resized_sizes: torch.Tensor | None = None,
    ) -> DepthEstimatorOutput | tuple:
        r"""
        Args:
            pixel_values (`(B, 3, H, W)`): ImageNet-normalised RGB, sides multiples of 14.
            depth_values (`(B, 1, H, W)`, *optional*): the available (sparse) depth in metres, 0 = no measurement.
            labels (`(B, H, W)` or `(B, 1, H, W)`, *optional*): ground-truth depth in metres, 0 = invalid.
            depth_encoding / depth_scale_m: as in [`VanishingDepthModel.forward`].
            resized_sizes (`(B, 2)`, *optional*): the image processor's content sizes, for
                `post_process_depth_estimation` only; accepted so that `model(**processor(...))` works.

        Returns:
            `DepthEstimatorOutput` with `loss` (when `labels` are given) and `predicted_depth` `(B, H, W)` metres.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        height, width = pixel_values.shape[-2:]
        outputs = self._encode(pixel_values, depth_values, depth_encoding, depth_scale_m, output_hidden_states)
        predicted_depth = self.depth_head(outputs.feature_maps, height, width)

        loss = None
        if labels is not None:
            if labels.ndim == 4 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 3 or labels.shape[0] != predicted_depth.shape[0]:
                raise ValueError(
                    f"`labels` must be ground-truth depth in metres of shape ({predicted_depth.shape[0]}, H, W) or "
                    f"(B, 1, H, W), got {tuple(labels.shape)}."
                )
            if not labels.is_floating_point():
                raise ValueError(f"`labels` must be float metres (0 = invalid), got dtype {labels.dtype}.")
            prediction = predicted_depth
            if labels.shape[-2:] != prediction.shape[-2:]:
                logger.warning_once(
                    f"VanishingDepthForDepthEstimation: predictions {tuple(prediction.shape[-2:])} are resized "
                    f"bilinearly to the ground-truth size {tuple(labels.shape[-2:])} for the loss."
                )
                prediction = _resize(prediction[:, None], tuple(labels.shape[-2:]))[:, 0]
            loss = masked_silog_l1_loss(
                prediction,
                labels.to(prediction.dtype),
                silog_weight=self.config.depth_loss_silog_weight,
                l1_weight=self.config.depth_loss_l1_weight,
                alpha=self.config.loss_alpha,
                variance_focus=self.config.loss_variance_focus,
            )

        output = DepthEstimatorOutput(loss=loss, predicted_depth=predicted_depth, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


# -- scene classification ---------------------------------------------------------------------------------------------
class VanishingDepthForImageClassification(VanishingDepthTaskModel):
    """Scene classification on the Vanishing Depth encoder: a linear layer on the concatenated final (layer-normed)
    RGB and depth CLS tokens, `pooler_output` `(B, 2D)` (a linear probe on both CLS tokens, the paper's frozen protocol). Cross-entropy loss."""

    head_module_names = ("classifier",)
    trained_modules = ("vanishing_depth", "classifier")

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.classifier = nn.Linear(config.feature_channels, config.num_labels)
        self.post_init()
        self.apply_encoder_freezing()

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        depth_scale_m: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        resized_sizes: torch.Tensor | None = None,
    ) -> ImageClassifierOutput | tuple:
        r"""
        Args:
            pixel_values (`(B, 3, H, W)`): ImageNet-normalised RGB, sides multiples of 14.
            depth_values (`(B, 1, H, W)`, *optional*): depth in metres, 0 = no measurement.
            labels (`(B,)` int64, *optional*): class ids in `[0, num_labels)`; -100 skips a sample.
            depth_encoding / depth_scale_m: as in [`VanishingDepthModel.forward`].
            resized_sizes (`(B, 2)`, *optional*): the image processor's content sizes; accepted so that
                `model(**processor(...))` works, not used.

        Returns:
            `ImageClassifierOutput` with `loss` (when `labels` are given) and `logits` `(B, num_labels)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self._encode(pixel_values, depth_values, depth_encoding, depth_scale_m, output_hidden_states)
        logits = self.classifier(outputs.pooler_output)

        loss = None
        if labels is not None:
            labels = labels.reshape(-1)
            if labels.shape[0] != logits.shape[0] or labels.is_floating_point():
                raise ValueError(
                    f"`labels` must be int64 class ids of shape ({logits.shape[0]},), got {tuple(labels.shape)} "
                    f"{labels.dtype}."
                )
            if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
                bad = (labels != -100) & ((labels < 0) | (labels >= self.config.num_labels))
                if bool(bad.any()):
                    raise ValueError(
                        f"`labels` must be in [0, {self.config.num_labels}) (or -100 to skip a sample), got "
                        f"{labels[bad].unique().tolist()[:10]}."
                    )
            loss = nn.functional.cross_entropy(logits.float(), labels.long())

        output = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------------
# Remote code: what a saved folder declares so that it loads without the package (`trust_remote_code=True`)
# ----------------------------------------------------------------------------------------------------------------------
#: transformers Auto class -> the class it loads, for every Vanishing Depth model. Written into every saved folder's
#: `auto_map` (`AutoModel` of a head or pretraining folder is its encoder); `vanishing_depth/__init__.py` registers
#: the same pairs for users who import the package.
AUTO_CLASS_NAMES = {
    "AutoModel": "VanishingDepthModel",
    "AutoBackbone": "VanishingDepthBackbone",
    "AutoModelForPreTraining": "VanishingDepthForPretraining",
    "AutoModelForDepthEstimation": "VanishingDepthForDepthEstimation",
    "AutoModelForSemanticSegmentation": "VanishingDepthForSemanticSegmentation",
    "AutoModelForImageClassification": "VanishingDepthForImageClassification",
}
#: The flat module holding the `depth-completion` pipeline, copied next to the modeling file of a saved folder.
PIPELINE_MODULE = "pipeline_vanishing_depth"
DEPTH_COMPLETION_TASK = "depth-completion"


def remote_code_auto_map() -> dict[str, str]:
    """The `auto_map` of `config.json` for remote code: the config and every model class."""
    module = __name__.rsplit(".", 1)[-1]
    configuration = VanishingDepthConfig.__module__.rsplit(".", 1)[-1]
    entries = {"AutoConfig": f"{configuration}.VanishingDepthConfig"}
    entries.update({auto: f"{module}.{name}" for auto, name in AUTO_CLASS_NAMES.items()})
    return entries


def depth_completion_custom_pipelines(architecture: str) -> dict[str, dict]:
    """`custom_pipelines` of `config.json`: the `depth-completion` pipeline, loading the folder's model with the Auto
    class of its architecture (a pretraining folder is a completion model through its decoder)."""
    auto_class = "AutoModelForPreTraining" if architecture == "VanishingDepthForPretraining" else (
        "AutoModelForDepthEstimation"
    )
    return {
        DEPTH_COMPLETION_TASK: {
            "impl": f"{PIPELINE_MODULE}.DepthCompletionPipeline",
            "pt": [auto_class],
            "type": "multimodal",
        }
    }


__all__ = [
    "AUTO_CLASS_NAMES",
    "VanishingDepthBackbone",
    "VanishingDepthCompletionDecoder",
    "VanishingDepthDecodeDistOutput",
    "VanishingDepthFeatureFusionBlock",
    "VanishingDepthForDepthEstimation",
    "VanishingDepthForImageClassification",
    "VanishingDepthForSemanticSegmentation",
    "VanishingDepthLinearSegmentationHead",
    "VanishingDepthMultiscaleSegmentationHead",
    "VanishingDepthResidualConvUnit",
    "VanishingDepthTaskModel",
    "VanishingDepthForPretraining",
    "VanishingDepthPretrainingOutput",
    "VanishingDepthFusion",
    "VanishingDepthModel",
    "VanishingDepthModelOutput",
    "VanishingDepthPatchProjection",
    "VanishingDepthPreTrainedModel",
    "VanishingDepthSqueezeExcitation",
    "depth_scale_cls_code",
    "load_matching_state_dict",
    "normalized_depth_encoding",
    "positional_depth_encoding",
]
