"""The paper's claims as studies (``vanishing-depth study encoding | density | features``), each writing a JSON record,
a printed table and a PNG.

- `encoding_study`: the positional depth encoding (PDE, 32 channels) against the 1-channel normalised baseline and
  log-depth with a validity channel (Vanishing Depth, arXiv 2503.19947: PDE is claimed more precise and more stable
  than normalisation; OMNI-DC, arXiv 2411.19278, found log-depth best among the simple encodings). Every encoding is
  pretrained with the same model, data, steps and seeds (`vanishing_depth.training.pretrain.pretrain`), then scored
  by the one completion sweep (`evaluate_completion`) on the same held-out frames and the same simulated inputs:
  uniform densities of 50 / 10 / 1 / 0.1 % and the sensor patterns (uniform points, Perlin holes, LiDAR lines,
  low-resolution ToF, edge holes). Mean and spread over the seeds.
- `density_study`: the density stress test, from 0 to 99.9 % of the valid pixels removed plus the sensor patterns,
  one curve per saved completion model and for nearest-neighbour and median filling.
- `feature_study`: PCA of the RGB-stream and depth-stream tokens at each fusion layer (the paper's feature figure) and
  the share of the fused tokens that comes from depth, ``|SE_depth| / (|SE_rgb| + |SE_depth|)``
  (`VanishingDepthFusion.depth_share`), per fusion layer.

Every study runs on the bundled corpus (``redwood_demo``) by default and on any corpus in the library's schema;
everything random is seeded (training seeds, the evaluation inputs' generators), and the records hold no paths or
timings, so the same command reruns to the same JSON on the same machine and thread count. This module drives
training (`vanishing_depth.training.pretrain`) as well as evaluation, so `vanishing_depth.evaluation` does not import
it (training imports evaluation); the CLI (`vanishing_depth.cli.study`) does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..configuration_vanishing_depth import DEPTH_ENCODINGS
from ..data import corpus_adapter, load_split, simulate_depth_input
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..output_paths import prepare_output_dir, write_json
from ..pipeline_vanishing_depth import load_completion_model
from ..training.pretrain import PretrainingArguments, pretrain
from ..training.recipes import TINY_DEMO_CONFIG_OVERRIDES, TINY_DEMO_OPTIMISATION
from .completion import BASELINE_PREDICTORS, evaluate_completion, format_method_table
from .plots import plot_density_study, plot_feature_pca_grid, plot_study_error_bars

logger = logging.getLogger(__name__)

__all__ = [
    "DENSITY_STUDY_REMOVALS",
    "STUDY_DENSITIES",
    "STUDY_METRICS",
    "STUDY_SENSOR_PATTERNS",
    "density_patterns",
    "density_study",
    "encoding_study",
    "encoding_study_arguments",
    "feature_study",
    "format_spread_table",
    "pca_rgb",
    "probe_fusion_layers",
    "removal_patterns",
    "summarize_seeds",
]

#: Input densities (kept share of the valid pixels) of the encoding study.
STUDY_DENSITIES = (0.5, 0.1, 0.01, 0.001)
#: The sensor patterns of the studies (`vanishing_depth.data.sensors`): 500 uniform points, half the pixels removed in
#: Perlin blobs, 16 LiDAR lines, a ToF sensor 8x coarser than the image, holes along depth edges.
STUDY_SENSOR_PATTERNS = ("uniform:500", "perlin:0.5", "lidar:16", "tof:8", "holes")
#: Removed shares of the valid pixels in the density study (0 = the dense ground truth as input).
DENSITY_STUDY_REMOVALS = (0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)
#: The metrics the studies summarise and tabulate, in metres: all valid pixels, and the removed pixels only (what the
#: method had to infer), when the sweep reports them.
STUDY_METRICS = ("rmse_m", "mae_m", "removed_rmse_m", "removed_mae_m")

_ENCODING_STUDY_JSON = "encoding_study.json"
_ENCODING_STUDY_PNG = "encoding_study.png"
_DENSITY_STUDY_JSON = "density_study.json"
_DENSITY_STUDY_PNG = "density_study.png"
_FEATURE_STUDY_JSON = "feature_study.json"
_FEATURE_STUDY_PNG = "feature_pca.png"
_EVAL_MIN_DEPTH_M = 1e-3


def density_patterns(densities: Sequence[float]) -> list[str]:
    """``fraction:P`` sweep patterns for kept shares `densities` of the valid pixels."""
    return [f"fraction:{_share(density, 'densities'):g}" for density in densities]


def removal_patterns(removals: Sequence[float]) -> list[str]:
    """``fraction:P`` sweep patterns keeping ``1 - removal`` of the valid pixels (rounded to 6 decimals, so 0.999
    removed is ``fraction:0.001``)."""
    return [f"fraction:{round(1.0 - _share(removal, 'removals'), 6):g}" for removal in removals]


def _share(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must hold shares of the valid pixels in [0, 1], got {value!r}.")
    return float(value)


# ----------------------------------------------------------------------------------------------------------------------
# Encoding study
# ----------------------------------------------------------------------------------------------------------------------


def encoding_study_arguments(
    output_dir: str | os.PathLike,
    encoding: str,
    seed: int,
    max_steps: int,
    dataset: Sequence[str] = ("redwood_demo",),
    image_size: int = 112,
    batch_size: int = 8,
    config_overrides: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> PretrainingArguments:
    """The `PretrainingArguments` of one run of the encoding study: the demo's tiny random-init model (hidden 64,
    4 blocks, decoder widths 64/32/16/8) with `encoding` as its `depth_encoding`, the library recipe (its masking
    curriculum runs its course within any `max_steps`) moved toward the sparse inputs the study scores (mean removed
    share 0.5 -> 0.85, up to 99.9 %), no validation (the completion sweep is the evaluation) and one checkpoint.

    Args:
        encoding: a `VanishingDepthConfig.depth_encoding` (``"pde"``, ``"normalized"``, ``"log_validity"``).
        config_overrides: further config fields (merged over the tiny model's; `depth_encoding` is always `encoding`).
        overrides: further `PretrainingArguments` fields.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"`encoding` must be one of {DEPTH_ENCODINGS}, got {encoding!r}.")
    config = dict(TINY_DEMO_CONFIG_OVERRIDES)
    config.update(config_overrides or {})
    config["depth_encoding"] = encoding
    kwargs = dict(
        output_dir=str(output_dir),
        model_shape="tiny",
        config_overrides=json.dumps(config),
        dataset=list(dataset),
        image_size=image_size,
        per_device_batch_size=batch_size,
        max_steps=max_steps,
        **TINY_DEMO_OPTIMISATION,
        mask_mean_start=0.5,
        mask_mean_end=0.85,
        mask_std_start=0.2,
        mask_std_end=0.3,
        mask_max_fraction=0.999,
        checkpointing_steps=max_steps,
        checkpoints_total_limit=1,
        validation_steps=max_steps,
        logging_steps=max(1, max_steps // 10),
        seed=seed,
        report_to="none",
        write_model_card=False,
    )
    kwargs.update(overrides)
    return PretrainingArguments(**kwargs)


def summarize_seeds(runs: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Sequence[str] = STUDY_METRICS):
    """Mean and spread over seeds: `runs` is ``{seed: {pattern: metrics}}``; returns ``{pattern: {metric: {"mean",
    "std", "values"}}}`` for every metric of `metrics` the runs report. ``std`` is the sample standard deviation over
    the seeds (0 with one seed); a metric that is NaN for a seed (e.g. no removed pixels) gives a NaN mean."""
    first = next(iter(runs.values()))
    summary = {}
    for pattern in first:
        summary[pattern] = {}
        for metric in metrics:
            if metric not in first[pattern]:
                continue
            values = [float(per_seed[pattern][metric]) for per_seed in runs.values()]
            finite = all(math.isfinite(value) for value in values)
            mean = statistics.fmean(values) if finite else float("nan")
            std = (statistics.stdev(values) if len(values) > 1 else 0.0) if finite else float("nan")
            summary[pattern][metric] = {"mean": mean, "std": std, "values": values}
    return summary


def format_spread_table(
    summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    metric: str,
    title: str,
    column_titles: Mapping[str, str] | None = None,
) -> str:
    """One row per method, one column per pattern, ``mean ± std`` of `metric` (metres) in each cell; `summary` is
    ``{method: {pattern: {metric: {"mean", "std"}}}}``."""
    patterns = list(next(iter(summary.values())))
    headers = [(column_titles or {}).get(pattern, pattern) for pattern in patterns]
    width = max(16, *(len(header) + 2 for header in headers))
    name_width = max(14, *(len(method) + 2 for method in summary))
    lines = [title, f"{'method':<{name_width}}" + "".join(f"{header:>{width}}" for header in headers)]
    for method, per_pattern in summary.items():
        cells = []
        for pattern in patterns:
            entry = per_pattern[pattern].get(metric)
            if entry is None or not math.isfinite(entry["mean"]):
                text = "nan"
            else:
                text = f"{entry['mean']:.3f} ± {entry['std']:.3f}"
            cells.append(f"{text:>{width}}")
        lines.append(f"{method:<{name_width}}" + "".join(cells))
    return "\n".join(lines)


def _pattern_titles(densities: Sequence[float], patterns: Sequence[str]) -> dict[str, str]:
    return {pattern: f"{density * 100:g}%" for density, pattern in zip(densities, patterns)}


def encoding_study(
    output_dir: str | os.PathLike,
    *,
    encodings: Sequence[str] = DEPTH_ENCODINGS,
    seeds: Sequence[int] = (0, 1, 2),
    max_steps: int = 800,
    dataset: Sequence[str] = ("redwood_demo",),
    eval_dataset: Any = "redwood_demo",
    eval_split: str = "test",
    eval_frames: int | None = None,
    densities: Sequence[float] = STUDY_DENSITIES,
    sensor_patterns: Sequence[str] = STUDY_SENSOR_PATTERNS,
    image_size: int = 112,
    batch_size: int = 8,
    eval_batch_size: int = 4,
    eval_seed: int = 0,
    config_overrides: Mapping[str, Any] | None = None,
    pretraining_overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    print_table: bool = True,
) -> dict[str, Any]:
    """PDE vs the normalised baseline vs log-depth with validity: pretrain each encoding with every seed (identical
    model, data and steps, `encoding_study_arguments`), score each run with the completion sweep on the same frames
    and the same simulated inputs (seeded by `eval_seed`), and summarise mean and spread over the seeds.

    Writes into `output_dir` (refused when not empty unless `overwrite`): ``runs/<encoding>-seed<k>/`` (each
    pretraining run, its ``completion/`` sweep files), ``encoding_study.json`` (settings, every run's metrics and the
    summary) and ``encoding_study.png`` (RMSE and removed-pixel RMSE per pattern, bars = mean, error bars = std).

    Args:
        output_dir: the study's folder.
        encodings: `VanishingDepthConfig.depth_encoding` values to compare.
        seeds: training seeds, the same for every encoding.
        max_steps: optimizer steps of every run.
        dataset: pretraining corpora (corpus schema: ``redwood_demo``, a folder, parquet file or Hub id).
        eval_dataset / eval_split / eval_frames: the held-out frames scored (default: the 4 held-out Redwood frames).
        densities: kept shares of the valid pixels (``fraction:P`` patterns).
        sensor_patterns: further sweep patterns (`vanishing_depth.data.sensors`).
        image_size: training crop and evaluation short edge in pixels (multiple of 14).
        config_overrides / pretraining_overrides: see `encoding_study_arguments` (e.g. a tiny test model).

    Returns:
        The JSON record (``settings``, ``runs``, ``summary``, ``table``).
    """
    encodings, seeds = list(encodings), [int(seed) for seed in seeds]
    if not encodings or len(set(encodings)) != len(encodings):
        raise ValueError(f"`encodings` must name distinct encodings of {DEPTH_ENCODINGS}, got {encodings}.")
    for encoding in encodings:
        if encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"`encodings` must be drawn from {DEPTH_ENCODINGS}, got {encoding!r}.")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"`seeds` must be distinct integers >= 0, got {seeds}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"`max_steps` must be an integer >= 1, got {max_steps!r}.")
    patterns = density_patterns(densities) + list(sensor_patterns)
    if len(set(patterns)) != len(patterns):
        raise ValueError(f"the study's patterns must not repeat, got {patterns}.")
    output = prepare_output_dir(output_dir, overwrite=overwrite, what="encoding study folder")
    eval_data = load_split(eval_dataset, eval_split, max_samples=eval_frames)

    runs: dict[str, dict[str, dict[str, dict[str, float]]]] = {encoding: {} for encoding in encodings}
    jobs = [(encoding, seed) for encoding in encodings for seed in seeds]
    for encoding, seed in tqdm(jobs, desc="encoding study", unit="run"):
        run_dir = output / "runs" / f"{encoding}-seed{seed}"
        args = encoding_study_arguments(
            run_dir,
            encoding,
            seed,
            max_steps,
            dataset=dataset,
            image_size=image_size,
            batch_size=batch_size,
            config_overrides=config_overrides,
            **(pretraining_overrides or {}),
        )
        pretrain(args)
        sweep_dir = run_dir / "completion"
        sweep_dir.mkdir()
        result = evaluate_completion(
            str(run_dir / "pretraining"),
            eval_data,
            patterns=patterns,
            output_dir=sweep_dir,
            batch_size=eval_batch_size,
            min_depth_m=_EVAL_MIN_DEPTH_M,
            seed=eval_seed,
            print_table=False,
        )
        runs[encoding][str(seed)] = result.metrics
    summary = {encoding: summarize_seeds(runs[encoding]) for encoding in encodings}
    titles = _pattern_titles(densities, patterns)
    tables = [
        format_spread_table(summary, metric, f"{metric} (metres), mean ± std over seeds {seeds}", titles)
        for metric in STUDY_METRICS
        if metric in next(iter(summary[encodings[0]].values()))
    ]
    table = "\n\n".join(tables)
    record = {
        "study": "encoding",
        "settings": {
            "encodings": encodings,
            "seeds": seeds,
            "max_steps": max_steps,
            "dataset": [str(name) for name in dataset],
            "eval_dataset": str(eval_dataset) if isinstance(eval_dataset, str | os.PathLike) else "given",
            "eval_split": eval_split,
            "eval_frames": eval_frames,
            "densities": list(densities),
            "sensor_patterns": list(sensor_patterns),
            "patterns": patterns,
            "image_size": image_size,
            "batch_size": batch_size,
            "eval_seed": eval_seed,
            "config_overrides": dict(config_overrides or {}),
            "pretraining_overrides": dict(pretraining_overrides or {}),
            "spread": "sample standard deviation over seeds (0 with one seed)",
        },
        "runs": runs,
        "summary": summary,
        "table": table,
    }
    write_json(output / _ENCODING_STUDY_JSON, record, indent=2)
    plot_study_error_bars(
        summary,
        output / _ENCODING_STUDY_PNG,
        f"Depth encodings: {max_steps} steps, seeds {seeds} (bars: mean, error bars: std)",
        metrics=[metric for metric in ("rmse_m", "removed_rmse_m") if metric in summary[encodings[0]][patterns[0]]],
        column_titles=titles,
    )
    if print_table:
        print(table)
        print(f"\nwrote {output / _ENCODING_STUDY_JSON} and {output / _ENCODING_STUDY_PNG}")
    return record


