"""Self-supervised pretraining of a Vanishing Depth adapter with Accelerate (Vanishing Depth, arXiv 2503.19947; the
authors' main.py); its choices come from a recipe (`vanishing_depth.training.recipes`: 'library' or 'official').

`pretrain(PretrainingArguments(...))` runs (or resumes) a run and returns its summary. From the shell it is
``vanishing-depth pretrain`` (``accelerate launch -m vanishing_depth.cli pretrain`` for several processes), which parses
the `PretrainingArguments` from flags or from a YAML file (``--config file.yaml``; flags override the file) and writes
the model card when the run is done (`vanishing_depth.cli.pretrain`).

Data order is a pure function of (seed, step, process): batch ``s`` of process ``r`` is drawn with a generator
seeded by (seed, s, r): pick a corpus with equal probability (as the authors' datasets/representation_dataset.py),
then uniform frames of this process's shard of that corpus (``split_dataset_by_node``) until one is usable (a skipped
row is replaced by another row of the same corpus, so bad rows never shift the equal weighting), then the crops,
jitter, depth randomisation and masks.

Output folder
-------------
A run writes into an empty (or new) ``output_dir``. A non-empty one is refused before anything is written, unless the
run continues the run stored there (``--resume OUT/checkpoints/...`` with ``--output-dir OUT``) or ``--overwrite`` is
given, which deletes everything in it first. ``--overwrite`` is refused where it would delete the checkpoint being
resumed from or a corpus being read.

Besides ``training_log.jsonl`` (one record per logging step: loss, learning rates, curriculum, row counts, data-wait
share and ``depth_share/block_B``, the share of the fused tokens after depth block B that comes from the depth stream,
`VanishingDepthFusion.depth_share`, averaged over the step's micro-batches and processes), the run draws
``training_curves.png`` (loss per step, validation AUCs over steps; redrawn at each validation and at the end) and,
with a validation set, writes ``validation_results.json`` (the last validation in the model-card metrics format).

Checkpoints (no pickle)
-----------------------
``output_dir/checkpoints/step-N`` holds only safetensors and strict JSON: ``model.safetensors`` (all weights),
``optimizer.safetensors`` (AdamW moments and step counts) + ``optimizer.json`` (param groups), ``rng_state_R.safetensors``
per process R (torch CPU/CUDA, numpy and python ``random`` states), ``stream_position_R.json`` (streaming),
``scaler.json`` (fp16) and ``training_state.json`` (written last: run id, step, loss history, arguments, row counts).
``checkpoints/latest`` points at the newest. A checkpoint is written to ``.step-N.partial`` and renamed when complete,
so a kill mid-save leaves no half checkpoint under a ``step-N`` name. Pruning (``checkpoints_total_limit``) deletes only
older checkpoints of the same run id. ``--resume`` refuses a checkpoint holding pickle files (``.pkl``, ``.bin``,
``.pt``, ...; e.g. one written by Accelerate's ``save_state``) unless ``--allow-pickle`` is given, and then reads the
files it needs with ``torch.load(weights_only=True)`` only; other pickle files are never read.

Resume
------
With unchanged arguments a resumed run continues exactly: the same data, random streams, schedule and optimizer
state, so its losses and weights match an uninterrupted run bit for bit. Changed arguments take effect from the
resumed step on: the OneCycle schedule is rebuilt for the new ``max_steps`` / learning rates / ``pct_start`` /
``div_factor`` / ``final_div_factor`` and evaluated at the resumed step (so a longer ``max_steps`` extends the
schedule, and a new learning rate is the new peak of the rebuilt schedule), the optimizer keeps its moments, and data
and masking arguments apply to the steps still to come; the changes are logged. Arguments that define the model
(``rgb_backbone``, ``model_shape``, ``config_overrides``, and ``image_size`` for a random-init model), and a
``max_steps`` below the checkpoint's step, are refused before the first step. Resuming in place (``--output-dir`` is
the folder of the checkpoint) keeps the log up to the resumed step; it is refused when a newer checkpoint of the same
run would be overwritten.

Bad rows
--------
Rows that cannot be used are skipped and counted by cause (unreadable image, unreadable depth, size mismatch, too few
valid pixels; `vanishing_depth.data.RGBDSampleDecoder`), for training and validation alike, in every
``training_log.jsonl`` record, the summary and the final log line. The run fails, saying so, when more than
``max_bad_row_share`` of the rows read from one corpus (or from the validation corpus) are bad.

Process records and ``--debug``
-------------------------------
Every process writes ``process_R_of_W.json`` at the end: its rank and a checksum of the weights it ended with (DDP
keeps them identical). With ``--debug`` it also holds ``data_fingerprints``, a checksum of the targets of each of its
micro-batches (each process reads its own data); they cost a device-to-host sync per micro-batch, so a normal run
computes none. The flag changes nothing else: losses, weights and checkpoints are the same with and without it.

Code layout
-----------
`pretrain` runs a `_PretrainingRun`: its set-up reads everything (resume and output-folder checks, accelerator,
model/optimizer/schedule, data, validation set) before writing the output folder; `train` loops over micro-batches
(`_take_batch`, `_forward_backward`), and each optimizer step (`_finish_step`) checks the row counts, then logs,
validates and checkpoints at its intervals; `_finish` writes the final model, summary and last log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..augment import (
    CROP_MODES,
    RANDOM_DEPTH_JITTERS,
    DepthNoise,
    MaskingCurriculum,
    PretrainingDepthTransform,
    RandomDepth,
    VanishingDepthMasker,
    augment_rgbd_pair,
)
from ..augment.rgbd import GRAY_PROBABILITY
from ..configuration_vanishing_depth import (
    FUSE_CLS_TOKEN_CHOICES,
    VIT_SHAPES,
    VanishingDepthConfig,
    authors_fuse_cls_token,
    rgb_config_from_any,
)
from ..data import RGBDSampleDecoder, load_corpus, prepare_pretraining_corpus
from ..evaluation import PretrainingValidationMetrics
from ..evaluation.plots import plot_training_curves
from ..evaluation.results import eval_result_entry
from ..image_processing_vanishing_depth import IMAGENET_MEAN, IMAGENET_STD, VanishingDepthImageProcessor
from ..modeling_vanishing_depth import VanishingDepthForPretraining, VanishingDepthModel
from ..output_paths import prepare_output_dir, read_json, strict_json, write_json
from ..streams_vanishing_depth import stream_adapter
from .checkpoints import (
    check_output_dir,
    check_resume,
    load_model_weights,
    load_optimizer,
    log_lines_up_to,
    pickle_files,
    read_training_state,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
    schedule_at,
)
from .initialization import mimetic_attention_init_
from .recipes import CURRICULUM_CLOCKS, RECIPES, get_recipe

logger = logging.getLogger(__name__)

VALIDATION_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)

#: Beside ``training_log.jsonl``: the loss and validation curves (redrawn at each validation and at the end) and the
#: last validation metrics in the model-card metrics format (``vanishing_depth.hub.model_card``), which the run's card
#: reports.
TRAINING_CURVES_FILE = "training_curves.png"
VALIDATION_RESULTS_FILE = "validation_results.json"
#: The validation metrics drawn over steps in `TRAINING_CURVES_FILE`: the AUCs over density of the SI error and MAE.
CURVE_METRICS = ("val/si_auc", "val/mae_m_auc")
#: Log key of the depth share of the fusion after 0-based depth block ``b`` (`VanishingDepthFusion.depth_share`).
DEPTH_SHARE_KEY = "depth_share/block_{}"

#: Why rows are skipped (`vanishing_depth.data.SKIP_CAUSES`), and the row counts every batch carries.
SKIP_CAUSES = ("unreadable_image", "unreadable_depth", "size_mismatch", "too_few_valid")
ROW_COUNT_KEYS = ("decoded", *SKIP_CAUSES, "resized_depth")
#: A training corpus's bad-row share is judged once this many of its rows (or all of them) were read.
MIN_ROWS_FOR_SHARE = 20
#: Draws of one corpus for one batch slot before the corpus is declared unusable.
MAX_DRAWS_PER_FRAME = 50

CHECKPOINT_FORMAT = "vanishing-depth-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

#: `PretrainingArguments.random_init_attention` choices.
RANDOM_INIT_ATTENTION = ("transformers", "mimetic")

# Random-init RGB backbones of real DINOv2 shapes (of any supported family: `random_init_rgb_config`), for runs without
# reachable weights (tests, the demo).
MODEL_SHAPES = VIT_SHAPES


def _recipe_field(help_text: str):
    """An argument whose default comes from ``--recipe`` (`vanishing_depth.training.recipes`); None = not given."""
    return field(default=None, metadata={"help": f"{help_text} Default: the --recipe's value."})


@dataclass
class PretrainingArguments:
    """Every knob of a pretraining run. The arguments a recipe chooses default to None ("not given") and take the
    value of `recipe` (`vanishing_depth.training.recipes`: 'library' by default, or 'official', the authors'
    pretraining); a value given explicitly (flag, YAML key or keyword) always wins."""

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
    allow_pickle: bool = field(
        default=False,
        metadata={
            "help": "Allow reading pickle files: a .pth RGB backbone, and a --resume checkpoint that holds pickle "
            "files (an older or Accelerate checkpoint). Even then they are read with torch.load(weights_only=True)."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty --output-dir wholly: everything in it is deleted before the run starts."
        },
    )
    model_shape: str = field(
        default="small",
        metadata={
            "help": f"Random-init shape when no --rgb-backbone: {list(MODEL_SHAPES)}; a DINOv2 unless "
            '--config-overrides names another family (\'{"rgb_config": {"model_type": "dinov3_vit"}}\').'
        },
    )
    random_init_attention: str = field(
        default="transformers",
        metadata={
            "help": f"Random-init models only (no --rgb-backbone): {list(RANDOM_INIT_ATTENTION)}. 'mimetic' starts "
            "every attention block of both streams in the pattern of a pretrained ViT (Trockman and Kolter 2023; "
            "vanishing_depth.training.initialization), so attention starts local with RoPE (the demo uses it)."
        },
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
    validation_dataset: str | None = field(default=None, metadata={"help": "Held-out corpus for the validation."})
    validation_split: str = field(default="test")
    streaming: bool = field(default=False, metadata={"help": "Stream corpora too large for the disk."})
    recipe: str = field(
        default="library",
        metadata={
            "help": f"One of {list(RECIPES)}: every argument whose default is 'the --recipe's value' takes it from "
            "this recipe unless it is given. 'official' reproduces the authors' pretraining (KochPJ/vanishing-depth "
            "main.py), 'library' keeps this library's choices; the README compares them "
            "(vanishing_depth.training.recipes)."
        },
    )
    image_size: int | None = _recipe_field("Training crop size in pixels (a multiple of the model's patch size).")
    crop_mode: str | None = _recipe_field(
        "A non-square random crop is resized as it is ('stretch') or zero-padded to a square first ('pad': RGB "
        "black, depth missing)."
    )
    crop_scale_min: float | None = _recipe_field("RandomResizedCrop minimum area share.")
    color_augmentation: bool | None = _recipe_field("Colour jitter and random gray.")
    flip_probability: float | None = _recipe_field("Probability of the horizontal flip, and of the vertical flip.")
    depth_randomization: bool | None = _recipe_field("RandomDepth (offset, range, scale branches).")
    random_depth_jitter: str | None = _recipe_field(
        "RandomDepth's jitter: 'symmetric' U(1-j, 1+j) or 'authors' U(1, 1+j)."
    )
    depth_noise: bool | None = _recipe_field("Sensor noise on the input depth (3 mm, chaos pixels).")
    per_device_batch_size: int | None = _recipe_field("Frames per process and micro-step.")
    max_steps: int | None = _recipe_field("Optimizer steps.")
    samples_per_epoch: int | None = _recipe_field("Samples per 'epoch' (the epochs clock of the masking curriculum).")
    learning_rate: float | None = _recipe_field("Peak lr of the depth ViT and fusion blocks.")
    decoder_learning_rate: float | None = _recipe_field("Peak lr of the decoder and its heads.")
    weight_decay: float | None = _recipe_field("AdamW weight decay.")
    pct_start: float | None = _recipe_field("OneCycleLR warm-up share.")
    div_factor: float | None = _recipe_field("OneCycleLR div_factor: the start lr is peak / div_factor.")
    final_div_factor: float | None = _recipe_field("OneCycleLR final_div_factor.")
    gradient_accumulation_steps: int = field(default=1)
    max_grad_norm: float | None = _recipe_field("Gradient clipping; 0 disables it.")
    mixed_precision: str | None = _recipe_field("no, fp16 or bf16.")
    gradient_checkpointing: bool = field(default=False)
    mask_mean_start: float | None = _recipe_field("Removed share t ~ N(mean, std): mean before the ramp.")
    mask_mean_end: float | None = _recipe_field("... mean after the ramp.")
    mask_std_start: float | None = _recipe_field("... std before the ramp.")
    mask_std_end: float | None = _recipe_field(
        "... std after the ramp (official 0.5 as the authors' runs, 0.3 intended)."
    )
    mask_min_fraction: float | None = _recipe_field("Removed share is clipped to at least this.")
    mask_max_fraction: float | None = _recipe_field("... and at most this.")
    curriculum_clock: str | None = _recipe_field(
        "'fraction': the masking warm-up and ramp are shares of the planned samples (--mask-warmup-fraction, "
        "--mask-ramp-fraction); 'epochs': they are epochs of --samples-per-epoch (--mask-warmup-epochs, "
        "--mask-curriculum-epochs)."
    )
    mask_warmup_epochs: float | None = _recipe_field("Warm-up of the epochs clock, in epochs.")
    mask_curriculum_epochs: float | None = _recipe_field("Ramp of the epochs clock, in epochs.")
    mask_warmup_fraction: float | None = _recipe_field("Warm-up of the fraction clock, share of the planned samples.")
    mask_ramp_fraction: float | None = _recipe_field("Ramp of the fraction clock, share of the planned samples.")
    fuse_cls_token: str | None = _recipe_field(
        "auto (the authors' rule: fused for ViT-S, width 384, not for ViT-B), true or false."
    )
    decoder_skips: str | None = _recipe_field("Pretraining decoder skips: 'lateral' (1x1 projections) or 'raw'.")
    depth_patch_embedding_init: str | None = _recipe_field(
        "Depth patch embedding init: 'trunc_normal' (std 0.02) or 'pytorch_default' (nn.Conv2d's)."
    )
    loss_pooling: str | None = _recipe_field("Scale-invariant loss over each 'sample' or over the whole 'batch'.")
    position_interpolation: str | None = _recipe_field("Position-embedding resize: 'transformers' or 'dinov2'.")
    pde_missing_depth_m: float | None = _recipe_field("The depth (metres) a missing pixel is encoded as by the PDE.")
    pde_float_order: str | None = _recipe_field("PDE float32 arithmetic: 'library' or 'authors'.")
    min_valid_pixels: int = field(default=100)
    max_bad_row_share: float = field(
        default=0.5,
        metadata={
            "help": "The run fails when more than this share of the rows read from one training corpus (once 20 "
            "rows or all of its rows were read) or from --validation-dataset are bad (skipped for any cause)."
        },
    )
    seed: int = field(default=0)
    checkpointing_steps: int = field(default=500)
    checkpoints_total_limit: int = field(
        default=3, metadata={"help": "Checkpoints of this run kept (older ones of this run are deleted); 0 keeps all."}
    )
    resume: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder (e.g. OUT/checkpoints/latest). With --output-dir OUT the run continues in "
            "place; with a new --output-dir it continues there."
        },
    )
    validation_steps: int = field(default=500)
    validation_frames: int = field(default=8, metadata={"help": "Held-out frames used for validation."})
    logging_steps: int = field(default=10)
    report_to: str = field(
        default="auto", metadata={"help": "Accelerate tracker: auto (tensorboard if installed), none, ..."}
    )
    dataloader_num_workers: int = field(default=0)
    # Read by the commands that run `pretrain` (`vanishing-depth pretrain`, the demo): they write the card at the end.
    write_model_card: bool = field(default=True)
    debug: bool = field(
        default=False,
        metadata={
            "help": "Audit mode: every process also records a per-step checksum of its targets (data_fingerprints "
            "in process_R_of_W.json). Each one is a device-to-host sync, so it is off in normal runs; training and "
            "its numbers are the same either way."
        },
    )

    def __post_init__(self) -> None:
        recipe = get_recipe(self.recipe)
        for name, value in recipe.values().items():
            if getattr(self, name) is None:  # not given: the recipe's value; an explicit value wins
                setattr(self, name, value)
        for name, allowed in (
            ("crop_mode", CROP_MODES),
            ("random_depth_jitter", RANDOM_DEPTH_JITTERS),
            ("curriculum_clock", CURRICULUM_CLOCKS),
            ("fuse_cls_token", FUSE_CLS_TOKEN_CHOICES),
            ("random_init_attention", RANDOM_INIT_ATTENTION),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {getattr(self, name)!r}.")
        for name in ("mask_warmup_fraction", "mask_ramp_fraction", "flip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be a share in [0, 1], got {getattr(self, name)!r}.")
        if self.mask_warmup_fraction + self.mask_ramp_fraction > 1.0:
            raise ValueError(
                f"`mask_warmup_fraction` + `mask_ramp_fraction` must be <= 1 (shares of the same run), got "
                f"{self.mask_warmup_fraction} + {self.mask_ramp_fraction}."
            )
        if min(self.mask_warmup_epochs, self.mask_curriculum_epochs) < 0:
            raise ValueError(
                f"`mask_warmup_epochs` and `mask_curriculum_epochs` must be >= 0, got {self.mask_warmup_epochs} and "
                f"{self.mask_curriculum_epochs}."
            )
        if not isinstance(self.image_size, int) or self.image_size < 1:
            # A multiple of the model's patch size as well; `build_model` checks that against the model it builds
            # (14 px for DINOv2, 16 px for DINOv3 and SigLIP, 8 px for the demo's tiny model).
            raise ValueError(f"`image_size` must be a positive number of pixels, got {self.image_size!r}.")
        if self.rgb_backbone and self.random_init_attention != "transformers":
            raise ValueError(
                f"`random_init_attention={self.random_init_attention!r}` initialises a random-init backbone; with "
                f"`rgb_backbone` ({self.rgb_backbone!r}) the weights come from the backbone. Drop one of the two."
            )
        if self.model_shape not in MODEL_SHAPES:
            raise ValueError(f"`model_shape` must be one of {list(MODEL_SHAPES)}, got {self.model_shape!r}.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"`mixed_precision` must be no, fp16 or bf16, got {self.mixed_precision!r}.")
        for name in (
            "per_device_batch_size",
            "max_steps",
            "samples_per_epoch",
            "gradient_accumulation_steps",
            "checkpointing_steps",
            "validation_steps",
            "validation_frames",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {getattr(self, name)!r}.")
        if self.checkpoints_total_limit < 0:
            raise ValueError(
                f"`checkpoints_total_limit` must be an int >= 0 (0 keeps all), got {self.checkpoints_total_limit!r}."
            )
        if not 0.0 <= self.pct_start < 1.0:
            raise ValueError(f"`pct_start` must be a share in [0, 1) (the OneCycle warm-up), got {self.pct_start!r}.")
        share = self.max_bad_row_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise ValueError(f"`max_bad_row_share` must be a number in [0, 1] (a share of rows), got {share!r}.")
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]


# ----------------------------------------------------------------------------------------------------------------------
# Data: a deterministic batch per (step, process)
# ----------------------------------------------------------------------------------------------------------------------
def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, step, rank); 2**61-1 is prime, so the mix never collides in practice.
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**61 - 1))


def normalize_rgb(rgb: torch.Tensor, image_mean=None, image_std=None) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> normalised with the RGB family's constants (default: ImageNet's, the image
    processor's; `stream_adapter(config).image_mean` / `image_std` for others, e.g. 0.5 / 0.5 for SigLIP)."""

    mean = torch.tensor(IMAGENET_MEAN if image_mean is None else image_mean, dtype=rgb.dtype, device=rgb.device)
    std = torch.tensor(IMAGENET_STD if image_std is None else image_std, dtype=rgb.dtype, device=rgb.device)
    return (rgb - mean.view(3, 1, 1)) / std.view(3, 1, 1)


