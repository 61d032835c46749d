"""The shared machinery of the streaming metrics: a state made of summable tensors (`reset` / `compute` / `merge` /
`synchronize` across processes), Trainer's ``compute_metrics`` convention, input conversion and metric-key names.

The metrics themselves live beside this module, one per concern (`segmentation`, `depth`, `classification`,
`pretraining`); only small sufficient statistics are kept between batches (a confusion matrix, per-image metric
sums), never full-resolution logits.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["class_key_names", "metric_key_name"]


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    """Tensor view of a tensor / numpy array / nested list (no copy for tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple, int, float, np.generic)):
        return torch.as_tensor(np.asarray(value))
    raise ValueError(f"`{name}` must be a torch.Tensor, numpy array or nested list, got {type(value)}.")


def _first_if_tuple(value: Any) -> Any:
    """Trainer passes a tuple when the model returns several outputs besides the loss (or there are several
    label names): the first one is used. Lists are not touched (they mean "one entry per batch")."""
    if isinstance(value, tuple) and len(value) > 0:
        return value[0]
    return value


def _as_integer_map(value: torch.Tensor, name: str) -> torch.Tensor:
    """int64 label map (may share memory with the input: never modify it in place); floating input must hold
    whole numbers (it may come out of a float collator)."""
    if value.dtype == torch.bool:
        return value.long()
    if value.is_floating_point():
        if not bool(torch.all(value == torch.round(value))):
            raise ValueError(f"`{name}` must hold integer class ids, got non-integral floating values.")
    return value.long()


