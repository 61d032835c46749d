# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Convert the authors' released RGB-D ViT encoder checkpoints (KochPJ/vanishing-depth) to a loadable folder.

Their encoder (METHOD.md §1.3, §1.6, §1.7) holds two DINOv2 ViTs in facebookresearch's key layout and ESANet SE
fusion modules::

    <rgb prefix>blocks.N.attn.qkv.weight ... patch_embed.proj.weight (D, 3, 14, 14)     e.g. "color_encoder."
    <depth prefix>blocks.N.attn.qkv.weight ... patch_embed.proj.weight (D, C, 14, 14)   e.g. "depth_encoder."
    <fusion prefix>{i}.se_rgb.fc.0.weight (D/r, D, 1, 1), .fc.0.bias, .fc.2.weight (D, D/r, 1, 1), .fc.2.bias
    <fusion prefix>{i}.se_depth.fc.{0,2}.{weight,bias}                                    e.g. "fusion_layers."

The prefixes are found automatically (the stream whose patch embedding takes 3 channels is RGB, the one with C != 3
is depth; fusion keys are those holding ``se_rgb`` / ``se_depth``) or given explicitly. Fusion index ``i`` is either
the fusion's ordinal (0, 1, 2, 3) or the block it follows (2, 5, 8, 11); both are recognised. Each stream goes
through `convert_dinov2_state_dict`; the 1x1 SE convolutions become our ``squeeze`` / ``excite`` linear layers. The
config is inferred from the weights (width, depth, patch size, position grid, registers, PDE channels, SE reduction,
fusion layers); what weights cannot tell (heads for unusual widths, PDE temperature and max depth, normalisation) comes
from arguments with the official defaults.

Checkpoints without the frozen RGB stream are completed from ``rgb_backbone`` (any DINOv2 source
`load_rgb_backbone` reads). Pickled files (``.pth``/``.pt``/``.ckpt``) are refused unless ``allow_pickle=True``.

    vanishing-depth convert --checkpoint vd_vitb14.pth --output-dir vd-vitb14 --allow-pickle

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

from .configuration_vanishing_depth import VanishingDepthConfig, default_fusion_layers
from .convert_checkpoints import (
    DINOV2_HEADS_BY_WIDTH,
    convert_dinov2_state_dict,
    dinov2_config_from_state_dict,
    load_rgb_backbone,
    read_state_dict,
)
from .output_paths import prepare_output_dir

logger = logging.getLogger(__name__)
_OUTPUT_WHAT = "conversion output folder"

PATCH_EMBED_KEY = "patch_embed.proj.weight"
AUTHORS_REPOSITORY = "KochPJ/vanishing-depth"
_FUSION_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<index>\d+)\.se_(?P<side>rgb|depth)\.fc\.(?P<layer>[02])\.(?P<kind>weight|bias)$"
)
_FUSION_PARTS = {"0": "squeeze", "2": "excite"}


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
    state_dict: dict[str, torch.Tensor], layout: AuthorsLayout, fusion_layers: list[int]
) -> dict[str, torch.Tensor]:
    """ESANet SE weights -> ``fusions.{ordinal}.se_{rgb,depth}.{squeeze,excite}.{weight,bias}`` (1x1 conv -> Linear)."""
    indices = layout.fusion_indices
    if indices == list(range(len(indices))):
        ordinal = {index: index for index in indices}  # numbered 0..n-1
    elif indices == sorted(fusion_layers):
        ordinal = {index: i for i, index in enumerate(indices)}  # numbered by the block they follow
    else:
        raise ValueError(
            f"Fusion modules are numbered {indices}: neither 0..{len(indices) - 1} nor the fusion blocks "
            f"{fusion_layers}; pass `fusion_layers` matching the checkpoint."
        )
    converted = {}
    for key, value in state_dict.items():
        match = _FUSION_KEY.match(key)
        if match is None or match["prefix"] != layout.fusion_prefix:
            continue
        if match["kind"] == "weight":
            if value.ndim == 4 and value.shape[-2:] != (1, 1):
                raise ValueError(f"{key}: expected a 1x1 convolution weight, got shape {tuple(value.shape)}.")
            value = value.reshape(value.shape[0], value.shape[1])
        name = (
            f"fusions.{ordinal[int(match['index'])]}.se_{match['side']}.{_FUSION_PARTS[match['layer']]}.{match['kind']}"
        )
        converted[name] = value
    return converted