def planned_samples(args: PretrainingArguments, world_size: int) -> int:
    """Frames the whole run draws: optimizer steps x accumulation x per-device batch x processes."""
    return args.max_steps * args.gradient_accumulation_steps * args.per_device_batch_size * world_size


def masking_curriculum(args: PretrainingArguments, world_size: int):
    """The run's `MaskingCurriculum`, its warm-up and ramp in epochs of ``samples_per_epoch`` as the clock says.

    ``curriculum_clock="fraction"``: ``mask_warmup_fraction`` and ``mask_ramp_fraction`` of the planned samples (the
    paper's 10 + 10 of 100 epochs is 0.1 + 0.1), so a run of any length goes through the whole curriculum.
    ``"epochs"``: ``mask_warmup_epochs`` and ``mask_curriculum_epochs`` epochs, the authors' clock (main.py re-arms the
    curriculum every epoch of ``samples_per_epoch`` samples); a run shorter than the warm-up never leaves it.
    """

    if args.curriculum_clock == "epochs":
        warmup_epochs, ramp_epochs = args.mask_warmup_epochs, args.mask_curriculum_epochs
    else:
        run_epochs = planned_samples(args, world_size) / args.samples_per_epoch
        warmup_epochs, ramp_epochs = args.mask_warmup_fraction * run_epochs, args.mask_ramp_fraction * run_epochs
    return MaskingCurriculum(
        mean_start=args.mask_mean_start,
        mean_end=args.mask_mean_end,
        std_start=args.mask_std_start,
        std_end=args.mask_std_end,
        warmup_epochs=warmup_epochs,
        ramp_epochs=ramp_epochs,
    )


