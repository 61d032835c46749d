"""Write the golden-value fixture of tests/test_golden.py: a tiny committed checkpoint and the outputs it must give.

Run it ONLY when a change of the numbers is intended (a new default, a fixed bug), and say so in the commit:

    python scripts/make_golden.py [--output tests/fixtures/golden]

It writes ``tiny-pretraining/`` (``config.json`` + ``model.safetensors`` of a `VanishingDepthForPretraining` with
hidden 16, 2 blocks, 8 PDE channels: about 0.3 MB) and ``expected.safetensors``: the inputs (RGB, sparse metric depth)
and the outputs of the encoder (every fusion-layer feature map, `last_hidden_state`), of the pretraining model (the four
predicted depth maps) and of the image processor on one bundled demo frame. Refactors must reproduce them (tolerances
in tests/test_golden.py: 1e-3 where the PDE's millimetre resolution amplifies float rounding, 1e-5 elsewhere).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Dinov2Config

from vanishing_depth import VanishingDepthConfig, VanishingDepthForPretraining, VanishingDepthImageProcessor
from vanishing_depth.data import decode_rgbd_row, load_demo_corpus

GOLDEN_HEIGHT, GOLDEN_WIDTH = 28, 42


def golden_config() -> VanishingDepthConfig:
    rgb_config = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, image_size=28)
    return VanishingDepthConfig(
        rgb_config=rgb_config, pde_channels=8, se_reduction=4, decoder_channels=[8, 8, 8, 8], max_depth=10.0
    )


def golden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """RGB (normalised) and sparse depth in metres (40 % missing), from a fixed generator."""
    generator = torch.Generator().manual_seed(20261207)
    rgb = torch.randn(2, 3, GOLDEN_HEIGHT, GOLDEN_WIDTH, generator=generator)
    depth = 0.3 + 8.0 * torch.rand(2, 1, GOLDEN_HEIGHT, GOLDEN_WIDTH, generator=generator)
    depth[torch.rand(2, 1, GOLDEN_HEIGHT, GOLDEN_WIDTH, generator=generator) < 0.4] = 0.0
    return rgb, depth


def golden_outputs(model: VanishingDepthForPretraining, rgb: torch.Tensor, depth: torch.Tensor) -> dict:
    with torch.no_grad():
        encoder = model.vanishing_depth(pixel_values=rgb, depth_values=depth)
        completion = model(pixel_values=rgb, depth_values=depth)
    tensors = {f"feature_map_{i}": fm for i, fm in enumerate(encoder.feature_maps)}
    tensors["last_hidden_state"] = encoder.last_hidden_state
    tensors["rgb_last_hidden_state"] = encoder.rgb_last_hidden_state
    tensors.update({f"predicted_depth_{k}": p for k, p in enumerate(completion.predicted_depth)})
    return tensors


def golden_processor_outputs() -> dict:
    """The image processor on the first held-out demo frame (uint8 RGB, metric depth) at 56 px short side."""
    rgb, depth_m = decode_rgbd_row(load_demo_corpus("test")[0])
    inputs = VanishingDepthImageProcessor(size={"shortest_edge": 56})(images=rgb, depth=depth_m)
    return {f"processor_{key}": value for key, value in inputs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden"))
    args = parser.parse_args()
    output = Path(args.output)
    folder = output / "tiny-pretraining"
    folder.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    model = VanishingDepthForPretraining(golden_config()).eval()
    # Only what the test needs: the config (without remote-code pointers) and the weights.
    config = model.config.to_dict()
    for key in ("auto_map", "custom_pipelines", "transformers_version"):
        config.pop(key, None)
    config["architectures"] = ["VanishingDepthForPretraining"]
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))

    rgb, depth = golden_inputs()
    tensors = {"input_rgb": rgb, "input_depth_m": depth}
    tensors.update(golden_outputs(model, rgb, depth))
    tensors.update(golden_processor_outputs())
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(output / "expected.safetensors"))
    print(f"wrote {folder} and {output / 'expected.safetensors'} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