# ----------------------------------------------------------------------------------------------------------------------
# Density study
# ----------------------------------------------------------------------------------------------------------------------


def _model_names(models: Sequence[str | os.PathLike]) -> list[str]:
    """A short unique name per model folder: its name, or its run's name for a ``RUN/pretraining`` folder."""
    names = []
    for model in models:
        path = Path(str(model))
        name = path.parent.name if path.name == "pretraining" and path.parent.name else path.name or str(model)
        candidate, index = name, 2
        while candidate in names:
            candidate, index = f"{name}_{index}", index + 1
        names.append(candidate)
    return names


def _processor_for(source: str, model, image_size: int | None) -> VanishingDepthImageProcessor:
    if (Path(source) / "preprocessor_config.json").is_file():
        processor = VanishingDepthImageProcessor.from_pretrained(source)
    else:
        processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if image_size is not None:
        processor.size = {"shortest_edge": int(image_size)}
    return processor


def density_study(
    models: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    dataset: Any = "redwood_demo",
    split: str = "test",
    max_samples: int | None = None,
    removals: Sequence[float] = DENSITY_STUDY_REMOVALS,
    sensor_patterns: Sequence[str] = STUDY_SENSOR_PATTERNS,
    image_size: int | None = None,
    batch_size: int = 4,
    seed: int = 0,
    overwrite: bool = False,
    print_table: bool = True,
) -> dict[str, Any]:
    """The density stress test: every saved completion model, nearest-neighbour and median filling, from `removals`
    of the valid pixels removed (0 to 99.9 %) and on the sensor patterns, all on the same frames and inputs.

    Each model folder is loaded with `load_completion_model` (a folder without a trained decoder is refused before
    anything runs); the frames are processed with the first model's image processor (`image_size` overrides its short
    edge). Writes ``density_study.json`` (settings and ``{method: {pattern: metrics}}``) and ``density_study.png``
    (RMSE against the removed share, and per sensor pattern) into `output_dir` (refused when not empty unless
    `overwrite`).

    Returns:
        The JSON record (``settings``, ``methods``, ``table``).
    """
    if not models:
        raise ValueError("`models` must name at least one saved completion model folder (e.g. RUN/pretraining).")
    removal_list = [_share(removal, "removals") for removal in removals]
    patterns = removal_patterns(removal_list) + list(sensor_patterns)
    if len(set(patterns)) != len(patterns):
        raise ValueError(f"the study's patterns must not repeat, got {patterns}.")
    names = _model_names(models)
    loaded = [load_completion_model(str(model)) for model in models]  # refuses untrained decoders up front
    processor = _processor_for(str(models[0]), loaded[0], image_size)
    output = prepare_output_dir(output_dir, overwrite=overwrite, what="density study folder")
    data = load_split(dataset, split, max_samples=max_samples)

    model_results, baselines = {}, {}
    for index, (name, model) in enumerate(tqdm(list(zip(names, loaded)), desc="density study", unit="model")):
        # Same frames, same seed, same patterns: every method sees identical inputs.
        result = evaluate_completion(
            model,
            data,
            processor,
            patterns=patterns,
            predictors=BASELINE_PREDICTORS if index == 0 else None,
            model_name=name,
            batch_size=batch_size,
            min_depth_m=_EVAL_MIN_DEPTH_M,
            seed=seed,
            print_table=False,
        )
        model_results[name] = result.metrics
        if index == 0:
            baselines = {method: result.methods[method] for method in BASELINE_PREDICTORS}
    methods = {**model_results, **baselines}
    titles = {pattern: f"-{removal * 100:g}%" for removal, pattern in zip(removal_list, patterns)}
    metrics = [metric for metric in ("rmse_m", "removed_rmse_m") if metric in methods[names[0]][patterns[0]]]
    table = "\n\n".join(
        format_method_table(
            methods, metric, f"{metric} (metres) by method; -P% = share of valid pixels removed", titles
        )
        for metric in metrics
    )
    record = {
        "study": "density",
        "settings": {
            "models": names,
            "baselines": list(BASELINE_PREDICTORS),
            "dataset": str(dataset) if isinstance(dataset, str | os.PathLike) else "given",
            "split": split,
            "max_samples": max_samples,
            "removals": removal_list,
            "sensor_patterns": list(sensor_patterns),
            "patterns": patterns,
            "processor_size": dict(processor.size),
            "seed": seed,
        },
        "methods": methods,
        "table": table,
    }
    write_json(output / _DENSITY_STUDY_JSON, record, indent=2)
    plot_density_study(
        methods,
        removal_list,
        patterns[: len(removal_list)],
        list(sensor_patterns),
        output / _DENSITY_STUDY_PNG,
        "Depth completion by removed share and sensor pattern",
        metrics=metrics,
    )
    if print_table:
        print(table)
        print(f"\nwrote {output / _DENSITY_STUDY_JSON} and {output / _DENSITY_STUDY_PNG}")
    return record