def curriculum_warning(args: PretrainingArguments, world_size: int) -> str | None:
    """Why the run's masking curriculum never leaves its warm-up (with the numbers), or None when it starts."""
    curriculum = masking_curriculum(args, world_size)
    planned = planned_samples(args, world_size)
    warmup_samples = curriculum.warmup_epochs * args.samples_per_epoch
    if planned > warmup_samples:
        return None
    how = (
        f"{args.mask_warmup_epochs:g} epochs of {args.samples_per_epoch:,} samples"
        if args.curriculum_clock == "epochs"
        else f"{args.mask_warmup_fraction:g} of the run"
    )
    return (
        f"the masking curriculum never starts: its warm-up ({args.curriculum_clock} clock) lasts "
        f"{warmup_samples:,.0f} samples ({how}), and this run draws {planned:,} ({args.max_steps} steps x "
        f"{args.per_device_batch_size} frames x {world_size} process(es) x {args.gradient_accumulation_steps} "
        f"accumulation). Every batch removes t ~ N({args.mask_mean_start:g}, {args.mask_std_start:g}); the ramp to "
        f"N({args.mask_mean_end:g}, {args.mask_std_end:g}) is never reached. Use --curriculum-clock fraction "
        "(warm-up and ramp as shares of the run), or lower --mask-warmup-epochs or --samples-per-epoch."
    )


