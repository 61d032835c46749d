"""Pretraining step cost against a plain DINOv2 fine-tuning step, data-wait share, and peak memory.

Prints, measured in one run:
  ratio = time(one VanishingDepthForPretraining step) / time(one Dinov2Model fine-tuning step, all weights trainable)
          (same size, batch and resolution; ViT-S/14, 224 px, batch 8 on CPU);
  the FLOP ratio of the same two steps (forward + backward, counted by torch.utils.flop_counter.FlopCounterMode:
          matmuls, convolutions and attention; the optimizer's element-wise updates are not counted);
  time/FLOP quotient = time ratio / FLOP ratio (paper decoder widths), on a line of its own: how much slower than the
          plain ViT's arithmetic the pretraining step's arithmetic runs (1 = as efficiently). Goal <= 1.15.
  the share of a real pretraining loop's step time spent waiting for data (the demo corpus, tiny model);
  peak memory (RSS on CPU, allocator peak on GPU) of the pretraining step with and without gradient checkpointing.
On a GPU (detected): images/s and model FLOP utilisation for ViT-B at 224 px in bf16.

    python benchmarks/bench_pretrain.py [--repeats 3] [--threads 2] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import Dinov2Config, Dinov2Model

from vanishing_depth import VanishingDepthConfig
from vanishing_depth.configuration_vanishing_depth import VIT_SHAPES
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining

SIZES = VIT_SHAPES


def inputs(batch: int, size: int, device: str):
    generator = torch.Generator().manual_seed(0)
    rgb = torch.randn(batch, 3, size, size, generator=generator)
    target = 0.5 + 8 * torch.rand(batch, 1, size, size, generator=generator)
    removed = torch.rand(batch, 1, size, size, generator=generator) < 0.5
    depth = torch.where(removed, 0.0, target)
    return rgb.to(device), depth.to(device), target.to(device), removed.to(device)


def step_time(step, repeats: int, device: str) -> float:
    step()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_flops(step) -> int:
    """FLOPs of one call of `step` (forward and backward; FlopCounterMode counts each multiply-add as 2)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def make_steps(
    size_name: str,
    batch: int,
    image: int,
    device: str,
    checkpointing: bool = False,
    autocast=None,
    decoder_channels=None,
):
    rgb_config = Dinov2Config(image_size=518, patch_size=14, **SIZES[size_name])
    torch.manual_seed(0)
    config = VanishingDepthConfig(rgb_config=rgb_config, decoder_channels=decoder_channels)
    ours = VanishingDepthForPretraining(config).to(device).train()
    if checkpointing:
        ours.gradient_checkpointing_enable()
    plain = Dinov2Model(rgb_config).to(device).train()
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-5)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-5)
    rgb, depth, target, removed = inputs(batch, image, device)
    context = (
        (lambda: torch.autocast(device, dtype=autocast))
        if autocast
        else (lambda: torch.autocast(device, enabled=False))
    )

    def ours_step():
        opt_ours.zero_grad(set_to_none=True)
        with context():
            loss = ours(pixel_values=rgb, depth_values=depth, target_depth=target, removed_mask=removed).loss
        loss.backward()
        opt_ours.step()

    def plain_step():
        opt_plain.zero_grad(set_to_none=True)
        with context():
            loss = plain(pixel_values=rgb).last_hidden_state.float().square().mean()
        loss.backward()
        opt_plain.step()

    return ours_step, plain_step


