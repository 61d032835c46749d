"""What the `depth-completion` pipeline costs on top of the model it runs.

Prints, measured in one run: the time of `pipeline("depth-completion")` on one 640x480 RGB-D frame (ViT-S/14
completion model, 224 px short side, CPU) and the time of the bare model forward on the already-processed tensors,
and their ratio (goal: <= 1.25, i.e. pre- and post-processing cost no more than a quarter of the model); the split of
the overhead into pre-processing, post-processing and the picture; and images/s of the pipeline at batch 8 against the
bare batched forward. The model is randomly initialised (no weights are reachable here): the cost does not depend on
the weights' values.

    python benchmarks/bench_pipeline.py [--repeats 5] [--threads 2] [--model pretraining|depth_head]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from bench_processing import frame, median_time  # the same 640x480 frame and timer as the processing benchmark
from transformers import Dinov2Config, pipeline

import vanishing_depth  # noqa: F401  (registers the depth-completion task)
from vanishing_depth import (
    VanishingDepthConfig,
    VanishingDepthForDepthEstimation,
    VanishingDepthForPretraining,
    VanishingDepthImageProcessor,
    colorize_depth,
)
from vanishing_depth.configuration_vanishing_depth import VIT_SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", choices=["pretraining", "depth_head"], default="pretraining")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rgb_config = Dinov2Config(image_size=518, **VIT_SHAPES["small"])
    config = VanishingDepthConfig(rgb_config=rgb_config)
    model_class = VanishingDepthForPretraining if args.model == "pretraining" else VanishingDepthForDepthEstimation
    folder = tempfile.mkdtemp(prefix="bench-pipeline-")
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    VanishingDepthImageProcessor.from_model_config(config, size={"shortest_edge": 224}).save_pretrained(folder)

    complete = pipeline("depth-completion", model=folder)
    model, processor = complete.model, complete.image_processor
    rgb, depth = frame()
    inputs = processor(images=rgb, depth=depth, return_tensors="pt")
    print(
        f"model: {type(model).__name__} (ViT-S/14), input {tuple(inputs['pixel_values'].shape)}, {args.threads} threads"
    )

    def bare_forward(pixel_values, depth_values):
        with torch.inference_mode():
            return model(pixel_values=pixel_values, depth_values=depth_values)

    def preprocess():
        return processor(images=rgb, depth=depth, return_tensors="pt")

    outputs = bare_forward(inputs["pixel_values"], inputs["depth_values"])
    predicted = (
        outputs.predicted_depth[0][:, 0] if isinstance(outputs.predicted_depth, tuple) else outputs.predicted_depth
    )

    def postprocess():
        return processor.post_process_depth_estimation(
            {"predicted_depth": predicted}, target_sizes=[(480, 640)], resized_sizes=inputs["resized_sizes"]
        )

    completed = postprocess()[0]["predicted_depth"]

    # Warm-up, then interleaved repeats so that load from elsewhere hits both sides alike.
    complete(rgb, depth=depth)
    bare_forward(inputs["pixel_values"], inputs["depth_values"])
    pipeline_times, forward_times = [], []
    for _ in range(args.repeats):
        pipeline_times.append(median_time(lambda: complete(rgb, depth=depth), 1))
        forward_times.append(median_time(lambda: bare_forward(inputs["pixel_values"], inputs["depth_values"]), 1))
    t_pipeline, t_forward = statistics.median(pipeline_times), statistics.median(forward_times)
    t_pre = median_time(preprocess, args.repeats)
    t_post = median_time(postprocess, args.repeats)
    t_picture = median_time(lambda: colorize_depth(completed, config.max_depth), args.repeats)

    print("\none 640x480 frame")
    print(f"  depth-completion pipeline        {t_pipeline * 1000:8.1f} ms")
    print(f"  bare model forward               {t_forward * 1000:8.1f} ms")
    print(f"  ratio pipeline / forward         {t_pipeline / t_forward:8.3f}   (goal <= 1.25)")
    print(f"  of which pre-processing          {t_pre * 1000:8.1f} ms")
    print(f"  of which post-processing         {t_post * 1000:8.1f} ms")
    print(f"  of which the picture with legend {t_picture * 1000:8.1f} ms")

    frames = [{"image": frame(seed)[0], "depth": frame(seed)[1]} for seed in range(args.batch)]
    batch_inputs = processor(
        images=[f["image"] for f in frames], depth=[f["depth"] for f in frames], return_tensors="pt"
    )
    complete(frames, batch_size=args.batch)
    t_batch = median_time(lambda: complete(frames, batch_size=args.batch), max(1, args.repeats // 2))
    t_batch_forward = median_time(
        lambda: bare_forward(batch_inputs["pixel_values"], batch_inputs["depth_values"]), max(1, args.repeats // 2)
    )
    print(f"\nbatch {args.batch}")
    print(f"  depth-completion pipeline        {args.batch / t_batch:8.2f} images/s")
    print(f"  bare model forward               {args.batch / t_batch_forward:8.2f} images/s")
    print(f"  ratio pipeline / forward         {t_batch / t_batch_forward:8.3f}")


if __name__ == "__main__":
    main()