class PretrainingBatchAssembler:
    """What the map-style and the streaming data paths share: one frame's crop and jitter, and a batch's depth
    randomisation and masks, all drawn from the step's generator; plus the epoch of the masking curriculum."""

    def __init__(self, args: PretrainingArguments, world_size: int, normalization=None) -> None:
        self.args = args
        self.image_mean, self.image_std = normalization if normalization is not None else (None, None)
        self.curriculum = masking_curriculum(args, world_size)
        masker = VanishingDepthMasker(min_fraction=args.mask_min_fraction, max_fraction=args.mask_max_fraction)
        self.depth_transform = PretrainingDepthTransform(
            random_depth=RandomDepth(jitter=args.random_depth_jitter) if args.depth_randomization else None,
            noise=DepthNoise() if args.depth_noise else None,
            curriculum=self.curriculum,
            masker=masker,
        )
        self.samples_per_step = args.per_device_batch_size * world_size

    def epoch_at(self, step: int) -> float:
        """The curriculum epoch (samples drawn / ``samples_per_epoch``) at micro-step `step`."""
        return step * self.samples_per_step / self.args.samples_per_epoch

    def curriculum_at(self, step: int) -> tuple[float, float]:
        """(mean, std) of the removed share t at micro-step `step`."""
        return self.curriculum(self.epoch_at(step))

    def augment(self, sample, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Crop, flips, jitter of one decoded frame -> (RGB (3, s, s) in [0, 1], depth (1, s, s) metres), or None
        when the crop holds fewer than `min_valid_pixels` measurements (drawn again, as the authors'
        dataset draws another frame with fewer than 100)."""

        args = self.args
        rgb = sample.rgb if sample.rgb.flags.writeable else sample.rgb.copy()  # torch warns on read-only arrays
        rgb = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        depth = torch.from_numpy(np.ascontiguousarray(sample.depth_m))[None]
        size = (args.image_size, args.image_size)
        rgb, depth = augment_rgbd_pair(
            rgb,
            depth,
            size,
            generator=generator,
            crop_scale=(args.crop_scale_min, 1.0),
            crop_mode=args.crop_mode,
            flip_probability=args.flip_probability,
            vertical_flip_probability=args.flip_probability,
            jitter=args.color_augmentation,
            gray_probability=GRAY_PROBABILITY if args.color_augmentation else 0.0,
        )
        return (rgb, depth) if int((depth > 0).sum()) >= args.min_valid_pixels else None

    def batch(
        self, step: int, generator: torch.Generator, crops: list, row_counts: torch.Tensor, crops_redrawn: int
    ) -> dict[str, torch.Tensor]:
        """Stack the crops and apply the depth randomisation, noise and masks of the step's curriculum epoch.

        ``row_counts`` (corpora, len(ROW_COUNT_KEYS)) and ``crops_redrawn`` are what building this batch read and
        skipped (not running totals), so the loop can add them up whichever DataLoader worker built the batch."""
        depths = torch.stack([depth for _, depth in crops])
        transformed = self.depth_transform(depths, generator=generator, epoch=self.epoch_at(step))
        return {
            "pixel_values": normalize_rgb(torch.stack([rgb for rgb, _ in crops]), self.image_mean, self.image_std),
            "depth_values": transformed["depth_values"],
            "target_depth": transformed["target_depth"],
            "removed_mask": transformed["removed_mask"],
            "removed_fraction": transformed["removed_fraction"],
            "row_counts": row_counts.to(torch.int64),
            "crops_redrawn": torch.tensor(crops_redrawn, dtype=torch.int64),
        }


def _stats_row(stats) -> list[int]:
    """An `RGBDSkipStats` as the counts of `ROW_COUNT_KEYS`."""
    values = {"decoded": stats.decoded, "resized_depth": stats.resized_depth, **stats.skipped_by_cause()}
    return [int(values[key]) for key in ROW_COUNT_KEYS]


class PretrainingBatches(torch.utils.data.Dataset):
    """Map-style view where item ``s`` is the whole batch of optimizer micro-step ``s`` for this process.

    Use with a DataLoader over ``range(start, total)`` (``batch_size=None``) so workers prefetch batches in order.
    Each frame slot picks a corpus with equal probability, then rows of that corpus until one gives a usable crop:
    a skipped row (unreadable image or depth, size mismatch, too few valid pixels; counted per corpus by its own
    decoder) or a crop with too few valid pixels (counted as ``crops_redrawn``) is replaced by another row of the
    same corpus, so bad rows never move weight from one corpus to another.
    """

    def __init__(
        self, args: PretrainingArguments, corpora: list, rank: int, world_size: int, total: int, normalization=None
    ) -> None:
        self.args, self.rank, self.total = args, rank, total
        self.corpora = corpora
        self.decoders = [RGBDSampleDecoder(min_valid_pixels=args.min_valid_pixels) for _ in corpora]
        self.assembler = PretrainingBatchAssembler(args, world_size, normalization)
        # Small corpora are decoded once and kept: the demo's 22 frames are re-drawn thousands of times.
        self._cache: dict[tuple[int, int], Any] = {}
        self._cache_limit = 4096

    def __len__(self) -> int:
        return self.total

    def epoch_at(self, step: int) -> float:
        return self.assembler.epoch_at(step)

    def row_counts(self) -> torch.Tensor:
        """Running (corpora, len(ROW_COUNT_KEYS)) counts of the rows this process's decoders read."""
        return torch.tensor([_stats_row(decoder.stats) for decoder in self.decoders], dtype=torch.int64)

    def _sample(self, corpus_index: int, row_index: int):
        key = (corpus_index, row_index)
        if key in self._cache:
            return self._cache[key]
        sample = self.decoders[corpus_index].decode(self.corpora[corpus_index][row_index], index=row_index)
        if sample is not None and not sample.rgb.flags.writeable:
            sample.rgb = sample.rgb.copy()  # copy once here rather than on every later draw
        if len(self._cache) < self._cache_limit:
            self._cache[key] = sample
        return sample

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        args = self.args
        before = self.row_counts()
        generator = _step_generator(args.seed, step, self.rank)
        crops, redrawn = [], 0
        while len(crops) < args.per_device_batch_size:
            corpus_index = int(torch.randint(len(self.corpora), (), generator=generator))
            corpus = self.corpora[corpus_index]
            crop = None
            for _ in range(MAX_DRAWS_PER_FRAME):
                row_index = int(torch.randint(len(corpus), (), generator=generator))
                sample = self._sample(corpus_index, row_index)
                if sample is None:  # skipped and counted by the corpus's decoder
                    continue
                crop = self.assembler.augment(sample, generator)
                if crop is not None:
                    break
                redrawn += 1
            if crop is None:
                counts = dict(zip(ROW_COUNT_KEYS, _stats_row(self.decoders[corpus_index].stats)))
                raise ValueError(
                    f"step {step}: no usable frame in {MAX_DRAWS_PER_FRAME} draws from corpus "
                    f"{args.dataset[corpus_index]!r} (process {self.rank}); its rows read so far: {counts}, crops "
                    f"with fewer than min_valid_pixels={args.min_valid_pixels} valid pixels redrawn: {redrawn}. Fix or "
                    "remove its bad files, or lower --min-valid-pixels."
                )
            crops.append(crop)
        return self.assembler.batch(step, generator, crops, self.row_counts() - before, redrawn)


def load_map_style_corpora(args: PretrainingArguments, rank: int, world_size: int) -> list:
    """Each corpus, undecoded, restricted to this process's shard (``split_dataset_by_node``)."""
    from datasets import Image as ImageFeature
    from datasets.distributed import split_dataset_by_node

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
    skips the rows already consumed (exact, but it re-reads them). Row counts are kept for the mix as a whole (one
    bucket); a skipped row is replaced by the stream's next row, which may come from another corpus."""

    def __init__(
        self,
        args: PretrainingArguments,
        rank: int,
        world_size: int,
        start_step: int,
        total: int,
        skip_samples: int = 0,
        normalization=None,
    ) -> None:
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
        self.assembler = PretrainingBatchAssembler(args, world_size, normalization)

    def __iter__(self):
        args = self.args
        samples = iter(self._endless())
        consumed = 0
        for _ in range(self.skip_samples):
            next(samples)
            consumed += 1
        # Rows re-read to reach the resume position were counted by the checkpointed run already.
        previous = torch.tensor([_stats_row(self.corpus.decoder.stats)], dtype=torch.int64)
        for step in range(self.start_step, self.total):
            generator = _step_generator(args.seed, step, self.rank)
            crops, redrawn = [], 0
            while len(crops) < args.per_device_batch_size:
                crop = self.assembler.augment(next(samples), generator)
                consumed += 1
                if crop is not None:
                    crops.append(crop)
                else:
                    redrawn += 1
            current = torch.tensor([_stats_row(self.corpus.decoder.stats)], dtype=torch.int64)
            batch = self.assembler.batch(step, generator, crops, current - previous, redrawn)
            previous = current
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
#: `PretrainingArguments` that are `VanishingDepthConfig` fields of the same name (plus `fuse_cls_token`, resolved by
#: `resolve_fuse_cls_token`): the recipe's model choices.
MODEL_CONFIG_ARGUMENTS = (
    "decoder_skips",
    "depth_patch_embedding_init",
    "loss_pooling",
    "position_interpolation",
    "pde_missing_depth_m",
    "pde_float_order",
)


def resolve_fuse_cls_token(choice: str, hidden_size: int) -> bool:
    """``--fuse-cls-token``: "true" / "false", or "auto", the authors' rule for this width (fused for ViT-S only,
    `vanishing_depth.configuration_vanishing_depth.authors_fuse_cls_token`, as the converter of their checkpoints)."""
    if choice == "auto":
        return authors_fuse_cls_token(hidden_size)
    return choice == "true"


def random_init_rgb_config(model_shape: str, image_size: int, rgb_overrides: dict | None = None):
    """The RGB backbone config of a random-init run: the `MODEL_SHAPES` entry `model_shape` at `image_size` px, of the
    family ``rgb_overrides["model_type"]`` (default ``"dinov2"``), with `rgb_overrides` (any field of that family's
    config) on top; the rest are the family's defaults (DINOv2 14 px patches, DINOv3 and SigLIP 16 px). The MLP is 4x
    the width in every family: DINOv2's `mlp_ratio`, set as `intermediate_size` where a family has one (its default
    is a fixed width)."""
    rgb_overrides = dict(rgb_overrides or {})
    rgb_config = rgb_config_from_any(
        {"image_size": image_size, **MODEL_SHAPES[model_shape], "model_type": "dinov2", **rgb_overrides}
    )
    if hasattr(rgb_config, "intermediate_size") and "intermediate_size" not in rgb_overrides:
        rgb_config.intermediate_size = 4 * rgb_config.hidden_size
    return rgb_config


def build_model(args: PretrainingArguments):
    """The `VanishingDepthForPretraining` of the run: from `rgb_backbone` (both streams start from its weights) or
    random-init of `model_shape`; the recipe's model choices (`MODEL_CONFIG_ARGUMENTS`, `fuse_cls_token`) go into its
    config, `config_overrides` may set any other config field."""
    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    clashing = sorted(set(overrides) & {*MODEL_CONFIG_ARGUMENTS, "fuse_cls_token"})
    if clashing:
        flags = ", ".join("--" + name.replace("_", "-") for name in clashing)
        raise ValueError(
            f"`config_overrides` sets {clashing}, which are pretraining arguments of their own (chosen by --recipe); "
            f"pass {flags} instead."
        )
    overrides.update({name: getattr(args, name) for name in MODEL_CONFIG_ARGUMENTS})
    if args.rgb_backbone:
        encoder = VanishingDepthModel.from_rgb_backbone(
            args.rgb_backbone, allow_pickle=args.allow_pickle, image_size=overrides.pop("image_size", None), **overrides
        )
        # The CLS fusion has no weights of its own: the rule needs the backbone's width, known only now.
        encoder.config.fuse_cls_token = resolve_fuse_cls_token(args.fuse_cls_token, encoder.config.hidden_size)
        model = VanishingDepthForPretraining(encoder.config)
        model.vanishing_depth.load_state_dict(encoder.state_dict())
        if encoder.config.freeze_rgb_encoder:
            model.vanishing_depth.freeze_rgb_encoder()
    else:
        torch.manual_seed(args.seed)
        rgb_config = random_init_rgb_config(args.model_shape, args.image_size, overrides.pop("rgb_config", {}))
        fuse_cls_token = resolve_fuse_cls_token(args.fuse_cls_token, rgb_config.hidden_size)
        config = VanishingDepthConfig(rgb_config=rgb_config, fuse_cls_token=fuse_cls_token, **overrides)
        model = VanishingDepthForPretraining(config)
        if args.random_init_attention == "mimetic":
            mimetic_attention_init_(model.vanishing_depth, torch.Generator().manual_seed(args.seed))
        logger.warning(
            "No --rgb-backbone: the RGB stream is a RANDOM-INIT %s (%s shape). Fine for tests and the demo; a real "
            "run starts from pretrained weights (e.g. --rgb-backbone facebook/dinov2-small).",
            rgb_config.model_type,
            args.model_shape,
        )
    if args.image_size % model.config.patch_size:
        raise ValueError(
            f"`image_size` must be a multiple of the model's patch size {model.config.patch_size} px, got "
            f"{args.image_size}."
        )
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def build_optimizer(model, args: PretrainingArguments):
    """AdamW over two groups: depth ViT + fusion, decoder + heads (the frozen RGB stream is left out), and the
    OneCycle schedule over `max_steps`, each group peaking at its own learning rate. (The authors' main.py passes the
    two peaks in the opposite order of its groups; its equal defaults hide that, see `vanishing_depth.training.recipes`.)"""
    encoder_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("decoder.")]
    decoder_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("decoder.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": args.learning_rate, "name": "depth_encoder_and_fusion"},
            {"params": decoder_params, "lr": args.decoder_learning_rate, "name": "decoder"},
        ],
        weight_decay=args.weight_decay,
    )
    pct_start = args.pct_start
    while float(pct_start * args.max_steps) - 1 == 0:
        # torch's OneCycleLR divides by zero when its warm-up ends exactly at step 0 (pct_start * max_steps == 1,
        # e.g. 0.2 * 5); one ulp less gives the same schedule (the peak at step 0) without the division.
        pct_start = math.nextafter(pct_start, 0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[args.learning_rate, args.decoder_learning_rate],
        total_steps=args.max_steps,
        pct_start=pct_start,
        div_factor=args.div_factor,
        final_div_factor=args.final_div_factor,
    )
    return optimizer, scheduler


