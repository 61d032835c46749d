"""Complete a sparse depth map of a bundled demo frame with a pretraining checkpoint, and save a picture.

    python examples/complete_demo_frame.py --model outputs/vanishing-depth-demo/pretraining --density 0.01

Without --model a random-init tiny model is used (the picture then shows an untrained prediction).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vanishing_depth import (
    VanishingDepthConfig,
    VanishingDepthForPretraining,
    VanishingDepthImageProcessor,
    load_completion_model,
)
from vanishing_depth.data import decode_rgbd_row, keep_fraction, load_demo_corpus
from vanishing_depth.evaluation import side_by_side_picture
from vanishing_depth.inference import complete_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="A pretraining folder (RUN/pretraining) or a depth-head folder.")
    parser.add_argument("--density", type=float, default=0.01, help="Share of valid depth pixels kept as input.")
    parser.add_argument("--frame", type=int, default=0, help="Index in the held-out split (0-3).")
    parser.add_argument("--out", default="completed_demo_frame.png")
    args = parser.parse_args()

    if args.model:
        model = load_completion_model(args.model)  # refuses a folder without a trained decoder
    else:
        from transformers import Dinov2Config

        print("No --model: a RANDOMLY INITIALISED model, so the picture shows an untrained prediction. Train one with "
              "`make demo` and pass --model outputs/vanishing-depth-demo/pretraining.")
        rgb_config = Dinov2Config(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, image_size=112)
        model = VanishingDepthForPretraining(VanishingDepthConfig(rgb_config=rgb_config)).eval()
    processor = VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 112})

    rgb, depth_m = decode_rgbd_row(load_demo_corpus("test")[args.frame])
    generator = torch.Generator().manual_seed(0)
    sparse = keep_fraction(torch.from_numpy(depth_m)[None, None], args.density, generator=generator)[0, 0].numpy()
    completed = complete_depth(model, processor, rgb, sparse)
    valid = depth_m > 0
    rmse = float(np.sqrt(np.mean((completed[valid] - depth_m[valid]) ** 2)))
    side_by_side_picture(rgb, sparse, completed, args.out)
    print(f"{int((sparse > 0).sum())} input points, RMSE {rmse:.3f} m against the full map; picture: {args.out}")


if __name__ == "__main__":
    main()