def peak_rss_of(checkpointing: bool, threads: int) -> float:
    """Peak RSS (GiB) of a fresh process running two pretraining steps (RSS peaks are per process)."""
    folder = str(Path(__file__).parent)
    code = (
        f"import resource, torch, sys; sys.path.insert(0, {folder!r}); torch.set_num_threads({threads});"
        f"from bench_pretrain import make_steps; s, _ = make_steps('small', 8, 224, 'cpu', checkpointing={checkpointing});"
        "s(); s(); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 2**20


def data_wait_share(threads: int) -> float:
    """Run the real loop (tiny model, demo corpus) for 40 steps and read the logged data-wait share."""
    from vanishing_depth.training.pretrain import PretrainingArguments, pretrain

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        args = PretrainingArguments(
            output_dir=folder,
            model_shape="tiny",
            image_size=112,
            max_steps=40,
            logging_steps=40,
            checkpointing_steps=40,
            report_to="none",
            write_model_card=False,
        )
        pretrain(args)
        records = [json.loads(line) for line in (Path(folder) / "training_log.jsonl").read_text().splitlines()]
    return [r for r in records if "data_wait_share" in r][-1]["data_wait_share"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="CPU batch of the time and FLOP ratios (default 8)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak of the GPU (H100 SXM: 989)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = args.batch
    ours_step, plain_step = make_steps("small", batch, 224, "cpu")
    ours_flops, plain_flops = step_flops(ours_step), step_flops(plain_step)
    ours, plain = [], []
    for _ in range(args.repeats):  # interleaved
        ours.append(step_time(ours_step, 1, "cpu"))
        plain.append(step_time(plain_step, 1, "cpu"))
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    time_ratio, flop_ratio = ours_s / plain_s, ours_flops / plain_flops
    print(f"CPU, {args.threads} threads, ViT-S/14, 224 px, batch {batch}, median of {args.repeats}")
    print(f"  VanishingDepthForPretraining step   {ours_s:.2f} s   {ours_flops / 1e9:.1f} GFLOP")
    print(f"  Dinov2Model full fine-tuning step   {plain_s:.2f} s   {plain_flops / 1e9:.1f} GFLOP")
    print(f"  time ratio                          {time_ratio:.3f}")
    print(f"  FLOP ratio                          {flop_ratio:.3f}")
    print(f"time/FLOP quotient {time_ratio / flop_ratio:.3f}")
    light_step, _ = make_steps("small", batch, 224, "cpu", decoder_channels=[128, 64, 32, 16])
    light_flops = step_flops(light_step)
    light_s = statistics.median(step_time(light_step, 1, "cpu") for _ in range(args.repeats))
    print(
        f"  decoder_channels=[128,64,32,16] (half the paper's widths): time ratio {light_s / plain_s:.3f}, "
        f"FLOP ratio {light_flops / plain_flops:.3f}, quotient {light_s / plain_s / (light_flops / plain_flops):.3f}"
    )
    print(
        f"  data-wait share of the real loop    {data_wait_share(args.threads) * 100:.1f} % (tiny model, demo corpus)"
    )
    print(f"  peak RSS, no checkpointing          {peak_rss_of(False, args.threads):.2f} GiB")
    print(f"  peak RSS, gradient checkpointing    {peak_rss_of(True, args.threads):.2f} GiB")
    if torch.cuda.is_available():
        batch = 64
        step, _ = make_steps("base", batch, 224, "cuda", autocast=torch.bfloat16)
        seconds = step_time(step, 5, "cuda")
        tokens, hidden, layers = 257, 768, 12
        per_layer = 2 * tokens * 12 * hidden * hidden + 4 * tokens * tokens * hidden
        forward = batch * layers * per_layer
        # RGB forward + depth forward and backward (x3) ; the decoder is not counted (conservative).
        flops = forward + 3 * forward
        print(
            f"GPU {torch.cuda.get_device_name()}, ViT-B, 224 px, batch {batch}, bf16: {batch / seconds:.1f} images/s, "
            f"MFU {flops / seconds / (args.peak_tflops * 1e12) * 100:.1f} %"
        )
        for flag in (False, True):
            torch.cuda.reset_peak_memory_stats()
            step, _ = make_steps("base", batch, 224, "cuda", checkpointing=flag, autocast=torch.bfloat16)
            step()
            print(f"  peak GPU memory, checkpointing={flag}: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    else:
        print("No GPU detected: GPU images/s and MFU not measured.")


if __name__ == "__main__":
    main()