# ----------------------------------------------------------------------------------------------------------------------
# Validation (the paper's AUC protocol) with masks fixed on disk
# ----------------------------------------------------------------------------------------------------------------------
def _validation_key(args: PretrainingArguments) -> dict[str, Any]:
    return {
        "validation_dataset": args.validation_dataset,
        "validation_split": args.validation_split,
        "validation_frames": args.validation_frames,
        "image_size": args.image_size,
        "min_valid_pixels": args.min_valid_pixels,
    }


def _check_bad_share(counts: dict[str, int], limit: float, what: str) -> None:
    """Raise when more than `limit` of the rows read (``counts``: `ROW_COUNT_KEYS`) are bad."""
    bad = sum(counts[cause] for cause in SKIP_CAUSES)
    read = bad + counts["decoded"]
    if read and bad > limit * read:
        causes = ", ".join(f"{cause.replace('_', ' ')} {counts[cause]}" for cause in SKIP_CAUSES if counts[cause])
        raise ValueError(
            f"{what}: {bad} of the {read} rows read are bad ({causes}): more than max_bad_row_share={limit:g} "
            f"({limit:.0%}). Fix or remove the bad files (the log names each), or raise --max-bad-row-share."
        )


def prepare_validation(
    args: PretrainingArguments, output_dir: Path, normalization=None
) -> tuple[dict[str, torch.Tensor] | None, dict[str, int]]:
    """Held-out frames centre-resized to the training size and their removal masks at fixed fractions, created once
    (seeded) and stored in ``validation_set.safetensors`` so every evaluation and every resumed run use the same.

    Rows of ``--validation-dataset`` are read in order until `validation_frames` usable frames are found; skipped
    rows are counted by cause (returned as ``{key: count}`` of `ROW_COUNT_KEYS` and kept in the file's metadata).

    Raises:
        ValueError: more than `max_bad_row_share` of the rows read are bad, or no usable frame at all.
    """
    tensors, counts, built = load_or_build_validation(
        args, output_dir / "validation_set.safetensors", normalization=normalization
    )
    if built:
        save_validation_set(output_dir / "validation_set.safetensors", tensors, args, counts)
    return tensors, counts


def save_validation_set(path: Path, tensors: dict[str, torch.Tensor], args: PretrainingArguments, counts) -> None:
    from safetensors.torch import save_file

    metadata = {"vanishing_depth_validation": strict_json({"key": _validation_key(args), "rows": counts})}
    save_file(tensors, str(path), metadata=metadata)


