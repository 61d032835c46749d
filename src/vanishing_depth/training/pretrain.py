"""Self-supervised pretraining of a Vanishing Depth adapter with Accelerate (METHOD §2).

Runs as ``python -m vanishing_depth.training.pretrain``, as ``accelerate launch -m vanishing_depth.training.pretrain``
and as ``vanishing-depth pretrain``; arguments are the `PretrainingArguments` dataclass, parsed with
`HfArgumentParser` from flags or from a YAML file (``--config file.yaml``; flags override the file).

Data order is a pure function of (seed, step, process): batch ``s`` of process ``r`` is drawn with a generator
seeded by (seed, s, r): pick a corpus with equal probability (METHOD §2.8), then a uniform frame of this process's
shard (``split_dataset_by_node``), then the crops, jitter, depth randomisation and masks. A resumed run therefore
continues exactly where it stopped (the data order, the random streams and the OneCycle schedule), and its losses match
an uninterrupted run step for step. Checkpoints are Accelerate ``save_state`` folders under
``output_dir/checkpoints/step-N`` with ``checkpoints/latest`` pointing at the newest; a run killed mid-step loses at
most the steps since its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

VALIDATION_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)

# Random-init RGB backbones of real DINOv2 shapes, for runs without reachable weights (tests, the demo).
MODEL_SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}


@dataclass
class PretrainingArguments:
    """Every knob of a pretraining run; defaults follow METHOD §2 (scaled-down lengths are flags)."""

    output_dir: str = field(
        default="runs/vanishing-depth", metadata={"help": "Where checkpoints, logs and the final model go."}
    )
    rgb_backbone: str | None = field(
        default=None,
        metadata={
            "help": "DINOv2 to start from: Hub id (e.g. facebook/dinov2-small), local folder or .safetensors/.pth "
            "file. Without it a random-init model of --model-shape is built (no weights needed)."
        },
    )
    allow_pickle: bool = field(default=False, metadata={"help": "Allow loading a pickled .pth RGB checkpoint."})
    model_shape: str = field(
        default="small", metadata={"help": f"Random-init shape when no --rgb-backbone: {list(MODEL_SHAPES)}."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "JSON of VanishingDepthConfig fields, e.g. '{\"pde_channels\": 16}'."}
    )
    dataset: list[str] = field(
        default_factory=lambda: ["redwood_demo"],
        metadata={
            "help": "Corpora in the RGB-D corpus schema (folder, parquet, Hub id, 'redwood_demo'), mixed with "
            "equal probability."
        },
    )
    dataset_split: str = field(default="train")
    validation_dataset: str | None = field(default=None, metadata={"help": "Held-out corpus for §2.9 validation."})
    validation_split: str = field(default="test")
    streaming: bool = field(default=False, metadata={"help": "Stream corpora too large for the disk."})
    image_size: int = field(default=224, metadata={"help": "Training crop size in pixels (multiple of 14)."})
    per_device_batch_size: int = field(default=8)
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps (the paper: 156k at batch 128)."})
    samples_per_epoch: int = field(default=200_000, metadata={"help": "Samples per 'epoch' of the masking curriculum."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak lr of the depth ViT and fusion blocks."})
    decoder_learning_rate: float = field(default=1e-4, metadata={"help": "Peak lr of the decoder and its heads."})
    weight_decay: float = field(default=0.0)
    pct_start: float = field(default=0.2, metadata={"help": "OneCycleLR warm-up share."})
    div_factor: float = field(default=5.0)
    final_div_factor: float = field(default=100.0)
    gradient_accumulation_steps: int = field(default=1)
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping; 0 disables it."})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16."})
    gradient_checkpointing: bool = field(default=False)
    mask_mean_start: float = field(default=0.3)
    mask_mean_end: float = field(default=0.5)
    mask_std_start: float = field(default=0.1)
    mask_std_end: float = field(default=0.3)
    mask_warmup_epochs: float = field(default=10.0)
    mask_curriculum_epochs: float = field(default=10.0)
    mask_min_fraction: float = field(default=0.10, metadata={"help": "Removed share is clipped to at least this."})
    mask_max_fraction: float = field(default=0.99, metadata={"help": "... and at most this (METHOD §2.4: 0.99)."})
    crop_scale_min: float = field(default=0.08, metadata={"help": "RandomResizedCrop minimum area share."})
    min_valid_pixels: int = field(default=100)
    seed: int = field(default=0)
    checkpointing_steps: int = field(default=500)
    checkpoints_total_limit: int = field(default=3)
    resume: str | None = field(default=None, metadata={"help": "A checkpoint folder (e.g. OUT/checkpoints/latest)."})
    validation_steps: int = field(default=500)
    validation_frames: int = field(default=8, metadata={"help": "Held-out frames used for validation."})
    logging_steps: int = field(default=10)
    report_to: str = field(
        default="auto", metadata={"help": "Accelerate tracker: auto (tensorboard if installed), none, ..."}
    )
    dataloader_num_workers: int = field(default=0)
    write_model_card: bool = field(default=True)

    def __post_init__(self) -> None:
        if self.image_size % 14:
            raise ValueError(f"`image_size` must be a multiple of 14 (the patch size), got {self.image_size}.")
        if self.model_shape not in MODEL_SHAPES:
            raise ValueError(f"`model_shape` must be one of {list(MODEL_SHAPES)}, got {self.model_shape!r}.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"`mixed_precision` must be no, fp16 or bf16, got {self.mixed_precision!r}.")
        for name in ("per_device_batch_size", "max_steps", "gradient_accumulation_steps", "checkpointing_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]


def parse_arguments(argv: list[str] | None = None) -> PretrainingArguments:
    """Flags, or ``--config file.yaml`` (flags given next to it override the file's values)."""
    import yaml
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(PretrainingArguments)
    if "--config" in argv:
        position = argv.index("--config")
        config_path = Path(argv[position + 1])
        del argv[position : position + 2]
        values = yaml.safe_load(config_path.read_text()) or {}
        (defaults,) = parser.parse_dict(values)
        flags = parser.parse_args_into_dataclasses(argv)[0]
        given = {a.lstrip("-").replace("-", "_").split("=")[0] for a in argv if a.startswith("--")}
        merged = {f.name: getattr(flags if f.name in given else defaults, f.name) for f in dataclasses.fields(flags)}
        return PretrainingArguments(**merged)
    return parser.parse_args_into_dataclasses(argv)[0]


# ----------------------------------------------------------------------------------------------------------------------
# Data: a deterministic batch per (step, process)
# ----------------------------------------------------------------------------------------------------------------------
def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, step, rank); 2**61-1 is prime, so the mix never collides in practice.
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**61 - 1))


