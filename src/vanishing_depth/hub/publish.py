# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Publish saved models and RGB-D corpora to the Hugging Face Hub.

`push_model` uploads a saved folder as **one commit**, and only what is on an explicit allow-list:

- the model weights: ``model.safetensors``, or ``model.safetensors.index.json`` and the shards it names;
- ``config.json`` (with its ``auto_map``) and ``preprocessor_config.json`` (with the image processor's);
- the remote-code ``.py`` files the ``auto_map`` entries need (``pipeline_vanishing_depth.py`` and every module they
  import), from the folder, or from the installed package when the folder's are incomplete;
- the card ``README.md``;
- ``training_args.json`` and the metrics files meant for publication: ``eval_results.json``,
  ``validation_results.json`` (pretraining's last validation), ``completion_metrics.json`` and the files named by
  ``metrics_files`` / ``--metrics``;
- ``training_curves.png``, pretraining's loss and validation curves, which the card shows.

Everything else stays local and the push says what it left out and why: validation frames
(``validation_set.safetensors`` holds the held-out RGB and metric depth of a pretraining run), optimizer, scheduler
and RNG state, checkpoints and every other subfolder, logs, pickles, exports.

What is uploaded never names the user's disk: every absolute local path in an uploaded JSON file (``config.json``
fields such as ``_name_or_path`` / ``rgb_backbone_name_or_path``, ``training_args.json`` values, metrics) is rewritten
to ``[local]/<last component>`` (``_name_or_path`` becomes the repository id; a ``*name_or_path`` field holding a
relative local path is rewritten too), and so is every one in a card this library wrote. The card's usage snippet
names the repository pushed to: a card this library wrote and nobody edited is retargeted (or rebuilt, with
``metrics_files``), a folder without one gets one. A README of the user's own is published unchanged, and refused when
it names local paths (see `plan_model_upload`). Files that need a change are rewritten in a staging folder; the user's
folder is never modified.

Folders saved without the remote-code files, ``auto_map`` entries, image processor or card are completed first from
the installed package (exactly what ``save_pretrained`` of the registered classes writes), so the repository loads
with ``trust_remote_code=True`` for users who did not install the package, and with the Auto classes for those who
did. ``dry_run=True`` (``push --dry-run``) lists the plan without contacting the Hub.

`push_corpus` pushes a corpus (a `datasets.Dataset` / `DatasetDict` or a saved corpus folder) with
``Dataset.push_to_hub``, as parquet shards in the corpus schema of `vanishing_depth.data.schema`.

``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_TOKEN`` when imported; set them before importing this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi

from .. import __version__
from ..configuration_vanishing_depth import VanishingDepthConfig
from ..data import DEMO_CORPUS_NAME, RGBD_CORPUS_COLUMNS, demo_corpus_path, load_corpus
from ..evaluation.results import COMPLETION_METRICS_FILE
from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
from ..modeling_vanishing_depth import PIPELINE_MODULE, depth_completion_custom_pipelines, remote_code_auto_map
from .model_card import (
    LOCAL_PATH_PREFIX,
    REPO_ID_PATTERN,
    RUN_METRICS_FILES,
    TRAINING_CURVES_FILE,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    build_model_card,
    card_is_ours,
    find_local_paths,
    is_hub_id,
    model_weight_files,
    read_metrics_file,
    redact_local_paths,
    redact_path,
    retarget_card,
)

logger = logging.getLogger(__name__)

WEIGHT_INDEX = WEIGHTS_INDEX_NAME
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")
CONFIG_AUTO_MAP = {"AutoConfig": "configuration_vanishing_depth.VanishingDepthConfig"}
PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_vanishing_depth.VanishingDepthImageProcessor"}
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the flat modeling files `save_pretrained` copies come from here
TRAINING_ARGS = "training_args.json"
README = "README.md"
# Metrics files of the folder that are published when present (the evaluation code writes them for publication).
PUBLISHED_METRICS = (*RUN_METRICS_FILES, COMPLETION_METRICS_FILE)
_RELATIVE_IMPORT = re.compile(r"^\s*(?:from\s+\.(\S+)\s+import|import\s+\.(\S+)\s*$)", flags=re.MULTILINE)
_STATE_FILE = re.compile(r"optimi[sz]er|scheduler|rng_state|random_states|scaler", flags=re.IGNORECASE)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _read_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}.") from error
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def _write_json(path: Path, data: dict) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()  # may be a link to the user's file: replace it, never write through it
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_text(path: Path, text: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text, encoding="utf-8")