def load_or_build_validation(
    args: PretrainingArguments, path: Path, reuse: bool = True, normalization=None
) -> tuple[dict[str, torch.Tensor] | None, dict[str, int], bool]:
    """The validation set: read from `path` when `reuse` and it was built for the same validation arguments, else
    built from ``--validation-dataset`` (nothing is written), RGB normalised with `normalization` (``(mean, std)`` of
    the RGB family; default ImageNet's). Returns (tensors or None, row counts, built)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    empty = dict.fromkeys(ROW_COUNT_KEYS, 0)
    if not args.validation_dataset:
        return None, empty, False
    key = _validation_key(args)
    if reuse and path.is_file():
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = json.loads((handle.metadata() or {}).get("vanishing_depth_validation", "{}"))
            tensors = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - any damage: name the file
            raise ValueError(
                f"{path}: cannot be read as the validation set ({type(error).__name__}: {error}); delete it to build "
                "it again from --validation-dataset."
            ) from None
        if metadata.get("key") == key:
            counts = {k: int(metadata.get("rows", {}).get(k, 0)) for k in ROW_COUNT_KEYS}
            return tensors, counts, False
        logger.warning(
            "%s was built for %s, the run now asks for %s: building it again (validation numbers before and after "
            "this point are not comparable).",
            path,
            metadata.get("key"),
            key,
        )

    corpus = load_corpus(args.validation_dataset, split=args.validation_split)
    decoder = RGBDSampleDecoder(min_valid_pixels=args.min_valid_pixels)
    image_mean, image_std = normalization if normalization is not None else (None, None)
    processor = VanishingDepthImageProcessor(
        size={"height": args.image_size, "width": args.image_size}, image_mean=image_mean, image_std=image_std
    )
    rgbs, depths = [], []
    for sample in decoder.iterate(corpus):  # undecoded rows: a corrupt one is skipped and counted, not raised
        inputs = processor(images=sample.rgb, depth=sample.depth_m)
        rgbs.append(inputs["pixel_values"][0])
        depths.append(inputs["depth_values"][0])
        if len(rgbs) == args.validation_frames:
            break
    counts = dict(zip(ROW_COUNT_KEYS, _stats_row(decoder.stats)))
    what = f"validation_dataset {args.validation_dataset!r} (split {args.validation_split!r})"
    _check_bad_share(counts, args.max_bad_row_share, what)
    if not rgbs:
        raise ValueError(f"{what}: no usable validation frame; rows read: {counts}.")
    if any(counts[cause] for cause in SKIP_CAUSES):
        logger.warning("%s: skipped rows by cause: %s.", what, {c: counts[c] for c in SKIP_CAUSES})
    rgb, depth = torch.stack(rgbs), torch.stack(depths)
    masker = VanishingDepthMasker(p_pixel=0.5, p_perlin=0.5)  # validation mix: i.i.d. 50 %, Perlin 25 %, blocky 25 %
    generator = torch.Generator().manual_seed(12345)
    tensors = {"pixel_values": rgb.contiguous(), "depth": depth.contiguous()}
    for fraction in VALIDATION_FRACTIONS:
        _, removed, _ = masker(depth, fraction=fraction, generator=generator)
        tensors[f"removed_{fraction:.1f}"] = removed.contiguous()
    return tensors, counts, True


@torch.no_grad()
def validate(model, validation: dict[str, torch.Tensor], batch_size: int, device) -> dict[str, float]:
    """SI error and MAE at removed fractions 0.1 ... 0.9, and their AUC over density (the paper's validation)."""

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
def _counts_dict(row: torch.Tensor | list[int]) -> dict[str, int]:
    return dict(zip(ROW_COUNT_KEYS, (int(v) for v in row)))


def _rows_report(counts: dict[str, int]) -> dict[str, Any]:
    """``{rows_read, skipped: {cause: n}, resized_depth}`` of one set of `ROW_COUNT_KEYS` counts."""
    skipped = {cause: counts[cause] for cause in SKIP_CAUSES}
    return {
        "rows_read": counts["decoded"] + sum(skipped.values()),
        "skipped": skipped,
        "resized_depth": counts["resized_depth"],
    }


def _resolve_report_to(report_to: str) -> str:
    """``auto`` -> ``tensorboard`` when it is installed, else ``none``; any other value as given."""
    if report_to != "auto":
        return report_to
    try:
        import tensorboard  # noqa: F401

        return "tensorboard"
    except ImportError:
        return "none"


class _DepthShareProbe:
    """The depth share of every fusion layer (`VanishingDepthFusion.depth_share`: |SE_depth| / (|SE_rgb| + |SE_depth|)
    of the fused tokens), recorded from the forward passes run inside `recording`.

    Forward hooks on the fusion modules see the tokens the step computes anyway; the shares are summed on the device
    (no host sync), so only `take` (at a logging step) moves them to the host. Outside `recording` no hook is
    registered, so the other steps cost nothing, and a recomputation during backward (gradient checkpointing) is not
    counted twice.
    """

    def __init__(self, encoder) -> None:
        self.layers = list(encoder.config.fusion_layers)
        self.fusions = list(encoder.fusions)
        self.sums: torch.Tensor | None = None
        self.passes = 0

    def _hook(self, index: int):
        def record(module, inputs, output) -> None:
            share = module.depth_share(*inputs).float()
            if self.sums is None:
                self.sums = torch.zeros(len(self.fusions), device=share.device)
            self.sums[index] += share

        return record

    @contextlib.contextmanager
    def recording(self):
        """Record the shares of the forward passes run inside the block."""
        handles = [fusion.register_forward_hook(self._hook(i)) for i, fusion in enumerate(self.fusions)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        self.passes += 1

    def take(self, accelerator) -> dict[str, float]:
        """``{depth_share/block_B: share}`` averaged over the passes recorded since the last call and over the
        processes (every process calls this at the same step); empty when nothing was recorded."""
        if self.sums is None or not self.passes:
            return {}
        mean = accelerator.reduce(self.sums / self.passes, reduction="mean").tolist()
        self.sums, self.passes = None, 0
        return {DEPTH_SHARE_KEY.format(layer): share for layer, share in zip(self.layers, mean)}


class _PretrainingRun:
    """One call of `pretrain`, one method per job.

    Set-up (``__init__``) reads everything first, in every process, so a refusal or a bad corpus leaves the output
    folder as it was: `_check_resume_and_output_dir`, `_start_accelerator`, `_build_model_and_optimizer`,
    `_build_data`, `_read_validation_set`; only then `_write_output_dir` writes, and `_start_row_counts` /
    `_start_trackers` finish the set-up. `train` is the loop: `_forward_backward` per micro-batch, `_finish_step` per
    optimizer step (schedule, row-count check, history) with `_log_step`, `_validate` and `_save_checkpoint` at their
    intervals, and `_finish` (process record, final validation, final save, summary, last log line).
    """

    def __init__(self, args: PretrainingArguments) -> None:
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.log_path = self.output_dir / "training_log.jsonl"
        self.checkpoints = self.output_dir / "checkpoints"
        self._check_resume_and_output_dir()
        self._start_accelerator()
        # Everything that reads (the checkpoint, the corpora, the validation set) before anything is written, so a
        # failure here leaves the output folder as it was.
        self._build_model_and_optimizer()
        self._build_data()
        self._read_validation_set()
        self._write_output_dir()
        self._start_row_counts()
        self._start_trackers()

    # ------------------------------------------------------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------------------------------------------------------
    def _check_resume_and_output_dir(self) -> None:
        """Read-only checks first, in every process, so a refusal leaves everything as it was."""
        args = self.args
        self.checkpoint, self.resume_state, self.changed = None, None, {}
        if args.resume:
            self.checkpoint = resolve_checkpoint(args.resume)
            self.resume_state = read_training_state(self.checkpoint)
            self.changed = check_resume(self.checkpoint, self.resume_state, args)
        self.in_place = check_output_dir(args, self.output_dir, self.checkpoint, self.resume_state)

    def _start_accelerator(self) -> None:
        """The Accelerator (DDP only: sharded models have no pickle-free checkpoint), the seed, rank and run id."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedType, ProjectConfiguration, broadcast_object_list, set_seed

        args, output_dir = self.args, self.output_dir
        self.report_to = _resolve_report_to(args.report_to)
        accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=None if self.report_to == "none" else self.report_to,
            project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        )
        sharded = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
        if accelerator.distributed_type in sharded:
            raise ValueError(
                f"distributed type {accelerator.distributed_type.value}: checkpoints of sharded models are not "
                "supported by the pickle-free checkpoint format; launch with DDP (accelerate launch --multi_gpu)."
            )
        set_seed(args.seed)
        self.accelerator = accelerator
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        self.start_step = self.resume_state["step"] if self.resume_state else 0
        run_id = (self.resume_state or {}).get("run_id") or uuid.uuid4().hex
        self.run_id = broadcast_object_list([run_id])[0]  # one id for all processes

    def _build_model_and_optimizer(self) -> None:
        """Model, AdamW and OneCycle schedule, prepared; on resume the checkpoint's weights, optimizer state, scaler,
        loss history and stream position, and the schedule of the current arguments at the resumed step."""
        args, accelerator, checkpoint = self.args, self.accelerator, self.checkpoint
        model = build_model(args)
        if checkpoint is not None:
            load_model_weights(model, checkpoint, args.allow_pickle)
        optimizer, self.scheduler = build_optimizer(model, args)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.history: list[dict[str, Any]] = []
        self.stream_position = 0
        if checkpoint is None:
            return
        load_optimizer(self.optimizer, checkpoint, args.allow_pickle)
        schedule_at(self.scheduler, self.start_step)  # the current arguments' schedule, at the resumed step
        if accelerator.scaler is not None and (checkpoint / "scaler.json").is_file():
            accelerator.scaler.load_state_dict(read_json(checkpoint / "scaler.json", "the fp16 loss-scaler state"))
        self.history = list(self.resume_state.get("history", []))
        stream_file = checkpoint / f"stream_position_{self.rank}.json"
        if args.streaming and stream_file.is_file():
            self.stream_position = int(read_json(stream_file, "a stream position")["samples_consumed"])
        ignored = [p.name for p in pickle_files(checkpoint)]
        if ignored:
            logger.warning(
                "--allow-pickle: of the pickle files in %s, only Accelerate's optimizer.bin / random_states_*.pkl "
                "are read where no safetensors replaces them, with torch.load(weights_only=True); the others are "
                "never read: %s",
                checkpoint,
                ignored,
            )

    def _rgb_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """RGB normalised as the RGB family was pretrained: ImageNet's for DINOv2/v3, 0.5 / 0.5 for SigLIP."""
        adapter = stream_adapter(self.accelerator.unwrap_model(self.model).config.rgb_config)
        return tuple(adapter.image_mean), tuple(adapter.image_std)

    def _build_data(self) -> None:
        """This process's batches from the resumed micro-step on (map-style or streaming), and per corpus the rows
        read before its bad-row share is judged."""
        args, rank, world_size = self.args, self.rank, self.world_size
        warning = curriculum_warning(args, world_size)
        if warning and self.accelerator.is_main_process:
            logger.warning("%s", warning)
        micro_total = args.max_steps * args.gradient_accumulation_steps
        micro_start = self.start_step * args.gradient_accumulation_steps
        normalization = self._rgb_normalization()
        if args.streaming:
            self.batches = StreamingPretrainingBatches(
                args, rank, world_size, micro_start, micro_total, self.stream_position, normalization
            )
            self.loader = torch.utils.data.DataLoader(self.batches, batch_size=None, num_workers=0)
            self.corpus_names = [",".join(args.dataset)]
            self.min_rows = [MIN_ROWS_FOR_SHARE]
        else:
            corpora = load_map_style_corpora(args, rank, world_size)
            self.batches = PretrainingBatches(args, corpora, rank, world_size, micro_total, normalization)
            self.loader = torch.utils.data.DataLoader(
                self.batches,
                batch_size=None,
                sampler=range(micro_start, micro_total),
                num_workers=args.dataloader_num_workers,
                persistent_workers=False,
            )
            self.corpus_names = list(args.dataset)
            self.min_rows = [min(MIN_ROWS_FOR_SHARE, len(corpus) * world_size) for corpus in corpora]

    def _read_validation_set(self) -> None:
        """The main process reads (or builds, not yet writing it) the validation set; every process stops on its
        error."""
        from accelerate.utils import broadcast_object_list

        self.validation_path = self.output_dir / "validation_set.safetensors"
        validation_error, self.validation, self.validation_built = None, None, False
        validation_counts = dict.fromkeys(ROW_COUNT_KEYS, 0)
        if self.accelerator.is_main_process:
            try:  # a folder continued in place keeps its validation set (same frames and masks before and after)
                self.validation, validation_counts, self.validation_built = load_or_build_validation(
                    self.args, self.validation_path, reuse=self.in_place, normalization=self._rgb_normalization()
                )
            except ValueError as error:
                validation_error = str(error)
        validation_error, validation_counts = broadcast_object_list([validation_error, validation_counts])
        if validation_error:  # every process stops, not only the one that read the validation corpus
            raise ValueError(validation_error)
        self.validation_counts = validation_counts
        self.validation_report = _rows_report(validation_counts)

    def _write_output_dir(self) -> None:
        """Once every process has checked and read: the main process prepares the folder and writes the log (kept up
        to the resumed step, plus a resume record), the arguments and a newly built validation set."""
        args, accelerator, checkpoint, changed = self.args, self.accelerator, self.checkpoint, self.changed
        accelerator.wait_for_everyone()  # every process has checked and read; now the main process writes
        if accelerator.is_main_process:
            if self.in_place:
                lines = log_lines_up_to(self.log_path, self.start_step)  # steps past the checkpoint are run again
            else:
                prepare_output_dir(self.output_dir, overwrite=args.overwrite, what="pretraining output folder")
                previous_log = checkpoint.parent.parent / "training_log.jsonl" if checkpoint else None
                lines = log_lines_up_to(previous_log, self.start_step) if previous_log else []
            if checkpoint is not None:
                lines.append(
                    strict_json(
                        {
                            "event": "resume",
                            "step": self.start_step,
                            "checkpoint": str(checkpoint),
                            "in_place": self.in_place,
                            "changed_arguments": {k: {"old": o, "new": n} for k, (o, n) in changed.items()},
                        }
                    )
                )
            self.log_path.write_text("".join(line + "\n" for line in lines))
            write_json(self.output_dir / "training_args.json", dataclasses.asdict(args), indent=2)
            if self.validation_built:
                save_validation_set(self.validation_path, self.validation, args, self.validation_counts)
        if changed:
            logger.warning(
                "Resuming with changed arguments, applied from step %d on (the continuation differs from an "
                "uninterrupted run): %s",
                self.start_step + 1,
                {k: f"{o!r} -> {n!r}" for k, (o, n) in changed.items()},
            )
        resume_state = self.resume_state
        if resume_state and resume_state.get("world_size", self.world_size) != self.world_size:
            logger.warning(
                "The checkpoint was written by %s processes, this run has %d: each process now reads another shard.",
                resume_state.get("world_size"),
                self.world_size,
            )
        if checkpoint is not None:
            logger.info("Resumed from %s at step %d (run %s).", checkpoint, self.start_step, self.run_id)
        accelerator.wait_for_everyone()

    def _start_row_counts(self) -> None:
        """Row counts: those of the checkpointed steps, plus what the processes of this run read (summed when
        needed, see `_global_counts`)."""
        self.base_counts = torch.zeros(len(self.corpus_names), len(ROW_COUNT_KEYS), dtype=torch.int64)
        saved_rows = (self.resume_state or {}).get("rows", {})
        for index, name in enumerate(self.corpus_names):
            saved = (saved_rows.get("training_by_corpus") or {}).get(name)
            if isinstance(saved, dict):
                self.base_counts[index] = torch.tensor([int(saved.get(k, 0)) for k in ROW_COUNT_KEYS])
        self.base_redrawn = int(saved_rows.get("crops_redrawn", 0) or 0)
        self.local_counts = torch.zeros_like(self.base_counts)
        self.local_redrawn = torch.zeros((), dtype=torch.int64)

    def _start_trackers(self) -> None:
        if self.accelerator.is_main_process and self.report_to != "none":
            self.accelerator.init_trackers(
                "vanishing-depth-pretraining", config={k: str(v) for k, v in dataclasses.asdict(self.args).items()}
            )

    # ------------------------------------------------------------------------------------------------------------------
    # Row counts and the log
    # ------------------------------------------------------------------------------------------------------------------
    def _global_counts(self) -> tuple[torch.Tensor, int]:
        """(corpora, len(ROW_COUNT_KEYS)) counts and crops redrawn of all processes, checkpointed steps included."""
        accelerator = self.accelerator
        summed = accelerator.reduce(
            torch.cat([self.local_counts.flatten(), self.local_redrawn.view(1)]).to(accelerator.device),
            reduction="sum",
        ).cpu()
        return self.base_counts + summed[:-1].view_as(self.base_counts), self.base_redrawn + int(summed[-1])

    def _rows_summary(self, counts: torch.Tensor, redrawn: int) -> dict[str, Any]:
        total = _counts_dict(counts.sum(dim=0))
        return {
            "training": {
                **_rows_report(total),
                "crops_redrawn": redrawn,
                "by_corpus": {name: _counts_dict(row) for name, row in zip(self.corpus_names, counts)},
            },
            "validation": self.validation_report,
        }

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self.log_path.open("a") as handle:
                handle.write(strict_json(record) + "\n")

    # ------------------------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Every remaining micro-batch, then `_finish`; returns the summary."""
        args = self.args
        self.progress = tqdm(
            total=args.max_steps,
            initial=self.start_step,
            disable=not self.accelerator.is_main_process,
            desc="pretraining",
        )
        self.model.train()
        self.depth_share = _DepthShareProbe(self.accelerator.unwrap_model(self.model).vanishing_depth)
        self.last_validation: tuple[int, dict[str, float]] | None = None
        self.step, self.data_wait, self.step_start = self.start_step, 0.0, time.perf_counter()
        self.running: list[float] = []
        # --debug only: per-step checksum of this process's targets (shows each rank reads its own data)
        self.data_fingerprints: list[float] = []
        iterator = iter(self.loader)
        if self.checkpoint is not None:  # after the loader's iterator drew its base seed, as in the uninterrupted run
            restore_rng_state(self.checkpoint, self.rank, args.allow_pickle)
        wait_start = time.perf_counter()
        for batch in iterator:
            self.data_wait += time.perf_counter() - wait_start
            batch = self._take_batch(batch)
            if self._forward_backward(batch):
                self._finish_step(batch)
            wait_start = time.perf_counter()
        self.progress.close()
        return self._finish()

    def _take_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add the batch's row counts to this process's, note the stream position (both on the CPU, no device
        sync), and move the rest to the device."""
        self.local_counts += batch.pop("row_counts")
        self.local_redrawn += batch.pop("crops_redrawn")
        if "stream_position" in batch:
            self.stream_position = int(batch.pop("stream_position"))
        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
        if self.args.debug:  # a device-to-host sync every micro-step: audits only
            self.data_fingerprints.append(float(batch["target_depth"].double().sum()))
        return batch

    def _forward_backward(self, batch: dict[str, torch.Tensor]) -> bool:
        """One micro-batch: forward, backward, clipping and the optimizer (Accelerate skips the optimizer between
        accumulation boundaries). True when this completed an optimizer step."""
        accelerator, model, optimizer = self.accelerator, self.model, self.optimizer
        # The depth share is recorded only in the forward passes of a step that will be logged (`_DepthShareProbe`).
        recording = self.depth_share.recording() if self._is_logging_step(self.step + 1) else contextlib.nullcontext()
        with accelerator.accumulate(model):
            with recording:
                outputs = model(
                    pixel_values=batch["pixel_values"],
                    depth_values=batch["depth_values"],
                    target_depth=batch["target_depth"],
                    removed_mask=batch["removed_mask"],
                )
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients and self.args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.running.append(float(outputs.loss.detach()))  # the loss the history and the log record
        return accelerator.sync_gradients

    def _finish_step(self, batch: dict[str, torch.Tensor]) -> None:
        """After an optimizer step: the schedule, the step's loss, the bad-row check (every process, every step: all
        of them stop together on bad data), then logging, validation and checkpointing at their intervals."""
        args = self.args
        self.scheduler.step()
        self.step += 1
        step = self.step
        loss = float(np.mean(self.running))
        self.running = []
        counts, redrawn = self._global_counts()
        self._check_training_rows(counts)
        self.history.append({"step": step, "loss": loss})
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{loss:.3f}")
        last = step == args.max_steps
        if self._is_logging_step(step):
            self._log_step(loss, counts, redrawn, batch)
        if self.validation is not None and (step % args.validation_steps == 0 or last):
            self._validate()
        if step % args.checkpointing_steps == 0 or last:
            self._save_checkpoint(counts, redrawn)

    def _is_logging_step(self, step: int) -> bool:
        return step % self.args.logging_steps == 0 or step == self.args.max_steps

    def _check_training_rows(self, counts: torch.Tensor) -> None:
        """Fail on a corpus whose bad-row share is too high, once enough of its rows were read."""
        resized = ROW_COUNT_KEYS.index("resized_depth")
        for index, name in enumerate(self.corpus_names):
            if int(counts[index].sum() - counts[index, resized]) >= self.min_rows[index]:
                _check_bad_share(_counts_dict(counts[index]), self.args.max_bad_row_share, f"training corpus {name!r}")

    def _log_step(self, loss: float, counts: torch.Tensor, redrawn: int, batch: dict[str, torch.Tensor]) -> None:
        """A ``training_log.jsonl`` record of the step, also sent to the tracker."""
        args, step = self.args, self.step
        training_rows = self._rows_summary(counts, redrawn)["training"]
        learning_rates = self.scheduler.get_last_lr()
        micro_step = step * args.gradient_accumulation_steps
        mask_mean, mask_std = self.batches.assembler.curriculum_at(micro_step)
        record = {
            "step": step,
            "loss": loss,
            "lr": learning_rates[0],
            "decoder_lr": learning_rates[1],
            "epoch": self.batches.epoch_at(micro_step),
            # the curriculum's t ~ N(mask_mean, mask_std) from here on, and the share this step's batch removed
            "mask_mean": mask_mean,
            "mask_std": mask_std,
            "removed_fraction": float(batch["removed_fraction"].mean()),
            "rows_read": training_rows["rows_read"],
            "skipped": training_rows["skipped"],
            "resized_depth": training_rows["resized_depth"],
            "crops_redrawn": redrawn,
            "data_wait_share": self.data_wait / max(time.perf_counter() - self.step_start, 1e-9),
            **self.depth_share.take(self.accelerator),
        }
        self._append_log(record)
        if self.report_to != "none":
            flat = {k: v for k, v in record.items() if k != "skipped"}
            flat.update({f"skipped/{cause}": n for cause, n in record["skipped"].items()})
            self.accelerator.log(flat, step=step)

    def _validate(self) -> None:
        """Validation metrics of the current weights, logged with the validation rows read."""
        accelerator, step = self.accelerator, self.step
        metrics = validate(
            accelerator.unwrap_model(self.model), self.validation, self.args.per_device_batch_size, accelerator.device
        )
        self._append_log(
            {
                **metrics,
                "step": step,
                "validation_rows_read": self.validation_report["rows_read"],
                "validation_skipped": self.validation_report["skipped"],
            }
        )
        self.last_validation = (step, metrics)
        if accelerator.is_main_process:
            logger.info("validation at step %d: %s", step, {k: round(v, 4) for k, v in metrics.items()})
            self._draw_curves()
        if self.report_to != "none":
            accelerator.log(metrics, step=step)

    def _draw_curves(self) -> None:
        """``training_curves.png``: the loss of every step (the history, resumed steps included) and the
        `CURVE_METRICS` of every validation in the log (main process only: it writes the log)."""
        validation: dict[str, list[tuple[int, float]]] = {key: [] for key in CURVE_METRICS}
        for line in self.log_path.read_text().splitlines():
            record = json.loads(line)
            for key in CURVE_METRICS:
                if record.get(key) is not None:
                    validation[key].append((int(record["step"]), float(record[key])))
        plot_training_curves(
            [(entry["step"], entry["loss"]) for entry in self.history],
            validation,
            self.output_dir / TRAINING_CURVES_FILE,
            title=f"pretraining ({self.args.recipe} recipe), step {self.step} of {self.args.max_steps}",
        )

    def _save_checkpoint(self, counts: torch.Tensor, redrawn: int) -> None:
        """``checkpoints/step-N`` (see `save_checkpoint`), with every process's stream position."""
        accelerator, args = self.accelerator, self.args
        positions = accelerator.gather(torch.tensor([self.stream_position], device=accelerator.device)).cpu()
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "run_id": self.run_id,
            "step": self.step,
            "world_size": self.world_size,
            "history": self.history,
            "arguments": dataclasses.asdict(args),
            "rows": {
                "training_by_corpus": {name: _counts_dict(row) for name, row in zip(self.corpus_names, counts)},
                "crops_redrawn": redrawn,
            },
            "stream_positions": [int(v) for v in positions],
        }
        save_checkpoint(accelerator, self.model, self.optimizer, self.checkpoints, self.step, state, args)

    # ------------------------------------------------------------------------------------------------------------------
    # The end of the run
    # ------------------------------------------------------------------------------------------------------------------
    def _write_process_record(self, unwrapped) -> None:
        """``process_R_of_W.json``: every process records the weights it ended with (and, with --debug, the
        fingerprints of the data it saw), so a multi-process run can be audited."""
        weights_checksum = float(sum(p.detach().double().sum() for p in unwrapped.parameters()))
        record: dict[str, Any] = {"rank": self.rank}
        if self.args.debug:
            record["data_fingerprints"] = self.data_fingerprints
        record["weights_checksum"] = weights_checksum
        write_json(self.output_dir / f"process_{self.rank}_of_{self.world_size}.json", record)

    def _finish(self) -> dict[str, Any]:
        """Process record, final validation, final save (main process), summary and the ``end`` log line."""
        accelerator, args, step = self.accelerator, self.args, self.step
        counts, redrawn = self._global_counts()
        rows = self._rows_summary(counts, redrawn)
        summary = {
            "steps": step,
            "history": self.history,
            "world_size": self.world_size,
            "run_id": self.run_id,
            "rows": rows,
        }
        unwrapped = accelerator.unwrap_model(self.model)
        self._write_process_record(unwrapped)
        if self.validation is not None:
            if self.last_validation is not None and self.last_validation[0] == step:  # validated at the last step
                summary["validation"] = self.last_validation[1]
            else:
                summary["validation"] = validate(
                    unwrapped, self.validation, args.per_device_batch_size, accelerator.device
                )
            summary["validation_frames"] = int(self.validation["pixel_values"].shape[0])
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_final(unwrapped, args, summary)
            training, validation = rows["training"], rows["validation"]
            self._append_log(
                {
                    "event": "end",
                    "step": step,
                    "rows_read": training["rows_read"],
                    "skipped": training["skipped"],
                    "resized_depth": training["resized_depth"],
                    "crops_redrawn": training["crops_redrawn"],
                    "skipped_by_corpus": {
                        name: {cause: c[cause] for cause in SKIP_CAUSES} for name, c in training["by_corpus"].items()
                    },
                    "validation_rows_read": validation["rows_read"],
                    "validation_skipped": validation["skipped"],
                }
            )
            self._draw_curves()
            logger.info(
                "done: %d steps; training rows read %d, skipped by cause %s; validation rows read %d, skipped by "
                "cause %s",
                step,
                training["rows_read"],
                training["skipped"],
                validation["rows_read"],
                validation["skipped"],
            )
        if self.report_to != "none":
            accelerator.end_training()
        return summary