# ----------------------------------------------------------------------------------------------------------------------
# Feature study
# ----------------------------------------------------------------------------------------------------------------------


def pca_rgb(feature_maps: torch.Tensor) -> tuple[np.ndarray, list[float]]:
    """The first 3 principal components of the tokens of a batch of feature maps, as colours.

    The PCA is fitted on all tokens of all frames together (so colours compare across frames), by SVD of the centred
    tokens in float64. Each component's sign is fixed so its largest absolute score is positive (SVD signs are
    arbitrary), and each is scaled from its 1st to 99th percentile over all tokens onto [0, 1].

    Args:
        feature_maps: `(B, D, h, w)` tokens on their patch grid (D >= 3).

    Returns:
        `(B, h, w, 3)` float32 colours in [0, 1] and the share of the variance each component explains.
    """
    if feature_maps.ndim != 4 or feature_maps.shape[1] < 3:
        raise ValueError(f"`feature_maps` must have shape (B, D >= 3, h, w), got {tuple(feature_maps.shape)}.")
    batch, channels, height, width = feature_maps.shape
    tokens = feature_maps.detach().double().permute(0, 2, 3, 1).reshape(-1, channels)
    tokens = tokens - tokens.mean(dim=0, keepdim=True)
    _, singular, vectors = torch.linalg.svd(tokens, full_matrices=False)
    scores = tokens @ vectors[:3].T
    signs = torch.sign(scores.gather(0, scores.abs().argmax(dim=0, keepdim=True)))
    scores = scores * torch.where(signs == 0, torch.ones_like(signs), signs)
    low = torch.quantile(scores, 0.01, dim=0)
    high = torch.quantile(scores, 0.99, dim=0)
    colours = ((scores - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)
    variance = singular.square()
    explained = (variance[:3] / variance.sum().clamp_min(1e-300)).tolist()
    return colours.reshape(batch, height, width, 3).float().numpy(), explained


def probe_fusion_layers(
    encoder,
    tokens: Mapping[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    height: int,
    width: int,
    progress: bool = False,
) -> dict[str, Any]:
    """What each fusion layer does, from its tokens: ``tokens[layer] = (depth tokens before fusion, RGB tokens, depth
    tokens after fusion)``, each `(B, P + N, D)`, of a `VanishingDepthModel` `encoder` on `height` x `width` px
    inputs. Returns ``depth_share`` ({layer: ``|SE_depth| / (|SE_rgb| + |SE_depth|)``}, `VanishingDepthFusion.depth_share`
    of the tokens before fusion), ``pictures`` ({``"rgb L<layer>"`` / ``"depth L<layer>"``: `(B, h, w, 3)` PCA
    colours of the RGB tokens and of the depth tokens after fusion, what the next block and the decoder see}) and
    ``explained_variance`` ({layer: {"rgb": ratios, "depth": ratios}}). The feature study and the web app both
    draw their maps from it."""
    shares, pictures, explained = {}, {}, {}
    layers = list(encoder.config.fusion_layers)
    for index, layer in enumerate(tqdm(layers, desc="fusion layers", unit="layer", disable=not progress)):
        depth_pre, rgb_tokens, depth_post = tokens[layer]
        shares[layer] = float(encoder.fusions[index].depth_share(depth_pre, rgb_tokens))
        explained[layer] = {}
        for stream, stream_tokens in (("rgb", rgb_tokens), ("depth", depth_post)):
            colours, ratio = pca_rgb(encoder.tokens_to_map(stream_tokens.float().cpu(), height, width))
            pictures[f"{stream} L{layer}"] = colours
            explained[layer][stream] = ratio
    return {"depth_share": shares, "pictures": pictures, "explained_variance": explained}


def feature_study(
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dataset: Any = "redwood_demo",
    split: str = "test",
    num_frames: int = 3,
    pattern: str = "dense",
    image_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    print_table: bool = True,
) -> dict[str, Any]:
    """PCA of the RGB-stream and the depth-stream tokens at each fusion layer for `num_frames` frames, as one PNG grid,
    and the share of the fused tokens that comes from depth per fusion layer.

    The model folder must hold a trained completion model (`load_completion_model`: a pretraining or depth-head folder;
    untrained weights are refused); its encoder runs block by block (`VanishingDepthModel.forward_streams`). The depth
    input is `pattern` simulated from the frames' ground truth (default the dense depth). The depth tokens shown are
    those after fusion (what the next block and the decoder see). ``depth_share`` is
    ``|SE_depth(depth)| / (|SE_rgb(rgb)| + |SE_depth(depth)|)`` over the patch tokens of all frames
    (`VanishingDepthFusion.depth_share`).

    Writes ``feature_pca.png`` (rows: frames; columns: RGB, input depth, then RGB and depth tokens per fusion layer)
    and ``feature_study.json`` into `output_dir` (refused when not empty unless `overwrite`).

    Returns:
        The JSON record (``settings``, ``layers``, ``depth_share``, ``explained_variance``, ``table``).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`num_frames` must be an integer >= 1, got {num_frames!r}.")
    completion_model = load_completion_model(str(model))
    encoder = completion_model.vanishing_depth
    processor = _processor_for(str(model), completion_model, image_size)
    output = prepare_output_dir(output_dir, overwrite=overwrite, what="feature study folder")
    rows = list(load_split(dataset, split, max_samples=num_frames))
    if not rows:
        raise ValueError(f"`dataset` split {split!r} holds no frames.")
    batch = corpus_adapter().collator(processor, input_depth_pattern="dense")(rows)
    pixel_values, target = batch["pixel_values"], batch["labels"]
    depth_input = simulate_depth_input(target[:, None], pattern, torch.Generator().manual_seed(seed))
    layers = list(encoder.config.fusion_layers)
    height, width = pixel_values.shape[-2:]
    with torch.inference_mode():
        streams = encoder.forward_streams(pixel_values, depth_values=depth_input, feature_layers=layers)
        tokens = {layer: (streams.depth_pre_fusion[layer], streams.rgb[layer], streams.depth_post_fusion[layer])
                  for layer in layers}  # fmt: skip
        probe = probe_fusion_layers(encoder, tokens, height, width, progress=True)
    shares = {str(layer): share for layer, share in probe["depth_share"].items()}
    explained = {str(layer): ratios for layer, ratios in probe["explained_variance"].items()}
    pictures = probe["pictures"]
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    rgb = (pixel_values * std + mean).clamp(0.0, 1.0).permute(0, 2, 3, 1).numpy()
    plot_feature_pca_grid(
        rgb,
        depth_input[:, 0].numpy(),
        pictures,
        output / _FEATURE_STUDY_PNG,
        f"PCA (3 components -> RGB) of the stream tokens at the fusion layers; depth input: {pattern}",
    )
    lines = [f"{'fusion layer':<14}{'depth share':>13}{'RGB PCA var':>13}{'depth PCA var':>15}"]
    for layer in layers:
        key = str(layer)
        lines.append(
            f"{layer:<14}{shares[key]:>13.3f}{sum(explained[key]['rgb']):>13.3f}{sum(explained[key]['depth']):>15.3f}"
        )
    table = "\n".join(lines)
    record = {
        "study": "features",
        "settings": {
            "model": _model_names([model])[0],
            "dataset": str(dataset) if isinstance(dataset, str | os.PathLike) else "given",
            "split": split,
            "num_frames": len(rows),
            "pattern": pattern,
            "input_size": [int(height), int(width)],
            "seed": seed,
            "depth_tokens": "post-fusion",
        },
        "layers": layers,
        "frames": [str(row.get("frame_id", index)) for index, row in enumerate(rows)],
        "depth_share": shares,
        "explained_variance": explained,
        "table": table,
    }
    write_json(output / _FEATURE_STUDY_JSON, record, indent=2)
    if print_table:
        print(table)
        print(f"\nwrote {output / _FEATURE_STUDY_JSON} and {output / _FEATURE_STUDY_PNG}")
    return record
