"""Data preparation cost against the model step it feeds.

Prints, measured in one run: the per-sample CPU time of the pretraining data path for a 640x480 RGB-D frame cropped
to 224 px (decode-free: from decoded arrays, as the corpus cache holds them) = RGB-D crop + jitter + flips,
image normalisation, depth randomisation, noise and the masks; the per-sample time of the image processor
(inference path) on the same frame; and the per-sample time of one ViT-S pretraining step (forward + backward,
batch 8, 224 px) - and their ratio. Goal: data preparation <= 10 % of the model step on CPU. On a GPU (detected) the
batched depth transform is also timed on the device.

    python benchmarks/bench_processing.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from vanishing_depth import VanishingDepthConfig, VanishingDepthImageProcessor
from vanishing_depth.augment import PretrainingDepthTransform, augment_rgbd_pair
from vanishing_depth.configuration_vanishing_depth import VIT_SHAPES
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining
from vanishing_depth.training.pretrain import normalize_rgb


def frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]
    depth = (1.0 + 4.0 * xx / 640 + 0.5 * np.sin(yy / 30)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0
    return rgb, depth


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rgb_np, depth_np = frame()
    rgb, depth = torch.from_numpy(rgb_np).permute(2, 0, 1), torch.from_numpy(depth_np)[None]
    transform = PretrainingDepthTransform()
    generator = torch.Generator().manual_seed(0)

    def data_batch():
        crops = [augment_rgbd_pair(rgb, depth, (224, 224), generator=generator) for _ in range(args.batch)]
        pixel_values = normalize_rgb(torch.stack([c[0] for c in crops]))
        batch = transform(torch.stack([c[1] for c in crops]), generator=generator, epoch=15.0)
        return pixel_values, batch

    processor = VanishingDepthImageProcessor(size={"shortest_edge": 224})
    pixel_values, batch = data_batch()
    data_seconds = median_time(data_batch, args.repeats) / args.batch
    processor_seconds = median_time(lambda: processor(images=rgb_np, depth=depth_np), args.repeats)

    rgb_config = dict(image_size=518, **VIT_SHAPES["small"])
    from transformers import Dinov2Config

    model = VanishingDepthForPretraining(VanishingDepthConfig(rgb_config=Dinov2Config(**rgb_config))).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        out = model(
            pixel_values=pixel_values,
            depth_values=batch["depth_values"],
            target_depth=batch["target_depth"],
            removed_mask=batch["removed_mask"],
        )
        out.loss.backward()
        optimizer.step()

    train_step()
    step_seconds = median_time(train_step, max(2, args.repeats // 2)) / args.batch
    print(f"CPU, {args.threads} threads, 640x480 frame -> 224 px crops, batch {args.batch}")
    print(f"  pretraining data path per sample      {data_seconds * 1000:7.1f} ms")
    print(f"  image processor (inference) per frame {processor_seconds * 1000:7.1f} ms")
    print(f"  ViT-S pretraining step per sample     {step_seconds * 1000:7.1f} ms")
    print(f"  ratio data / model step               {data_seconds / step_seconds:7.3f}   (goal <= 0.10)")
    if torch.cuda.is_available():
        depth_gpu = batch["target_depth"].cuda()
        generator_gpu = torch.Generator(device="cuda").manual_seed(0)
        transform(depth_gpu, generator=generator_gpu, epoch=15.0)
        torch.cuda.synchronize()
        seconds = median_time(
            lambda: (transform(depth_gpu, generator=generator_gpu, epoch=15.0), torch.cuda.synchronize()), args.repeats
        )
        print(
            f"  GPU batched depth transform per sample {seconds / args.batch * 1000:6.2f} ms ({torch.cuda.get_device_name()})"
        )
    else:
        print("No GPU detected: the batched GPU depth path was not measured.")


if __name__ == "__main__":
    main()