def _auto_map_modules(auto_map: dict) -> set[str]:
    modules = set()
    for reference in auto_map.values():
        for item in reference if isinstance(reference, (list, tuple)) else [reference]:
            if item:
                modules.add(item.split("--")[-1].rsplit(".", 1)[0])
    return modules


def code_files(folder: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """``(present, missing)`` ``.py`` file names needed by `modules` in `folder`, following relative imports."""
    present, missing, queue = set(), set(), list(modules)
    while queue:
        name = f"{queue.pop()}.py"
        if name in present or name in missing:
            continue
        path = folder / name
        if not path.is_file():
            missing.add(name)
            continue
        present.add(name)
        for groups in _RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8")):
            queue.append(next(group for group in groups if group))
    return present, missing


def _defines_all(folder: Path, auto_map: dict) -> bool:
    """Every class an `auto_map` names is defined in its module file in `folder`."""
    for reference in auto_map.values():
        for item in reference if isinstance(reference, (list, tuple)) else [reference]:
            if not item:
                continue
            module, class_name = item.split("--")[-1].rsplit(".", 1)
            path = folder / f"{module}.py"
            if not path.is_file() or f"class {class_name}(" not in path.read_text(encoding="utf-8"):
                return False
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # e.g. Windows without symlink rights
        shutil.copy2(source, target)


def _wanted_auto_map(architecture: str) -> dict[str, str]:
    """The `auto_map` entries users of a repository need: the config and every model class, as `save_pretrained`
    writes them (any head loads from any Vanishing Depth repository; `AutoModel` of a head or pretraining repository
    is its encoder)."""
    return {**CONFIG_AUTO_MAP, **remote_code_auto_map()}


def scrub_local_paths(data: Any, repo_id: str | None = None) -> tuple[Any, list[str]]:
    """`data` (parsed JSON) ready for publication, and the places (``key.sub[0]``) that changed.

    Every absolute local path, as a whole value or inside a string, becomes ``[local]/<last component>``
    (`redact_local_paths`); a ``*name_or_path`` field that is neither empty nor a Hub id (a local folder or file,
    relative ones too) is rewritten the same way, except a top-level ``_name_or_path``, which becomes `repo_id`."""
    changes: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                new_key = redact_local_paths(key) if isinstance(key, str) else key
                place = f"{where}.{new_key}" if where else str(new_key)
                if new_key != key:
                    changes.append(f"{place} (key)")
                if isinstance(key, str) and key.endswith("name_or_path") and isinstance(item, str) and item.strip():
                    new = item
                    if not is_hub_id(item) and not item.startswith(LOCAL_PATH_PREFIX):
                        new = repo_id if (key == "_name_or_path" and not where and repo_id) else redact_path(item)
                    if new != item:
                        changes.append(place)
                    out[new_key] = new
                else:
                    out[new_key] = walk(item, place)
            return out
        if isinstance(value, list):
            return [walk(item, f"{where}[{index}]") for index, item in enumerate(value)]
        if isinstance(value, str):
            new = redact_local_paths(value)
            if new != value:
                changes.append(where or "(value)")
            return new
        return value

    return walk(data, ""), changes


@dataclass
class UploadPlan:
    """What `push_model` uploads. `staging_dir` mirrors the repository: ``files`` maps each path in the repository to
    the local file it comes from (a staged copy where the library completed or rewrote it); `origins` maps it to the
    user's file it was made from (absent for files the library wrote from nothing); `completed` names files the
    library wrote or changed (remote code, ``auto_map``, image processor, card); `rewritten` names, per file, what
    was changed to keep local paths out of it; `left_out` lists the folder's files that stay local, and
    `left_out_reasons` says why for each."""

    staging_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    origins: dict[str, Path] = field(default_factory=dict)
    rewritten: dict[str, list[str]] = field(default_factory=dict)
    left_out_reasons: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, source: Path, completed: bool = False, origin: Path | None = None) -> None:
        if not (self.staging_dir / name).exists():
            _link_or_copy(source, self.staging_dir / name)
        self.files[name] = source
        if origin is not None or not source.resolve().is_relative_to(self.staging_dir.resolve()):
            self.origins[name] = origin if origin is not None else source
        if completed and name not in self.completed:
            self.completed.append(name)

    def summary(self) -> dict[str, Any]:
        """The plan as JSON-ready data: ``upload`` (repository paths), ``completed``, ``rewritten`` and
        ``left_out`` (``{path in the folder: reason}``)."""
        return {
            "upload": sorted(self.files),
            "completed": sorted(self.completed),
            "rewritten": {name: changes for name, changes in sorted(self.rewritten.items())},
            "left_out": {name: self.left_out_reasons[name] for name in self.left_out},
        }


