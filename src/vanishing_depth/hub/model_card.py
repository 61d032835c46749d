# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Model cards for saved Vanishing Depth folders: YAML metadata, a `model-index` and a body that states the input
contract, usage, training, evaluation, limitations, licences and the paper citation.

Everything a card says is read from the folder (``config.json``, ``preprocessor_config.json``, ``training_args.json``,
the weight files) or from the metrics files given; a card never states a number that is not in them.

Metrics file format
===================
Written by the project's evaluation code (`vanishing_depth.evaluation.results`: ``eval_results.json``); accepted exactly in this form (one JSON object per file)::

    {"results": [
       {"task": {"type": "depth-completion", "name": "Depth completion"},
        "dataset": {"name": "Redwood living room 1 (demo, held-out)", "type": "redwood-livingroom1", "split": "test"},
        "metric": {"type": "rmse", "name": "RMSE at 10% input density", "value": 0.15, "unit": "m",
                   "config": "density_0.1"},
        "protocol": "free text: densities, range, masks"}
    ]}

Required for an entry to be reported: ``task.type``, ``dataset.type``, ``dataset.name``, ``metric.type`` and a finite
number ``metric.value``. Optional: ``task.name``, ``dataset.split``, ``metric.name``, ``metric.unit``,
``metric.config`` and ``protocol``. Incomplete entries are left out of the card with a warning (as transformers'
``Trainer`` card does); a file that is not of this form raises `ValueError`.

Training arguments
==================
``training_args.json`` in the model folder (or the ``training_args`` argument) is a flat JSON object of the run's
arguments (``vars(argparse.Namespace)`` or ``dataclasses.asdict``). All of it is listed as hyperparameters; the values
of the keys in `TRAINING_DATA_KEYS` name the training data.

