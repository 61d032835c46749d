# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Vanishing Depth (arXiv 2503.19947): a frozen RGB DINOv2 plus a trainable depth DINOv2 with one-way SE fusion.

Reading order, top to bottom: the positional depth encoding (PDE), the dynamic max-depth CLS code, the depth patch
projection, the squeeze-and-excitation fusion, the `PreTrainedModel` base, the encoder (`VanishingDepthModel`), and the
backbone (`VanishingDepthBackbone`). The two DINOv2 streams are stepped through block by block with the public
`embeddings` / `encoder.layer[i]` / `layernorm` seams of transformers' own `Dinov2Model`; no DINOv2 code is copied.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_outputs import BackboneOutput, ModelOutput
from transformers.utils import logging

from .configuration_vanishing_depth import (
    NORMALIZED_DEPTH_MEAN_M,
    NORMALIZED_DEPTH_STD_M,
    VanishingDepthConfig,
)

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Positional depth encoding (METHOD §1.2)
# ----------------------------------------------------------------------------------------------------------------------
def pde_inverse_periods(channels: int, temperature: float) -> torch.Tensor:
    """1 / tau_k = T^(-2k/C) for the C/2 sin/cos pairs, float32 (C/2,). Pair 0 is the slowest (one cycle over d_max)."""
    exponents = torch.arange(0, channels, 2, dtype=torch.float64) / channels
    return (float(temperature) ** (-exponents)).to(torch.float32)


def positional_depth_encoding(
    depth_m: torch.Tensor,
    channels: int = 32,
    temperature: float = 3e-4,
    max_depth: float = 15.0,
    normalization: str = "global",
    channels_last: bool = False,
) -> torch.Tensor:
    """Sinusoidal positional depth encoding (PDE, "SDP" in the paper's v2).

    For pair k in 0..C/2-1 with tau_k = T^(2k/C) and x = 2*pi*d/d_max:
    ``PDE[2k] = sin(x / tau_k)``, ``PDE[2k+1] = cos(x / tau_k)``. With C=32, T=3e-4 and d_max=15 m the periods run
    geometrically from 15 m (pair 0) down to 7.5 mm (pair 15).

    Always computed in float32, also under bf16/fp16 autocast (sin/cos of large arguments lose millimetres in half
    precision). Missing depth (0) encodes as (sin, cos) = (0, 1) in every pair: the official code's epsilon of 1e-6 m
    gives the same code to within 1e-3, and valid depths are >= 0.05 m, so the code never collides with a measurement.

    Args:
        depth_m: `(B, 1, H, W)` depth in metres, 0 = missing.
        channels: C, even.
        temperature: T of the frequency ladder.
        max_depth: d_max in metres for ``normalization="global"``.
        normalization: ``"global"`` (d / max_depth) or ``"dynamic"`` (d / max(d) per image).
        channels_last: return `(B, H, W, C)` instead of `(B, C, H, W)`.

    Returns:
        `(B, C, H, W)` float32 (or `(B, H, W, C)` with ``channels_last``).
    """
    if depth_m.ndim != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"`depth_m` must have shape (B, 1, H, W) in metres, got {tuple(depth_m.shape)}.")
    if channels < 2 or channels % 2:
        raise ValueError(f"`channels` must be an even integer >= 2, got {channels}.")
    if normalization not in ("global", "dynamic"):
        raise ValueError(f"`normalization` must be 'global' or 'dynamic', got {normalization!r}.")
    depth = depth_m.float()
    if normalization == "global":
        normalized = depth * (1.0 / float(max_depth))
    else:
        per_image_max = depth.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        normalized = depth / per_image_max
    inverse_periods = pde_inverse_periods(channels, temperature).to(depth.device)
    # (B, H, W, 1) * (C/2,) -> (B, H, W, C/2): angles, in float32 whatever autocast says.
    angles = (2.0 * math.pi) * normalized.permute(0, 2, 3, 1) * inverse_periods
    encoding = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)  # interleave sin/cos
    return encoding if channels_last else encoding.permute(0, 3, 1, 2)


def normalized_depth_encoding(depth_m: torch.Tensor) -> torch.Tensor:
    """The 1-channel baseline of METHOD §1.2, (d - 5 m) / 5 m, float32 `(B, 1, H, W)`; kept for ablations."""
    return (depth_m.float() - NORMALIZED_DEPTH_MEAN_M) / NORMALIZED_DEPTH_STD_M


