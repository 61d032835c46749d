# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Stream adapters: how the Vanishing Depth encoder steps through one transformers ViT family block by block.

The encoder runs two ViTs of the same shape side by side (a frozen RGB one and a trainable depth one) and needs, for
each, a handful of seams that every transformers vision model has under a different name: the embedding call, the list
of blocks and how to call one (with rotary position embeddings where the family has them), the final norm, the number of
prefix tokens (CLS + registers), the patch embedding to replace with the depth one, and, for the image processor and
LoRA, the normalisation constants, the patch size and the attention projection names. One small adapter per family
answers these; the modeling file asks the adapter and never names a family's attribute.

Adding a family: subclass `VanishingDepthStreamAdapter`, set the class attributes (`family`, `model_types`,
`blocks_path`, `final_norm_path`, `patch_projection_path`, ...), override the methods whose default does not fit
(`embed`, `block_context`, `call_block`, ...), and `register_stream_adapter(MyAdapter())`.

Self-contained for remote code: imports only torch and transformers.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _get_path(module: nn.Module, path: str) -> Any:
    for name in path.split("."):
        module = getattr(module, name)
    return module


def _set_path(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get_path(module, parent) if parent else module, name, value)


def bicubic_position_grid(patch_pos: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, n, D) on a square grid -> (1, num_patches, D) on a square grid, bicubic in float32."""
    old_side, new_side = math.isqrt(patch_pos.shape[1]), math.isqrt(num_patches)
    if old_side * old_side != patch_pos.shape[1] or new_side * new_side != num_patches:
        raise ValueError(
            f"position embeddings must lie on square grids, got {patch_pos.shape[1]} -> {num_patches} patches."
        )
    dim = patch_pos.shape[-1]
    grid = patch_pos.float().reshape(1, old_side, old_side, dim).permute(0, 3, 1, 2)
    grid = nn.functional.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, num_patches, dim)


class VanishingDepthStreamAdapter:
    """What the encoder needs to know about one ViT family. Defaults fit DINOv2 (transformers v5).

    Attributes:
        family: short name used in messages and docs ("dinov2", "dinov3_vit", "siglip").
        model_types: the `config.model_type` values this adapter serves.
        has_cls_token: whether the token sequence starts with a CLS token (then `num_register_tokens` registers).
        image_mean / image_std: RGB normalisation the family was pretrained with (for the image processor).
        blocks_path: dotted path from the model to its `nn.ModuleList` of blocks.
        final_norm_path: dotted path to the final norm applied after the last block.
        patch_projection_path: dotted path to the patch-embedding `nn.Conv2d` (replaced by the depth projection).
        mask_token_path: dotted path to a masked-patch token the depth stream never uses (frozen there), or None.
        cls_position_path: dotted path to the position-embedding table whose row 0 belongs to the CLS token, or None
            (families without absolute position embeddings for the CLS token).
        position_embedding_keys: state-dict key suffixes of absolute position tables that `interpolate_state_tensor`
            resizes to another grid.
        attention_projections: the module names of the attention projections inside a block (LoRA targets).
        lora_default_targets: the subset LoRA adapts by default.
        block_layer_names: class names of a block and the embeddings (`_no_split_modules`).
    """

    family: str = "dinov2"
    model_types: tuple[str, ...] = ("dinov2",)
    has_cls_token: bool = True
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    blocks_path: str = "encoder.layer"
    final_norm_path: str = "layernorm"
    patch_projection_path: str = "embeddings.patch_embeddings.projection"
    mask_token_path: str | None = "embeddings.mask_token"
    cls_position_path: str | None = "embeddings.position_embeddings"
    position_embedding_keys: tuple[str, ...] = ("position_embeddings",)
    attention_projections: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_default_targets: tuple[str, ...] = ("q_proj", "v_proj")
    block_layer_names: tuple[str, ...] = ("Dinov2Embeddings", "Dinov2Layer")

    # -- config ---------------------------------------------------------------------------------------------------------
    def num_register_tokens(self, config) -> int:
        return int(getattr(config, "num_register_tokens", 0) or 0)

    def num_prefix_tokens(self, config) -> int:
        """CLS (if any) plus register tokens before the patch tokens."""
        return int(self.has_cls_token) + self.num_register_tokens(config)

    def patch_size(self, config) -> int:
        patch = config.patch_size
        if isinstance(patch, (tuple, list)):
            if len(set(patch)) != 1:
                raise ValueError(f"{self.family}: only square patches are supported, got patch_size={patch}.")
            patch = patch[0]
        return int(patch)

    def depth_config(self, rgb_config, num_channels: int):
        """The depth ViT's config: the RGB config with the depth input channel count."""
        depth_config = copy.deepcopy(rgb_config)
        depth_config.num_channels = num_channels
        return depth_config

    # -- forward seams --------------------------------------------------------------------------------------------------
    def embed(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Input `(B, C, H, W)` -> tokens `(B, P + N, D)` (prefix tokens, then patches), position-embedded."""
        return model.embeddings(pixel_values)

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return _get_path(model, self.blocks_path)

    def block_context(self, model: nn.Module, pixel_values: torch.Tensor) -> Any:
        """Whatever every block needs besides the tokens, computed once per forward (e.g. rotary embeddings)."""
        return None

    def share_block_context(self, context: Any, dtype: torch.dtype) -> Any:
        """The RGB stream's block context for the depth stream (same patch grid), in the depth stream's dtype."""
        return context

    def call_block(self, block: nn.Module, hidden_states: torch.Tensor, context: Any) -> torch.Tensor:
        return block(hidden_states)  # transformers 5.x blocks return a tensor, never index it with [0]

    def final_norm(self, model: nn.Module) -> nn.Module:
        return _get_path(model, self.final_norm_path)

    def patch_projection(self, model: nn.Module) -> nn.Conv2d:
        return _get_path(model, self.patch_projection_path)

    def replace_patch_projection(self, model: nn.Module, projection: nn.Conv2d) -> None:
        _set_path(model, self.patch_projection_path, projection)

    def mask_token(self, model: nn.Module) -> nn.Parameter | None:
        if self.mask_token_path is None:
            return None
        try:
            return _get_path(model, self.mask_token_path)
        except AttributeError:
            return None

    def cls_position_embedding(self, model: nn.Module) -> torch.Tensor | None:
        """`(1, D)` position embedding added to the CLS token, or None (no absolute position for the CLS token)."""
        if self.cls_position_path is None:
            return None
        return _get_path(model, self.cls_position_path)[:, 0]

    # -- checkpoints ----------------------------------------------------------------------------------------------------
    def interpolate_state_tensor(self, key: str, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """`source` resized to `target`'s shape if `key` is an absolute position table of another grid, else None."""
        if not key.endswith(self.position_embedding_keys) or source.shape[-1] != target.shape[-1]:
            return None
        prefix = 1 if self.has_cls_token else 0
        if source.ndim == 2:  # an nn.Embedding table (n, D)
            return bicubic_position_grid(source[None], target.shape[0])[0]
        patch_pos = bicubic_position_grid(source[:, prefix:], target.shape[1] - prefix)
        return torch.cat((source[:, :prefix].float(), patch_pos), dim=1)

    # -- LoRA -----------------------------------------------------------------------------------------------------------
    def blocks_regex(self) -> str:
        """Regex for the module-name prefix of one block, relative to the stream (e.g. `encoder\\.layer\\.\\d+`)."""
        return re.escape(self.blocks_path) + r"\.\d+"


class Dinov2WithRegistersStreamAdapter(VanishingDepthStreamAdapter):
    family = "dinov2_with_registers"
    model_types = ("dinov2_with_registers",)
    block_layer_names = ("Dinov2WithRegistersEmbeddings", "Dinov2WithRegistersLayer")


class DINOv3ViTStreamAdapter(VanishingDepthStreamAdapter):
    """DINOv3 ViT: patch 16, CLS + register tokens, no absolute position table; rotary position embeddings computed
    from the patch grid once per forward (`DINOv3ViTModel.rope_embeddings`) and passed to every block.

    The depth stream reuses the RGB stream's RoPE (same grid): both streams see the same patch positions, which the
    token-by-token fusion relies on; the depth stream's own `rope_embeddings` (no parameters) is not called, so
    DINOv3's training-time coordinate augmentation (`pos_embed_rescale`) never applies to the depth stream alone.
    """

    family = "dinov3_vit"
    model_types = ("dinov3_vit",)
    blocks_path = "model.layer"
    final_norm_path = "norm"
    patch_projection_path = "embeddings.patch_embeddings"
    cls_position_path = None
    position_embedding_keys = ()
    block_layer_names = ("DINOv3ViTEmbeddings", "DINOv3ViTLayer")

    def block_context(self, model: nn.Module, pixel_values: torch.Tensor) -> Any:
        return model.rope_embeddings(pixel_values)

    def share_block_context(self, context: Any, dtype: torch.dtype) -> Any:
        cos, sin = context
        return cos.to(dtype), sin.to(dtype)

    def call_block(self, block: nn.Module, hidden_states: torch.Tensor, context: Any) -> torch.Tensor:
        return block(hidden_states, position_embeddings=context)


class SiglipVisionStreamAdapter(VanishingDepthStreamAdapter):
    """SigLIP vision tower (`SiglipVisionModel`): patch 16, mean/std 0.5, NO CLS token and no registers.

    The position table is interpolated for inputs of another size than `image_size` (`interpolate_pos_encoding=True`,
    which at the pretraining size returns the table unchanged, so the RGB stream equals the plain model bit for bit).
    Blocks take `(hidden_states, attention_mask)`; the mask is None (no padding tokens). The final norm is
    `post_layernorm`. The multi-head attention pooling head of the RGB tower is kept (frozen, unused); the depth tower
    is built without it (`vision_use_head=False`).
    """

    family = "siglip"
    model_types = ("siglip_vision_model",)
    has_cls_token = False
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    blocks_path = "encoder.layers"
    final_norm_path = "post_layernorm"
    patch_projection_path = "embeddings.patch_embedding"
    mask_token_path = None
    cls_position_path = None
    position_embedding_keys = ("position_embedding.weight",)
    attention_projections = ("q_proj", "k_proj", "v_proj", "out_proj")
    block_layer_names = ("SiglipVisionEmbeddings", "SiglipEncoderLayer")

    def num_register_tokens(self, config) -> int:
        return 0

    def depth_config(self, rgb_config, num_channels: int):
        depth_config = super().depth_config(rgb_config, num_channels)
        depth_config.vision_use_head = False
        return depth_config

    def embed(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        return model.embeddings(pixel_values, interpolate_pos_encoding=True)

    def call_block(self, block: nn.Module, hidden_states: torch.Tensor, context: Any) -> torch.Tensor:
        return block(hidden_states, None)


_ADAPTERS: dict[str, VanishingDepthStreamAdapter] = {}


def register_stream_adapter(adapter: VanishingDepthStreamAdapter) -> VanishingDepthStreamAdapter:
    """Make `adapter` serve every `model_type` in `adapter.model_types`."""
    for model_type in adapter.model_types:
        _ADAPTERS[model_type] = adapter
    return adapter


for _adapter in (
    VanishingDepthStreamAdapter(),
    Dinov2WithRegistersStreamAdapter(),
    DINOv3ViTStreamAdapter(),
    SiglipVisionStreamAdapter(),
):
    register_stream_adapter(_adapter)


def supported_model_types() -> tuple[str, ...]:
    return tuple(_ADAPTERS)


def stream_adapter(config_or_model_type) -> VanishingDepthStreamAdapter:
    """The adapter for an RGB config (or its `model_type`); a ValueError listing the supported types otherwise."""
    model_type = config_or_model_type if isinstance(config_or_model_type, str) else config_or_model_type.model_type
    adapter = _ADAPTERS.get(model_type)
    if adapter is None:
        raise ValueError(
            f"`rgb_config` model_type {model_type!r} has no Vanishing Depth stream adapter; supported: "
            f"{supported_model_types()} (see `streams_vanishing_depth.register_stream_adapter`)."
        )
    return adapter


def all_block_layer_names() -> list[str]:
    return sorted({name for adapter in _ADAPTERS.values() for name in adapter.block_layer_names})


__all__ = [
    "DINOv3ViTStreamAdapter",
    "Dinov2WithRegistersStreamAdapter",
    "SiglipVisionStreamAdapter",
    "VanishingDepthStreamAdapter",
    "all_block_layer_names",
    "bicubic_position_grid",
    "register_stream_adapter",
    "stream_adapter",
    "supported_model_types",
]