Local paths and ownership
=========================
A card is written to be shared, so it never names the user's disk: every absolute local path read from the folder,
the training arguments or the metrics files appears as ``[local]/<last component>`` (`redact_local_paths`), and a
card built without a repo id loads the placeholder ``<your-org>/<folder name>`` in its usage snippet, with a note
saying so (``push`` writes the repository id in, `retarget_card`). The card's last line is an HTML comment (the Hub
does not show it) with a digest of the rest: a README that carries it unchanged is one this library wrote
(`card_is_ours`) and may be regenerated; any other README, an edited card included, is the user's own and is never
replaced without ``--overwrite`` (`write_model_card`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from .. import __version__, modeling_vanishing_depth
from ..data.synthetic import DEMO_SYNTHETIC_FOLDER
from ..evaluation.results import EVAL_RESULTS_FILE
from ..output_paths import OutputExistsError, prepare_output_file
from ..training.pretrain import TRAINING_CURVES_FILE, VALIDATION_RESULTS_FILE

logger = logging.getLogger(__name__)

PIPELINE_TAGS = {
    "VanishingDepthModel": "image-feature-extraction",
    "VanishingDepthBackbone": "image-feature-extraction",
    "VanishingDepthForPretraining": "image-feature-extraction",
    "VanishingDepthForDepthEstimation": "depth-estimation",
    "VanishingDepthForSemanticSegmentation": "image-segmentation",
    "VanishingDepthForImageClassification": "image-classification",
}
# The transformers Auto class a user loads each architecture with (the pretraining folder's encoder loads via AutoModel).
AUTO_CLASSES = {
    "VanishingDepthModel": "AutoModel",
    "VanishingDepthBackbone": "AutoBackbone",
    "VanishingDepthForPretraining": "AutoModel",
    "VanishingDepthForDepthEstimation": "AutoModelForDepthEstimation",
    "VanishingDepthForSemanticSegmentation": "AutoModelForSemanticSegmentation",
    "VanishingDepthForImageClassification": "AutoModelForImageClassification",
}
DESCRIPTIONS = {
    "VanishingDepthModel": (
        "An RGB-D encoder: a frozen pretrained RGB DINOv2 and a trainable depth DINOv2 of the same shape, with "
        "squeeze-and-excitation fusion from the RGB into the depth stream. It returns one feature map per fusion "
        "layer, `(B, 2·hidden, H/14, W/14)` with RGB and depth channels concatenated, and the depth tokens "
        "(`last_hidden_state`). The RGB stream is frozen: its features are those of the DINOv2 it was built from."
    ),
    "VanishingDepthBackbone": (
        "The Vanishing Depth RGB-D encoder as a transformers `AutoBackbone`: fused RGB + depth feature maps at the "
        "configured stages, for dense-prediction heads."
    ),
    "VanishingDepthForPretraining": (
        "The Vanishing Depth RGB-D encoder with its self-supervised pretraining decoder (depth completion of partly "
        "erased depth). `AutoModel.from_pretrained` on this repository gives the encoder alone."
    ),
    "VanishingDepthForDepthEstimation": (
        "Depth completion on the Vanishing Depth RGB-D encoder: a decoder on the frozen encoder's fused features "
        "predicts dense metric depth in metres from RGB and sparse or holed depth."
    ),
    "VanishingDepthForSemanticSegmentation": (
        "Semantic segmentation on the Vanishing Depth RGB-D encoder: a head on the frozen encoder's fused RGB + depth "
        "features predicts per-pixel class logits."
    ),
    "VanishingDepthForImageClassification": (
        "Scene classification on the Vanishing Depth RGB-D encoder: a linear head on the frozen encoder's RGB and "
        "depth CLS tokens."
    ),
}
DEFAULT_TAGS = ("rgbd", "depth", "vanishing-depth", "dinov2")
TRAINING_DATA_KEYS = ("corpora", "corpus", "datasets", "dataset", "dataset_name", "train_dataset", "train_corpus")
# Corpora whose terms this package knows for certain (it ships them); any other name gets a pointer to its own terms.
KNOWN_DATA_TERMS = {
    "redwood_demo": 'Augmented ICL-NUIM "living room 1" frames (Choi et al., CVPR 2015; Handa et al., ICRA 2014), '
    "CC BY 3.0",
    DEMO_SYNTHETIC_FOLDER: "procedural rooms rendered by `vanishing_depth.data.synthetic` on the run's machine, "
    "Apache-2.0 like the code",
}
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")  # owner/name
_HUB_ID = REPO_ID_PATTERN
_TEMPLATE = "model_card.md"
#: The metrics files a run writes beside its model, which its card (`write_run_card`) and `push` report.
RUN_METRICS_FILES = (EVAL_RESULTS_FILE, VALIDATION_RESULTS_FILE)
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# What an absolute local path becomes in anything meant for sharing: "[local]/" and its last component.
LOCAL_PATH_PREFIX = "[local]/"
# The snippet of a card written without a repo id names this placeholder instead of the folder's path.
REPO_ID_PLACEHOLDER = "<your-org>/{name}"
PLACEHOLDER_NOTE = (
    "`{placeholder}` is a placeholder: use the Hub id of the repository this model is pushed to "
    "(`vanishing-depth push` writes it in), or the path of the local folder."
)
# The last line of every card `build_model_card` writes; the digest is that of the card without this line, so a card
# edited by hand no longer matches and counts as the user's own (see `card_is_ours`).
CARD_MARKER = (
    "<!-- Generated by vanishing-depth (vanishing_depth.hub.build_model_card), sha256:{digest}. An edited card "
    "counts as your own: `vanishing-depth card` and `push` never replace it without --overwrite. -->"
)
_CARD_MARKER_LINE = re.compile(
    r"^<!-- Generated by vanishing-depth \(.*sha256:(?P<digest>[0-9a-f]{64}).*-->[ \t]*$", re.M
)


def template_path() -> Path:
    """The shipped jinja2 template (package data ``vanishing_depth/hub/templates/model_card.md``)."""
    return Path(str(files("vanishing_depth.hub").joinpath("templates", _TEMPLATE)))


def is_hub_id(name: Any) -> bool:
    """True for a Hub-style ``owner/name`` id that is not an existing local path (e.g. ``facebook/dinov2-small``)."""
    if not isinstance(name, str) or not _HUB_ID.match(name):
        return False
    if name.endswith((".pth", ".pt", ".bin", ".ckpt", ".safetensors")):
        return False
    return not Path(name).expanduser().exists()


# ----------------------------------------------------------------------------------------------------------------------
# Local paths: what is shared never names the user's disk
# ----------------------------------------------------------------------------------------------------------------------
_COMPONENT = r"[^\s/\\\"'`<>|()\[\]{},;:*?]+"
# An absolute path inside text: not part of a URL (`https://host/a/b`), a Hub id (`owner/name`), a fraction (`H/14`) or
# an already redacted `[local]/name`, hence the look-behind. POSIX paths need two components (`/home/me`), so a lone
# `/ 5 m` or `/s` in prose is not taken for one; a whole JSON value is checked with `is_local_path` instead.
_LOCAL_PATH_IN_TEXT = re.compile(
    r"(?<![\w.:/~\\\]>-])(?:"
    rf"file://[^\s\"'`<>|()\[\]{{}},;]+"
    rf"|~[\w.-]*(?:/{_COMPONENT})+"
    rf"|/{_COMPONENT}(?:/{_COMPONENT})+"
    rf"|[A-Za-z]:[\\/]{_COMPONENT}(?:[\\/]{_COMPONENT})*"
    rf"|\\\\{_COMPONENT}(?:\\{_COMPONENT})+"
    r")/?"
)
_WHOLE_LOCAL_PATH = re.compile(r"^(?:/|~[\w.-]*(?:/|$)|file://|[A-Za-z]:[\\/]|\\\\)")


def is_local_path(value: Any) -> bool:
    """True for a string that is an absolute local path as a whole (``/data/x``, ``~/x``, ``C:\\x``, ``file://...``)."""
    if not isinstance(value, str) or not value.strip():
        return False
    return bool(_WHOLE_LOCAL_PATH.match(value.strip()))


def redact_path(path: str) -> str:
    """`path` as it may be shared: ``[local]/<its last component>``."""
    name = next((part for part in reversed(re.split(r"[\\/]+", path.strip())) if part not in ("", "~")), "")
    return LOCAL_PATH_PREFIX + name if name and not name.endswith(":") else LOCAL_PATH_PREFIX.rstrip("/")


def find_local_paths(text: str) -> list[str]:
    """The absolute local paths written in `text` (each once, in order of appearance)."""
    return list(dict.fromkeys(match.group().rstrip(".") for match in _LOCAL_PATH_IN_TEXT.finditer(text)))


def redact_local_paths(value: Any) -> Any:
    """`value` with every absolute local path replaced by ``[local]/<its last component>``: a whole string that is a
    path, paths inside strings, recursively through dicts (keys and values) and lists. Everything else is kept."""
    if isinstance(value, str):
        if is_local_path(value):
            return redact_path(value)

        def replace(match: re.Match) -> str:
            path = match.group()
            trailing = path[len(path.rstrip(".")) :]
            return redact_path(path.rstrip(".")) + trailing

        return _LOCAL_PATH_IN_TEXT.sub(replace, value)
    if isinstance(value, Mapping):
        return {redact_local_paths(key): redact_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_local_paths(item) for item in value]
    if isinstance(value, os.PathLike):
        return redact_local_paths(os.fspath(value))
    return value


# ----------------------------------------------------------------------------------------------------------------------
# Metrics files
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class MetricEntry:
    """One complete evaluation result of a metrics file (see the module docstring for the format)."""

    task_type: str
    task_name: str | None
    dataset_type: str
    dataset_name: str
    dataset_split: str | None
    metric_type: str
    metric_name: str | None
    metric_value: float | int
    metric_unit: str | None = None
    metric_config: str | None = None
    protocol: str | None = None
    source: str = ""

    def to_eval_result(self) -> EvalResult:
        return EvalResult(
            task_type=self.task_type,
            task_name=self.task_name,
            dataset_type=self.dataset_type,
            dataset_name=self.dataset_name,
            dataset_split=self.dataset_split,
            metric_type=self.metric_type,
            metric_name=self.metric_name,
            metric_value=self.metric_value,
            metric_config=self.metric_config,
        )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _entry_from_json(raw: Any, source: str, index: int) -> MetricEntry | None:
    """A complete entry, or None (with a warning naming what is missing) for a partial one."""
    if not isinstance(raw, Mapping):
        logger.warning(
            "%s: results[%d] is a %s, not an object; left out of the card.", source, index, type(raw).__name__
        )
        return None
    task, dataset, metric = (
        raw.get(k) if isinstance(raw.get(k), Mapping) else {} for k in ("task", "dataset", "metric")
    )
    value = metric.get("value")
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    required = {
        "task.type": _text(task.get("type")),
        "dataset.type": _text(dataset.get("type")),
        "dataset.name": _text(dataset.get("name")),
        "metric.type": _text(metric.get("type")),
        "metric.value": value if number else None,
    }
    missing = [name for name, present in required.items() if present is None]
    if missing:
        logger.warning(
            "%s: results[%d] lacks %s (needs task, dataset, metric and a finite number value); left out of the card.",
            source,
            index,
            ", ".join(missing),
        )
        return None
    return MetricEntry(
        task_type=required["task.type"],
        task_name=_text(task.get("name")),
        dataset_type=required["dataset.type"],
        dataset_name=required["dataset.name"],
        dataset_split=_text(dataset.get("split")),
        metric_type=required["metric.type"],
        metric_name=_text(metric.get("name")),
        metric_value=value,
        metric_unit=_text(metric.get("unit")),
        metric_config=_text(metric.get("config")),
        protocol=_text(raw.get("protocol")),
        source=source,
    )


def read_metrics_file(path: str | os.PathLike) -> list[MetricEntry]:
    """The complete entries of one metrics file; partial entries are dropped with a warning.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON of the form ``{"results": [...]}``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"metrics file {str(path)!r} is not valid JSON: {error}.") from error
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(
            f'metrics file {str(path)!r} must be a JSON object {{"results": [...]}} (see '
            f"vanishing_depth.hub.model_card); got {got}."
        )
    entries = [_entry_from_json(raw, path.name, i) for i, raw in enumerate(data["results"])]
    return [entry for entry in entries if entry is not None]


# ----------------------------------------------------------------------------------------------------------------------
# Folder contents
# ----------------------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def has_remote_code(model_dir: str | os.PathLike, config: Mapping | None = None) -> bool:
    """True when ``config.json`` has an ``auto_map`` and every module it names is a ``.py`` file in the folder."""
    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json") if config is None else config
    auto_map = config.get("auto_map") or {}
    if not auto_map:
        return False
    for reference in auto_map.values():
        references = reference if isinstance(reference, (list, tuple)) else [reference]
        for item in references:
            if item is None:
                continue
            module = item.split("--")[-1].rsplit(".", 1)[0]
            if not (model_dir / f"{module}.py").is_file():
                return False
    return True


def model_weight_files(model_dir: str | os.PathLike) -> list[Path]:
    """The model's own weight files, as ``from_pretrained`` reads them: ``model.safetensors``, else the shards that
    ``model.safetensors.index.json`` names. Any other ``.safetensors`` in the folder (e.g. pretraining's
    ``validation_set.safetensors``, which holds data) is not part of the model.

    Raises:
        ValueError: the index is not of the form ``{"weight_map": {tensor: file}}``.
        FileNotFoundError: a shard the index names is missing.
    """
    model_dir = Path(model_dir)
    if (model_dir / WEIGHTS_NAME).is_file():
        return [model_dir / WEIGHTS_NAME]
    index = model_dir / WEIGHTS_INDEX_NAME
    if not index.is_file():
        return []
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, Mapping) or not all(isinstance(name, str) for name in weight_map.values()):
        raise ValueError(f'{str(index)!r} must hold {{"weight_map": {{tensor: file}}}}; got no such mapping.')
    names = sorted(set(weight_map.values()))
    for name in names:
        if "/" in name or "\\" in name or not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"{str(index)!r} names the shard {name!r}, which is not a file in {str(model_dir)!r}."
            )
    return [model_dir / name for name in names]


def count_parameters(model_dir: str | os.PathLike) -> int | None:
    """Number of weights in the folder's model weight files (read from their headers), None without any."""
    weight_files = model_weight_files(model_dir)
    if not weight_files:
        return None
    total = 0
    for weight_file in weight_files:
        with safe_open(str(weight_file), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def check_trained_weights(model_dir: str | os.PathLike, architecture: str) -> None:
    """Refuse to describe weights that are not there: every module `architecture` needs trained (its
    `trained_modules`: the encoder, plus the decoder or head) must have tensors in the folder's safetensors files,
    else the card would advertise a model that runs randomly initialised. Raises a `ValueError` naming what is missing."""
    model_class = getattr(modeling_vanishing_depth, architecture, None)
    required = getattr(model_class, "trained_modules", None)
    weight_files = model_weight_files(model_dir)
    if not isinstance(required, tuple) or not weight_files:
        return  # an unknown class, or no weights at all: `push` reports that itself
    present = set()
    for weight_file in weight_files:
        with safe_open(str(weight_file), framework="pt") as handle:
            present |= {key.split(".")[0] for key in handle.keys()}
    missing = [name for name in required if name not in present]
    if missing:
        raise ValueError(
            f"{str(model_dir)!r} is saved as a {architecture} but its weights hold nothing for {missing}: a card would "
            f"describe a model whose {', '.join(missing)} is randomly initialised. Train and save the full model (e.g. "
            "RUN/pretraining for the pretraining decoder, a `vanishing-depth finetune` output for a head), or write the "
            "card of the folder that holds those weights."
        )


def _format_count(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 1e5 else f"{count:,}"


def _format_value(value: Any) -> str:
    """Values exactly as stored (no rounding), as one table cell."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        value = json.dumps(value, default=str)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _period_text(metres: float) -> str:
    if metres >= 1.0:
        return f"{metres:.3g} m"
    if metres >= 0.01:
        return f"{metres * 100:.3g} cm"
    return f"{metres * 1000:.3g} mm"


def _depth_settings(config: Mapping) -> tuple[str, list[tuple[str, str]]]:
    encoding = config.get("depth_encoding", "pde")
    max_depth = float(config.get("max_depth", 15.0))
    if encoding == "normalized":
        return "normalised-depth baseline", [
            ("encoding", "one channel, (d − 5 m) / 5 m (the paper's normalisation baseline, kept for ablations)"),
            ("missing depth (0)", "passed as 0 m"),
        ]
    if encoding == "log_validity":
        return "log-depth + validity baseline", [
            ("encoding", f"two channels: ln(d) from [ln 0.1 m, ln {max_depth:g} m] onto [-1, 1], and validity 0/1"),
            ("missing depth (0)", "log channel 0, validity channel 0"),
        ]
    channels = int(config.get("pde_channels", 32))
    temperature = float(config.get("pde_temperature", 3e-4))
    normalization = config.get("depth_normalization", "global")
    settings = [
        ("channels C", f"{channels} ({channels // 2} sin/cos pairs)"),
        ("temperature T", f"{temperature:g}"),
        ("normalisation", f"`{normalization}`"),
    ]
    if normalization == "global":
        fastest = max_depth * temperature ** ((channels - 2) / channels)
        settings += [
            ("max depth", f"{max_depth:g} m (depth is divided by it; beyond it the slowest pair wraps around)"),
            (
                "periods",
                f"{_period_text(max_depth)} (pair 0) down to {_period_text(fastest)} (pair {channels // 2 - 1})",
            ),
        ]
    else:
        settings.append(
            (
                "max depth",
                "per image: depth is divided by its own maximum, which is written as a digit code into the depth "
                f"CLS token so metric scale is kept (config `max_depth` = {max_depth:g} m is not used)",
            )
        )
    settings.append(("missing depth (0)", "encodes as (sin, cos) = (0, 1) in every pair; no extra validity channel"))
    return "positional depth encoding (PDE)", settings


def _model_details(config: Mapping, model_dir: Path) -> list[tuple[str, str]]:
    rgb = config.get("rgb_config") or {}
    details = []
    if rgb:
        details += [
            ("RGB backbone", f"DINOv2 (`{rgb.get('model_type', 'dinov2')}`), frozen"),
            (
                "hidden size / blocks / heads",
                f"{rgb.get('hidden_size')} / {rgb.get('num_hidden_layers')} / {rgb.get('num_attention_heads')}",
            ),
            ("patch size", f"{rgb.get('patch_size', 14)} px"),
            ("position grid", f"{rgb.get('image_size')} px (interpolated for other sizes)"),
        ]
        if rgb.get("num_register_tokens"):
            details.append(("register tokens", str(rgb["num_register_tokens"])))
    if config.get("fusion_layers") is not None:
        details.append(("fusion after depth blocks (0-based)", ", ".join(str(i) for i in config["fusion_layers"])))
    if config.get("se_reduction") is not None:
        details.append(("SE reduction", str(config["se_reduction"])))
    details.append(("CLS token fused", "yes" if config.get("fuse_cls_token") else "no"))
    count = count_parameters(model_dir)
    if count is not None:
        details.append(("parameters (all weight files)", _format_count(count)))
    return details


def _training_args(model_dir: Path, training_args: Mapping | str | os.PathLike | None) -> tuple[dict, str | None]:
    if training_args is None:
        candidate = model_dir / "training_args.json"
        if not candidate.is_file():
            return {}, None
        return _read_json(candidate), f"saved in `{candidate.name}`"
    if isinstance(training_args, Mapping):
        return dict(training_args), "as passed by the training run"
    if isinstance(training_args, argparse.Namespace):
        return vars(training_args), "as passed by the training run"
    if isinstance(training_args, (str, os.PathLike)):
        return _read_json(Path(training_args)), f"saved in `{Path(training_args).name}`"
    raise ValueError(
        f"`training_args` must be a dict, an argparse.Namespace, a path to a JSON file or None; got "
        f"{type(training_args).__name__}."
    )


def _training_data(training_args: Mapping) -> list[str]:
    names: list[str] = []
    for key in TRAINING_DATA_KEYS:
        value = training_args.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        names += [str(v) for v in values if isinstance(v, (str, os.PathLike)) and str(v)]
    return list(dict.fromkeys(names))


@dataclass
class _EvaluationGroup:
    title: str
    protocols: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


def _evaluation_groups(entries: Sequence[MetricEntry]) -> list[_EvaluationGroup]:
    groups: dict[tuple, _EvaluationGroup] = {}
    for entry in entries:
        key = (entry.task_name or entry.task_type, entry.dataset_name, entry.dataset_split)
        title = f"{key[0]}: {entry.dataset_name}" + (f" ({entry.dataset_split} split)" if entry.dataset_split else "")
        group = groups.setdefault(key, _EvaluationGroup(title=title))
        if entry.protocol and entry.protocol not in group.protocols:
            group.protocols.append(entry.protocol)
        group.rows.append(
            {
                "metric": _format_value(entry.metric_name or entry.metric_type),
                "setting": _format_value(entry.metric_config or "–"),
                "value": _format_value(entry.metric_value),
                "unit": _format_value(entry.metric_unit or "–"),
            }
        )
    return list(groups.values())


def usage_snippet(repo_id: str, architecture: str) -> str:
    """A runnable example: load the model and its image processor from `repo_id`, run one RGB-D frame."""
    auto_class = AUTO_CLASSES.get(architecture, "AutoModel")
    lines = [
        "import numpy as np",
        "import torch",
        "import vanishing_depth  # registers the model; without the package pass trust_remote_code=True below",
        f"from transformers import AutoImageProcessor, {auto_class}",
        "",
        f'model = {auto_class}.from_pretrained("{repo_id}").eval()',
        f'processor = AutoImageProcessor.from_pretrained("{repo_id}")',
        "",
        "rgb = np.random.randint(0, 256, (480, 640, 3), dtype=np.uint8)  # your RGB frame, (H, W, 3)",
        "depth_m = np.random.uniform(0.5, 5.0, (480, 640)).astype(np.float32)  # its depth in metres",
        "depth_m[::2] = 0.0  # 0 = no measurement: holes and sparse depth are fine",
        'inputs = processor(images=rgb, depth=depth_m, return_tensors="pt")',
        "with torch.no_grad():",
        "    outputs = model(**inputs)",
    ]
    lines.append(
        {
            "AutoModelForDepthEstimation": "print(outputs.predicted_depth.shape)  # (1, H, W): dense depth in metres",
            "AutoModelForSemanticSegmentation": "print(outputs.logits.argmax(1).shape)  # per-pixel class ids",
            "AutoModelForImageClassification": "print(outputs.logits.argmax(-1))  # the predicted class id",
        }.get(
            auto_class,
            "print([tuple(f.shape) for f in outputs.feature_maps])  # (1, 2*hidden, H/14, W/14) per fusion layer",
        )
    )
    if architecture in ("VanishingDepthForDepthEstimation", "VanishingDepthForPretraining"):
        lines += [
            "",
            "# Or in one line: the depth-completion pipeline (output at the image's size, padding removed).",
            "from transformers import pipeline",
            "",
            f'complete = pipeline("depth-completion", model="{repo_id}")',
            'completed = complete(rgb, depth=depth_m)["predicted_depth"]  # (480, 640) metres',
        ]
    return "\n".join(lines)


def _limitations(config: Mapping, processor: Mapping, training_data: list[str]) -> list[str]:
    max_depth = float(config.get("max_depth", 15.0))
    lines = []
    if config.get("depth_encoding", "pde") == "pde" and config.get("depth_normalization", "global") == "global":
        lines.append(
            f"Range: depth is encoded relative to {max_depth:g} m. Beyond it the slowest PDE pair wraps around and "
            f"far depths alias with near ones; the image processor drops (or rescales) depth beyond "
            f"{float(processor.get('max_valid_depth', max_depth)):g} m and logs how many pixels it touched."
        )
    else:
        lines.append("Range: no metric range beyond what the training data covered was tested.")
    seen = ", ".join(training_data) if training_data else "the (unrecorded) training data"
    lines.append(
        f"Sensors: only depth from {seen} was seen in training. Other sensors (outdoor LiDAR line patterns, dToF at low resolution, stereo with its own noise) "
        "may behave differently; validate on your sensor before relying on the features."
    )
    lines.append(
        "Units: depth must be metres with 0 for missing pixels. Millimetre maps passed as metres, disparity, "
        "inverse or relative depth silently give wrong features."
    )
    source = config.get("rgb_backbone_name_or_path")
    lines.append(
        f"The RGB stream is the unchanged `{source}`: whatever that model does not see, this one does not either."
        if source
        else "The RGB stream is frozen, and this folder does not record which weights it holds: check before relying "
        "on its features."
    )
    return lines


def _licence_chain(config: Mapping, training_data: list[str]) -> list[str]:
    source = config.get("rgb_backbone_name_or_path")
    lines = ["This model and the `vanishing-depth` code: Apache-2.0."]
    if source:
        lines.append(
            f"RGB encoder and depth-stream initialisation: `{source}`; the official DINOv2 weights "
            "(facebookresearch/dinov2, facebook/dinov2-*) are Apache-2.0, check the terms of any other source."
        )
    else:
        lines.append(
            "RGB encoder: DINOv2 architecture; this folder does not record which checkpoint its weights came from. "
            "The official DINOv2 weights (facebookresearch/dinov2) are Apache-2.0."
        )
    lines.append("Method: Koch & Krüger, arXiv 2503.19947 (paper licence as stated on arXiv).")
    for name in training_data:
        key = Path(name).name if not is_hub_id(name) else name
        terms = KNOWN_DATA_TERMS.get(key)
        if terms:
            lines.append(f"Training data `{name}`: {terms}.")
        else:
            lines.append(f"Training data `{name}`: its own terms apply; check them before using this model.")
    if not training_data:
        lines.append("Training data: not recorded; the terms of whatever data trained it apply.")
    return lines


def _provenance(config: Mapping) -> list[str]:
    lines = []
    source = config.get("rgb_backbone_name_or_path")
    if source:
        where = f"[{source}](https://huggingface.co/{source})" if is_hub_id(source) else f"`{source}`"
        lines.append(f"RGB backbone weights (and the depth stream's initialisation): {where}.")
    converted = config.get("converted_from")
    if isinstance(converted, Mapping):
        details = ", ".join(f"{k}: `{v}`" for k, v in converted.items() if v not in (None, ""))
        lines.append(f"Converted from an existing checkpoint ({details}).")
    elif converted:
        lines.append(f"Converted from an existing checkpoint: `{converted}`.")
    return lines


def _framework_versions() -> list[tuple[str, str]]:
    return [
        ("vanishing-depth", __version__),
        ("transformers", transformers.__version__),
        ("torch", torch.__version__),
        ("huggingface_hub", huggingface_hub.__version__),
    ]


# ----------------------------------------------------------------------------------------------------------------------
# The card
# ----------------------------------------------------------------------------------------------------------------------
def build_model_card(
    model_dir: str | os.PathLike,
    metrics_files: Sequence[str | os.PathLike] | None = None,
    training_args: Mapping | str | os.PathLike | argparse.Namespace | None = None,
    repo_id: str | None = None,
    datasets: Sequence[str] | None = None,
    base_model: str | None = None,
    extra_tags: Sequence[str] | None = None,
) -> ModelCard:
    """Build the model card of a saved Vanishing Depth folder.

    Args:
        model_dir: folder written by ``save_pretrained`` (``config.json`` required; ``preprocessor_config.json``,
            ``training_args.json`` and ``*.safetensors`` are read when present).
        metrics_files: metrics JSON files in the format of the module docstring; their complete entries become the
            ``model-index`` and the evaluation tables. None: no results are reported.
        training_args: the run's arguments (dict, Namespace or JSON path); default ``model_dir/training_args.json``.
        repo_id: the Hub id (``owner/name``) used in the usage snippet and as model name. Default: the model name is
            the folder's name and the snippet names the placeholder ``<your-org>/<folder name>`` (with a note saying
            so); a card never names a local path (every absolute path read from the folder or the arguments is
            written as ``[local]/<last component>``, see `redact_local_paths`).
        datasets: Hub dataset ids for the ``datasets`` metadata; default: the training-data names in the training
            arguments that are Hub ids.
        base_model: overrides ``base_model``; default: ``config.rgb_backbone_name_or_path`` when it is a Hub id.
        extra_tags: tags added to the defaults.

    Returns:
        A `huggingface_hub.ModelCard`; ``card.save(path)`` writes it, ``card.push_to_hub(repo_id)`` uploads it. Its
        last line is a comment marking it as generated (see `card_is_ours`).
    """
    model_dir = Path(model_dir)
    if repo_id is not None and (not isinstance(repo_id, str) or not _HUB_ID.match(repo_id)):
        raise ValueError(f"`repo_id` must be a Hub id 'owner/name' (or None), got {repo_id!r}.")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"`model_dir` must be a saved model folder with a config.json; got {str(model_dir)!r}.")
    config = redact_local_paths(_read_json(model_dir / "config.json"))
    processor_file = model_dir / "preprocessor_config.json"
    processor = redact_local_paths(_read_json(processor_file)) if processor_file.is_file() else {}
    architectures = config.get("architectures") or ["VanishingDepthModel"]
    architecture = architectures[0]
    check_trained_weights(model_dir, architecture)
    pipeline_tag = PIPELINE_TAGS.get(architecture)
    if pipeline_tag is None:
        logger.warning("No pipeline tag known for architecture %r; the card has none.", architecture)

    entries: list[MetricEntry] = []
    for metrics_file in metrics_files or []:
        entries += read_metrics_file(metrics_file)
    entries = [
        dataclasses.replace(entry, **{key: redact_local_paths(value) for key, value in vars(entry).items()})
        for entry in entries
    ]
    args, args_source = _training_args(model_dir, training_args)
    args = redact_local_paths(args)
    training_data = _training_data(args)

    source = config.get("rgb_backbone_name_or_path")
    base_model = base_model or (source if is_hub_id(source) else None)
    if datasets is None:
        datasets = [name for name in training_data if is_hub_id(name)]
    tags = list(DEFAULT_TAGS) + [tag for tag in extra_tags or [] if tag not in DEFAULT_TAGS]
    if has_remote_code(model_dir, config):
        tags.append("custom_code")
    model_name = repo_id.split("/")[-1] if repo_id else model_dir.resolve().name
    snippet_id = repo_id or REPO_ID_PLACEHOLDER.format(name=model_name)
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license="apache-2.0",
        base_model=base_model,
        datasets=list(datasets) or None,
        tags=tags,
        metrics=list(dict.fromkeys(entry.metric_type for entry in entries)) or None,
        eval_results=[entry.to_eval_result() for entry in entries] or None,
    )

    encoding_title, depth_settings = _depth_settings(config)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_title=model_name,
        description=DESCRIPTIONS.get(architecture, f"A Vanishing Depth model (`{architecture}`)."),
        architecture=architecture,
        model_details=_model_details(config, model_dir),
        image_mean=processor.get("image_mean", [0.485, 0.456, 0.406]),
        image_std=processor.get("image_std", [0.229, 0.224, 0.225]),
        patch_size=(config.get("rgb_config") or {}).get("patch_size", 14),
        encoding_title=encoding_title,
        depth_settings=depth_settings,
        max_valid_depth=f"{float(processor.get('max_valid_depth', config.get('max_depth', 15.0))):g}",
        far_depth=processor.get("far_depth", "drop"),
        usage_snippet=usage_snippet(snippet_id, architecture),
        placeholder_note=None if repo_id else PLACEHOLDER_NOTE.format(placeholder=snippet_id),
        training_data=[f"`{name}`" for name in training_data],
        hyperparameters=[(key, _format_value(value)) for key, value in args.items()],
        training_args_source=args_source,
        training_curves=TRAINING_CURVES_FILE if (model_dir / TRAINING_CURVES_FILE).is_file() else None,
        provenance=_provenance(config),
        evaluation_groups=_evaluation_groups(entries),
        metrics_sources=sorted({f"`{entry.source}`" for entry in entries}),
        limitations=_limitations(config, processor, training_data),
        licence_chain=_licence_chain(config, training_data),
        framework_versions=_framework_versions(),
    )
    # The template's conditional blocks leave runs of blank lines; one blank line is all markdown needs. Every value
    # above was redacted already; the text is checked once more, so nothing the template adds can name a local path.
    content = ModelCard(re.sub(r"\n{3,}", "\n\n", card.content)).content
    return ModelCard(_mark_card(redact_local_paths(content)))


# ----------------------------------------------------------------------------------------------------------------------
# Whose card is it
# ----------------------------------------------------------------------------------------------------------------------
def _strip_marker(text: str) -> str:
    return _CARD_MARKER_LINE.sub("", text.replace("\r\n", "\n")).rstrip() + "\n"


def _card_digest(text: str) -> str:
    return hashlib.sha256(_strip_marker(text).encode("utf-8")).hexdigest()


def _mark_card(text: str) -> str:
    """`text` ending in the generated-card marker (an HTML comment the Hub does not show) with its digest."""
    return _strip_marker(text) + "\n" + CARD_MARKER.format(digest=_card_digest(text)) + "\n"


def card_is_ours(text: str) -> bool:
    """True when `text` is a card `build_model_card` wrote and nobody edited since: it ends in the generated-card
    marker and the marker's digest matches the rest. A README without the marker, or edited after it was written
    (even a card of this library), is the user's own: commands never replace it without ``--overwrite``, and
    ``push`` publishes it unchanged."""
    digests = [match["digest"] for match in _CARD_MARKER_LINE.finditer(text.replace("\r\n", "\n"))]
    return bool(digests) and digests[-1] == _card_digest(text)


def retarget_card(text: str, repo_id: str | None) -> str:
    """A card `card_is_ours` accepts, made ready for `repo_id`: its usage snippet loads `repo_id` (in place of the
    placeholder or of whatever id it named), the placeholder note goes, the model name (title and ``model-index``) is
    the repository's, and any local path is redacted. Everything else (metrics, hyperparameters) stays as written; the
    result is marked as generated again.

    Raises:
        ValueError: `text` is not such a card.
    """
    if not card_is_ours(text):
        raise ValueError("`text` must be a card written by build_model_card and not edited since (see card_is_ours).")
    if repo_id is not None and (not isinstance(repo_id, str) or not _HUB_ID.match(repo_id)):
        raise ValueError(f"`repo_id` must be a Hub id 'owner/name' (or None), got {repo_id!r}.")
    body = _strip_marker(text)
    if repo_id:
        card, new_name = ModelCard(body), repo_id.split("/")[-1]
        old_name = card.data.model_name
        if old_name and old_name != new_name:
            card.data.model_name = new_name
            body = card.content.replace(f"\n# {old_name}\n", f"\n# {new_name}\n", 1)
        head, sep, rest = body.partition("\n## How to use\n")
        usage, next_section, tail = rest.partition("\n## ")
        usage = re.sub(r'(\.from_pretrained\(")[^"\n]*("\))', lambda m: m[1] + repo_id + m[2], usage)
        usage = re.sub(r'(pipeline\("depth-completion", model=")[^"\n]*(")', lambda m: m[1] + repo_id + m[2], usage)
        note = re.escape(PLACEHOLDER_NOTE).replace(re.escape("{placeholder}"), "[^`\n]*")
        usage = re.sub(note + "\n\n", "", usage)
        body = head + sep + usage + next_section + tail
    return _mark_card(redact_local_paths(body))


def write_model_card(model_dir: str | os.PathLike, overwrite: bool = False, **kwargs) -> Path:
    """`build_model_card` and save it as ``model_dir/README.md``; returns the path.

    An existing README is replaced only when it is a card this library wrote and nobody edited since
    (`card_is_ours`), or with ``overwrite=True``; a README of the user's own is refused.

    Raises:
        OutputExistsError: ``README.md`` exists, is not an unedited generated card, and `overwrite` is False.
    """
    path = Path(model_dir) / "README.md"
    card = build_model_card(model_dir, **kwargs)
    ours = path.is_file() and card_is_ours(path.read_text(encoding="utf-8", errors="replace"))
    existed = path.exists()
    try:
        prepare_output_file(path, overwrite=overwrite or ours, what="model card")
    except OutputExistsError as error:
        if not path.is_file():
            raise
        raise OutputExistsError(
            f"{str(path)!r} is not a model card vanishing-depth wrote (it lacks the generated-card marker, or was "
            "edited since): refusing to replace your README. Pass --overwrite (overwrite=True) to replace it, or move "
            "it elsewhere first."
        ) from error
    if existed:
        logger.info("Replacing %s (%s).", path, "a card vanishing-depth wrote" if ours else "overwrite=True")
    card.save(path)
    return path


def write_run_card(output_dir: str | os.PathLike, training_args: Mapping[str, Any]) -> Path | None:
    """The card a training command (``vanishing-depth pretrain``, ``finetune``, the demo) writes at the end of its run:
    `build_model_card` of `output_dir` with the run's arguments and the metrics files the folder holds
    (``eval_results.json``; pretraining's last validation, ``validation_results.json``), saved as
    ``output_dir/README.md``; pretraining's ``training_curves.png`` is shown in the card's training section. The
    folder is the run's own (the command refused a used one before the run), so the README there is replaced. Returns its path, or None (with a warning) for a folder
    without ``config.json`` (LoRA adapters only: there is no model to describe).
    """
    output_dir = Path(output_dir)
    if not (output_dir / "config.json").is_file():
        logger.warning("No config.json in %s (LoRA adapters only): no model card written.", output_dir)
        return None
    metrics_files = [output_dir / name for name in RUN_METRICS_FILES if (output_dir / name).is_file()]
    return write_model_card(output_dir, overwrite=True, metrics_files=metrics_files, training_args=training_args)


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_card_subcommand(subparsers) -> argparse.ArgumentParser:
    """``vanishing-depth card --model DIR [--metrics FILE ...] [--repo-id ID]``: write DIR/README.md."""
    parser = subparsers.add_parser(
        "card",
        help="Write the model card (README.md) of a saved model folder.",
        description="Write DIR/README.md: YAML metadata, a model-index from the metrics files, the input contract, "
        "usage, training arguments, evaluation tables, limitations, licences and citation.",
    )
    parser.add_argument("--model", required=True, help="Saved model folder (config.json, weights, processor).")
    parser.add_argument(
        "--metrics", nargs="*", default=[], help='Metrics JSON files ({"results": [...]}) from the evaluation code.'
    )
    parser.add_argument(
        "--repo-id", help="Hub id used in the usage snippet (default: the placeholder <your-org>/<folder name>)."
    )
    parser.add_argument("--training-args", help="JSON file of the run's arguments (default: DIR/training_args.json).")
    parser.add_argument("--dataset", action="append", default=None, help="Hub dataset id for the metadata (repeat).")
    parser.add_argument("--base-model", help="Hub id of the RGB backbone (default: from config.json).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace DIR/README.md even when it is your own (without it only a card vanishing-depth wrote and nobody "
        "edited is replaced).",
    )
    parser.set_defaults(func=run_card)
    return parser


def run_card(args: argparse.Namespace) -> int:
    path = write_model_card(
        args.model,
        metrics_files=args.metrics,
        training_args=args.training_args,
        repo_id=args.repo_id,
        datasets=args.dataset,
        base_model=args.base_model,
        overwrite=args.overwrite,
    )
    print(f"wrote {path}")
    return 0


__all__ = [
    "AUTO_CLASSES",
    "PIPELINE_TAGS",
    "RUN_METRICS_FILES",
    "MetricEntry",
    "add_card_subcommand",
    "build_model_card",
    "card_is_ours",
    "check_trained_weights",
    "find_local_paths",
    "has_remote_code",
    "is_hub_id",
    "is_local_path",
    "model_weight_files",
    "read_metrics_file",
    "redact_local_paths",
    "redact_path",
    "retarget_card",
    "run_card",
    "template_path",
    "usage_snippet",
    "write_model_card",
    "write_run_card",
]
