# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Publish saved models and RGB-D corpora to the Hugging Face Hub.

`push_model` uploads a saved folder as **one commit**: the safetensors weights, ``config.json`` with its ``auto_map``,
the remote-code ``.py`` files, ``preprocessor_config.json`` (with the image processor's ``auto_map``), the model card
(``README.md``) and ``training_args.json``. Folders saved without the remote-code files, ``auto_map`` entries, image
processor or card are completed first from the installed package (exactly what ``save_pretrained`` of the registered
classes writes), so the repository loads with ``trust_remote_code=True`` for users who did not install the package,
and with the Auto classes for those who did. Anything else in the folder (checkpoints, logs,
exports) stays local, and the push says what it left out.

`push_corpus` pushes a corpus (a `datasets.Dataset` / `DatasetDict` or a saved corpus folder) with
``Dataset.push_to_hub``, as parquet shards in the corpus schema of `vanishing_depth.training.corpora`.

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

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi

from ..modeling_vanishing_depth import PIPELINE_MODULE, depth_completion_custom_pipelines, remote_code_auto_map
from .model_card import build_model_card

logger = logging.getLogger(__name__)

WEIGHT_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")
CONFIG_AUTO_MAP = {"AutoConfig": "configuration_vanishing_depth.VanishingDepthConfig"}
PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_vanishing_depth.VanishingDepthImageProcessor"}
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the flat modeling files `save_pretrained` copies come from here
_RELATIVE_IMPORT = re.compile(r"^\s*(?:from\s+\.(\S+)\s+import|import\s+\.(\S+)\s*$)", flags=re.MULTILINE)


def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(path: Path, data: dict) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()  # may be a link to the user's file: replace it, never write through it
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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


@dataclass
class UploadPlan:
    """What `push_model` uploads. `staging_dir` mirrors the repository: ``files`` maps each path in the repository to
    the local file it comes from; `completed` names files the library wrote or changed (remote code, ``auto_map``,
    image processor, card); `left_out` the folder's files that stay local."""

    staging_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def add(self, name: str, source: Path, completed: bool = False) -> None:
        if not (self.staging_dir / name).exists():
            _link_or_copy(source, self.staging_dir / name)
        self.files[name] = source
        if completed and name not in self.completed:
            self.completed.append(name)


def plan_model_upload(
    model_dir: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str | None = None,
    metrics_files: Sequence[str | os.PathLike] | None = None,
) -> UploadPlan:
    """Check a saved folder, complete what a Hub repository needs, and list the files to upload.

    Completes (into `staging_dir`, never into `model_dir`), writing what ``save_pretrained`` of registered classes
    writes: the ``auto_map`` entries of the config (``AutoConfig`` and the Auto class of the architecture; for a
    pretraining model ``AutoModel`` = its encoder and ``AutoModelForPreTraining``) and of the image processor
    (``AutoImageProcessor``); the remote-code files they need, from the installed package when the folder lacks any
    (all of them then, so the files match each other); ``preprocessor_config.json`` (built from the model config,
    with a warning, when missing); and ``README.md`` (built with `build_model_card` when missing).

    Raises:
        FileNotFoundError: no ``config.json``.
        ValueError: no safetensors weights (pickled weights are not published), or an architecture whose code the
            package does not have.
    """
    from .. import VanishingDepthConfig, VanishingDepthImageProcessor

    model_dir, staging = Path(model_dir), Path(staging_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"`model_dir` must be a saved model folder with a config.json; got {str(model_dir)!r}.")
    weights = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if not weights:
        pickles = [name for name in PICKLE_WEIGHTS if (model_dir / name).is_file()]
        raise ValueError(
            f"`model_dir` {str(model_dir)!r} holds no .safetensors weights"
            + (f" (only pickled {pickles}, which are not published: loading them can execute code)" if pickles else "")
            + "; save the model with save_pretrained (safetensors is the default) and push again."
        )
    staging.mkdir(parents=True, exist_ok=True)
    plan = UploadPlan(staging_dir=staging)
    for name in weights + ([WEIGHT_INDEX] if (model_dir / WEIGHT_INDEX).is_file() else []):
        plan.add(name, model_dir / name)

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
        ("config.json", config, model_dir / "config.json", {"auto_map": model_auto_map, "custom_pipelines": custom_pipelines}),
        ("preprocessor_config.json", processor_config, processor_file, {"auto_map": processor_auto_map}),
    ):
        if original.is_file() and all(data.get(key) == value for key, value in wanted.items()):
            plan.add(name, original)
        else:
            _write_json(staging / name, {**data, **wanted})
            plan.add(name, staging / name, completed=True)

    if (model_dir / "training_args.json").is_file():
        plan.add("training_args.json", model_dir / "training_args.json")
    if (model_dir / "README.md").is_file():
        plan.add("README.md", model_dir / "README.md")
        if metrics_files:
            logger.warning(
                "%s/README.md exists and is published unchanged; `metrics_files` are not added to it (regenerate it "
                "with `vanishing-depth card` to include them).",
                model_dir,
            )
    else:
        build_model_card(staging, metrics_files=metrics_files, repo_id=repo_id).save(staging / "README.md")
        plan.add("README.md", staging / "README.md", completed=True)

    plan.left_out = sorted(
        relative
        for relative in (path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*") if path.is_file())
        if relative not in plan.files
    )
    if plan.left_out:
        more = f" and {len(plan.left_out) - 20} more" if len(plan.left_out) > 20 else ""
        logger.warning("Not published (stays local): %s%s", plan.left_out[:20], more)
    return plan


def push_model(
    model_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    tag: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    metrics_files: Sequence[str | os.PathLike] | None = None,
) -> CommitInfo:
    """Upload a saved model folder to the Hub as one commit (see the module docstring for what is uploaded).

    Args:
        model_dir: folder written by ``save_pretrained`` (model and, ideally, image processor).
        repo_id: ``owner/name``; the repository is created if it does not exist.
        private: create the repository private (an existing repository keeps its visibility).
        revision: branch to commit to (created from ``main`` if missing); default ``main``.
        tag: tag to create on the new commit (e.g. ``"v1"``); an existing tag of that name is an error.
        commit_message: default ``"Upload <architecture> with vanishing-depth <version>"``.
        token: Hub token; default: the logged-in one or ``HF_TOKEN``.
        metrics_files: metrics JSON files for the card, used only when the folder has no README.md.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit (``.oid``, ``.commit_url``).
    """
    from .. import __version__

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must be 'owner/name', got {repo_id!r}.")
    with tempfile.TemporaryDirectory(prefix="vanishing-depth-push-") as staging:
        plan = plan_model_upload(model_dir, staging, repo_id=repo_id, metrics_files=metrics_files)
        architecture = (_read_json(plan.files["config.json"]).get("architectures") or ["model"])[0]
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        branch = revision or "main"
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
    try:
        from ..training.corpora import RGBD_CORPUS_COLUMNS
    except ImportError:  # the training extra of the package is not there: publish whatever columns it has
        return
    columns = dataset.column_names
    missing = [column for column in RGBD_CORPUS_COLUMNS if column != "intrinsics" and column not in columns]
    if missing:
        raise ValueError(
            f"{what} lacks the corpus column(s) {missing} (schema: {list(RGBD_CORPUS_COLUMNS)}); got {columns}. "
            "Convert it with vanishing_depth.training.corpora.to_corpus_schema first."
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
            `vanishing_depth.training.corpora.save_corpus` (every split in it is pushed), or ``"redwood_demo"``.
        repo_id: ``owner/name`` of the dataset repository (created if missing).
        private, revision, commit_message, token, max_shard_size: as in ``Dataset.push_to_hub``.
        split: split name for a single `Dataset` (default ``"train"``); for a folder, push only this split.

    Returns:
        The `CommitInfo` of the last commit (``DatasetDict.push_to_hub`` may return None).
    """
    from datasets import Dataset, DatasetDict

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must be 'owner/name', got {repo_id!r}.")
    dataset = dataset_or_path
    if isinstance(dataset_or_path, (str, os.PathLike)):
        from ..training.corpora import DEMO_CORPUS_NAME, demo_corpus_path, load_corpus

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
    """``vanishing-depth push --model DIR --repo-id ID [--private] [--revision REV] [--tag TAG]``."""
    parser = subparsers.add_parser(
        "push",
        help="Upload a saved model folder to the Hugging Face Hub as one commit.",
        description="Upload weights, config (auto_map), remote-code files, image processor and card as one commit; "
        "the repository then loads with AutoModel / AutoImageProcessor, also with trust_remote_code=True and no "
        "package installed. Uses HF_TOKEN / the logged-in token and HF_ENDPOINT.",
    )
    parser.add_argument("--model", required=True, help="Saved model folder.")
    parser.add_argument("--repo-id", required=True, help="Hub repository, owner/name.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", help="Branch to commit to (created if missing). Default: main.")
    parser.add_argument("--tag", help="Tag the new commit, e.g. v1.")
    parser.add_argument("--commit-message", help="Commit message.")
    parser.add_argument("--metrics", nargs="*", default=[], help="Metrics JSON files for a card built at push time.")
    parser.set_defaults(func=run_push)
    return parser


def run_push(args: argparse.Namespace) -> int:
    info = push_model(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        tag=args.tag,
        commit_message=args.commit_message,
        metrics_files=args.metrics,
    )
    print(json.dumps({"repo_id": args.repo_id, "commit": info.oid, "url": info.commit_url}))
    return 0


__all__ = [
    "UploadPlan",
    "add_push_subcommand",
    "code_files",
    "plan_model_upload",
    "push_corpus",
    "push_model",
    "run_push",
]