def normalize_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> ImageNet-normalised, with the image processor's constants."""
    from ..image_processing_vanishing_depth import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (rgb - mean) / std


class PretrainingBatchAssembler:
    """What the map-style and the streaming data paths share: one frame's crop and jitter, and a batch's depth
    randomisation and masks, all drawn from the step's generator; plus the epoch of the masking curriculum."""

    def __init__(self, args: PretrainingArguments, world_size: int) -> None:
        from ..processing.augmentation import MaskingCurriculum, PretrainingDepthTransform, VanishingDepthMasker

        self.args = args
        curriculum = MaskingCurriculum(
            mean_start=args.mask_mean_start,
            mean_end=args.mask_mean_end,
            std_start=args.mask_std_start,
            std_end=args.mask_std_end,
            warmup_epochs=args.mask_warmup_epochs,
            ramp_epochs=args.mask_curriculum_epochs,
        )
        masker = VanishingDepthMasker(min_fraction=args.mask_min_fraction, max_fraction=args.mask_max_fraction)
        self.depth_transform = PretrainingDepthTransform(curriculum=curriculum, masker=masker)
        self.samples_per_step = args.per_device_batch_size * world_size

    def epoch_at(self, step: int) -> float:
        return step * self.samples_per_step / self.args.samples_per_epoch

    def augment(self, sample, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Crop, flips, jitter of one decoded frame -> (RGB (3, s, s) in [0, 1], depth (1, s, s) metres), or None
        when the crop holds fewer than `min_valid_pixels` measurements (METHOD §2.1 draws again)."""
        from ..processing.rgb_augmentation import augment_rgbd_pair

        args = self.args
        rgb = sample.rgb if sample.rgb.flags.writeable else sample.rgb.copy()  # torch warns on read-only arrays
        rgb = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        depth = torch.from_numpy(np.ascontiguousarray(sample.depth_m))[None]
        size = (args.image_size, args.image_size)
        rgb, depth = augment_rgbd_pair(rgb, depth, size, generator=generator, crop_scale=(args.crop_scale_min, 1.0))
        return (rgb, depth) if int((depth > 0).sum()) >= args.min_valid_pixels else None

    def batch(self, step: int, generator: torch.Generator, crops: list, skip_stats) -> dict[str, torch.Tensor]:
        """Stack the crops and apply the depth randomisation, noise and masks of the step's curriculum epoch."""
        depths = torch.stack([depth for _, depth in crops])
        transformed = self.depth_transform(depths, generator=generator, epoch=self.epoch_at(step))
        return {
            "pixel_values": normalize_rgb(torch.stack([rgb for rgb, _ in crops])),
            "depth_values": transformed["depth_values"],
            "target_depth": transformed["target_depth"],
            "removed_mask": transformed["removed_mask"],
            "removed_fraction": transformed["removed_fraction"],
            "skipped": torch.tensor(
                [skip_stats.skipped_too_few_valid, skip_stats.skipped_unreadable], dtype=torch.int64
            ),
        }


class PretrainingBatches(torch.utils.data.Dataset):
    """Map-style view where item ``s`` is the whole batch of optimizer micro-step ``s`` for this process.

    Use with a DataLoader over ``range(start, total)`` (``batch_size=None``) so workers prefetch batches in order.
    Frames with fewer than `min_valid_pixels` valid depth pixels or unreadable rows are skipped, counted and
    replaced by another draw.
    """

    def __init__(self, args: PretrainingArguments, corpora: list, rank: int, world_size: int, total: int) -> None:
        from .corpora import RGBDSampleDecoder

        self.args, self.rank, self.total = args, rank, total
        self.corpora = corpora
        self.decoder = RGBDSampleDecoder(min_valid_pixels=args.min_valid_pixels)
        self.assembler = PretrainingBatchAssembler(args, world_size)
        # Small corpora are decoded once and kept: the demo's 22 frames are re-drawn thousands of times.
        self._cache: dict[tuple[int, int], Any] = {}
        self._cache_limit = 4096

    def __len__(self) -> int:
        return self.total

    def epoch_at(self, step: int) -> float:
        return self.assembler.epoch_at(step)

    def _sample(self, corpus_index: int, row_index: int):
        key = (corpus_index, row_index)
        if key in self._cache:
            return self._cache[key]
        sample = self.decoder.decode(self.corpora[corpus_index][row_index], index=row_index)
        if sample is not None and not sample.rgb.flags.writeable:
            sample.rgb = sample.rgb.copy()  # copy once here rather than on every later draw
        if len(self._cache) < self._cache_limit:
            self._cache[key] = sample
        return sample

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        args = self.args
        generator = _step_generator(args.seed, step, self.rank)
        crops = []
        attempts = 0
        while len(crops) < args.per_device_batch_size:
            attempts += 1
            if attempts > 50 * args.per_device_batch_size:
                raise RuntimeError(
                    f"step {step}: could not draw {args.per_device_batch_size} usable frames in {attempts} tries; "
                    f"skip counts so far: {self.decoder.stats.as_dict()}"
                )
            corpus_index = int(torch.randint(len(self.corpora), (), generator=generator))
            row_index = int(torch.randint(len(self.corpora[corpus_index]), (), generator=generator))
            sample = self._sample(corpus_index, row_index)
            if sample is None:  # skipped and counted by the decoder
                continue
            crop = self.assembler.augment(sample, generator)
            if crop is not None:
                crops.append(crop)
        return self.assembler.batch(step, generator, crops, self.decoder.stats)


def load_map_style_corpora(args: PretrainingArguments, rank: int, world_size: int) -> list:
    """Each corpus, undecoded, restricted to this process's shard (``split_dataset_by_node``)."""
    from datasets import Image as ImageFeature
    from datasets.distributed import split_dataset_by_node

    from .corpora import load_corpus

    corpora = []
    for name in args.dataset:
        corpus = load_corpus(name, split=args.dataset_split)
        corpus = corpus.cast_column("image", ImageFeature(decode=False)).cast_column(
            "depth", ImageFeature(decode=False)
        )
        if world_size > 1:
            corpus = split_dataset_by_node(corpus, rank=rank, world_size=world_size)
        if len(corpus) == 0:
            raise ValueError(f"corpus {name!r} has no rows for process {rank} of {world_size}.")
        corpora.append(corpus)
    return corpora


class StreamingPretrainingBatches(torch.utils.data.IterableDataset):
    """Streaming corpora: the equal-probability mix of `prepare_pretraining_corpus`, sharded per process. Resuming
    skips the rows already consumed (exact, but it re-reads them)."""

    def __init__(
        self, args: PretrainingArguments, rank: int, world_size: int, start_step: int, total: int, skip_samples: int = 0
    ) -> None:
        from .corpora import prepare_pretraining_corpus

        self.args, self.rank, self.start_step, self.total = args, rank, start_step, total
        self.skip_samples = skip_samples  # samples this process had consumed at the checkpoint (rejected crops too)
        self.corpus = prepare_pretraining_corpus(
            args.dataset,
            split=args.dataset_split,
            streaming=True,
            seed=args.seed,
            rank=rank,
            world_size=world_size,
            min_valid_pixels=args.min_valid_pixels,
        )
        self.assembler = PretrainingBatchAssembler(args, world_size)

    def __iter__(self):
        args = self.args
        samples = iter(self._endless())
        consumed = 0
        for _ in range(self.skip_samples):
            next(samples)
            consumed += 1
        for step in range(self.start_step, self.total):
            generator = _step_generator(args.seed, step, self.rank)
            crops = []
            while len(crops) < args.per_device_batch_size:
                crop = self.assembler.augment(next(samples), generator)
                consumed += 1
                if crop is not None:
                    crops.append(crop)
            batch = self.assembler.batch(step, generator, crops, self.corpus.decoder.stats)
            batch["stream_position"] = torch.tensor(consumed, dtype=torch.int64)
            yield batch

    def epoch_at(self, step: int) -> float:
        return self.assembler.epoch_at(step)

    def _endless(self):
        epoch = 0
        while True:
            self.corpus.set_epoch(epoch)
            yield from self.corpus
            epoch += 1


# ----------------------------------------------------------------------------------------------------------------------
# Model, optimiser, schedule
# ----------------------------------------------------------------------------------------------------------------------
def build_model(args: PretrainingArguments):
    from transformers import Dinov2Config

    from ..configuration_vanishing_depth import VanishingDepthConfig
    from ..modeling_vanishing_depth import VanishingDepthForPretraining, VanishingDepthModel

    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if args.rgb_backbone:
        encoder = VanishingDepthModel.from_rgb_backbone(
            args.rgb_backbone, allow_pickle=args.allow_pickle, image_size=overrides.pop("image_size", None), **overrides
        )
        model = VanishingDepthForPretraining(encoder.config)
        model.vanishing_depth.load_state_dict(encoder.state_dict())
        if encoder.config.freeze_rgb_encoder:
            model.vanishing_depth.freeze_rgb_encoder()
    else:
        torch.manual_seed(args.seed)
        rgb_overrides = overrides.pop("rgb_config", {})
        rgb_config = Dinov2Config(
            image_size=args.image_size, patch_size=14, **{**MODEL_SHAPES[args.model_shape], **rgb_overrides}
        )
        config = VanishingDepthConfig(rgb_config=rgb_config, **overrides)
        model = VanishingDepthForPretraining(config)
        logger.warning(
            "No --rgb-backbone: the RGB stream is a RANDOM-INIT DINOv2 (%s shape). Fine for tests and the demo; a real "
            "run starts from pretrained weights (e.g. --rgb-backbone facebook/dinov2-small).",
            args.model_shape,
        )
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def build_optimizer(model, args: PretrainingArguments):
    """AdamW over two groups (METHOD §2.7): depth ViT + fusion, decoder + heads. The frozen RGB stream is left out."""
    encoder_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("decoder.")]
    decoder_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("decoder.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": args.learning_rate, "name": "depth_encoder_and_fusion"},
            {"params": decoder_params, "lr": args.decoder_learning_rate, "name": "decoder"},
        ],
        weight_decay=args.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[args.learning_rate, args.decoder_learning_rate],
        total_steps=args.max_steps,
        pct_start=args.pct_start,
        div_factor=args.div_factor,
        final_div_factor=args.final_div_factor,
    )
    return optimizer, scheduler


