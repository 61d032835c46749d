"""``vanishing-depth features``: the fused RGB-D feature maps of one frame."""

from __future__ import annotations

import argparse
import json
import logging

import torch
from safetensors.torch import save_file
from transformers import AutoModel, Dinov2Config

from ..configuration_vanishing_depth import VIT_SHAPES, VanishingDepthConfig
from ..data import load_depth, load_rgb
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..modeling_vanishing_depth import VanishingDepthModel

logger = logging.getLogger("vanishing_depth.cli")


def add_features_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "features",
        help="Extract RGB-D feature maps for one RGB image and its depth map.",
        description="Extract the four fused RGB-D feature maps of one frame and print their shapes.",
    )
    parser.add_argument("--model", help="A saved Vanishing Depth folder or Hub id. Default: a random tiny model.")
    parser.add_argument("--rgb", required=True, help="RGB image file (JPEG/PNG).")
    parser.add_argument("--depth", help="Depth file; omit to run on RGB alone (all depth missing).")
    parser.add_argument(
        "--depth-format", default="auto", help="Depth file convention: mm, kitti, tum, sunrgbd, nyu_raw, float, auto."
    )
    parser.add_argument(
        "--size", type=int, default=224, help="Shortest edge in pixels before padding to a multiple of 14."
    )
    parser.add_argument("--out", help="Optional .safetensors file to write the feature maps to.")
    parser.set_defaults(func=run_features)
    return parser


def run_features(args: argparse.Namespace) -> int:
    model = _load_encoder_or_tiny(args.model)
    processor = VanishingDepthImageProcessor(size={"shortest_edge": args.size})
    rgb = load_rgb(args.rgb)
    depth_m = load_depth(args.depth, format=args.depth_format) if args.depth else None
    inputs = processor(images=rgb, depth=depth_m, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(pixel_values=inputs["pixel_values"], depth_values=inputs["depth_values"])
    summary = {
        "pixel_values": list(inputs["pixel_values"].shape),
        "depth_values": list(inputs["depth_values"].shape),
        "valid_depth_fraction": float((inputs["depth_values"] > 0).float().mean()),
        "feature_maps": [list(f.shape) for f in outputs.feature_maps],
        "last_hidden_state": list(outputs.last_hidden_state.shape),
        "rgb_last_hidden_state": list(outputs.rgb_last_hidden_state.shape),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        save_file({f"feature_map_{i}": f.contiguous() for i, f in enumerate(outputs.feature_maps)}, args.out)
        print(f"wrote {args.out}")
    return 0


def _load_encoder_or_tiny(name_or_path: str | None):
    if name_or_path:
        return AutoModel.from_pretrained(name_or_path).eval()
    logger.warning("No --model given: using a randomly initialised ViT-S-shaped model (no weights are reachable here).")
    rgb_config = Dinov2Config(image_size=518, **VIT_SHAPES["small"])
    return VanishingDepthModel(VanishingDepthConfig(rgb_config=rgb_config)).eval()
