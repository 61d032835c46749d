"""The end-to-end demo (`make demo`, `vanishing-depth demo`): pretrain a small adapter on the bundled Redwood corpus
mixed with procedural rooms (`vanishing_depth.data.synthetic`), then evaluate depth completion on held-out frames of
both (the 4 held-out Redwood frames and 4 procedural scenes never trained on) at input densities 50 %, 10 %, 1 % and
0.1 % of the valid pixels, for the trained model, the trained model with its measured pixels passed through
(``keep_measured``), the same model untrained, nearest-neighbour filling and median filling. Every method is scored
on all valid pixels and on the removed pixels alone (those it had to infer).

Writes ``OUT/vanishing-depth-demo/`` (encoder + processor: `AutoModel` / `AutoImageProcessor`),
``OUT/vanishing-depth-demo/pretraining/`` (`VanishingDepthForPretraining` with its decoder),
``eval_results.json`` (model-card format, both corpora), the model card (``README.md``), and the completion sweep's
``completion_metrics.json``, ``completion_sweep.png`` and ``rmse_by_method.png`` (`vanishing_depth.evaluation`) of the
Redwood frames beside them (published with the model) and of the procedural rooms in ``eval_synthetic/``. The
procedural corpus is rendered on each run into ``OUT/vanishing-depth-demo-synthetic/`` (corpus schema, ``train`` and
``test`` splits).

The run is deterministic for a machine and thread count: data order and augmentation are drawn from generators seeded
per step (`vanishing_depth.training.pretrain`), the model is initialised from the seed, and pretraining runs under
``torch.use_deterministic_algorithms``. Another CPU (other kernels) or another thread count changes the sums' order
and so the numbers a little.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .data import load_corpus, load_demo_corpus, save_corpus, synthetic_corpus
from .data.synthetic import DEMO_SYNTHETIC_FOLDER
from .evaluation import (
    BASELINE_PREDICTORS,
    CompletionEvalResult,
    eval_result_entry,
    evaluate_completion,
    format_method_table,
    model_predictor,
    write_eval_results,
)
from .evaluation.completion import REMOVED_PREFIX
from .hub import write_run_card
from .image_processing_vanishing_depth import VanishingDepthImageProcessor
from .modeling_vanishing_depth import VanishingDepthForPretraining
from .training.pretrain import PretrainingArguments, build_model, pretrain
from .training.recipes import TINY_DEMO_CONFIG_OVERRIDES, TINY_DEMO_OPTIMISATION

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_DENSITIES",
    "DEMO_EVAL_CORPORA",
    "DEMO_SYNTHETIC_SCENE_OPTIONS",
    "build_demo_synthetic_corpus",
    "demo_arguments",
    "demo_eval_results",
    "demo_patterns",
    "demo_table",
    "deterministic_algorithms",
    "evaluate_demo",
    "run_demo",
]

DEMO_DENSITIES = (0.5, 0.1, 0.01, 0.001)
DEMO_MODEL_FOLDER = "vanishing-depth-demo"
#: The evaluation corpora of the demo: name -> (title in the tables, eval_results dataset name and type).
DEMO_EVAL_CORPORA = {
    "redwood": ("the 4 held-out Redwood frames", "Redwood living room 1 (demo, held-out)", "redwood-livingroom1"),
    "synthetic": ("4 held-out procedural rooms", "Procedural rooms (demo, held-out)", "vanishing-depth-synthetic"),
}
#: The procedural rooms of the demo: an indoor sensor's range (about 0.5-12 m), objects close to the camera, and
#: objects that share a wall's texture (a depth edge without a colour edge).
DEMO_SYNTHETIC_SCENE_OPTIONS = {
    "max_depth_m": 12.0,
    "room_length_m": (3.0, 12.0),
    "near_object_probability": 0.25,
    "shared_material_probability": 0.3,
}
_SYNTHETIC_SIZE = (180, 240)  # height, width in pixels: the Redwood frames' 4:3, above the 112 px crops
_SYNTHETIC_TRAIN_FRAMES = 160
_SYNTHETIC_TEST_FRAMES = 4
_PROTOCOL = (
    "held-out frames at 112 px short edge; input = a uniform random share of the valid pixels; scored on all valid "
    "ground-truth pixels and on the removed ones (valid, not given as input); metres."
)


def build_demo_synthetic_corpus(
    output_dir: str | os.PathLike,
    seed: int = 0,
    train_frames: int = _SYNTHETIC_TRAIN_FRAMES,
    test_frames: int = _SYNTHETIC_TEST_FRAMES,
    size: tuple[int, int] = _SYNTHETIC_SIZE,
) -> Path:
    """Render the demo's procedural rooms (`DEMO_SYNTHETIC_SCENE_OPTIONS`, `size` = (height, width) pixels) into
    `output_dir` as a corpus with ``train`` (`train_frames`) and ``test`` (`test_frames`, the held-out scenes) splits;
    replaces a corpus already there. Returns `output_dir`."""
    if train_frames < 1 or test_frames < 1:
        raise ValueError(f"`train_frames` and `test_frames` must be >= 1, got {train_frames} and {test_frames}.")
    total = train_frames + test_frames
    corpus = synthetic_corpus(total, *size, seed=seed, keep_in_memory=True, **DEMO_SYNTHETIC_SCENE_OPTIONS)
    splits = {"train": list(range(train_frames)), "test": list(range(train_frames, total))}
    save_corpus(corpus, output_dir, splits=splits, overwrite=True)
    return Path(output_dir)


def demo_arguments(
    output_dir: str | os.PathLike,
    max_steps: int,
    seed: int,
    overwrite: bool = False,
    synthetic_corpus_dir: str | os.PathLike | None = None,
):
    """The demo's `PretrainingArguments`: a tiny random-init model on the bundled corpus (and, with
    `synthetic_corpus_dir`, the demo's procedural rooms, mixed with equal probability), in minutes on a CPU."""
    datasets = ["redwood_demo"] + ([str(synthetic_corpus_dir)] if synthetic_corpus_dir is not None else [])
    return PretrainingArguments(
        output_dir=str(output_dir),
        model_shape="tiny",  # hidden 64, 4 blocks: minutes on a laptop CPU
        config_overrides=json.dumps(TINY_DEMO_CONFIG_OVERRIDES),
        dataset=datasets,
        validation_dataset="redwood_demo",
        validation_split="test",
        image_size=112,
        per_device_batch_size=8,
        max_steps=max_steps,
        **TINY_DEMO_OPTIMISATION,
        # The demo is scored down to 0.1 % density, so its curriculum moves to sparse inputs sooner and further than
        # the paper's 30-50 % (still a flag each): mean 0.5 -> 0.9 removed, up to 99.9 %. On the fraction clock the
        # warm-up and ramp are shares of the run, so the curriculum runs its course at any --max-steps.
        mask_mean_start=0.5,
        mask_mean_end=0.9,
        mask_std_start=0.2,
        mask_std_end=0.3,
        curriculum_clock="fraction",
        mask_warmup_fraction=0.1,
        mask_ramp_fraction=0.4,
        mask_max_fraction=0.999,
        checkpointing_steps=max(1, max_steps // 2),
        validation_steps=max(1, max_steps // 2),
        validation_frames=4,
        logging_steps=25,
        seed=seed,
        overwrite=overwrite,
        report_to="none",
    )


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Run the block under ``torch.use_deterministic_algorithms(True)`` (ops without a deterministic version raise
    instead of running), restoring the previous setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def demo_patterns(densities: Sequence[float] = DEMO_DENSITIES) -> list[str]:
    """The sweep's input patterns of the demo: a uniform random share of the valid pixels kept."""
    return [f"fraction:{density}" for density in densities]


def evaluate_demo(
    model_dir: str | os.PathLike,
    untrained,
    densities: Sequence[float] = DEMO_DENSITIES,
    seed: int = 0,
    short_edge: int = 112,
    output_dir: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    dataset: Any = None,
) -> CompletionEvalResult:
    """The completion sweep on held-out frames (`dataset`, default the 4 held-out Redwood frames), one
    ``fraction:P`` pattern per density, for the trained model in ``model_dir/pretraining`` (``"trained"``), the same
    with its measured pixels passed through (``"trained_keep_measured"``), `untrained` (``"untrained"``),
    nearest-neighbour and median filling, all on the same inputs; frames at `short_edge` px. With `output_dir` the
    sweep's ``completion_metrics.json`` (with `settings` added), ``completion_sweep.png`` and ``rmse_by_method.png``
    are written there."""
    trained = VanishingDepthForPretraining.from_pretrained(Path(model_dir) / "pretraining").eval()
    predictors = {
        "trained_keep_measured": model_predictor(trained, keep_measured=True),
        "untrained": model_predictor(untrained.eval()),
        **BASELINE_PREDICTORS,
    }
    return evaluate_completion(
        trained,
        load_demo_corpus("test") if dataset is None else dataset,
        VanishingDepthImageProcessor.from_model_config(trained.config, size={"shortest_edge": short_edge}),
        patterns=demo_patterns(densities),
        predictors=predictors,
        model_name="trained",
        output_dir=output_dir,
        batch_size=1,
        min_depth_m=1e-3,
        seed=seed,
        print_table=False,
        settings=settings,
    )


def demo_table(
    result: CompletionEvalResult,
    densities: Sequence[float] = DEMO_DENSITIES,
    corpus: str = "redwood",
    removed: bool = True,
) -> str:
    """The demo's table: RMSE in metres by method (rows) and input density (columns), on the removed pixels (what
    each method had to infer) or, with ``removed=False``, on all valid pixels."""
    titles = {pattern: f"{density * 100:.1f}%" for density, pattern in zip(densities, demo_patterns(densities))}
    where = "the removed pixels" if removed else "all valid pixels"
    title = f"RMSE (m) on {where} of {DEMO_EVAL_CORPORA[corpus][0]}, by input density"
    metric = REMOVED_PREFIX + "rmse_m" if removed else "rmse_m"
    return format_method_table(result.methods, metric, title, column_titles=titles)


def demo_eval_results(
    result: CompletionEvalResult | Mapping[str, CompletionEvalResult], densities: Sequence[float] = DEMO_DENSITIES
) -> list[dict]:
    """The ``eval_results.json`` entries of the demo: only the trained model's own numbers, RMSE and MAE in metres
    per input density, on all valid pixels and on the removed ones, per evaluation corpus (`result`: one Redwood
    sweep, or ``{corpus: sweep}`` with corpora of `DEMO_EVAL_CORPORA`)."""
    results = {"redwood": result} if isinstance(result, CompletionEvalResult) else result
    entries = []
    for corpus, sweep in results.items():
        _, dataset_name, dataset_type = DEMO_EVAL_CORPORA[corpus]
        for density, pattern in zip(densities, demo_patterns(densities)):
            metrics = sweep.methods["trained"][pattern]
            for prefix, pixels in (("", ""), (REMOVED_PREFIX, " (removed pixels)")):
                for key, name in (("rmse_m", "RMSE"), ("mae_m", "MAE")):
                    entries.append(
                        eval_result_entry(
                            task_type="depth-completion",
                            task_name="Depth completion",
                            dataset_name=dataset_name,
                            dataset_type=dataset_type,
                            split="test",
                            metric_type=key.split("_")[0],
                            metric_name=f"{name} at {density * 100:g}% input density{pixels}",
                            value=round(metrics[prefix + key], 4),
                            unit="m",
                            config=f"density_{density}" + ("_removed" if prefix else ""),
                            protocol=_PROTOCOL,
                        )
                    )
    return entries


def _removed_fraction_log(model_dir: Path) -> list[tuple[int, float, float]]:
    """(step, curriculum mean, removed share of the step's batch) of each record of ``training_log.jsonl``."""
    path = model_dir / "training_log.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], r["mask_mean"], r["removed_fraction"]) for r in records if "removed_fraction" in r]


def _sweep_dir(model_dir: Path, corpus: str) -> Path:
    # The Redwood sweep beside the model (its completion_metrics.json is published with it), the others below.
    return model_dir if corpus == "redwood" else model_dir / f"eval_{corpus}"


def run_demo(
    output_root: str | os.PathLike = "outputs",
    max_steps: int = 1800,
    seed: int = 0,
    overwrite: bool = False,
    synthetic_frames: tuple[int, int] = (_SYNTHETIC_TRAIN_FRAMES, _SYNTHETIC_TEST_FRAMES),
) -> dict[str, CompletionEvalResult]:
    """Render the procedural rooms, pretrain on them and the bundled corpus, evaluate completion on held-out frames
    of both, save the results files and the model card, print the tables. A used
    `output_root/vanishing-depth-demo` is refused (as any pretraining output folder) unless `overwrite`
    (`make demo` passes it: it re-runs its own demo). `synthetic_frames`: (training, held-out) procedural rooms.
    Returns the sweeps, ``{"redwood": ..., "synthetic": ...}``."""
    model_dir = Path(output_root) / DEMO_MODEL_FOLDER
    start = time.perf_counter()
    synthetic_dir = build_demo_synthetic_corpus(
        Path(output_root) / DEMO_SYNTHETIC_FOLDER,
        seed,
        train_frames=synthetic_frames[0],
        test_frames=synthetic_frames[1],
    )
    render_seconds = time.perf_counter() - start
    args = demo_arguments(model_dir, max_steps, seed, overwrite, synthetic_corpus_dir=synthetic_dir)
    untrained = build_model(args)  # same seed and shape: the "before pretraining" reference
    start = time.perf_counter()
    with deterministic_algorithms():
        summary = pretrain(args)
    train_seconds = time.perf_counter() - start
    curriculum = _removed_fraction_log(model_dir)
    for step, mask_mean, removed in curriculum[:: max(1, len(curriculum) // 8)]:
        logger.info("step %d: curriculum mean removed %.3f, this batch removed %.3f", step, mask_mean, removed)
    settings = {
        "densities": list(DEMO_DENSITIES),
        "train_seconds": train_seconds,
        "render_seconds": render_seconds,
        "steps": summary["steps"],
        "training_corpora": list(args.dataset),
        "final_removed_fraction": curriculum[-1][2] if curriculum else None,
    }
    datasets = {"redwood": load_demo_corpus("test"), "synthetic": load_corpus(synthetic_dir, split="test")}
    results = {
        corpus: evaluate_demo(
            model_dir, untrained, seed=seed, output_dir=_sweep_dir(model_dir, corpus), settings=settings, dataset=data
        )
        for corpus, data in datasets.items()
    }
    write_eval_results(model_dir, demo_eval_results(results))
    write_run_card(model_dir, dataclasses.asdict(args))  # with the evaluation numbers
    for corpus, result in results.items():
        print(demo_table(result, corpus=corpus, removed=True), end="\n\n")
        print(demo_table(result, corpus=corpus, removed=False), end="\n\n")
    print(
        f"pretraining: {summary['steps']} steps in {train_seconds / 60:.1f} min "
        f"({summary['steps'] / max(train_seconds, 1e-9) * 60:.0f} steps/min), removed share at the end "
        f"{settings['final_removed_fraction']}; outputs in {model_dir}"
    )
    for corpus, result in results.items():
        rmse = {
            method: [per_pattern[p][REMOVED_PREFIX + "rmse_m"] for p in demo_patterns()]
            for method, per_pattern in result.methods.items()
        }
        for index, density in enumerate(DEMO_DENSITIES):
            beaten = [m for m in ("untrained", "median_fill") if rmse["trained"][index] >= rmse[m][index]]
            if density <= 0.01 and rmse["trained"][index] >= rmse["nearest_fill"][index]:
                beaten.append("nearest_fill")
            if beaten:
                logger.warning(
                    "%s, %s density: the trained model does not beat %s on the removed pixels", corpus, density, beaten
                )
    return results