# ----------------------------------------------------------------------------------------------------------------------
# Validation (METHOD §2.9) with masks fixed on disk
# ----------------------------------------------------------------------------------------------------------------------
def prepare_validation(args: PretrainingArguments, output_dir: Path) -> dict[str, torch.Tensor] | None:
    """Held-out frames centre-resized to the training size and their removal masks at fixed fractions, created once
    (seeded) and stored in ``validation_set.safetensors`` so every evaluation and every resumed run use the same."""
    from safetensors.torch import load_file, save_file

    if not args.validation_dataset:
        return None
    path = output_dir / "validation_set.safetensors"
    if path.is_file():
        return load_file(str(path))
    from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
    from ..processing.augmentation import VanishingDepthMasker
    from .corpora import RGBDSampleDecoder, load_corpus

    corpus = load_corpus(args.validation_dataset, split=args.validation_split)
    decoder = RGBDSampleDecoder(min_valid_pixels=args.min_valid_pixels)
    processor = VanishingDepthImageProcessor(size={"height": args.image_size, "width": args.image_size})
    rgbs, depths = [], []
    for index in range(min(len(corpus), args.validation_frames)):
        sample = decoder.decode(corpus[index], index=index)
        if sample is None:
            continue
        inputs = processor(images=sample.rgb, depth=sample.depth_m)
        rgbs.append(inputs["pixel_values"][0])
        depths.append(inputs["depth_values"][0])
    if not rgbs:
        raise ValueError(f"no usable validation frame in {args.validation_dataset!r}: {decoder.stats.as_dict()}")
    rgb, depth = torch.stack(rgbs), torch.stack(depths)
    masker = VanishingDepthMasker(p_pixel=0.5, p_perlin=0.5)  # validation mix: i.i.d. 50 %, Perlin 25 %, blocky 25 %
    generator = torch.Generator().manual_seed(12345)
    tensors = {"pixel_values": rgb.contiguous(), "depth": depth.contiguous()}
    for fraction in VALIDATION_FRACTIONS:
        _, removed, _ = masker(depth, fraction=fraction, generator=generator)
        tensors[f"removed_{fraction:.1f}"] = removed.contiguous()
    save_file(tensors, str(path))
    return tensors


