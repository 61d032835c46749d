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


#: `VanishingDepthConfig.position_interpolation` values: how absolute position tables are resized to another patch grid.
POSITION_INTERPOLATIONS = ("transformers", "dinov2")
#: Upstream DINOv2's ``interpolate_offset`` (facebookresearch/dinov2 `DinoVisionTransformer`, kept by the authors'
#: copy in model/dinov2/models/vision_transformer.py): the target grid side is taken as ``side + 0.1`` when computing
#: the bicubic scale factor.
DINOV2_INTERPOLATE_OFFSET = 0.1
_BICUBIC_A = -0.75  # the cubic convolution constant of PyTorch's (and OpenCV's) bicubic resampling


def _bicubic_axis(values: torch.Tensor, dim: int, out_len, inverse_scale: torch.Tensor) -> torch.Tensor:
    """Resample `values` along `dim` to `out_len` points with PyTorch's bicubic kernel (align_corners=False, border
    replication, coefficients as `get_cubic_upsample_coefficients`): source coordinate ``inverse_scale * (i + 0.5) -
    0.5`` in float32. Gathers and sums instead of `F.interpolate`, so the scale can be a tensor computed in the graph
    from symbolic sizes; equal to the CPU kernel to a few float32 ulps (the kernel fuses multiply-adds)."""
    in_len = values.shape[dim]
    source = inverse_scale * (torch.arange(out_len, dtype=torch.float32, device=values.device) + 0.5) - 0.5
    floor = torch.floor(source)
    t = source - floor
    base = floor.to(torch.int64)
    a = _BICUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    opposite = 1 - t
    weights = (far(t + 1), near(t), near(opposite), far(opposite + 1))
    shape = [1] * values.ndim
    shape[dim] = -1
    result = None
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = (base + offset).clamp(0, in_len - 1)
        term = values.index_select(dim, index) * weight.reshape(shape)
        result = term if result is None else result + term
    return result


def _traceable_dinov2_grid(grid: torch.Tensor, grid_height, grid_width, offset: float) -> torch.Tensor:
    """`dinov2_position_grid` for exported graphs: `(side, side, D)` -> `(grid_height, grid_width, D)` without Python
    branches on the (symbolic) grid size; the table's own grid is the same formula with scale 1, which is exact."""
    side = grid.shape[0]
    height = torch.arange(grid_height, device=grid.device)[-1:].to(torch.float64).sum() + 1  # the size as a tensor
    width = torch.arange(grid_width, device=grid.device)[-1:].to(torch.float64).sum() + 1
    own_grid = (height == side) & (width == side)
    # 1 / scale_factor in float64, rounded once to float32: what `F.interpolate(scale_factor=...)` hands its kernel.
    inverse_h = torch.where(own_grid, 1.0, 1.0 / ((height + offset) / side)).to(torch.float32)
    inverse_w = torch.where(own_grid, 1.0, 1.0 / ((width + offset) / side)).to(torch.float32)
    grid = _bicubic_axis(grid, 1, grid_width, inverse_w)  # the kernel's inner loop runs along the width
    return _bicubic_axis(grid, 0, grid_height, inverse_h)


