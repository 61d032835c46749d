"""Evaluation: offline streaming metrics, the pretraining validation, the depth-completion sweep, results files and
plots.

Nothing here downloads anything. The metrics are written in torch and exposed three ways:

* stateful classes with `update` / `compute` / `reset` / `merge` / `synchronize` ([`SegmentationMetrics`],
  [`DepthMetrics`], [`ClassificationMetrics`]); only small sufficient statistics are kept between batches (a
  confusion matrix, per-image metric sums), never full-resolution logits;
* the same objects are directly usable as `Trainer(compute_metrics=...)` with
  `TrainingArguments(batch_eval_metrics=True)`: Trainer calls `compute_metrics(EvalPrediction, compute_result=...)`
  once per batch (predictions/labels already gathered across processes) and `compute_result=True` on the last one,
  when a flat `dict[str, float]` is returned and the state reset. Without `batch_eval_metrics` Trainer calls them
  once with everything, which also works (`compute_result` defaults to True);
* `evaluate.Metric` subclasses defined in-process ([`MeanIoU`], [`DepthErrors`], [`Accuracy`]) so that
  `evaluate.combine([...])`, `add_batch` and `compute` work with `HF_HUB_OFFLINE=1`.

[`PretrainingValidationMetrics`] is the pretraining validation of the paper (arXiv 2503.19947): SI error and |error|
split by depth range, per input-depth density, with an AUC over density. [`evaluate_completion`] is the
depth-completion sweep over simulated sensor patterns, with pluggable predictors (another model, nearest-neighbour and
median filling). Results files (``eval_results.json``, ``completion_metrics.json``) are written by
`vanishing_depth.evaluation.results`, pictures drawn by `vanishing_depth.evaluation.plots`.

Depth is float metres everywhere, 0 = no measurement.
"""

from .classification import ClassificationMetrics
from .completion import (
    BASELINE_PREDICTORS,
    DEFAULT_COMPLETION_PATTERNS,
    CompletionEvalResult,
    Predictor,
    evaluate_completion,
    format_completion_table,
    format_method_table,
    median_fill,
    model_predictor,
    nearest_neighbour_fill,
)
from .depth import DEPTH_METRIC_KEYS, DepthMetrics, compute_depth_metrics
from .evaluate_modules import Accuracy, DepthErrors, MeanIoU
from .plots import plot_completion_sweep, plot_method_comparison, side_by_side_picture
from .pretraining import PRETRAINING_DENSITIES, PRETRAINING_DEPTH_BINS_M, PretrainingValidationMetrics
from .results import (
    COMPLETION_METRICS_FILE,
    EVAL_RESULTS_FILE,
    eval_result_entry,
    write_completion_metrics,
    write_eval_results,
)
from .segmentation import SegmentationMetrics
from .streaming import class_key_names, metric_key_name

__all__ = [
    "BASELINE_PREDICTORS",
    "COMPLETION_METRICS_FILE",
    "DEFAULT_COMPLETION_PATTERNS",
    "DEPTH_METRIC_KEYS",
    "EVAL_RESULTS_FILE",
    "PRETRAINING_DENSITIES",
    "PRETRAINING_DEPTH_BINS_M",
    "Accuracy",
    "ClassificationMetrics",
    "CompletionEvalResult",
    "DepthErrors",
    "DepthMetrics",
    "MeanIoU",
    "Predictor",
    "PretrainingValidationMetrics",
    "SegmentationMetrics",
    "class_key_names",
    "compute_depth_metrics",
    "eval_result_entry",
    "evaluate_completion",
    "format_completion_table",
    "format_method_table",
    "median_fill",
    "metric_key_name",
    "model_predictor",
    "nearest_neighbour_fill",
    "plot_completion_sweep",
    "plot_method_comparison",
    "side_by_side_picture",
    "write_completion_metrics",
    "write_eval_results",
]