def _add_json(
    plan: UploadPlan, name: str, data: Any, origin: Path | None, repo_id: str | None, completed: bool
) -> None:
    """Add a JSON file: the user's own when nothing changes, else a staged copy with local paths rewritten."""
    scrubbed, changes = scrub_local_paths(data, repo_id)
    if origin is not None and not completed and not changes:
        plan.add(name, origin)
        return
    _write_json(plan.staging_dir / name, scrubbed)
    plan.add(name, plan.staging_dir / name, completed=completed, origin=origin)
    if changes:
        plan.rewritten[name] = changes


def _left_out_reason(relative: str, plan: UploadPlan, is_dir_link: bool = False) -> str:
    parts = relative.split("/")
    name, lower = parts[-1], parts[-1].lower()
    if len(parts) > 1 or is_dir_link:
        top = parts[0].lower()
        if top.startswith("checkpoint"):
            return "training checkpoint (model, optimizer, scheduler and RNG state of a step)"
        if top in ("logs", "runs", "wandb", "tensorboard", "mlruns"):
            return "training logs"
        return f"in the subfolder {parts[0]}/: only the folder's top level is published (push a model subfolder on its own)"
    if lower == "validation_set.safetensors":
        return "held-out validation frames of the run (your RGB and metric depth): private data, never published"
    if name in plan.files:
        return f"the --metrics file of the same name is published as {name}"
    if _STATE_FILE.search(lower):
        return "optimizer / scheduler / RNG state: training state, never published"
    if lower.endswith(".safetensors"):
        return (
            f"not model weights (only {WEIGHTS_NAME}, or the shards {WEIGHT_INDEX} names, are published): may hold data"
        )
    if lower.endswith(_PICKLE_SUFFIXES):
        return "pickled file: never published (loading one can execute code)"
    if lower.endswith((".jsonl", ".log")) or "tfevents" in lower or lower.startswith("training_log"):
        return "training log"
    if lower.endswith(".py"):
        return "Python file the remote code does not import"
    if lower.endswith((".onnx", ".pt2", ".onnx.data")):
        return "export (publish it on purpose, separately)"
    if lower.startswith("process_") and lower.endswith(".json"):
        return "per-process run record (data fingerprints)"
    return "not on the allow-list"


def _folder_entries(model_dir: Path) -> list[tuple[str, bool]]:
    """``(relative path, is a linked folder)`` of every file below `model_dir`; linked folders (e.g.
    ``checkpoints/latest``) are listed, not followed."""
    entries = []
    for root, dirs, files in os.walk(model_dir, followlinks=False):
        base = Path(root).relative_to(model_dir)
        entries += [((base / d).as_posix(), True) for d in dirs if (Path(root) / d).is_symlink()]
        entries += [((base / f).as_posix(), False) for f in files]
    return sorted(entries)


