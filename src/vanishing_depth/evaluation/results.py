"""The results files an evaluation writes beside a model: one writer for each.

* ``eval_results.json``: a run's own numbers in the model-card metrics format, ``{"results": [entry, ...]}`` with one
  entry per (task, dataset, metric) (`eval_result_entry`; the format is documented in `vanishing_depth.hub.model_card`,
  whose `read_metrics_file` reads it for a card's model-index). Written by `vanishing-depth finetune` and the demo.
* ``completion_metrics.json``: the record of a completion sweep (`vanishing_depth.evaluation.completion`):
  ``settings``, the model's ``metrics`` per input pattern and, when other methods were scored on the same inputs,
  ``methods`` (every method's metrics per pattern). Each pattern's metrics are scored on all valid pixels and, under
  the same keys prefixed ``removed_``, on the removed pixels alone (valid ground truth not given as input).

Both are strict JSON (NaN and inf become null), written atomically. Depth metrics are in metres unless their key
says otherwise (``rmse_mm``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..output_paths import write_json

__all__ = [
    "COMPLETION_METRICS_FILE",
    "EVAL_RESULTS_FILE",
    "eval_result_entry",
    "write_completion_metrics",
    "write_eval_results",
]

EVAL_RESULTS_FILE = "eval_results.json"
COMPLETION_METRICS_FILE = "completion_metrics.json"


def eval_result_entry(
    *,
    task_type: str,
    task_name: str,
    dataset_name: str,
    dataset_type: str,
    split: str,
    metric_type: str,
    metric_name: str,
    value: float,
    unit: str | None = None,
    config: str | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """One entry of ``eval_results.json``: what was measured (task, dataset and split, metric), its value and unit
    (``"m"`` for depth errors in metres, None for ratios such as mean IoU), and optionally the setting it was measured
    in (`config`, e.g. ``"density_0.1"``) and the protocol in words.

    Raises:
        ValueError: `value` is not a finite number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"`value` of metric {metric_name!r} must be a finite number, got {value!r}.")
    metric: dict[str, Any] = {"type": metric_type, "name": metric_name, "value": float(value), "unit": unit}
    if config is not None:
        metric["config"] = config
    entry: dict[str, Any] = {
        "task": {"type": task_type, "name": task_name},
        "dataset": {"name": dataset_name, "type": dataset_type, "split": split},
        "metric": metric,
    }
    if protocol is not None:
        entry["protocol"] = protocol
    return entry


def write_eval_results(output_dir: str | os.PathLike, entries: Iterable[Mapping[str, Any]]) -> Path | None:
    """Write ``output_dir/eval_results.json`` from `eval_result_entry` entries; returns its path, or None (and writes
    nothing) when there is no entry."""
    results = [dict(entry) for entry in entries]
    if not results:
        return None
    path = Path(output_dir) / EVAL_RESULTS_FILE
    write_json(path, {"results": results}, indent=2)
    return path


def write_completion_metrics(
    output_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
    methods: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> Path:
    """Write ``output_dir/completion_metrics.json`` (created with its parents if needed); returns its path.

    Args:
        settings: how the sweep ran (model, adapter, patterns, frames, input size, range in metres, seed, ...).
        metrics: the model's metrics per input pattern (`DepthMetrics` keys plus ``input_points``).
        methods: every method's metrics per pattern, the model's included; left out of the file when empty.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    path = output / COMPLETION_METRICS_FILE
    record: dict[str, Any] = {"settings": dict(settings), "metrics": dict(metrics)}
    if methods:
        record["methods"] = dict(methods)
    write_json(path, record, indent=2)
    return path