def _all_reduce_sum(tensor: torch.Tensor, accelerator: Any = None) -> torch.Tensor:
    """Sum `tensor` over processes (through `accelerator.reduce` or torch.distributed); returns a CPU tensor."""
    if accelerator is not None:
        reduced = accelerator.reduce(tensor.to(accelerator.device), reduction="sum")
        return reduced.to("cpu", dtype=tensor.dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = torch.device("cpu")
        if torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        buffer = tensor.to(device).clone()
        torch.distributed.all_reduce(buffer, op=torch.distributed.ReduceOp.SUM)
        return buffer.to("cpu", dtype=tensor.dtype)
    return tensor


_UNSAFE_KEY_CHARACTERS = re.compile(r"[^0-9A-Za-z_.-]+")


def metric_key_name(name: Any) -> str:
    """A class name as a piece of a metric key: every run of characters other than ASCII letters, digits, ``_``,
    ``.`` and ``-`` becomes one ``_``, with none left at either end (``"night stand"`` -> ``"night_stand"``,
    ``"TV/monitor"`` -> ``"TV_monitor"``); what loggers (TensorBoard, MLflow, W&B) accept in a key. May be empty."""
    return _UNSAFE_KEY_CHARACTERS.sub("_", str(name)).strip("_")


def class_key_names(num_labels: int, id2label: Mapping[Any, Any] | Sequence[str] | None) -> list[str]:
    """The key piece of each class `0 .. num_labels - 1`: its `metric_key_name` from `id2label`, or the class id
    where it has no name (or none left after cleaning); names that coincide after cleaning get ``_<id>`` appended.

    Args:
        num_labels: number of classes.
        id2label: ``{id: name}`` (e.g. ``model.config.id2label``; ids may be strings of digits, as in a config.json),
            a sequence of names in id order, or None (ids only).

    Raises:
        ValueError: `id2label` is not a mapping / sequence of names, or holds an id outside ``[0, num_labels)``.
    """
    if id2label is None:
        return [str(index) for index in range(num_labels)]
    if isinstance(id2label, Sequence) and not isinstance(id2label, (str, bytes)):
        id2label = dict(enumerate(id2label))
    if not isinstance(id2label, Mapping):
        raise ValueError(
            f"`id2label` must be a dict {{class id: name}} (e.g. model.config.id2label) or a list of names, got "
            f"{type(id2label).__name__}."
        )
    names: dict[int, str] = {}
    for key, value in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            index = None
        if index is None or isinstance(key, bool) or str(index) != str(key).strip() or not 0 <= index < num_labels:
            raise ValueError(
                f"`id2label` keys must be class ids in [0, {num_labels}) (num_labels={num_labels}), got {key!r}."
            )
        names[index] = metric_key_name(value)
    keys = [names.get(index) or str(index) for index in range(num_labels)]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return [key if counts[key] == 1 or key == str(index) else f"{key}_{index}" for index, key in enumerate(keys)]


class _StreamingState(ABC):
    """reset / compute / merge / synchronize over a state made only of summable tensors.

    Subclasses keep their whole state in the tensors named by `_state_names` (summed by `merge` and
    `synchronize`); `_config` returns the settings that must agree for two states to be merged.
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._synchronized = False

    @abstractmethod
    def reset(self) -> None:
        """Forget every batch seen so far."""

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Metrics of every batch seen so far."""

    @abstractmethod
    def _config(self) -> tuple:
        """Settings that must be equal for `merge`."""

    # -- shared -------------------------------------------------------------------------------------------------------
    def _check_not_synchronized(self) -> None:
        if self._synchronized:
            raise RuntimeError(
                f"{type(self).__name__} was synchronized across processes; call reset() before adding new batches "
                "(a second synchronize would count the earlier batches twice)."
            )

    def merge(self, other: _StreamingState) -> _StreamingState:
        """Add the state of `other` (same class and settings) into this one; returns `self`."""
        if type(other) is not type(self):
            raise ValueError(f"`other` must be a {type(self).__name__}, got {type(other).__name__}.")
        if other._config() != self._config():
            raise ValueError(
                f"`other` was built with different settings: {other._config()} instead of {self._config()}."
            )
        self._check_not_synchronized()
        for name in self._state_names:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def synchronize(self, accelerator: Any = None) -> _StreamingState:
        """Sum the state over all processes, in place, so `compute()` gives the global result everywhere.

        Uses `accelerator.reduce` when an `accelerate.Accelerator` is given, else `torch.distributed.all_reduce`
        when a process group is initialised, else does nothing. Call it once, after the last `update` (a custom
        loop where every process saw a different shard). Do **not** call it under `Trainer`: Trainer already
        gathers every batch across processes before calling the metric.
        """
        if self._synchronized:
            raise RuntimeError(f"{type(self).__name__}.synchronize() was already called; call reset() first.")
        for name in self._state_names:
            setattr(self, name, _all_reduce_sum(getattr(self, name), accelerator))
        self._synchronized = True
        return self


class _StreamingMetric(_StreamingState):
    """A `_StreamingState` fed with (predictions, references) that also follows Trainer's `compute_metrics`
    convention (with and without `batch_eval_metrics`)."""

    @abstractmethod
    def update(self, predictions: Any, references: Any) -> None:
        """Add one batch."""

    def _flat(self, result: dict[str, Any]) -> dict[str, float]:
        return {key: float(value) for key, value in result.items()}

    def __call__(self, eval_pred: Any, compute_result: bool = True) -> dict[str, float]:
        """Trainer `compute_metrics` hook.

        Args:
            eval_pred: `transformers.EvalPrediction` (or anything with `.predictions` and `.label_ids`). With
                `batch_eval_metrics=True` it holds one (gathered) batch as tensors. A tuple of predictions (model
                outputs besides the loss) uses its first element.
            compute_result: True on the last batch: return the flat metric dict and reset. False: accumulate and
                return an empty dict.
        """
        predictions, references = eval_pred.predictions, eval_pred.label_ids
        if isinstance(references, list):
            # `eval_do_concat_batches=False`: Trainer hands over one entry per batch
            if not isinstance(predictions, list) or len(predictions) != len(references):
                raise ValueError(
                    "`eval_pred.label_ids` is a list of batches, so `eval_pred.predictions` must be a list of the same "
                    f"length, got {type(predictions).__name__}."
                )
            for batch_predictions, batch_references in zip(predictions, references):
                self.update(_first_if_tuple(batch_predictions), _first_if_tuple(batch_references))
        else:
            self.update(_first_if_tuple(predictions), _first_if_tuple(references))
        if not compute_result:
            return {}
        result = self._flat(self.compute())
        self.reset()
        return result