def convert_authors_state_dict(
    state_dict: dict[str, torch.Tensor],
    rgb_prefix: str | None = None,
    depth_prefix: str | None = None,
    fusion_prefix: str | None = None,
    rgb_state_dict: dict[str, torch.Tensor] | None = None,
    num_attention_heads: int | None = None,
    fusion_layers: Sequence[int] | None = None,
    fuse_cls_token: bool | None = None,
    **config_kwargs,
) -> tuple[dict[str, torch.Tensor], VanishingDepthConfig]:
    """An authors' RGB-D encoder state dict -> (`VanishingDepthModel` state dict, inferred `VanishingDepthConfig`).

    Args:
        state_dict: the checkpoint (prefixes as in the module docstring; detected unless given).
        rgb_prefix, depth_prefix, fusion_prefix: see `detect_authors_layout`.
        rgb_state_dict: transformers-v5 `Dinov2Model` weights for the RGB stream when the checkpoint has none.
        num_attention_heads: heads per block; default from the width (384: 6, 768: 12, 1024: 16, 1536: 24).
        fusion_layers: 0-based blocks the fusions follow; default: numbered keys if they name blocks, else the quarter
            blocks of `default_fusion_layers`.
        fuse_cls_token: whether the fusion also gates CLS/register tokens; default as the official code: True for
            ViT-S (width 384), False otherwise (METHOD §1.5).
        **config_kwargs: other `VanishingDepthConfig` fields (``pde_temperature``, ``max_depth``,
            ``depth_normalization``, ``rgb_backbone_name_or_path``, ...).
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

    indices = layout.fusion_indices
    if fusion_layers is None:
        if indices == list(range(len(indices))):  # numbered 0..n-1: the quarter blocks, as the official code
            fusion_layers = default_fusion_layers(rgb_config.num_hidden_layers)
        else:  # numbered by the block each fusion follows
            fusion_layers = indices
    fusion_layers = [int(i) for i in fusion_layers]
    if len(fusion_layers) != len(indices):
        raise ValueError(
            f"The checkpoint has {len(indices)} fusion modules {indices}; `fusion_layers` {fusion_layers} names "
            f"{len(fusion_layers)} blocks."
        )
    fusion = _fusion_state(state_dict, layout, fusion_layers)
    squeeze = fusion["fusions.0.se_rgb.squeeze.weight"]
    bottleneck, hidden = squeeze.shape
    se_reduction = hidden // bottleneck
    if hidden // se_reduction != bottleneck:
        raise ValueError(f"SE bottleneck {bottleneck} is not hidden_size {hidden} divided by an integer reduction.")
    if fuse_cls_token is None:
        fuse_cls_token = rgb_config.hidden_size == 384  # the official ViT-S path fuses CLS, ViT-B does not
        logger.info("fuse_cls_token=%s (the official setting for width %d).", fuse_cls_token, rgb_config.hidden_size)

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
    used |= {key for key in state_dict if (m := _FUSION_KEY.match(key)) and m["prefix"] == layout.fusion_prefix}
    unused = sorted(set(state_dict) - used)
    if unused:
        logger.warning(
            "%d checkpoint tensors are not part of the RGB-D encoder and were not converted (e.g. a pretraining "
            "decoder): %s%s",
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
    fuse_cls_token: bool | None = None,
    write_card: bool = True,
    overwrite: bool = False,
    **config_kwargs,
):
    """Convert an authors' checkpoint file and save a folder `AutoModel.from_pretrained` loads.

    Writes ``config.json`` (with a ``converted_from`` record: file name, sha256, prefixes), ``model.safetensors``, the
    remote-code files, ``preprocessor_config.json`` and, with `write_card`, a ``README.md`` model card.

    Args:
        checkpoint: ``.safetensors`` file, or (with ``allow_pickle=True``) a ``.pth``/``.pt``/``.ckpt``/``.bin`` pickle
            read with ``torch.load(weights_only=True)``; a ``state_dict`` / ``model`` entry is unwrapped.
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
        raise ValueError(f"{checkpoint.name} does not hold a flat state dict of tensors.")
    rgb_state_dict = None
    if rgb_backbone is not None:
        rgb_state_dict = load_rgb_backbone(rgb_backbone, allow_pickle=allow_pickle).state_dict()
        config_kwargs.setdefault(
            "rgb_backbone_name_or_path", str(rgb_backbone) if isinstance(rgb_backbone, (str, os.PathLike)) else None
        )
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
        from .hub_cards.model_card import write_model_card

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
        help="Convert an authors' released RGB-D encoder checkpoint to a loadable model folder.",
        description="Convert a checkpoint of the authors' release (two DINOv2 ViTs in the original key layout plus SE "
        "fusion modules) to config.json + model.safetensors + remote code + image processor + card. Prefixes are "
        "detected unless given.",
    )
    parser.add_argument("--checkpoint", required=True, help=".safetensors file, or a .pth with --allow-pickle.")
    parser.add_argument("--output-dir", required=True, help="Folder to write (new or empty, unless --overwrite).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the contents of a non-empty --output-dir (emptied once the conversion has succeeded).",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="Read pickled .pth/.pt/.ckpt files (tensors only, weights_only=True). Only for files you trust.",
    )
    parser.add_argument("--rgb-prefix", help="Key prefix of the RGB ViT, e.g. 'color_encoder.' (default: detected).")
    parser.add_argument(
        "--depth-prefix", help="Key prefix of the depth ViT, e.g. 'depth_encoder.' (default: detected)."
    )
    parser.add_argument(
        "--fusion-prefix", help="Key prefix of the SE fusions, e.g. 'fusion_layers.' (default: detected)."
    )
    parser.add_argument("--rgb-backbone", help="DINOv2 for checkpoints without the RGB stream (Hub id, folder, file).")
    parser.add_argument("--num-attention-heads", type=int, help="Heads per block (default: from the width).")
    parser.add_argument("--fusion-layers", type=int, nargs="+", help="0-based blocks the fusions follow.")
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
        overwrite=args.overwrite,
        **config_kwargs,
    )
    config = model.config
    print(
        f"wrote {args.output_dir}: hidden {config.hidden_size}, {config.num_hidden_layers} blocks, "
        f"PDE channels {config.depth_input_channels}, fusion after blocks {config.fusion_layers}"
    )
    return 0


__all__ = [
    "AuthorsLayout",
    "add_convert_subcommand",
    "convert_authors_checkpoint",
    "convert_authors_state_dict",
    "detect_authors_layout",
    "run_convert",
]