def depth_scale_cls_code(max_depth_m: torch.Tensor, hidden_size: int) -> torch.Tensor:
    """The dynamic-mode digit code of max(d) for the depth CLS token (METHOD §1.5).

    max(d) is written with 6 decimals; digit v becomes 0.1 + v/10 (0 -> 0.1, 9 -> 1.0), positions without a digit stay
    0. The code sits in the last third of the vector: the integer digits (at most 3: < 1000 m) just left of the bin
    centre ``2D/3 + D/6``, units nearest to it; the decimals from the centre rightwards.

    Args:
        max_depth_m: `(B,)` per-image maximum depth in metres.
        hidden_size: D.

    Returns:
        `(B, D)` float32 code, added to (or replacing) the depth CLS token.
    """
    centre = 2 * hidden_size // 3 + hidden_size // 6
    # Integer micrometres: exact digits without float formatting, and no data-dependent Python control flow.
    micrometres = torch.round(max_depth_m.double() * 1e6).long()
    digit_values, positions = [], []
    for place in range(3):  # integer digits: units, tens, hundreds
        digit = torch.div(micrometres, 10 ** (6 + place), rounding_mode="floor") % 10
        present = (micrometres >= 10 ** (6 + place)) | (place == 0)
        digit_values.append(
            torch.where(present, 0.1 + digit.float() / 10.0, torch.zeros_like(digit, dtype=torch.float))
        )
        positions.append(centre - 1 - place)
    for place in range(6):  # decimals, tenths first
        digit = torch.div(micrometres, 10 ** (5 - place), rounding_mode="floor") % 10
        digit_values.append(0.1 + digit.float() / 10.0)
        positions.append(centre + place)
    code = torch.zeros(max_depth_m.shape[0], hidden_size, dtype=torch.float32, device=max_depth_m.device)
    code[:, positions] = torch.stack(digit_values, dim=1)
    return code


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
        # (B, C, gh, ph, gw, pw) -> (B, gh, gw, C, ph, pw): one row per patch, ordered like the conv weight.
        patches = pixel_values.reshape(batch, channels, grid_h, patch_h, grid_w, patch_w)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch * grid_h * grid_w, channels * patch_h * patch_w)
        weight = self.weight.reshape(self.out_channels, -1)
        patches = patches.to(weight.dtype)
        tokens = torch.addmm(self.bias, patches, weight.t()) if self.bias is not None else patches @ weight.t()
        # Back to the conv layout (B, D, gh, gw) as a view; DINOv2 flattens and transposes it without a copy.
        return tokens.reshape(batch, grid_h, grid_w, self.out_channels).permute(0, 3, 1, 2)