def plan_model_upload(
    model_dir: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str | None = None,
    metrics_files: Sequence[str | os.PathLike] | None = None,
) -> UploadPlan:
    """Check a saved folder, complete what a Hub repository needs, and list the files to upload (the allow-list of
    the module docstring) and those left out, with reasons.

    Completes (into `staging_dir`, never into `model_dir`), writing what ``save_pretrained`` of registered classes
    writes: the ``auto_map`` entries of the config (``AutoConfig`` and the Auto class of the architecture; for a
    pretraining model ``AutoModel`` = its encoder and ``AutoModelForPreTraining``) and of the image processor
    (``AutoImageProcessor``); the remote-code files they need, from the installed package when the folder lacks any
    (all of them then, so the files match each other); ``preprocessor_config.json`` (built from the model config,
    with a warning, when missing). Rewrites every local path in the JSON files it uploads (`scrub_local_paths`).

    The card, by who wrote ``README.md``:

    - none: built with `build_model_card` (usage snippet on `repo_id`; metrics from `metrics_files`, else the
      folder's ``eval_results.json`` and ``validation_results.json`` that are in the metrics format; the folder's
      ``training_curves.png`` is uploaded and shown);
    - a card this library wrote and nobody edited (`card_is_ours`): its snippet is pointed at `repo_id`
      (`retarget_card`); with `metrics_files` it is rebuilt from the folder instead, to hold them;
    - the user's own: published unchanged, and refused when it names a local path.

    Raises:
        FileNotFoundError: no ``config.json``; a shard the weight index names, or a metrics file, is missing.
        ValueError: no model weights (pickled weights are not published), an architecture whose code the package
            does not have, a JSON file that does not parse, a metrics file whose name clashes with another
            uploaded file, or a README of the user's own that names local paths.
    """
    model_dir, staging = Path(model_dir), Path(staging_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"`model_dir` must be a saved model folder with a config.json; got {str(model_dir)!r}.")
    weights = model_weight_files(model_dir)
    if not weights:
        pickles = [name for name in PICKLE_WEIGHTS if (model_dir / name).is_file()]
        others = sorted(p.name for p in model_dir.glob("*.safetensors"))
        raise ValueError(
            f"`model_dir` {str(model_dir)!r} holds no model weights (expected {WEIGHTS_NAME}, or {WEIGHT_INDEX} and "
            "the shards it names)"
            + (f"; {others} are not model weights and are not published" if others else "")
            + (f" (only pickled {pickles}, which are not published: loading them can execute code)" if pickles else "")
            + "; save the model with save_pretrained (safetensors is the default) and push again."
        )
    staging.mkdir(parents=True, exist_ok=True)
    plan = UploadPlan(staging_dir=staging)
    if weights[0].name != WEIGHTS_NAME:
        plan.add(WEIGHT_INDEX, model_dir / WEIGHT_INDEX)
    for path in weights:
        plan.add(path.name, path)

    # The two configs with the auto_map entries remote-code users need.
    config = _read_json(model_dir / "config.json")
    architecture = (config.get("architectures") or ["VanishingDepthModel"])[0]
    model_auto_map = {**_wanted_auto_map(architecture), **(config.get("auto_map") or {})}
    custom_pipelines = {**depth_completion_custom_pipelines(architecture), **(config.get("custom_pipelines") or {})}
    processor_file = model_dir / "preprocessor_config.json"
    if processor_file.is_file():
        processor_config = _read_json(processor_file)
    else:
        logger.warning(
            "%s has no preprocessor_config.json; publishing VanishingDepthImageProcessor.from_model_config(config) "
            "(defaults matched to the model's PDE settings). Save your own processor in the folder to change it.",
            model_dir,
        )
        processor = VanishingDepthImageProcessor.from_model_config(VanishingDepthConfig.from_dict(config))
        processor_config = json.loads(processor.to_json_string())
    processor_auto_map = {**PROCESSOR_AUTO_MAP, **(processor_config.get("auto_map") or {})}

    # Remote code: the folder's own files when they are complete (they match its weights), else the package's.
    modules = _auto_map_modules(model_auto_map) | _auto_map_modules(processor_auto_map) | {PIPELINE_MODULE}
    present, missing = code_files(model_dir, modules)
    code_dir = model_dir
    if missing or not _defines_all(model_dir, model_auto_map) or not _defines_all(model_dir, processor_auto_map):
        code_dir = PACKAGE_DIR
        present, missing = code_files(code_dir, modules)
        if missing or not _defines_all(code_dir, model_auto_map) or not _defines_all(code_dir, processor_auto_map):
            raise ValueError(
                f"Cannot publish {architecture} with remote code: the installed package does not define every class "
                f"of auto_map {model_auto_map} / {processor_auto_map} (missing files: {sorted(missing)})."
            )
        logger.warning(
            "%s lacks remote-code files or classes; publishing the installed package's code (%s) so the repository "
            "loads with trust_remote_code=True.",
            model_dir,
            ", ".join(sorted(present)),
        )
    for name in sorted(present):
        plan.add(name, code_dir / name, completed=code_dir != model_dir)

    for name, data, original, wanted in (
        (
            "config.json",
            config,
            model_dir / "config.json",
            {"auto_map": model_auto_map, "custom_pipelines": custom_pipelines},
        ),
        ("preprocessor_config.json", processor_config, processor_file, {"auto_map": processor_auto_map}),
    ):
        complete = original.is_file() and all(data.get(key) == value for key, value in wanted.items())
        origin = original if original.is_file() else None
        _add_json(plan, name, {**data, **wanted}, origin, repo_id, completed=not complete)

    # The run's record: its arguments and the metrics meant for publication, local paths rewritten.
    if (model_dir / TRAINING_ARGS).is_file():
        _add_json(plan, TRAINING_ARGS, _read_json(model_dir / TRAINING_ARGS), model_dir / TRAINING_ARGS, None, False)
    metrics_sources: dict[str, Path] = {}
    for item in metrics_files or []:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"`metrics_files`: {str(path)!r} is not a file.")
        if path.suffix != ".json":
            raise ValueError(f"`metrics_files` must be .json files in the metrics format, got {str(path)!r}.")
        taken = metrics_sources.get(path.name)
        if path.name in plan.files or (taken is not None and taken.resolve() != path.resolve()):
            raise ValueError(
                f"`metrics_files`: {str(path)!r} would be uploaded as {path.name}, which "
                + ("another uploaded file is already" if path.name in plan.files else f"{str(taken)!r} is too")
                + "; rename it."
            )
        metrics_sources[path.name] = path
    card_metrics = list(metrics_sources)
    for name in PUBLISHED_METRICS:
        if (model_dir / name).is_file():
            metrics_sources.setdefault(name, model_dir / name)
    for name, path in sorted(metrics_sources.items()):
        _add_json(plan, name, _read_json(path), path, None, False)
    if (model_dir / TRAINING_CURVES_FILE).is_file():  # the card shows it
        plan.add(TRAINING_CURVES_FILE, model_dir / TRAINING_CURVES_FILE)

    _plan_card(plan, model_dir, repo_id, [plan.files[name] for name in card_metrics])

    published = {origin.absolute() for origin in plan.origins.values()}
    for relative, is_dir_link in _folder_entries(model_dir):
        if relative.endswith(".py") and relative in plan.files:
            continue  # an incomplete set of remote-code files: published as the package's copies of the same names
        if (model_dir / relative).absolute() not in published or is_dir_link:
            plan.left_out.append(relative)
            plan.left_out_reasons[relative] = _left_out_reason(relative, plan, is_dir_link)
    if plan.left_out:
        shown = [f"{name} ({plan.left_out_reasons[name]})" for name in plan.left_out[:20]]
        more = f" and {len(plan.left_out) - 20} more" if len(plan.left_out) > 20 else ""
        logger.warning("Not published (stays local): %s%s", "; ".join(shown), more)
    return plan