def pretrain(args: PretrainingArguments) -> dict[str, Any]:
    """Run (or resume) pretraining; returns a summary with the loss history, the row counts by cause and the final
    validation metrics."""
    return _PretrainingRun(args).train()


def save_final(model, args: PretrainingArguments, summary: dict[str, Any]) -> None:
    """Encoder + image processor in ``output_dir`` (AutoModel / AutoImageProcessor), the full model with its decoder
    in ``output_dir/pretraining`` and a summary JSON (the model card is the caller's: ``vanishing-depth pretrain``
    writes it)."""

    output_dir = Path(args.output_dir)
    model.save_encoder(output_dir)
    model.save_pretrained(output_dir / "pretraining")
    processor = VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": args.image_size})
    processor.save_pretrained(output_dir)
    processor.save_pretrained(output_dir / "pretraining")
    write_json(output_dir / "pretraining_summary.json", {k: v for k, v in summary.items() if k != "history"}, indent=2)
    if summary.get("validation"):
        write_json(
            output_dir / VALIDATION_RESULTS_FILE,
            {"results": validation_result_entries(args, summary["validation"], summary["validation_frames"])},
            indent=2,
        )


def validation_result_entries(
    args: PretrainingArguments, metrics: dict[str, float], frames: int
) -> list[dict[str, Any]]:
    """The model-card metrics entries (`vanishing_depth.evaluation.results.eval_result_entry`) of a validation: the
    scale-invariant error (SI) and the MAE in metres at each input density and their AUC over density; the MAE split
    by depth range stays in ``pretraining_summary.json``. Non-finite values (a density without data) are left out."""
    protocol = (
        f"pretraining validation of the encoder with its pretraining decoder (saved in pretraining/): {frames} "
        f"held-out frames resized to {args.image_size} px, fixed seeded masks "
        f"removing {', '.join(f'{f:.0%}' for f in VALIDATION_FRACTIONS)} of the depth (i.i.d. pixels, Perlin and "
        "blocky holes); every valid ground-truth pixel scored; AUC = area under the curve over density divided by "
        "the density span (arXiv 2503.19947)"
    )
    dataset = str(args.validation_dataset)
    entries = []
    for kind, metric_type, label, unit in (("si", "si", "SI error", None), ("mae_m", "mae", "MAE", "m")):
        settings = [(f"d{round(1 - f, 1):g}", f"at {round(1 - f, 1):.0%} input density") for f in VALIDATION_FRACTIONS]
        for suffix, words in sorted(settings) + [("auc", "AUC over density")]:
            value = metrics.get(f"val/{kind}_{suffix}")
            if value is None or not math.isfinite(value):
                continue
            entries.append(
                eval_result_entry(
                    task_type="depth-completion",
                    task_name="Depth completion (pretraining validation)",
                    dataset_name=dataset,
                    dataset_type=Path(dataset).name or dataset,
                    split=args.validation_split,
                    metric_type=metric_type,
                    metric_name=f"{label} {words}",
                    value=value,
                    unit=unit,
                    config="auc" if suffix == "auc" else f"density_{round(float(suffix[1:]), 1)}",
                    protocol=protocol,
                )
            )
    return entries


__all__ = [
    "MODEL_SHAPES",
    "ROW_COUNT_KEYS",
    "SKIP_CAUSES",
    "TRAINING_CURVES_FILE",
    "VALIDATION_RESULTS_FILE",
    "PretrainingArguments",
    "PretrainingBatchAssembler",
    "PretrainingBatches",
    "build_model",
    "random_init_rgb_config",
    "RANDOM_INIT_ATTENTION",
    "build_optimizer",
    "check_output_dir",
    "check_resume",
    "pickle_files",
    "pretrain",
    "read_training_state",
    "resolve_checkpoint",
    "validate",
    "validation_result_entries",
]
