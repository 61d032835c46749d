# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Convert the authors' RGB-D encoder checkpoints (KochPJ/vanishing-depth) to a folder `AutoModel.from_pretrained` loads.

Files it reads
--------------
* ``*_encoder.plt``: ``torch.save({'state_dict': DinoRGBDWrapper.state_dict()})`` (their model/dino.py). Keys:
  ``color_encoder.*`` (the RGB DINOv2 in facebookresearch's layout: ``blocks.N.attn.qkv``, ``ls1.gamma``, ...),
  ``depth_encoder.*`` (the depth DINOv2, ``patch_embed.proj.weight`` of shape (D, 32, 14, 14)) and
  ``depth_encoder.fusion_layers.{0..3}.se_{rgb,depth}.fc.{0,2}.{weight,bias}`` (ESANet squeeze-and-excitation gates
  as 1x1 convolutions, (D/16, D, 1, 1) and (D, D/16, 1, 1)); 382 tensors for ViT-S.
* Training checkpoints of their main.py (``current_checkpoint.ckpt``, ``best_auc_checkpoint.ckpt``, ...):
  ``{'state_dict', 'optimizer', 'logs', 'scheduler'}``, the state dict holding ``encoder.*`` (the wrapper above),
  ``decoder.*`` (their U-Net decoder, model/decoder.py) and ``depth_estimator.{0..3}.*`` (one depth head per scale).
  The encoder is converted. The decoder and heads are listed in a warning and left out: this library's pretraining
  decoder (`VanishingDepthPretrainingDecoder`) is not their module graph, so the converted folder is an encoder
  (`VanishingDepthModel`), for feature extraction and for task heads trained on top.
* The same tensors as ``.pth`` / ``.pt`` / ``.bin`` pickles or ``.safetensors``, under any prefixes (DataParallel's
  ``module.``, fusions next to the depth ViT), with fusions numbered 0..n-1 or by the block they follow. The RGB and
  depth streams are told apart by their patch embedding (3 input channels or C), the fusions by ``se_rgb`` /
  ``se_depth``; prefixes can also be given. A checkpoint without the frozen RGB stream takes it from `rgb_backbone`.

Pickled files (``.plt``, ``.ckpt``, ``.pth``, ...) are refused unless ``allow_pickle=True`` (``--allow-pickle``); they
are then read with ``torch.load(weights_only=True)`` (NumPy numbers in training logs allowed). Every error names the
file.

    vanishing-depth convert --checkpoint run_encoder.plt --output-dir vd-vits14 --allow-pickle

What the conversion follows (their model/fusion.py, model/dinov2/models/vision_transformer.py, model/dino.py,
model/vanishing_depth.py, my_mmseg/model/vit14RGBD_Backbone.py, datasets/transforms.py)
---------------------------------------------------------------------------------------------------------------------
* **The gates are named after the other stream.** `SqueezeAndExciteFusionAdd.forward(rgb, depth)` returns
  ``se_rgb(rgb) + se_depth(depth)``, but the depth ViT calls it as ``fusion_layers[j](depth_tokens, rgb_tokens)``:
  their ``se_rgb`` gates the depth tokens, their ``se_depth`` the RGB tokens. `VanishingDepthFusion` names each gate
  after the tokens it gates (``se_depth(depth) + se_rgb(rgb)``), so their ``se_rgb`` becomes our ``se_depth`` and
  their ``se_depth`` our ``se_rgb``. Their gates run on ``(tokens, D, 1, 1)`` maps, where the average pool is the
  identity, so each 1x1 convolution is the `nn.Linear` of the same weights.
* **Fusion blocks**: fusion module j follows block ``fusion_layer_ids[j]`` of `get_dinov2_encoder`: [2, 5, 8, 11] for
  ViT-S and ViT-B; ViT-L uses [5, 12, 18, 24], and a 24-block ViT has no block 24, so its fourth module never runs:
  a ViT-L converts with ``fusion_layers=[5, 12, 18]`` and that module is left out with a warning.
* **CLS fusion** (`fuse_cls_token`, ``--fuse-cls-token``): their main.py pretraining builds the ViT-S encoder with
  ``fuse_cls_tolken=True`` (model/vanishing_depth.py, ``V2-small``) and ViT-B / ViT-L with the default False; their
  mmseg backbone (``RGBDVit``, used for the segmentation results) never passes it, so it runs every size without CLS
  fusion, including ViT-S encoders pretrained with it. ``"auto"`` (default) takes the pretraining setting (True for
  width 384, else False); ``False`` reproduces the mmseg features of a ViT-S encoder.
* **Numerical conventions**, set on the config (keyword arguments override): ``position_interpolation="dinov2"``
  (their DINOv2 copy resizes position tables with a scale factor and offset 0.1, not transformers' ``size=``),
  ``pde_missing_depth_m=1e-6`` (their ``zero_eps``: missing depth is encoded as 1 micrometre) and
  ``pde_float_order="authors"`` (their float32 order of the PDE angles). With these the converted model reproduces
  their encoder to float32 rounding.

Their output conventions, and ours
----------------------------------
Their depth ViT returns, at its return blocks (= the fusion blocks), two lists: ``'fusion'``, the raw (not
layer-normed) tokens after the fusion, and ``'return'``, the tokens after the final layer norm when
``norm_return_layers`` (``norm_return_layers_rgb`` for the RGB ViT), taken before the fusion when
``return_before_fusion`` (default: ``cat_outs``); both end with the final-normed CLS token. `VanishingDepthModel`
returns one list, `feature_maps` (RGB channels ``[:D]``, depth channels ``[D:]``), chosen by `feature_source` and
`feature_layernorm` (``--feature-source``, ``--feature-layernorm``):

* the raw maps their U-Net (main.py pretraining; depth only) and Mask2Former (mmseg ``RGBDVit``, ``cat_outs=True``:
  RGB then depth) read: ``feature_source="post_fusion"``, ``feature_layernorm=False``. (Their wrapper then resizes
  map i bilinearly to ``(H // 32 * 32) / 2**(i + 1)``; that is the head's business, see `backbone_feature_strides`.)
* their layer-normed ``'return'`` maps: ``feature_layernorm=True`` with ``feature_source="pre_fusion"`` when
  ``return_before_fusion`` (as with ``cat_outs=True``) or ``"post_fusion"`` (this library's default) when not. Both
  streams follow the one flag here; where their two ``norm_return_layers`` flags differ, apply `rgb_final_norm()` /
  `depth_final_norm()` to the half that needs it.
* their last entry, the final-normed CLS token: ``last_hidden_state[:, 0]`` (depth) and ``rgb_last_hidden_state[:, 0]``
  (RGB); concatenated (``cat_outs``) it is our `pooler_output`.

The converter keeps this library's defaults (``"post_fusion"``, layer-normed) unless told otherwise.

An existing non-empty output folder is refused unless ``--overwrite`` (``overwrite=True``) is given.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration_vanishing_depth import (
    FUSE_CLS_TOKEN_CHOICES,
    VanishingDepthConfig,
    authors_fuse_cls_token,
    default_fusion_layers,
)
from .convert_checkpoints import (
    DINOV2_HEADS_BY_WIDTH,
    convert_dinov2_state_dict,
    dinov2_config_from_state_dict,
    load_rgb_backbone,
    read_state_dict,
)
from .depth_encoding_vanishing_depth import AUTHORS_MISSING_DEPTH_M
from .output_paths import prepare_output_dir

logger = logging.getLogger(__name__)
_OUTPUT_WHAT = "conversion output folder"

PATCH_EMBED_KEY = "patch_embed.proj.weight"
AUTHORS_REPOSITORY = "KochPJ/vanishing-depth"
_FUSION_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<index>\d+)\.se_(?P<side>rgb|depth)\.fc\.(?P<layer>[02])\.(?P<kind>weight|bias)$"
)
_FUSION_PARTS = {"0": "squeeze", "2": "excite"}
#: Their gate name -> ours: their `se_rgb` gates the depth tokens, their `se_depth` the RGB tokens (module docstring).
_GATE_SIDES = {"rgb": "depth", "depth": "rgb"}
#: `fusion_layer_ids` of their `get_dinov2_encoder` by ViT depth (model/dino.py); ids >= depth never run.
AUTHORS_FUSION_BLOCKS = {12: [2, 5, 8, 11], 24: [5, 12, 18, 24]}
#: The numerical conventions of their encoder, set on every converted config (see the module docstring).
AUTHORS_CONVENTIONS = {
    "position_interpolation": "dinov2",
    "pde_missing_depth_m": AUTHORS_MISSING_DEPTH_M,
    "pde_float_order": "authors",
}


@dataclass
class AuthorsLayout:
    """Where the three parts of an authors' checkpoint live (key prefixes), as found or given."""

    rgb_prefix: str | None
    depth_prefix: str
    fusion_prefix: str
    fusion_indices: list[int] = field(default_factory=list)


def _stream_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """``{prefix: input channels}`` of every ViT patch embedding in the checkpoint."""
    found = {}
    for key, value in state_dict.items():
        if key.endswith(PATCH_EMBED_KEY) and value.ndim == 4:
            found[key[: -len(PATCH_EMBED_KEY)]] = int(value.shape[1])
    return found


def detect_authors_layout(
    state_dict: dict[str, torch.Tensor],
    rgb_prefix: str | None = None,
    depth_prefix: str | None = None,
    fusion_prefix: str | None = None,
) -> AuthorsLayout:
    """Find (or check) the RGB, depth and fusion key prefixes of an authors' checkpoint.

    Args:
        state_dict: the checkpoint's tensors.
        rgb_prefix / depth_prefix / fusion_prefix: explicit prefixes (e.g. ``"color_encoder."``); None = detect. An
            empty string means "at the top level". ``rgb_prefix`` may be absent from the checkpoint (RGB stream not
            saved): then `rgb_prefix` of the result is None.

    Raises:
        ValueError: a part cannot be found, or detection is ambiguous (several candidates: pass the prefix).
    """
    streams = _stream_prefixes(state_dict)
    if depth_prefix is None:
        candidates = [prefix for prefix, channels in streams.items() if channels != 3 and prefix != rgb_prefix]
        if len(candidates) != 1:
            raise ValueError(
                "Cannot detect the depth ViT: expected exactly one '<prefix>patch_embed.proj.weight' with C != 3 input "
                f"channels, found {candidates or 'none'} (all patch embeddings: {streams}). Pass `depth_prefix`."
            )
        depth_prefix = candidates[0]
    elif depth_prefix not in streams:
        raise ValueError(
            f"`depth_prefix` {depth_prefix!r} has no '{depth_prefix}{PATCH_EMBED_KEY}' in the checkpoint; patch "
            f"embeddings found under {sorted(streams)}."
        )
    if rgb_prefix is None:
        candidates = [prefix for prefix, channels in streams.items() if channels == 3 and prefix != depth_prefix]
        if len(candidates) > 1:
            raise ValueError(f"Several RGB ViTs found under {candidates}; pass `rgb_prefix`.")
        rgb_prefix = candidates[0] if candidates else None
    elif rgb_prefix not in streams:
        raise ValueError(
            f"`rgb_prefix` {rgb_prefix!r} has no '{rgb_prefix}{PATCH_EMBED_KEY}' in the checkpoint; patch embeddings "
            f"found under {sorted(streams)}."
        )

    fusion_prefixes: dict[str, set[int]] = {}
    for key in state_dict:
        match = _FUSION_KEY.match(key)
        if match and (fusion_prefix is None or match["prefix"] == fusion_prefix):
            fusion_prefixes.setdefault(match["prefix"], set()).add(int(match["index"]))
    if not fusion_prefixes:
        where = f"under `fusion_prefix` {fusion_prefix!r}" if fusion_prefix is not None else "anywhere"
        raise ValueError(
            f"No SE fusion weights ('<prefix>{{i}}.se_rgb.fc.0.weight', ...) {where} in the checkpoint; is this an "
            "RGB-D encoder checkpoint?"
        )
    if len(fusion_prefixes) > 1:
        raise ValueError(f"SE fusion weights under several prefixes {sorted(fusion_prefixes)}; pass `fusion_prefix`.")
    ((found_prefix, indices),) = fusion_prefixes.items()
    return AuthorsLayout(rgb_prefix, depth_prefix, found_prefix, sorted(indices))


def _take_stream(state_dict: dict[str, torch.Tensor], prefix: str, other_prefixes: Sequence[str]) -> dict:
    """Keys under `prefix` (prefix removed), except those that belong to a longer prefix or to the fusion modules."""
    longer = [p for p in other_prefixes if p != prefix and p.startswith(prefix)]
    return {
        key[len(prefix) :]: value
        for key, value in state_dict.items()
        if key.startswith(prefix) and not any(key.startswith(p) for p in longer) and not _FUSION_KEY.match(key)
    }


def _fusion_state(
    state_dict: dict[str, torch.Tensor], layout: AuthorsLayout, ordinal: dict[int, int]
) -> dict[str, torch.Tensor]:
    """ESANet SE weights -> ``fusions.{ordinal}.se_{depth,rgb}.{squeeze,excite}.{weight,bias}``: their ``se_rgb`` gates
    the depth tokens and becomes our ``se_depth`` (and the other way round); 1x1 convolutions become Linear weights.
    Modules whose index is not in `ordinal` (never run by their forward) are left out."""
    converted = {}
    for key, value in state_dict.items():
        match = _FUSION_KEY.match(key)
        if match is None or match["prefix"] != layout.fusion_prefix or int(match["index"]) not in ordinal:
            continue
        if match["kind"] == "weight":
            if value.ndim not in (2, 4) or (value.ndim == 4 and value.shape[-2:] != (1, 1)):
                raise ValueError(f"{key}: expected a 1x1 convolution weight, got shape {tuple(value.shape)}.")
            value = value.reshape(value.shape[0], value.shape[1])
        side = _GATE_SIDES[match["side"]]
        name = f"fusions.{ordinal[int(match['index'])]}.se_{side}.{_FUSION_PARTS[match['layer']]}.{match['kind']}"
        converted[name] = value
    return converted


def _fusion_ordinals(
    indices: list[int], num_layers: int, fusion_layers: Sequence[int] | None
) -> tuple[list[int], dict[int, int]]:
    """(0-based blocks the fusions follow, {checkpoint index: our fusion ordinal}) for fusion modules numbered
    `indices` in the checkpoint: by ordinal (0..n-1, their `fusion_layers.{j}`) or by the block they follow."""
    by_ordinal = indices == list(range(len(indices)))
    if fusion_layers is not None:
        blocks = [int(i) for i in fusion_layers]
        if len(blocks) != len(indices):
            raise ValueError(
                f"The checkpoint has {len(indices)} fusion modules {indices}; `fusion_layers` {blocks} names "
                f"{len(blocks)} blocks."
            )
        if not by_ordinal and indices != sorted(blocks):
            raise ValueError(
                f"Fusion modules are numbered {indices}: neither 0..{len(indices) - 1} nor the fusion blocks "
                f"{blocks}; pass `fusion_layers` matching the checkpoint."
            )
        return blocks, {index: i for i, index in enumerate(indices)}
    if not by_ordinal:  # numbered by the block each fusion follows
        return list(indices), {index: i for i, index in enumerate(indices)}
    table = AUTHORS_FUSION_BLOCKS.get(num_layers)
    if table is None or len(table) != len(indices):
        table = default_fusion_layers(num_layers)
    if len(table) != len(indices):
        raise ValueError(
            f"The checkpoint has {len(indices)} fusion modules for a {num_layers}-block ViT; pass `fusion_layers` "
            "(the 0-based blocks they follow)."
        )
    runs = [block for block in table if block < num_layers]
    if len(runs) < len(table):
        logger.warning(
            "Fusion blocks %s of the authors' %d-block encoder include blocks that do not exist, so their modules %s "
            "never run there; converting the fusions after blocks %s and leaving those modules out.",
            table,
            num_layers,
            indices[len(runs) :],
            runs,
        )
    return runs, {index: i for i, index in enumerate(indices[: len(runs)])}


def _resolve_fuse_cls_token(fuse_cls_token, hidden_size: int) -> bool:
    if isinstance(fuse_cls_token, bool):
        return fuse_cls_token
    choice = "auto" if fuse_cls_token is None else str(fuse_cls_token).lower()
    if choice not in FUSE_CLS_TOKEN_CHOICES:
        raise ValueError(
            f"`fuse_cls_token` must be True, False or one of {FUSE_CLS_TOKEN_CHOICES}, got {fuse_cls_token!r}."
        )
    if choice != "auto":
        return choice == "true"
    fused = authors_fuse_cls_token(hidden_size)  # main.py pretrains ViT-S with CLS fusion, ViT-B / ViT-L without
    logger.info(
        "fuse_cls_token=%s: the authors' main.py pretraining setting for width %d (their mmseg backbone never fuses "
        "the CLS token; pass fuse_cls_token=False for its features).",
        fused,
        hidden_size,
    )
    return fused


def convert_authors_state_dict(
    state_dict: dict[str, torch.Tensor],
    rgb_prefix: str | None = None,
    depth_prefix: str | None = None,
    fusion_prefix: str | None = None,
    rgb_state_dict: dict[str, torch.Tensor] | None = None,
    num_attention_heads: int | None = None,
    fusion_layers: Sequence[int] | None = None,
    fuse_cls_token: bool | str = "auto",
    **config_kwargs,
) -> tuple[dict[str, torch.Tensor], VanishingDepthConfig]:
    """An authors' RGB-D encoder state dict -> (`VanishingDepthModel` state dict, inferred `VanishingDepthConfig`).

    Args:
        state_dict: the checkpoint (prefixes as in the module docstring; detected unless given).
        rgb_prefix, depth_prefix, fusion_prefix: see `detect_authors_layout`.
        rgb_state_dict: transformers-v5 `Dinov2Model` weights for the RGB stream when the checkpoint has none.
        num_attention_heads: heads per block; default from the width (384: 6, 768: 12, 1024: 16, 1536: 24).
        fusion_layers: 0-based blocks the fusions follow; default: the blocks the keys name if they are numbered by
            block, else their `get_dinov2_encoder` table ([2, 5, 8, 11] for 12 blocks, [5, 12, 18] for 24: see the
            module docstring), else the quarter blocks of `default_fusion_layers`.
        fuse_cls_token: whether the fusion also gates the CLS/register tokens: True, False, or ``"auto"`` (their
            main.py pretraining setting: True for ViT-S, width 384; False otherwise). Their mmseg backbone never fuses
            the CLS token.
        **config_kwargs: other `VanishingDepthConfig` fields (``pde_temperature``, ``max_depth``,
            ``depth_normalization``, ``feature_source``, ``feature_layernorm``, ``rgb_backbone_name_or_path``, ...).
            `AUTHORS_CONVENTIONS` (``position_interpolation="dinov2"``, ``pde_missing_depth_m=1e-6``,
            ``pde_float_order="authors"``) are the defaults here; pass a field to override it.
    """
    state_dict = dict(state_dict)
    layout = detect_authors_layout(state_dict, rgb_prefix, depth_prefix, fusion_prefix)
    prefixes = [p for p in (layout.rgb_prefix, layout.depth_prefix) if p is not None]
    depth = convert_dinov2_state_dict(_take_stream(state_dict, layout.depth_prefix, prefixes))
    if layout.rgb_prefix is not None:
        if rgb_state_dict is not None:
            logger.warning(
                "The checkpoint has its own RGB stream (%r); `rgb_state_dict` is ignored.", layout.rgb_prefix
            )
        rgb = convert_dinov2_state_dict(_take_stream(state_dict, layout.rgb_prefix, prefixes))
    elif rgb_state_dict is not None:
        rgb = dict(rgb_state_dict)
    else:
        raise ValueError(
            "The checkpoint holds no RGB ViT (no '<prefix>patch_embed.proj.weight' with 3 input channels): pass the "
            "DINOv2 it was trained with as `rgb_backbone` (Hub id, folder or .pth / .safetensors file)."
        )

    rgb_config = dinov2_config_from_state_dict(rgb)
    if num_attention_heads is not None:
        rgb_config.num_attention_heads = int(num_attention_heads)
    elif rgb_config.hidden_size not in DINOV2_HEADS_BY_WIDTH:
        logger.warning(
            "Width %d is not a DINOv2 size; assuming %d attention heads (pass num_attention_heads to override).",
            rgb_config.hidden_size,
            rgb_config.num_attention_heads,
        )
    depth_config = dinov2_config_from_state_dict(depth)
    for name in ("hidden_size", "num_hidden_layers", "patch_size", "image_size"):
        if getattr(depth_config, name) != getattr(rgb_config, name):
            raise ValueError(
                f"The depth ViT ({name}={getattr(depth_config, name)}) and the RGB ViT ({name}="
                f"{getattr(rgb_config, name)}) differ; they must have the same shape."
            )
    depth_channels = int(depth["embeddings.patch_embeddings.projection.weight"].shape[1])
    if depth_channels == 1:
        config_kwargs.setdefault("depth_encoding", "normalized")
    else:
        config_kwargs.setdefault("pde_channels", depth_channels)

    fusion_layers, ordinal = _fusion_ordinals(layout.fusion_indices, rgb_config.num_hidden_layers, fusion_layers)
    fusion = _fusion_state(state_dict, layout, ordinal)
    squeeze = fusion["fusions.0.se_depth.squeeze.weight"]
    bottleneck, hidden = squeeze.shape
    se_reduction = hidden // bottleneck
    if hidden // se_reduction != bottleneck:
        raise ValueError(f"SE bottleneck {bottleneck} is not hidden_size {hidden} divided by an integer reduction.")
    fuse_cls_token = _resolve_fuse_cls_token(fuse_cls_token, rgb_config.hidden_size)
    for name, value in AUTHORS_CONVENTIONS.items():
        config_kwargs.setdefault(name, value)

    config = VanishingDepthConfig(
        rgb_config=rgb_config,
        fusion_layers=fusion_layers,
        se_reduction=se_reduction,
        fuse_cls_token=fuse_cls_token,
        **config_kwargs,
    )
    converted = {f"rgb_encoder.{k}": v for k, v in rgb.items()}
    converted.update({f"depth_encoder.{k}": v for k, v in depth.items()})
    converted.update(fusion)

    used = set()
    for prefix in prefixes:
        used |= {prefix + key for key in _take_stream(state_dict, prefix, prefixes)}
    used |= {
        key
        for key in state_dict
        if (m := _FUSION_KEY.match(key)) and m["prefix"] == layout.fusion_prefix and int(m["index"]) in ordinal
    }
    unused = sorted(set(state_dict) - used)
    if unused:
        logger.warning(
            "%d checkpoint tensors are not part of the RGB-D encoder and were not converted (e.g. the pretraining "
            "decoder and depth heads of a main.py checkpoint): %s%s",
            len(unused),
            unused[:10],
            " ..." if len(unused) > 10 else "",
        )
    return converted, config


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_authors_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    allow_pickle: bool = False,
    rgb_prefix: str | None = None,
    depth_prefix: str | None = None,
    fusion_prefix: str | None = None,
    rgb_backbone=None,
    num_attention_heads: int | None = None,
    fusion_layers: Sequence[int] | None = None,
    fuse_cls_token: bool | str = "auto",
    write_card: bool = True,
    overwrite: bool = False,
    **config_kwargs,
):
    """Convert an authors' checkpoint file and save a folder `AutoModel.from_pretrained` loads.

    Writes ``config.json`` (with a ``converted_from`` record: file name, sha256, prefixes), ``model.safetensors``, the
    remote-code files, ``preprocessor_config.json`` and, with `write_card`, a ``README.md`` model card.

    Args:
        checkpoint: ``.safetensors`` file, or (with ``allow_pickle=True``) a ``.plt``/``.ckpt``/``.pth``/``.pt``/``.bin``
            pickle read with ``torch.load(weights_only=True)``; a ``state_dict`` / ``model`` entry is unwrapped (their
            ``*_encoder.plt`` files and main.py training checkpoints both hold one).
        output_dir: folder to write: new or empty. A folder that holds anything is refused before any work unless
            ``overwrite=True``, which empties it once the conversion has succeeded (nothing of the old folder
            survives to be mixed with the new one).
        allow_pickle: opt in to reading pickles (unpickling a file from an untrusted source can execute code).
        rgb_backbone: DINOv2 source for checkpoints without the RGB stream (see `load_rgb_backbone`).
        Others: see `convert_authors_state_dict`.

    Returns:
        The converted `VanishingDepthModel` (eval mode).

    Raises:
        OutputExistsError: `output_dir` is a file, or a folder that is not empty and `overwrite` is False.
    """
    from . import VanishingDepthImageProcessor, VanishingDepthModel

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"`checkpoint` {str(checkpoint)!r} does not exist.")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:  # refuse before the work; creates nothing
        prepare_output_dir(output_dir, what=_OUTPUT_WHAT)
    state_dict = read_state_dict(checkpoint, allow_pickle=allow_pickle)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        found = sorted(state_dict)[:8] if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"{checkpoint.name} does not hold a flat state dict of tensors (found {found}).")
    rgb_state_dict = None
    if rgb_backbone is not None:
        rgb_state_dict = load_rgb_backbone(rgb_backbone, allow_pickle=allow_pickle).state_dict()
        config_kwargs.setdefault(
            "rgb_backbone_name_or_path", str(rgb_backbone) if isinstance(rgb_backbone, (str, os.PathLike)) else None
        )
    try:
        converted, config = convert_authors_state_dict(
            state_dict,
            rgb_prefix=rgb_prefix,
            depth_prefix=depth_prefix,
            fusion_prefix=fusion_prefix,
            rgb_state_dict=rgb_state_dict,
            num_attention_heads=num_attention_heads,
            fusion_layers=fusion_layers,
            fuse_cls_token=fuse_cls_token,
            **config_kwargs,
        )
    except ValueError as error:
        raise ValueError(f"{checkpoint.name}: {error}") from error
    layout = detect_authors_layout(state_dict, rgb_prefix, depth_prefix, fusion_prefix)
    config.converted_from = {
        "source": f"authors' release ({AUTHORS_REPOSITORY})",
        "file": checkpoint.name,
        "sha256": _sha256(checkpoint),
        "rgb_prefix": layout.rgb_prefix
        if layout.rgb_prefix is not None
        else f"from {config.rgb_backbone_name_or_path}",
        "depth_prefix": layout.depth_prefix,
        "fusion_prefix": layout.fusion_prefix,
    }
    model = VanishingDepthModel(config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [key for key in missing if not key.endswith("embeddings.mask_token")]
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint.name} does not fit the inferred {config.hidden_size}-wide, {config.num_hidden_layers}-block "
            f"model: missing {missing[:10]}, unexpected {unexpected[:10]}."
        )
    model.eval()
    prepare_output_dir(output_dir, overwrite=overwrite, what=_OUTPUT_WHAT)
    model.save_pretrained(str(output_dir))
    VanishingDepthImageProcessor.from_model_config(config).save_pretrained(str(output_dir))
    if write_card:
        from .hub.model_card import write_model_card

        write_model_card(output_dir)
    logger.info("Converted %s -> %s", checkpoint, output_dir)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_convert_subcommand(subparsers) -> argparse.ArgumentParser:
    """``vanishing-depth convert --checkpoint FILE --output-dir DIR [--allow-pickle] [--rgb-prefix ...]``."""
    parser = subparsers.add_parser(
        "convert",
        help="Convert an authors' RGB-D encoder checkpoint (*_encoder.plt, main.py .ckpt, ...) to a model folder.",
        description="Convert a checkpoint of the authors' code (two DINOv2 ViTs in the original key layout plus SE "
        "fusion modules: their *_encoder.plt files, main.py training checkpoints, or the same tensors as .pth / "
        ".safetensors) to config.json + model.safetensors + remote code + image processor + card. Prefixes are "
        "detected unless given; the config follows the authors' numerical conventions (DINOv2 position "
        "interpolation, missing depth encoded as 1e-6 m, their PDE float order).",
    )
    parser.add_argument(
        "--checkpoint", required=True, help=".safetensors file, or a .plt/.ckpt/.pth pickle with --allow-pickle."
    )
    parser.add_argument("--output-dir", required=True, help="Folder to write (new or empty, unless --overwrite).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the contents of a non-empty --output-dir (emptied once the conversion has succeeded).",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="Read pickled .plt/.ckpt/.pth/.pt/.bin files (tensors only, weights_only=True). Only for files you trust.",
    )
    parser.add_argument("--rgb-prefix", help="Key prefix of the RGB ViT, e.g. 'color_encoder.' (default: detected).")
    parser.add_argument(
        "--depth-prefix", help="Key prefix of the depth ViT, e.g. 'depth_encoder.' (default: detected)."
    )
    parser.add_argument(
        "--fusion-prefix",
        help="Key prefix of the SE fusions, e.g. 'depth_encoder.fusion_layers.' (default: detected).",
    )
    parser.add_argument("--rgb-backbone", help="DINOv2 for checkpoints without the RGB stream (Hub id, folder, file).")
    parser.add_argument("--num-attention-heads", type=int, help="Heads per block (default: from the width).")
    parser.add_argument("--fusion-layers", type=int, nargs="+", help="0-based blocks the fusions follow.")
    parser.add_argument(
        "--fuse-cls-token",
        choices=FUSE_CLS_TOKEN_CHOICES,
        default="auto",
        help="Fuse the CLS token too. 'auto' (default): as the authors' main.py pretraining (true for ViT-S, false "
        "for ViT-B/L); 'false' as their mmseg segmentation backbone, which never fuses it.",
    )
    parser.add_argument(
        "--feature-source",
        choices=("post_fusion", "pre_fusion"),
        help="feature_maps after or before each fusion (default post_fusion). Their U-Net / Mask2Former maps: "
        "post_fusion with --feature-layernorm false; their normed 'return' maps with return_before_fusion: pre_fusion.",
    )
    parser.add_argument(
        "--feature-layernorm",
        choices=("true", "false"),
        help="Apply the final layer norm to feature_maps (default true, their 'return' maps; false: the raw maps "
        "their U-Net and Mask2Former read).",
    )
    parser.add_argument("--max-depth", type=float, help="PDE max depth in metres (default 15).")
    parser.add_argument("--pde-temperature", type=float, help="PDE temperature (default 3e-4).")
    parser.add_argument(
        "--depth-normalization", choices=("global", "dynamic"), help="PDE normalisation (default global)."
    )
    parser.add_argument("--base-model", help="Hub id of the DINOv2 the RGB stream is (recorded for the card).")
    parser.set_defaults(func=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> int:
    config_kwargs = {
        key: value
        for key, value in (
            ("max_depth", args.max_depth),
            ("pde_temperature", args.pde_temperature),
            ("depth_normalization", args.depth_normalization),
            ("rgb_backbone_name_or_path", args.base_model),
            ("feature_source", args.feature_source),
            ("feature_layernorm", None if args.feature_layernorm is None else args.feature_layernorm == "true"),
        )
        if value is not None
    }
    model = convert_authors_checkpoint(
        args.checkpoint,
        args.output_dir,
        allow_pickle=args.allow_pickle,
        rgb_prefix=args.rgb_prefix,
        depth_prefix=args.depth_prefix,
        fusion_prefix=args.fusion_prefix,
        rgb_backbone=args.rgb_backbone,
        num_attention_heads=args.num_attention_heads,
        fusion_layers=args.fusion_layers,
        fuse_cls_token=args.fuse_cls_token,
        overwrite=args.overwrite,
        **config_kwargs,
    )
    config = model.config
    print(
        f"wrote {args.output_dir}: hidden {config.hidden_size}, {config.num_hidden_layers} blocks, "
        f"PDE channels {config.depth_input_channels}, fusion after blocks {config.fusion_layers}, "
        f"CLS fusion {config.fuse_cls_token}"
    )
    return 0


__all__ = [
    "AUTHORS_CONVENTIONS",
    "AUTHORS_FUSION_BLOCKS",
    "AuthorsLayout",
    "add_convert_subcommand",
    "convert_authors_checkpoint",
    "convert_authors_state_dict",
    "detect_authors_layout",
    "run_convert",
]