def _plan_card(plan: UploadPlan, model_dir: Path, repo_id: str | None, card_metrics: list[Path]) -> None:
    """Add ``README.md`` to `plan` by the rule of `plan_model_upload`."""
    staging, readme = plan.staging_dir, model_dir / README
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if card_is_ours(text) and card_metrics:
            logger.info(
                "%s is a card vanishing-depth wrote: rebuilding it for the push with %s (hyperparameters from %s).",
                readme,
                ", ".join(path.name for path in card_metrics),
                TRAINING_ARGS,
            )
            build_model_card(staging, metrics_files=card_metrics, repo_id=repo_id).save(staging / README)
            plan.add(README, staging / README, completed=True, origin=readme)
        elif card_is_ours(text):
            retargeted = retarget_card(text, repo_id)
            if retargeted == text.replace("\r\n", "\n"):
                plan.add(README, readme)
            else:
                _write_text(staging / README, retargeted)
                plan.add(README, staging / README, completed=True, origin=readme)
                if repo_id:
                    plan.rewritten[README] = [f"usage snippet loads {repo_id}"]
                if find_local_paths(text):
                    plan.rewritten.setdefault(README, []).append("local paths")
        else:
            paths = find_local_paths(text)
            if paths:
                shown = ", ".join(repr(path) for path in paths[:5]) + (
                    f" and {len(paths) - 5} more" if len(paths) > 5 else ""
                )
                raise ValueError(
                    f"{str(readme)!r} is your own README (not a card vanishing-depth wrote, or edited since) and names "
                    f"local paths: {shown}. Refusing to publish them. Remove them from it, or replace it with a "
                    f"generated card: vanishing-depth card --model {model_dir} --repo-id {repo_id or 'OWNER/NAME'} "
                    "--overwrite (this replaces your README)."
                )
            plan.add(README, readme)
            logger.warning(
                "%s is your own README (not a card vanishing-depth wrote, or edited since): published unchanged; its "
                "usage is not rewritten for %s%s.",
                readme,
                repo_id or "the repository",
                " and the metrics files are not added to it (regenerate it with `vanishing-depth card` to include them)"
                if card_metrics
                else "",
            )
        return
    for name in RUN_METRICS_FILES if not card_metrics else ():
        if name not in plan.files:
            continue
        try:
            read_metrics_file(plan.files[name])
            card_metrics.append(plan.files[name])
        except ValueError as error:
            logger.warning("%s is uploaded but not used for the card: %s", name, error)
    build_model_card(staging, metrics_files=card_metrics, repo_id=repo_id).save(staging / README)
    plan.add(README, staging / README, completed=True)