class VanishingDepthSqueezeExcitation(nn.Module):
    """Per-token channel gate: t * sigmoid(W2 relu(W1 t)) (ESANet SE on a 1x1 map, METHOD §1.6)."""

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
        skip = self.skip_tokens
        fused = self.se_depth(depth_tokens[:, skip:]) + self.se_rgb(rgb_tokens[:, skip:].to(depth_tokens.dtype))
        if skip == 0:
            return fused
        return torch.cat((depth_tokens[:, :skip], fused), dim=1)

    @torch.no_grad()
    def depth_share(self, depth_tokens: torch.Tensor, rgb_tokens: torch.Tensor) -> torch.Tensor:
        """Diagnostic ("rdps"): |SE_depth| / (|SE_rgb| + |SE_depth|), averaged; how much the fused tokens owe to depth."""
        skip = self.skip_tokens
        depth_part = self.se_depth(depth_tokens[:, skip:]).abs().mean()
        rgb_part = self.se_rgb(rgb_tokens[:, skip:].to(depth_tokens.dtype)).abs().mean()
        return depth_part / (depth_part + rgb_part).clamp_min(1e-12)


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
            The final layer-normed RGB and depth CLS tokens, concatenated (RGB first).
        rgb_last_hidden_state (`torch.FloatTensor` of shape `(B, P + N, D)`):
            The frozen RGB stream after its final layer norm: identical to a plain `Dinov2Model` on the same weights.
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
    _no_split_modules = ["Dinov2Embeddings", "Dinov2Layer", "Dinov2WithRegistersEmbeddings", "Dinov2WithRegistersLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Loading materialises fresh parameters after __init__, so re-apply the frozen-RGB contract afterwards.
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for module in model.modules():
            if isinstance(module, VanishingDepthModel) and module.config.freeze_rgb_encoder:
                module.freeze_rgb_encoder()
        return loaded

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


# ----------------------------------------------------------------------------------------------------------------------
# The encoder
# ----------------------------------------------------------------------------------------------------------------------
def _check_inputs(
    config: VanishingDepthConfig,
    pixel_values: torch.Tensor,
    depth_values: torch.Tensor | None,
    depth_encoding: torch.Tensor | None,
) -> None:
    """Shape, dtype and (eagerly) value checks with errors that say what was expected and what arrived."""
    expected_rgb = config.rgb_config.num_channels
    if pixel_values.ndim != 4 or pixel_values.shape[1] != expected_rgb:
        raise ValueError(
            f"`pixel_values` must be normalised RGB of shape (B, {expected_rgb}, H, W), got {tuple(pixel_values.shape)}."
        )
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
                f"`depth_values` must be float metres (0 = missing), got dtype {depth_values.dtype}: {hint}. "
                "Use VanishingDepthImageProcessor(depth_scale=...) or vanishing_depth.processing.load_depth."
            )
        if depth_values.shape[0] != pixel_values.shape[0] or depth_values.shape[-2:] != pixel_values.shape[-2:]:
            raise ValueError(
                f"`depth_values` {tuple(depth_values.shape)} must match `pixel_values` {tuple(pixel_values.shape)} in "
                "batch size, height and width; resize depth to the RGB grid with nearest neighbour "
                "(VanishingDepthImageProcessor does this)."
            )
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            invalid = ~torch.isfinite(depth_values) | (depth_values < 0)
            if bool(invalid.any()):
                raise ValueError(
                    f"`depth_values` must be finite and >= 0 metres (0 = missing); got {int(invalid.sum())} negative, "
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

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.rgb_encoder = AutoModel.from_config(config.rgb_config)
        self.depth_encoder = AutoModel.from_config(config.depth_config())
        old_projection = self.depth_encoder.embeddings.patch_embeddings.projection
        self.depth_encoder.embeddings.patch_embeddings.projection = VanishingDepthPatchProjection(
            old_projection.in_channels,
            old_projection.out_channels,
            kernel_size=old_projection.kernel_size,
            stride=old_projection.stride,
        )
        self.num_prefix_tokens = 1 + config.num_register_tokens
        self.fusions = nn.ModuleList(
            VanishingDepthFusion(config.hidden_size, config.se_reduction, self.num_prefix_tokens, config.fuse_cls_token)
            for _ in config.fusion_layers
        )
        self.post_init()
        if config.freeze_rgb_encoder:
            self.freeze_rgb_encoder()

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
        return self.depth_encoder.embeddings.patch_embeddings

    # -- depth embedding -----------------------------------------------------------------------------------------------
    def encode_depth(self, depth_values: torch.Tensor) -> torch.Tensor:
        """Metres `(B, 1, H, W)` -> the depth ViT's input channels `(B, C, H, W)` float32 (PDE or normalised)."""
        config = self.config
        if config.depth_encoding == "normalized":
            return normalized_depth_encoding(depth_values)
        return positional_depth_encoding(
            depth_values,
            channels=config.pde_channels,
            temperature=config.pde_temperature,
            max_depth=config.max_depth,
            normalization=config.depth_normalization,
        )

    def _depth_embeddings(
        self, depth_input: torch.Tensor, depth_values: torch.Tensor | None, depth_scale_m: torch.Tensor | None
    ) -> torch.Tensor:
        embeddings = self.depth_encoder.embeddings(depth_input)
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
        # Adding the code after the position embedding equals adding it to the CLS token before it (METHOD §1.5).
        if self.config.add_depth_scale_to_cls_token:
            cls_token = embeddings[:, 0] + code
        else:
            cls_token = code + self.depth_encoder.embeddings.position_embeddings[:, 0].to(embeddings.dtype)
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
        **kwargs,
    ) -> VanishingDepthModelOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`):
                ImageNet-normalised RGB; H and W multiples of 14.
            depth_values (`torch.FloatTensor` of shape `(B, 1, H, W)`, *optional*):
                Metric depth in metres on the RGB grid, 0 = no measurement. `None` means no depth at all: the model
                runs on RGB alone with an all-missing depth map.
            depth_encoding (`torch.FloatTensor` of shape `(B, C, H, W)`, *optional*):
                A precomputed PDE (``VanishingDepthImageProcessor(do_depth_encoding=True)``) instead of metres.
            depth_scale_m (`torch.FloatTensor` of shape `(B,)`, *optional*):
                Dynamic normalisation only: the per-image max depth in metres (computed from `depth_values` if absent).
            output_hidden_states (`bool`, *optional*):
                Also return every hidden state of both streams.
            feature_layers (`list[int]`, *optional*):
                0-based blocks whose features `feature_maps` returns; defaults to `config.fusion_layers`.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        _check_inputs(config, pixel_values, depth_values, depth_encoding)
        feature_layers = list(config.fusion_layers if feature_layers is None else feature_layers)

        batch, _, height, width = pixel_values.shape
        if depth_encoding is None:
            if depth_values is None:
                depth_values = pixel_values.new_zeros(batch, 1, height, width, dtype=torch.float32)
            depth_encoding = self.encode_depth(depth_values)
        depth_hidden = self._depth_embeddings(depth_encoding, depth_values, depth_scale_m)

        frozen = config.freeze_rgb_encoder
        rgb_encoder = self.rgb_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            rgb_hidden = rgb_encoder.embeddings(
                pixel_values.to(rgb_encoder.embeddings.patch_embeddings.projection.weight.dtype)
            )

        fusion_index = {layer: i for i, layer in enumerate(config.fusion_layers)}
        rgb_features, depth_features = {}, {}
        all_depth_hidden = [depth_hidden] if output_hidden_states else None
        all_rgb_hidden = [rgb_hidden] if output_hidden_states else None
        for block_index, (rgb_layer, depth_layer) in enumerate(
            zip(rgb_encoder.encoder.layer, self.depth_encoder.encoder.layer)
        ):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                rgb_hidden = rgb_layer(rgb_hidden)  # transformers 5.x: a tensor, never index it with [0]
            depth_hidden = depth_layer(depth_hidden)
            if block_index in feature_layers and config.feature_source == "pre_fusion":
                depth_features[block_index] = depth_hidden
            if block_index in fusion_index:
                depth_hidden = self.fusions[fusion_index[block_index]](depth_hidden, rgb_hidden)
            if block_index in feature_layers:
                rgb_features[block_index] = rgb_hidden
                depth_features.setdefault(block_index, depth_hidden)
            if output_hidden_states:
                all_depth_hidden.append(depth_hidden)
                all_rgb_hidden.append(rgb_hidden)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            rgb_last = rgb_encoder.layernorm(rgb_hidden)
        depth_last = self.depth_encoder.layernorm(depth_hidden)
        feature_maps = tuple(
            self._feature_map(rgb_features[layer], depth_features[layer], height, width) for layer in feature_layers
        )
        pooled = torch.cat((rgb_last[:, 0].to(depth_last.dtype), depth_last[:, 0]), dim=-1)
        output = VanishingDepthModelOutput(
            last_hidden_state=depth_last,
            pooler_output=pooled,
            rgb_last_hidden_state=rgb_last,
            feature_maps=feature_maps,
            hidden_states=tuple(all_depth_hidden) if output_hidden_states else None,
            rgb_hidden_states=tuple(all_rgb_hidden) if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()

    def _feature_map(
        self, rgb_tokens: torch.Tensor, depth_tokens: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """Layer-normed (if configured) RGB and depth patch tokens -> `(B, 2D, H/14, W/14)`, RGB channels first."""
        if self.config.feature_layernorm:
            rgb_tokens = self.rgb_encoder.layernorm(rgb_tokens)
            depth_tokens = self.depth_encoder.layernorm(depth_tokens)
        tokens = torch.cat((rgb_tokens.to(depth_tokens.dtype), depth_tokens), dim=-1)[:, self.num_prefix_tokens :]
        patch = self.config.patch_size
        return tokens.unflatten(1, (height // patch, width // patch)).permute(0, 3, 1, 2).contiguous()

    # -- construction from an RGB DINOv2 -------------------------------------------------------------------------------
    @classmethod
    def from_rgb_backbone(
        cls,
        rgb_backbone,
        *,
        allow_pickle: bool = False,
        image_size: int | None = None,
        **config_kwargs,
    ) -> VanishingDepthModel:
        """Build both streams from one pretrained DINOv2, as METHOD §1.3 does.

        Every tensor whose shape matches is copied into both the RGB and the depth ViT (blocks, CLS, registers, mask
        token, final norm, patch-embedding bias); the depth patch-embedding weight (C input channels instead of 3)
        keeps its fresh random init; position embeddings are bicubically interpolated when `image_size` changes the
        grid.

        Args:
            rgb_backbone: a `Dinov2Model` / `Dinov2WithRegistersModel` instance; a Hub id such as
                ``"facebook/dinov2-small"`` (online users) or a local folder saved with `save_pretrained` (offline);
                or a path to an original ``dinov2_vit*14[_reg4]_pretrain.pth`` / a `.safetensors` state dict in the
                original or transformers v4/v5 key layout (see `vanishing_depth.convert_dinov2_state_dict`).
            allow_pickle: `.pth` files are pickles that can run code when loaded; pass True to load one anyway
                (tensors only, `weights_only=True`).
            image_size: optional new position-embedding grid size in pixels (e.g. 224 for 224-px training).
            **config_kwargs: any `VanishingDepthConfig` field (pde_channels, fusion_layers, ...).
        """
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
        report_rgb = load_matching_state_dict(model.rgb_encoder, source_state)
        report_depth = load_matching_state_dict(model.depth_encoder, source_state)
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


def load_matching_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Shape-tolerant copy (METHOD §1.3): equal shapes are copied, position embeddings of another grid are
    bicubically interpolated, anything else is skipped and reported. Returns {"copied", "interpolated", "skipped",
    "missing"} key lists."""
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
            elif key.endswith("position_embeddings") and source.shape[-1] == target.shape[-1]:
                target.copy_(interpolate_position_embeddings(source, target.shape[1] - 1).to(target.dtype))
                report["interpolated"].append(key)
            else:
                report["skipped"].append(key)
    return report


def interpolate_position_embeddings(position_embeddings: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, 1 + n, D) on a square grid -> (1, 1 + num_patches, D), bicubic in float32 (DINOv2 pretrains at 37x37)."""
    cls_pos, patch_pos = position_embeddings[:, :1], position_embeddings[:, 1:]
    old_side, new_side = math.isqrt(patch_pos.shape[1]), math.isqrt(num_patches)
    if old_side * old_side != patch_pos.shape[1] or new_side * new_side != num_patches:
        raise ValueError(
            f"position embeddings must lie on square grids, got {patch_pos.shape[1]} -> {num_patches} patches."
        )
    dim = patch_pos.shape[-1]
    grid = patch_pos.float().reshape(1, old_side, old_side, dim).permute(0, 3, 1, 2)
    grid = nn.functional.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, num_patches, dim)
    return torch.cat((cls_pos.float(), patch_pos), dim=1)


# ----------------------------------------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------------------------------------
class VanishingDepthBackbone(BackboneMixin, VanishingDepthPreTrainedModel):
    """`AutoBackbone` view of the encoder: `feature_maps` at `config.out_indices` (HF stage numbering, stage i =
    output of block i, "stem" = embeddings), each `(B, 2D, H/14, W/14)` RGB + depth, for DPT / UPerNet-style heads."""

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.vanishing_depth = VanishingDepthModel(config)
        self.num_features = [config.feature_channels] * (config.num_hidden_layers + 1)
        self.post_init()

    def train(self, mode: bool = True) -> VanishingDepthBackbone:
        super().train(mode)
        self.vanishing_depth.train(mode)
        return self

    def forward(
        self,
        pixel_values: torch.Tensor,
        depth_values: torch.Tensor | None = None,
        depth_encoding: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BackboneOutput | tuple:
        if any(index == 0 for index in self.out_indices):
            raise ValueError(
                "`out_indices` of VanishingDepthBackbone start at 1 (stage i = block i); 'stem' is not fused."
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.vanishing_depth(
            pixel_values,
            depth_values=depth_values,
            depth_encoding=depth_encoding,
            output_hidden_states=output_hidden_states,
            feature_layers=[index - 1 for index in self.out_indices],
            return_dict=True,
        )
        output = BackboneOutput(feature_maps=outputs.feature_maps, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


__all__ = [
    "VanishingDepthBackbone",
    "VanishingDepthFusion",
    "VanishingDepthModel",
    "VanishingDepthModelOutput",
    "VanishingDepthPatchProjection",
    "VanishingDepthPreTrainedModel",
    "VanishingDepthSqueezeExcitation",
    "depth_scale_cls_code",
    "interpolate_position_embeddings",
    "load_matching_state_dict",
    "normalized_depth_encoding",
    "positional_depth_encoding",
]
