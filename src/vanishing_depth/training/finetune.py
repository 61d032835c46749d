"""`Trainer` recipes for the task heads on a (frozen) Vanishing Depth encoder, and LoRA on the depth stream
(``vanishing-depth finetune`` runs `finetune` from the shell and writes the model card).

[`finetune`] wires everything a user would otherwise write by hand: the head from the encoder checkpoint through its
Auto class (encoder frozen by default, head new), the image processor, an [`RGBDCollator`] for the dataset's schema,
the streaming metric of the task, and `TrainingArguments` with ``remove_unused_columns=False`` (the collator needs
the raw columns) and ``batch_eval_metrics=True`` (no full-resolution logits held in memory).

Defaults per task: segmentation AdamW lr 1e-4, weight decay 0.05, polynomial decay power 0.9 (the authors'
mmsegmentation configs of Vanishing Depth, arXiv 2503.19947: ``configs/mask2former/mask2former_RGBDVIT_2VitB_*.py``);
depth completion lr 1e-4, no weight decay; classification lr 1e-3, no weight decay (our choices: the paper does not
give them).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, get_dataset_split_names
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    Trainer,
    TrainingArguments,
)

from ..data import DEMO_CORPUS_NAME, TASKS, RGBDDatasetAdapter, corpus_adapter, get_adapter, load_split
from ..evaluation.results import eval_result_entry, write_eval_results
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..modeling_vanishing_depth import VanishingDepthModel
from ..output_paths import inputs_inside, prepare_output_dir, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "TASK_HEAD_MODULES",
    "FinetuneResult",
    "depth_stream_lora_pattern",
    "finetune",
    "finetune_eval_results",
    "lora_config_for_depth_stream",
]

# The trainable head of each task model (`head_module_names` of the classes), for peft's `modules_to_save`.
TASK_HEAD_MODULES = {"segmentation": ("decode_head",), "depth": ("depth_head",), "classification": ("classifier",)}
# (learning rate, weight decay, scheduler, scheduler kwargs) per task.
_TASK_OPTIMISATION = {
    "segmentation": (1e-4, 0.05, "polynomial", {"power": 0.9}),
    "depth": (1e-4, 0.0, "linear", {}),
    "classification": (1e-3, 0.0, "linear", {}),
}
_EVAL_SPLITS = ("validation", "val", "test", "teset")  # `wyrx/NYUDepthv2_seg` spells its test split "teset"


def _auto_class(task: str):
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    return {
        "segmentation": AutoModelForSemanticSegmentation,
        "depth": AutoModelForDepthEstimation,
        "classification": AutoModelForImageClassification,
    }[task]


# ----------------------------------------------------------------------------------------------------------------------
# LoRA on the depth stream
# ----------------------------------------------------------------------------------------------------------------------
def depth_stream_lora_pattern(target_modules: Sequence[str] = ("q_proj", "v_proj")) -> str:
    """Regex (full match, as peft applies it) selecting `target_modules` inside the depth ViT's blocks only.

    Matches e.g. ``vanishing_depth.depth_encoder.encoder.layer.3.attention.q_proj`` (and the same without the
    ``vanishing_depth.`` prefix for a bare encoder); never the RGB stream, the fusion blocks or the head.
    """
    if not target_modules or any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in target_modules):
        raise ValueError(f"`target_modules` must be module names such as 'q_proj', got {list(target_modules)}.")
    names = "|".join(target_modules)
    return rf"(?:.*\.)?depth_encoder\.encoder\.layer\.\d+\.(?:.*\.)?(?:{names})"


def lora_config_for_depth_stream(
    r: int = 8,
    lora_alpha: int | None = None,
    lora_dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = None,
    task: str | None = None,
    model: torch.nn.Module | None = None,
):
    """A `peft.LoraConfig` that adapts only the depth ViT's attention projections and trains the task head fully.

    Args:
        r / lora_alpha / lora_dropout: LoRA rank, scaling (default 2r) and dropout.
        target_modules: projection names inside each depth-ViT block. Default: the RGB family's stream adapter's
            `lora_default_targets` (``q_proj``, ``v_proj`` for DINOv2, DINOv3 and SigLIP); its
            `attention_projections` lists the attention projections (DINOv2/DINOv3: ``q_proj``, ``k_proj``,
            ``v_proj``, ``o_proj``; SigLIP: ``out_proj`` for the output). Without `model` the DINOv2 default
            ``("q_proj", "v_proj")`` and [`depth_stream_lora_pattern`] apply.
        modules_to_save: modules trained and saved in full; default: the head of `model` (its `head_module_names`)
            or of `task`.
        task / model: where the head names (and, from `model`, the RGB family's block layout) come from.

    Use with `peft.get_peft_model(model, config)`; the adapters save with `save_pretrained` and reload with
    `peft.PeftModel.from_pretrained(base_model, folder)`.
    """
    if modules_to_save is None:
        if model is not None and getattr(model, "head_module_names", None):
            modules_to_save = model.head_module_names
        elif task is not None:
            if task not in TASK_HEAD_MODULES:
                raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
            modules_to_save = TASK_HEAD_MODULES[task]
        else:
            raise ValueError("pass `modules_to_save`, `task` or `model` so the task head is trained and saved.")
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"`r` must be a positive integer rank, got {r!r}.")
    adapter = None
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "rgb_config", None) is not None:
        adapter = config.stream_adapter
    if target_modules is None:
        target_modules = adapter.lora_default_targets if adapter is not None else ("q_proj", "v_proj")
    pattern = depth_stream_lora_pattern(target_modules)  # validates the names
    if adapter is not None:
        names = "|".join(target_modules)
        pattern = rf"(?:.*\.)?depth_encoder\.{adapter.blocks_regex()}\.(?:.*\.)?(?:{names})"
    if model is not None:
        found = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
        if not found:
            known = f" ({adapter.family} attention projections: {adapter.attention_projections})" if adapter else ""
            raise ValueError(
                f"no module of {type(model).__name__} matches the depth-stream LoRA pattern {pattern!r}{known}."
            )
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=lora_dropout,
        target_modules=pattern,
        modules_to_save=list(modules_to_save),
        bias="none",
    )


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------
def _eval_split_name(dataset: Any, train_split: str) -> str | None:
    """The evaluation split of a `DatasetDict`, of the demo corpus or of a local folder, if it has one."""
    if isinstance(dataset, DatasetDict):
        names = list(dataset)
    elif isinstance(dataset, str | os.PathLike) and str(dataset) == DEMO_CORPUS_NAME:
        names = ["train", "test"]
    elif isinstance(dataset, str | os.PathLike) and Path(dataset).is_dir():
        names = get_dataset_split_names(str(dataset))  # local files only: no network for a guess
    else:
        return None
    found = next((name for name in _EVAL_SPLITS if name in names and name != train_split), None)
    if found is not None:
        logger.info("Evaluating on split %r.", found)
    return found


def _infer_adapter(task: str, column_names: list[str] | None, input_depth_pattern: str | None) -> RGBDDatasetAdapter:
    """Pick an adapter from the column names when none was named."""
    columns = set(column_names or ())
    if task == "depth":
        if {"sparse_depth", "ground_truth"} <= columns:
            return get_adapter("void")
        return corpus_adapter(input_depth_pattern=input_depth_pattern or "uniform:500")
    raise ValueError(
        f"task {task!r} needs `adapter` (one of 'nyu_depth_v2', 'sunrgbd', or an RGBDDatasetAdapter) to know the "
        f"label convention and depth unit of a dataset with columns {sorted(columns)}."
    )


# ----------------------------------------------------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    """What [`finetune`] produced: the trained model (a `PeftModel` with LoRA), the `Trainer`, the metrics and the
    output folder; `summary` is what ``finetune_results.json`` holds (the run's settings and metrics, what
    its model card lists as hyperparameters), `eval_results_path` the ``eval_results.json`` written (None when not
    saved or without evaluation numbers)."""

    model: Any
    trainer: Any
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    eval_results_path: Path | None = None


def _build_model(task: str, encoder: Any, adapter: RGBDDatasetAdapter, num_labels: int | None, **model_kwargs):
    auto = _auto_class(task)
    kwargs = dict(model_kwargs)
    if task != "depth":
        num_labels = num_labels or adapter.num_labels
        if not num_labels:
            raise ValueError(f"task {task!r} needs `num_labels` (or an adapter that declares it).")
        id2label = dict(adapter.id2label) if adapter.id2label and len(adapter.id2label) == num_labels else None
        id2label = id2label or {index: f"class_{index}" for index in range(num_labels)}
        kwargs.update(num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    if isinstance(encoder, VanishingDepthModel):
        config = encoder.config.__class__.from_dict({**encoder.config.to_dict(), **kwargs})
        model = auto.from_config(config)
        model.vanishing_depth.load_state_dict(encoder.state_dict())
        model.apply_encoder_freezing()
        logger.info(
            "Built %s on the given encoder instance; the head %s is new.", type(model).__name__, model.head_module_names
        )
        return model
    if not isinstance(encoder, str | os.PathLike):
        raise ValueError(f"`encoder` must be a folder / Hub id or a VanishingDepthModel, got {type(encoder).__name__}.")
    return auto.from_pretrained(encoder, **kwargs)


def _build_processor(encoder: Any, model, image_size: int | tuple[int, int] | None) -> VanishingDepthImageProcessor:
    processor = None
    if isinstance(encoder, str | os.PathLike) and (Path(encoder) / "preprocessor_config.json").is_file():
        processor = VanishingDepthImageProcessor.from_pretrained(encoder)
    if processor is None:
        processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if image_size is not None:
        if isinstance(image_size, int):
            processor.size = {"shortest_edge": int(image_size)}
        elif len(image_size) == 2:
            processor.size = {"height": int(image_size[0]), "width": int(image_size[1])}
        else:
            raise ValueError(f"`image_size` must be an int (shortest edge) or (height, width), got {image_size!r}.")
    return processor


# Trainer's eval keys worth an ``eval_results.json`` entry, per task: key -> (metric type, readable name, unit).
_RESULT_METRICS = {
    "segmentation": {
        "eval_mean_iou": ("mean_iou", "mean IoU", None),
        "eval_overall_accuracy": ("accuracy", "pixel accuracy", None),
    },
    "depth": {
        "eval_rmse_m": ("rmse", "RMSE", "m"),
        "eval_mae_m": ("mae", "MAE", "m"),
        "eval_abs_rel": ("abs_rel", "AbsRel", None),
    },
    "classification": {"eval_accuracy": ("accuracy", "top-1 accuracy", None)},
}
_RESULT_TASKS = {
    "segmentation": ("image-segmentation", "Semantic segmentation"),
    "depth": ("depth-estimation", "Depth completion"),
    "classification": ("image-classification", "Scene classification"),
}


def finetune_eval_results(task: str, dataset: Any, eval_metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """The run's own evaluation numbers as ``eval_results.json`` entries (`eval_result_entry`): the task's main
    metrics found in Trainer's `eval_metrics`; a metric that is not a finite number (no evaluated pixel) is left out."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    task_type, task_name = _RESULT_TASKS[task]
    name = str(dataset) if isinstance(dataset, str | os.PathLike) else type(dataset).__name__
    entries = []
    for key, (metric_type, readable, unit) in _RESULT_METRICS[task].items():
        value = eval_metrics.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        entries.append(
            eval_result_entry(
                task_type=task_type,
                task_name=task_name,
                dataset_name=name,
                dataset_type=name,
                split="eval",
                metric_type=metric_type,
                metric_name=readable,
                value=float(value),
                unit=unit,
                protocol="vanishing-depth finetune, frozen encoder unless stated in the hyperparameters",
            )
        )
    return entries


def _prepare_finetune_output(output_dir, encoder, dataset, overwrite: bool) -> None:
    """The rule of every command that writes (`vanishing_depth.output_paths`): a used `output_dir` is refused unless
    `overwrite`, and `overwrite` never deletes the encoder or the dataset the run reads."""
    folder = Path(output_dir)
    if overwrite:
        for name, source in (("--encoder", encoder), ("--dataset", dataset)):
            if inputs_inside(folder, [source]):
                raise ValueError(
                    f"--overwrite would delete {str(folder)!r}, which holds {name} {str(source)!r} that this run "
                    "reads; choose another --output-dir."
                )
    prepare_output_dir(folder, overwrite=overwrite, what="fine-tuning output folder")


def finetune(
    task: str,
    dataset: Any,
    encoder: Any,
    output_dir: str | os.PathLike,
    *,
    eval_dataset: Any = None,
    adapter: str | RGBDDatasetAdapter | None = None,
    split: str = "train",
    eval_split: str | None = None,
    num_labels: int | None = None,
    processor: VanishingDepthImageProcessor | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_steps: int = -1,
    num_train_epochs: float = 3.0,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    batch_size: int = 8,
    eval_batch_size: int | None = None,
    freeze_encoder: bool = True,
    segmentation_head: str | None = None,
    lora: bool = False,
    lora_r: int = 8,
    input_depth_pattern: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    use_cpu: bool | None = None,
    logging_steps: int = 10,
    save: bool = True,
    training_args: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> FinetuneResult:
    """Fine-tune a task head on a Vanishing Depth encoder with `transformers.Trainer`.

    Args:
        task: ``"segmentation"``, ``"depth"`` (completion) or ``"classification"``.
        dataset: training data: a `datasets.Dataset` / `DatasetDict`, a local folder or parquet file, a Hub id, or
            ``"redwood_demo"``.
        encoder: an encoder folder / Hub id saved by `VanishingDepthModel.save_pretrained` (or a full task-model
            checkpoint), or a `VanishingDepthModel` instance.
        output_dir: where the model (or LoRA adapters), the processor, ``finetune_results.json`` and
            ``eval_results.json`` go (the model card is the caller's: ``vanishing-depth finetune`` writes it).
        eval_dataset / eval_split: evaluation data; by default the ``validation`` / ``test`` split of a
            `DatasetDict`, of ``redwood_demo`` or of a local folder, if there is one (Hub ids: name it).
        adapter: the dataset's schema: a name of `ADAPTERS` (``"nyu_depth_v2"``, ``"sunrgbd"``, ``"void"``,
            ``"corpus"``) or an [`RGBDDatasetAdapter`]; inferred for depth completion (VOID columns or corpus schema).
        num_labels: classes (default: the adapter's).
        processor: the image processor (default: the encoder folder's, else one matching the model config).
        image_size: shortest edge in pixels, or (height, width); default: the processor's.
        max_steps / num_train_epochs / learning_rate / weight_decay / batch_size / eval_batch_size: optimisation
            (per-task defaults in the module docstring).
        freeze_encoder: keep the encoder frozen (the paper's protocol); False trains the depth stream too.
        segmentation_head: ``"linear"`` (probe) or ``"multiscale"``.
        lora: add LoRA adapters to the depth ViT's q/v projections ([`lora_config_for_depth_stream`], rank `lora_r`)
            and train them with the head; the encoder weights stay frozen.
        input_depth_pattern: depth completion from data without a sparse-input column: the simulated sensor.
        max_train_samples / max_eval_samples: use only the first N examples.
        seed / use_cpu / logging_steps: passed to `TrainingArguments`.
        save: write the model, the processor and the metrics to `output_dir`.
        overwrite: `output_dir` must be empty or new (checked before training, so a refused run costs nothing);
            True replaces what it holds (refused when it holds the encoder being fine-tuned).
        training_args: further `TrainingArguments` fields, overriding the recipe's.
        model_kwargs: further config fields for `from_pretrained` (e.g. ``depth_decoder_hidden_size``).

    Returns:
        [`FinetuneResult`].
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if save:
        _prepare_finetune_output(output_dir, encoder, dataset, overwrite)
    train_data = load_split(dataset, split, max_train_samples)
    if eval_dataset is None:
        eval_split = eval_split or _eval_split_name(dataset, split)
        if eval_split is not None:
            eval_dataset = dataset
    if eval_dataset is not None:
        eval_dataset = load_split(eval_dataset, eval_split or split, max_eval_samples)

    if adapter is None:
        adapter = _infer_adapter(task, train_data.column_names, input_depth_pattern)
    elif isinstance(adapter, str):
        extra = {"input_depth_pattern": input_depth_pattern} if input_depth_pattern and adapter != "void" else {}
        adapter = get_adapter(adapter, task=task, **extra)
    if not isinstance(adapter, RGBDDatasetAdapter):
        raise ValueError(f"`adapter` must be a name or an RGBDDatasetAdapter, got {type(adapter).__name__}.")
    if adapter.task != task:
        raise ValueError(f"`adapter` {adapter.name!r} is set up for task {adapter.task!r}, not {task!r}.")
    adapter.check_columns(train_data.column_names)

    extra_model_kwargs = dict(model_kwargs or {})
    extra_model_kwargs["freeze_encoder"] = freeze_encoder
    if segmentation_head is not None:
        extra_model_kwargs["segmentation_head"] = segmentation_head
    model = _build_model(task, encoder, adapter, num_labels, **extra_model_kwargs)
    if processor is None:
        processor = _build_processor(encoder, model, image_size)
    collator = adapter.collator(processor, seed=seed)
    if lora:
        model = get_peft_model(model, lora_config_for_depth_stream(r=lora_r, model=model))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("LoRA on the depth stream (rank %d): %d trainable parameters.", lora_r, trainable)
    ignore_index = getattr(model.config, "semantic_loss_ignore_index", 255)
    if task == "segmentation" and processor.ignore_index != ignore_index:
        raise ValueError(
            f"the processor pads labels with {processor.ignore_index} but the model ignores {ignore_index}; set "
            "`semantic_loss_ignore_index` (model_kwargs) or the processor's `ignore_index` to the same value."
        )
    compute_metrics = adapter.metrics(ignore_index=ignore_index)

    default_lr, default_wd, scheduler, scheduler_kwargs = _TASK_OPTIMISATION[task]
    args_kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "remove_unused_columns": False,  # the collator reads the raw image / depth / label columns
        "batch_eval_metrics": True,  # the metrics stream over batches: no full-resolution logits kept
        "label_names": ["labels"],  # a PeftModel's forward(*args, **kwargs) hides the name from Trainer
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": eval_batch_size or batch_size,
        "learning_rate": learning_rate if learning_rate is not None else default_lr,
        "weight_decay": weight_decay if weight_decay is not None else default_wd,
        "lr_scheduler_type": scheduler,
        "lr_scheduler_kwargs": dict(scheduler_kwargs),
        "max_steps": max_steps,
        "num_train_epochs": num_train_epochs,
        "logging_steps": logging_steps,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "dataloader_num_workers": 0,
    }
    if use_cpu is not None:
        args_kwargs["use_cpu"] = use_cpu
    args_kwargs.update(training_args or {})
    args = TrainingArguments(**args_kwargs)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_dataset,
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    train_output = trainer.train()
    train_metrics = dict(train_output.metrics)
    eval_metrics = trainer.evaluate() if eval_dataset is not None else {}

    output_path = Path(output_dir)
    summary = {
        "task": task,
        "adapter": adapter.name,
        "encoder": str(encoder) if isinstance(encoder, str | os.PathLike) else type(encoder).__name__,
        "lora": lora,
        "freeze_encoder": freeze_encoder,
        "train": train_metrics,
        "eval": eval_metrics,
    }
    eval_results_path = None
    if save:
        trainer.save_model(str(output_path))
        processor.save_pretrained(str(output_path))
        write_json(output_path / "finetune_results.json", summary, indent=2)
        eval_results_path = write_eval_results(output_path, finetune_eval_results(task, dataset, eval_metrics))
        logger.info("Saved the fine-tuned model, processor and metrics to %s.", output_path)
    return FinetuneResult(model, trainer, train_metrics, eval_metrics, output_path, summary, eval_results_path)