def push_model(
    model_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    tag: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    metrics_files: Sequence[str | os.PathLike] | None = None,
    dry_run: bool = False,
) -> CommitInfo | dict[str, Any]:
    """Upload a saved model folder to the Hub as one commit (see the module docstring for what is uploaded).

    Args:
        model_dir: folder written by ``save_pretrained`` (model and, ideally, image processor).
        repo_id: ``owner/name``; the repository is created if it does not exist.
        private: create the repository private (an existing repository keeps its visibility).
        revision: branch to commit to (created from ``main`` if missing); default ``main``.
        tag: tag to create on the new commit (e.g. ``"v1"``); an existing tag of that name is an error.
        commit_message: default ``"Upload <architecture> with vanishing-depth <version>"``.
        token: Hub token; default: the logged-in one or ``HF_TOKEN``.
        metrics_files: metrics JSON files: uploaded, and used for the card when the folder has none or has one this
            library wrote (which is then rebuilt).
        dry_run: plan only: return what would be uploaded, rewritten and left out (with reasons) and contact nothing.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit (``.oid``, ``.commit_url``); with `dry_run`, the plan as a dict
        (``repo_id``, ``revision``, ``dry_run``, and the keys of `UploadPlan.summary`).
    """
    if not isinstance(repo_id, str) or not REPO_ID_PATTERN.match(repo_id):
        raise ValueError(f"`repo_id` must be 'owner/name', got {repo_id!r}.")
    if not isinstance(dry_run, bool):
        raise ValueError(f"`dry_run` must be True (plan only) or False (push), got {dry_run!r}.")
    branch = revision or "main"
    with tempfile.TemporaryDirectory(prefix="vanishing-depth-push-") as staging:
        plan = plan_model_upload(model_dir, staging, repo_id=repo_id, metrics_files=metrics_files)
        if dry_run:
            report = {"repo_id": repo_id, "revision": branch, "dry_run": True, **plan.summary()}
            logger.info("Dry run: would upload %d files to %s@%s; nothing was sent.", len(plan.files), repo_id, branch)
            return report
        architecture = (_read_json(plan.files["config.json"]).get("architectures") or ["model"])[0]
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        existing = set(api.list_repo_files(repo_id, revision=branch))
        # A re-push must not leave weight shards of an earlier layout beside the new ones.
        stale = sorted(
            name for name in existing - set(plan.files) if name.endswith(".safetensors") or name == WEIGHT_INDEX
        )
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
            for name, path in sorted(plan.files.items())
        ] + [CommitOperationDelete(path_in_repo=name) for name in stale]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {architecture} with vanishing-depth {__version__}",
            revision=branch,
        )
    if tag:
        api.create_tag(repo_id, tag=tag, revision=info.oid)
    logger.info(
        "Pushed %d files to %s@%s (commit %s%s)",
        len(plan.files),
        repo_id,
        branch,
        info.oid,
        f", tag {tag}" if tag else "",
    )
    return info


# ----------------------------------------------------------------------------------------------------------------------
# Corpora
# ----------------------------------------------------------------------------------------------------------------------
def _corpus_splits(folder: Path) -> list[str]:
    names = {re.sub(r"-\d+-of-\d+$", "", path.stem) for path in folder.glob("data/*.parquet")}
    names |= {re.sub(r"-\d+-of-\d+$", "", path.stem) for path in folder.glob("*.parquet")}
    return sorted(names)


def _check_corpus_schema(dataset, what: str) -> None:
    columns = dataset.column_names
    missing = [column for column in RGBD_CORPUS_COLUMNS if column != "intrinsics" and column not in columns]
    if missing:
        raise ValueError(
            f"{what} lacks the corpus column(s) {missing} (schema: {list(RGBD_CORPUS_COLUMNS)}); got {columns}. "
            "Convert it with vanishing_depth.data.corpora.to_corpus_schema first."
        )