def dinov2_position_grid(
    patch_pos: torch.Tensor, grid_height: int, grid_width: int, offset: float = DINOV2_INTERPOLATE_OFFSET
) -> torch.Tensor:
    """Resize a square position table the way upstream DINOv2 and the authors' encoder do.

    `patch_pos` `(1, M*M, D)` -> `(1, grid_height * grid_width, D)` in float32: ``F.interpolate(..., mode="bicubic",
    scale_factor=((grid_height + offset) / M, (grid_width + offset) / M))`` (no antialiasing, align_corners=False), and
    the table unchanged when the grid is the table's own (M x M), as `DinoVisionTransformer.interpolate_pos_encoding`
    does. With a scale factor PyTorch maps output pixel i to the input coordinate ``(i + 0.5) / scale_factor - 0.5``,
    where transformers' ``size=`` call uses ``(i + 0.5) * M / side - 0.5``: at 224 px (16 x 16 from DINOv2's 37 x 37)
    the two tables differ by up to 3e-2.

    While exporting or tracing, a branch-free form of the same computation runs instead (equal to a few float32 ulps),
    so that graphs with dynamic sizes keep both the table-grid case and the interpolated one.

    This is `DinoVisionTransformer`'s default (``interpolate_offset=0.1``, ``interpolate_antialias=False``), which the
    DINOv2 ViT-S/B/L/g models and the authors' encoder use. Upstream built its register models (``*_reg4``) with offset
    0 and antialiasing instead, which is what transformers' `Dinov2WithRegistersModel` computes: keep
    ``position_interpolation="transformers"`` for those.
    """
    side = math.isqrt(patch_pos.shape[1])
    if side * side != patch_pos.shape[1]:
        raise ValueError(f"position embeddings must lie on a square grid, got {patch_pos.shape[1]} patches.")
    dim = patch_pos.shape[-1]
    grid = patch_pos.float().reshape(side, side, dim)
    if torch.compiler.is_exporting() or torch.jit.is_tracing():
        return _traceable_dinov2_grid(grid, grid_height, grid_width, offset).reshape(1, -1, dim)
    if grid_height == side and grid_width == side:
        return grid.reshape(1, -1, dim)
    resized = nn.functional.interpolate(
        grid.permute(2, 0, 1)[None],
        scale_factor=((grid_height + offset) / side, (grid_width + offset) / side),
        mode="bicubic",
        align_corners=False,
    )
    if resized.shape[-2:] != (grid_height, grid_width):  # floor(M * (n + 0.1) / M) == n for every n DINOv2 sees
        raise ValueError(
            f"DINOv2 interpolation gave a {tuple(resized.shape[-2:])} grid for {(grid_height, grid_width)}."
        )
    return resized[0].permute(1, 2, 0).reshape(1, -1, dim)


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
        position_interpolations: the `VanishingDepthConfig.position_interpolation` rules `embed` implements:
            ``"transformers"`` (the family's own embeddings) everywhere; ``"dinov2"`` (upstream DINOv2's scale-factor
            rule, `dinov2_position_grid`) only for families with an absolute position table on a square grid.
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
    position_interpolations: tuple[str, ...] = POSITION_INTERPOLATIONS

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
    def embed(
        self, model: nn.Module, pixel_values: torch.Tensor, position_interpolation: str = "transformers"
    ) -> torch.Tensor:
        """Input `(B, C, H, W)` -> tokens `(B, P + N, D)` (prefix tokens, then patches), position-embedded.

        ``position_interpolation="transformers"`` calls the family's embeddings (`Dinov2Embeddings`: bicubic to
        ``size=``); ``"dinov2"`` builds the same tokens with the position table resized by `dinov2_position_grid`, as
        upstream DINOv2 and the authors' encoder do (CLS + its position, patches + theirs, then the registers)."""
        if position_interpolation == "transformers":
            return model.embeddings(pixel_values)
        if position_interpolation not in self.position_interpolations:
            raise ValueError(
                f"`position_interpolation` must be one of {self.position_interpolations} for the {self.family!r} "
                f"family, got {position_interpolation!r}."
            )
        embeddings = model.embeddings
        patch = self.patch_size(model.config)
        patches = embeddings.patch_embeddings(pixel_values)
        table = embeddings.position_embeddings
        grid = dinov2_position_grid(table[:, 1:], pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        positions = torch.cat((table[:, :1].float(), grid), dim=1).to(patches.dtype)
        tokens = torch.cat((embeddings.cls_token.expand(patches.shape[0], -1, -1), patches), dim=1) + positions
        registers = getattr(embeddings, "register_tokens", None)
        if registers is not None:
            registers = registers.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
        return embeddings.dropout(tokens)

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
    position_interpolations = ("transformers",)  # RoPE: no position table to resize

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
    position_interpolations = ("transformers",)  # an nn.Embedding table without a CLS row, not DINOv2's layout

    def num_register_tokens(self, config) -> int:
        return 0

    def depth_config(self, rgb_config, num_channels: int):
        depth_config = super().depth_config(rgb_config, num_channels)
        depth_config.vision_use_head = False
        return depth_config

    def embed(
        self, model: nn.Module, pixel_values: torch.Tensor, position_interpolation: str = "transformers"
    ) -> torch.Tensor:
        if position_interpolation != "transformers":
            raise ValueError(
                f"`position_interpolation` must be 'transformers' for the {self.family!r} family, got "
                f"{position_interpolation!r}."
            )
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
    "DINOV2_INTERPOLATE_OFFSET",
    "DINOv3ViTStreamAdapter",
    "Dinov2WithRegistersStreamAdapter",
    "SiglipVisionStreamAdapter",
    "VanishingDepthStreamAdapter",
    "all_block_layer_names",
    "POSITION_INTERPOLATIONS",
    "bicubic_position_grid",
    "dinov2_position_grid",
    "register_stream_adapter",
    "stream_adapter",
    "supported_model_types",
]
