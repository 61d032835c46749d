"""Forward cost of the Vanishing Depth encoder against its floor, two plain passes of the RGB family's own model.

Prints, measured in one run and interleaved so machine noise hits both sides alike:
  ratio = time(one VanishingDepthModel forward) / time(two plain forwards)   (ViT-S shape, 224 px, batch 8, CPU)
plus the share of the depth patch embedding and the PDE. Goal: ratio <= 1.05 for DINOv2; measured for the others.
`--family` picks the RGB family: dinov2 (patch 14), dinov3_vit (patch 16, RoPE, 4 registers) or siglip (patch 16).
On a GPU (detected, DINOv2 only): images/s and model FLOP utilisation for ViT-B/14 at 518 px in bf16, eager and
compiled.

    python benchmarks/bench_forward.py [--family dinov2] [--repeats 5] [--batch 8] [--size 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModel, Dinov2Config, Dinov2Model, DINOv3ViTConfig, SiglipVisionConfig

from vanishing_depth import VanishingDepthConfig, VanishingDepthModel, positional_depth_encoding, stream_adapter
from vanishing_depth.configuration_vanishing_depth import VIT_SHAPES

VIT_SIZES = VIT_SHAPES


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def build(size: str, image_size: int, device: str, dtype=torch.float32):
    rgb_config = Dinov2Config(image_size=image_size, patch_size=14, **VIT_SIZES[size])
    torch.manual_seed(0)
    plain = Dinov2Model(rgb_config).eval().to(device, dtype)
    model = VanishingDepthModel(VanishingDepthConfig(rgb_config=rgb_config)).eval().to(device, dtype)
    return plain, model


def family_config(family: str, image_size: int):
    """A ViT-S-shaped RGB config of `family` (hidden 384, 12 blocks, 6 heads)."""
    small = dict(VIT_SIZES["small"], intermediate_size=1536)
    if family == "dinov2":
        return Dinov2Config(image_size=518, patch_size=14, **VIT_SIZES["small"])
    if family == "dinov3_vit":
        return DINOv3ViTConfig(image_size=image_size, patch_size=16, num_register_tokens=4, **small)
    if family == "siglip":  # the attention-pooling head is not part of the encoder's forward
        return SiglipVisionConfig(image_size=image_size, patch_size=16, vision_use_head=False, **small)
    raise ValueError(f"`--family` must be dinov2, dinov3_vit or siglip, got {family!r}.")


def vit_forward_flops(config: Dinov2Config, batch: int, height: int, width: int, in_channels: int) -> float:
    """Multiply-adds x 2 of one ViT forward (linear layers + attention matmuls + patch embedding)."""
    tokens = (height // 14) * (width // 14) + 1
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * 4 * hidden) + 2 * 2 * tokens * tokens * hidden
    patch = 2 * (tokens - 1) * in_channels * 14 * 14 * hidden
    return batch * (layers * per_layer + patch)


def cpu_benchmark(args) -> None:
    torch.set_num_threads(args.threads)
    rgb_config = family_config(args.family, args.size)
    torch.manual_seed(0)
    plain = AutoModel.from_config(rgb_config).eval()
    model = VanishingDepthModel(VanishingDepthConfig(rgb_config=rgb_config)).eval()
    patch = model.config.patch_size
    generator = torch.Generator().manual_seed(0)
    rgb = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    depth = 0.5 + 8 * torch.rand(args.batch, 1, args.size, args.size, generator=generator)
    depth[torch.rand(depth.shape, generator=generator) < 0.3] = 0

    with torch.inference_mode():
        model(pixel_values=rgb, depth_values=depth)
        plain(pixel_values=rgb)  # warm-up
        ours, floor = [], []
        for _ in range(args.repeats):  # interleave so drift and neighbours' load hit both sides
            ours += timed(lambda: model(pixel_values=rgb, depth_values=depth), 1)
            floor += timed(lambda: (plain(pixel_values=rgb), plain(pixel_values=rgb)), 1)
        encoding = positional_depth_encoding(depth)
        pde = timed(lambda: positional_depth_encoding(depth), args.repeats)
        projection = stream_adapter(model.config.rgb_config).patch_projection(model.depth_encoder)
        conv = torch.nn.Conv2d(32, 384, patch, patch)
        conv.load_state_dict(projection.state_dict())
        matmul_patch = timed(lambda: projection(encoding), args.repeats)
        conv_patch = timed(lambda: conv(encoding), args.repeats)

    med = statistics.median
    print(
        f"CPU, {args.threads} threads, {args.family} ViT-S/{patch}, {args.size} px, batch {args.batch}, "
        f"{args.repeats} interleaved runs"
    )
    print(f"  VanishingDepthModel forward       {med(ours):.3f} s")
    print(f"  2 x {type(plain).__name__} forward (floor)   {med(floor):.3f} s")
    print(f"  ratio                             {med(ours) / med(floor):.3f}   (goal <= 1.05 for dinov2)")
    print(f"  PDE (32 ch, float32)              {med(pde) * 1000:.1f} ms")
    print(
        f"  depth patch embedding: matmul {med(matmul_patch) * 1000:.1f} ms vs Conv2d {med(conv_patch) * 1000:.1f} ms "
        f"({med(conv_patch) / med(matmul_patch):.2f}x)"
    )


def gpu_benchmark(args) -> None:
    device = "cuda"
    size, batch = 518, args.gpu_batch
    plain, model = build("base", 518, device)
    rgb = torch.randn(batch, 3, size, size, device=device)
    depth = 0.5 + 8 * torch.rand(batch, 1, size, size, device=device)
    config = model.config.rgb_config
    flops = vit_forward_flops(config, batch, size, size, 3) + vit_forward_flops(config, batch, size, size, 32)
    peak = args.peak_tflops * 1e12
    print(f"GPU {torch.cuda.get_device_name()}, ViT-B/14, {size} px, batch {batch}, bf16 autocast")
    for name, runner in (("eager", model), ("compiled", torch.compile(model))):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(3):
                runner(pixel_values=rgb, depth_values=depth)
            times = timed(lambda r=runner: r(pixel_values=rgb, depth_values=depth), args.repeats)
        seconds = statistics.median(times)
        print(
            f"  {name:9s} {batch / seconds:8.1f} images/s   MFU {flops / seconds / peak * 100:5.1f} % "
            f"(of {args.peak_tflops:.0f} TFLOP/s bf16 dense)"
        )
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        times = timed(lambda: (plain(pixel_values=rgb), plain(pixel_values=rgb)), args.repeats)
    print(f"  2 x Dinov2Model eager: {batch / statistics.median(times):8.1f} images/s (pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["dinov2", "dinov3_vit", "siglip"], default="dinov2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-batch", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak of the card (H100 SXM: 989)")
    args = parser.parse_args()
    cpu_benchmark(args)
    if torch.cuda.is_available() and args.family == "dinov2":
        gpu_benchmark(args)
    else:
        print("No GPU detected: GPU images/s and MFU not measured.")


if __name__ == "__main__":
    main()