@torch.no_grad()
def validate(model, validation: dict[str, torch.Tensor], batch_size: int, device) -> dict[str, float]:
    """SI error and MAE at removed fractions 0.1 ... 0.9, and their AUC over density (METHOD §2.9)."""
    from .metrics import PretrainingValidationMetrics

    was_training = model.training
    model.eval()
    densities = sorted(round(1 - f, 1) for f in VALIDATION_FRACTIONS)
    metrics = PretrainingValidationMetrics(densities=densities)
    rgb, depth = validation["pixel_values"], validation["depth"]
    for fraction in VALIDATION_FRACTIONS:
        removed = validation[f"removed_{fraction:.1f}"]
        for start in range(0, rgb.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            inputs = torch.where(removed[chunk], 0.0, depth[chunk])
            prediction = model(pixel_values=rgb[chunk].to(device), depth_values=inputs.to(device)).predicted_depth[0]
            metrics.update(prediction.float().cpu(), depth[chunk], density=round(1 - fraction, 1))
    model.train(was_training)
    return {f"val/{k}": float(v) for k, v in metrics.compute().items() if np.isscalar(v) or np.ndim(v) == 0}


# ----------------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------------
def _latest_link(checkpoints: Path, target: Path) -> None:
    latest = checkpoints / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    try:
        latest.symlink_to(target.name, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a pointer file
        latest.write_text(target.name)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_file():  # a pointer file written where symlinks are unavailable
        path = path.parent / path.read_text().strip()
    if not (path / "training_state.json").is_file():
        raise ValueError(f"--resume {path} is not a checkpoint folder (no training_state.json).")
    return path.resolve()


def _prune_checkpoints(checkpoints: Path, keep: int) -> None:
    steps = sorted((p for p in checkpoints.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    for old in steps[:-keep] if keep > 0 else []:
        import shutil

        shutil.rmtree(old, ignore_errors=True)


# Arguments whose change on resume breaks "continues exactly where it stopped" (data order, schedule, shapes).
_RESUME_SENSITIVE = (
    "dataset",
    "seed",
    "per_device_batch_size",
    "image_size",
    "max_steps",
    "samples_per_epoch",
    "gradient_accumulation_steps",
    "streaming",
    "learning_rate",
    "decoder_learning_rate",
)


def _warn_on_changed_arguments(saved: dict[str, Any], args: PretrainingArguments) -> None:
    current = dataclasses.asdict(args)
    changed = {k: (saved[k], current[k]) for k in _RESUME_SENSITIVE if k in saved and saved[k] != current[k]}
    if changed:
        logger.warning(
            "Resuming with arguments that differ from the checkpoint's run %s: the continuation will not match an "
            "uninterrupted run.",
            {k: f"{old!r} -> {new!r}" for k, (old, new) in changed.items()},
        )


def pretrain(args: PretrainingArguments) -> dict[str, Any]:
    """Run (or resume) pretraining; returns a summary with the loss history and the final validation metrics."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    output_dir = Path(args.output_dir)
    report_to = args.report_to
    if report_to == "auto":
        try:
            import tensorboard  # noqa: F401

            report_to = "tensorboard"
        except ImportError:
            report_to = "none"
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if report_to == "none" else report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(args.seed)
    rank, world_size = accelerator.process_index, accelerator.num_processes
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    accelerator.wait_for_everyone()

    model = build_model(args)
    optimizer, scheduler = build_optimizer(model, args)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    start_step, stream_position = 0, 0
    history: list[dict[str, float]] = []
    if args.resume:
        checkpoint = resolve_checkpoint(args.resume)
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "training_state.json").read_text())
        start_step, history = state["step"], state.get("history", [])
        _warn_on_changed_arguments(state.get("arguments", {}), args)
        stream_file = checkpoint / f"stream_position_{rank}.json"
        if stream_file.is_file():
            stream_position = json.loads(stream_file.read_text())["samples_consumed"]
        logger.info("Resumed from %s at step %d.", checkpoint, start_step)

    micro_total = args.max_steps * args.gradient_accumulation_steps
    if args.streaming:
        batches = StreamingPretrainingBatches(
            args, rank, world_size, start_step * args.gradient_accumulation_steps, micro_total, stream_position
        )
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=0)
    else:
        batches = PretrainingBatches(
            args, load_map_style_corpora(args, rank, world_size), rank, world_size, micro_total
        )
        loader = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(start_step * args.gradient_accumulation_steps, micro_total),
            num_workers=args.dataloader_num_workers,
            persistent_workers=False,
        )
    validation = prepare_validation(args, output_dir) if accelerator.is_main_process else None
    if accelerator.is_main_process and report_to != "none":
        accelerator.init_trackers(
            "vanishing-depth-pretraining", config={k: str(v) for k, v in dataclasses.asdict(args).items()}
        )

    checkpoints = output_dir / "checkpoints"
    log_path = output_dir / "training_log.jsonl"
    progress = tqdm(
        total=args.max_steps, initial=start_step, disable=not accelerator.is_main_process, desc="pretraining"
    )
    model.train()
    step, micro, data_wait, step_start = start_step, 0, 0.0, time.perf_counter()
    wait_start = time.perf_counter()
    running: list[float] = []
    data_fingerprints: list[float] = []  # per-step checksum of this process's targets: shows each rank's own data
    for batch in loader:
        data_wait += time.perf_counter() - wait_start
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        data_fingerprints.append(float(batch["target_depth"].double().sum()))
        if "stream_position" in batch:
            stream_position = int(batch["stream_position"])
        with accelerator.accumulate(model):
            outputs = model(
                pixel_values=batch["pixel_values"],
                depth_values=batch["depth_values"],
                target_depth=batch["target_depth"],
                removed_mask=batch["removed_mask"],
            )
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        running.append(float(outputs.loss.detach()))
        micro += 1
        if accelerator.sync_gradients:
            scheduler.step()
            step += 1
            loss = float(np.mean(running))
            running = []
            record = {
                "step": step,
                "loss": loss,
                "lr": scheduler.get_last_lr()[0],
                "decoder_lr": scheduler.get_last_lr()[1],
                "epoch": batches.epoch_at(step * args.gradient_accumulation_steps)
                if hasattr(batches, "epoch_at")
                else 0.0,
                "removed_fraction": float(batch["removed_fraction"].mean()),
                "skipped_too_few_valid": int(batch["skipped"][0]),
                "skipped_unreadable": int(batch["skipped"][1]),
            }
            history.append({"step": step, "loss": loss})
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}")
            if step % args.logging_steps == 0 or step == args.max_steps:
                elapsed = time.perf_counter() - step_start
                record["data_wait_share"] = data_wait / max(elapsed, 1e-9)
                if accelerator.is_main_process:
                    with log_path.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                if report_to != "none":
                    accelerator.log(record, step=step)
            if validation is not None and (step % args.validation_steps == 0 or step == args.max_steps):
                metrics = validate(
                    accelerator.unwrap_model(model), validation, args.per_device_batch_size, accelerator.device
                )
                metrics["step"] = step
                if accelerator.is_main_process:
                    with log_path.open("a") as handle:
                        handle.write(json.dumps(metrics) + "\n")
                    logger.info("validation at step %d: %s", step, {k: round(v, 4) for k, v in metrics.items()})
                if report_to != "none":
                    accelerator.log(metrics, step=step)
            if step % args.checkpointing_steps == 0 or step == args.max_steps:
                target = checkpoints / f"step-{step}"
                accelerator.save_state(str(target))
                if args.streaming:  # every process records how far it read its own stream
                    target.mkdir(parents=True, exist_ok=True)
                    (target / f"stream_position_{rank}.json").write_text(
                        json.dumps({"samples_consumed": stream_position})
                    )
                if accelerator.is_main_process:
                    (target / "training_state.json").write_text(
                        json.dumps({"step": step, "history": history, "arguments": dataclasses.asdict(args)})
                    )
                    _latest_link(checkpoints, target)
                    _prune_checkpoints(checkpoints, args.checkpoints_total_limit)
                accelerator.wait_for_everyone()
        wait_start = time.perf_counter()
    progress.close()

    summary = {"steps": step, "history": history, "world_size": world_size}
    # Every process records what it saw and the weights it ended with, so a multi-process run can be audited.
    unwrapped = accelerator.unwrap_model(model)
    weights_checksum = float(sum(p.detach().double().sum() for p in unwrapped.parameters()))
    (output_dir / f"process_{rank}_of_{world_size}.json").write_text(
        json.dumps({"rank": rank, "data_fingerprints": data_fingerprints, "weights_checksum": weights_checksum})
    )
    if validation is not None:
        summary["validation"] = validate(
            accelerator.unwrap_model(model), validation, args.per_device_batch_size, accelerator.device
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final(accelerator.unwrap_model(model), args, summary)
    if report_to != "none":
        accelerator.end_training()
    return summary


def save_final(model, args: PretrainingArguments, summary: dict[str, Any]) -> None:
    """Encoder + image processor in ``output_dir`` (AutoModel / AutoImageProcessor), the full model with its decoder
    in ``output_dir/pretraining``, a summary JSON and the model card."""
    from ..image_processing_vanishing_depth import VanishingDepthImageProcessor

    output_dir = Path(args.output_dir)
    model.save_encoder(output_dir)
    model.save_pretrained(output_dir / "pretraining")
    processor = VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": args.image_size})
    processor.save_pretrained(output_dir)
    processor.save_pretrained(output_dir / "pretraining")
    (output_dir / "pretraining_summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2)
    )
    if args.write_model_card:
        write_card(output_dir, args)


def write_card(output_dir: Path, args: PretrainingArguments) -> None:
    try:
        from ..hub_cards import build_model_card
    except ImportError:  # pragma: no cover - hub_cards ships with the package
        logger.warning("hub_cards unavailable: no model card written.")
        return
    metrics_files = [p for p in [output_dir / "eval_results.json"] if p.is_file()]
    card = build_model_card(output_dir, metrics_files=metrics_files, training_args=dataclasses.asdict(args))
    card.save(str(output_dir / "README.md"))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_arguments(argv)
    summary = pretrain(args)
    if summary["history"]:
        print(
            f"done: {summary['steps']} steps, last loss {summary['history'][-1]['loss']:.4f}, model in {args.output_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "MODEL_SHAPES",
    "PretrainingArguments",
    "PretrainingBatchAssembler",
    "PretrainingBatches",
    "build_model",
    "build_optimizer",
    "parse_arguments",
    "pretrain",
    "validate",
]