def push_corpus(
    dataset_or_path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    split: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    max_shard_size: str | int | None = None,
) -> CommitInfo | None:
    """Push an RGB-D corpus to a Hub dataset repository with ``Dataset.push_to_hub`` (parquet, LFS).

    Args:
        dataset_or_path: a `datasets.Dataset` or `DatasetDict` in the corpus schema, a folder written by
            `vanishing_depth.data.corpora.save_corpus` (every split in it is pushed), or ``"redwood_demo"``.
        repo_id: ``owner/name`` of the dataset repository (created if missing).
        private, revision, commit_message, token, max_shard_size: as in ``Dataset.push_to_hub``.
        split: split name for a single `Dataset` (default ``"train"``); for a folder, push only this split.

    Returns:
        The `CommitInfo` of the last commit (``DatasetDict.push_to_hub`` may return None).
    """
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must be 'owner/name', got {repo_id!r}.")
    dataset = dataset_or_path
    if isinstance(dataset_or_path, (str, os.PathLike)):
        folder = demo_corpus_path() if str(dataset_or_path) == DEMO_CORPUS_NAME else Path(dataset_or_path)
        if not folder.is_dir():
            raise ValueError(f"`dataset_or_path` must be a corpus folder, got {str(dataset_or_path)!r} (not a folder).")
        splits = [split] if split else _corpus_splits(folder)
        if not splits:
            raise ValueError(
                f"`dataset_or_path` {str(folder)!r} holds no parquet files (expected data/<split>-*.parquet)."
            )
        dataset = DatasetDict({name: load_corpus(folder, split=name) for name in splits})
        split = None
    kwargs = dict(
        private=private, revision=revision, commit_message=commit_message, token=token, max_shard_size=max_shard_size
    )
    if isinstance(dataset, DatasetDict):
        for name, part in dataset.items():
            _check_corpus_schema(part, f"split {name!r}")
        return dataset.push_to_hub(repo_id, **kwargs)
    if isinstance(dataset, Dataset):
        _check_corpus_schema(dataset, "the dataset")
        return dataset.push_to_hub(repo_id, split=split or "train", **kwargs)
    raise ValueError(
        f"`dataset_or_path` must be a datasets.Dataset, DatasetDict or corpus folder, got {type(dataset).__name__}."
    )


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_push_subcommand(subparsers) -> argparse.ArgumentParser:
    """``vanishing-depth push --model DIR --repo-id ID [--private] [--revision REV] [--tag TAG] [--dry-run]``."""
    parser = subparsers.add_parser(
        "push",
        help="Upload a saved model folder to the Hugging Face Hub as one commit.",
        description="Upload weights, config (auto_map), remote-code files, image processor, card, training_args.json "
        "and metrics files as one commit, and nothing else (no validation frames, optimizer state, checkpoints or "
        "logs); local paths in them are rewritten. The repository then loads with AutoModel / AutoImageProcessor, "
        "also with trust_remote_code=True and no package installed. Uses HF_TOKEN / the logged-in token and "
        "HF_ENDPOINT.",
    )
    parser.add_argument("--model", required=True, help="Saved model folder.")
    parser.add_argument("--repo-id", required=True, help="Hub repository, owner/name.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", help="Branch to commit to (created if missing). Default: main.")
    parser.add_argument("--tag", help="Tag the new commit, e.g. v1.")
    parser.add_argument("--commit-message", help="Commit message.")
    parser.add_argument(
        "--metrics",
        nargs="*",
        default=[],
        help="Metrics JSON files to publish; they also go into the card when the folder has none or one vanishing-depth "
        "wrote (rebuilt then).",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print what would be uploaded, rewritten (local paths) and left out (with reasons); contact nothing.",
    )
    parser.set_defaults(func=run_push)
    return parser


def run_push(args: argparse.Namespace) -> int:
    result = push_model(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        tag=args.tag,
        commit_message=args.commit_message,
        metrics_files=args.metrics,
        dry_run=getattr(args, "dry_run", False),
    )
    if isinstance(result, dict):
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps({"repo_id": args.repo_id, "commit": result.oid, "url": result.commit_url}))
    return 0


__all__ = [
    "PUBLISHED_METRICS",
    "UploadPlan",
    "add_push_subcommand",
    "code_files",
    "plan_model_upload",
    "push_corpus",
    "push_model",
    "run_push",
    "scrub_local_paths",
]
