# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Pretraining checkpoints and run folders: safetensors and strict JSON only, never pickle.

A checkpoint ``checkpoints/step-N/`` holds ``model.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``,
``rng_state_<rank>.safetensors`` (torch CPU/CUDA, numpy, python `random`), ``stream_position_<rank>.json`` (streaming),
``scaler.json`` (fp16) and, written last, ``training_state.json`` (format, run id, step, arguments, history, row
counts). It is written into ``.step-N.partial`` and renamed into place; ``checkpoints/latest`` points at the newest.
Pruning deletes only older checkpoints of the same run id. Checkpoints of older versions (Accelerate ``save_state``
pickles) are read only with ``allow_pickle`` and then with ``torch.load(weights_only=True)``.

The checks here (`check_output_dir`, `check_resume`) are read-only: every process runs them before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..output_paths import inputs_inside, prepare_output_dir, read_json, strict_json, write_json

if TYPE_CHECKING:
    from .pretrain import PretrainingArguments

logger = logging.getLogger(__name__)

#: File name endings of pickle-based files (torch.save, Accelerate save_state, pickle.dump).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".pck")


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints: safetensors + strict JSON, never pickle
# ----------------------------------------------------------------------------------------------------------------------
def _latest_link(checkpoints: Path, target: Path) -> None:
    latest = checkpoints / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    try:
        latest.symlink_to(target.name, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a pointer file
        latest.write_text(target.name)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, or ``checkpoints/latest`` (a symlink or, without symlinks, a pointer file)."""
    given = Path(path)
    path = given
    if path.is_symlink() and not path.exists():
        raise ValueError(
            f"--resume {str(given)!r} points at {os.readlink(path)!r}, which does not exist; resume from one of the "
            f"checkpoints in {str(given.parent)!r}."
        )
    if path.is_file():  # a pointer file written where symlinks are unavailable
        try:
            path = path.parent / path.read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--resume {str(given)!r}: cannot read the pointer file ({error}).") from None
    if not (path / "training_state.json").is_file():
        raise ValueError(
            f"--resume {str(given)!r} is not a checkpoint folder: {str(path / 'training_state.json')!r} does not "
            "exist. Pass OUT/checkpoints/latest or OUT/checkpoints/step-N."
        )
    return path.resolve()


def read_training_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``training_state.json``; a damaged one raises a ValueError naming the file."""
    path = checkpoint / "training_state.json"
    state = read_json(path, "a checkpoint's training state (JSON); the checkpoint is damaged, resume from another")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
        raise ValueError(
            f"{path}: expected a JSON object with an integer 'step' >= 0, got "
            f"{type(state).__name__ if not isinstance(state, dict) else {'step': state.get('step')}}; the checkpoint "
            "is damaged, resume from another."
        )
    if not isinstance(state.get("history", []), list) or not isinstance(state.get("arguments", {}), dict):
        raise ValueError(f"{path}: 'history' must be a list and 'arguments' an object; the checkpoint is damaged.")
    return state


def _peek_state(folder: Path) -> dict[str, Any] | None:
    """The training state of a checkpoint folder, or None where there is none or it is unreadable (never raises)."""
    try:
        state = json.loads((folder / "training_state.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("step"), int) else None


def _own_checkpoints(checkpoints: Path, run_id: str) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints of run `run_id` under `checkpoints`, by step."""
    found = []
    if checkpoints.is_dir():
        for folder in checkpoints.glob("step-*"):
            if folder.is_dir() and not folder.is_symlink():
                state = _peek_state(folder)
                if state is not None and state.get("run_id") == run_id:
                    found.append((state["step"], folder))
    return sorted(found)


def _prune_checkpoints(checkpoints: Path, keep: int, run_id: str) -> None:
    """Delete all but the `keep` newest checkpoints of this run; checkpoints of any other run are never touched."""
    if keep <= 0:
        return
    for _, old in _own_checkpoints(checkpoints, run_id)[:-keep]:
        logger.info("Deleting the older checkpoint %s of this run (checkpoints_total_limit=%d).", old, keep)
        shutil.rmtree(old)


def _looks_pickled(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    # pickle protocol 2+ starts with PROTO (0x80) and the protocol number; torch.save writes a zip archive.
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK\x03\x04"


def pickle_files(checkpoint: Path) -> list[Path]:
    """Files of a checkpoint folder that are (or may be) pickles: by name ending, or by content for files that are
    neither ``.safetensors`` nor ``.json``."""
    found = []
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES or (suffix not in (".safetensors", ".json") and _looks_pickled(path)):
            found.append(path)
    return found


def _torch_load_weights_only(path: Path, numpy_arrays: bool = False) -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain containers only, no code runs; refused otherwise."""
    try:
        if numpy_arrays:  # Accelerate's RNG files hold numpy's MT19937 state as an array
            core = np._core if hasattr(np, "_core") else np.core
            reconstruct = core.multiarray._reconstruct
            allowed = [
                reconstruct,
                (reconstruct, "numpy.core.multiarray._reconstruct"),  # as numpy 1.x pickles name it
                np.ndarray,
                np.dtype,
                type(np.dtype(np.uint32)),
            ]
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - UnpicklingError and whatever a damaged file raises
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). It is not unpickled in full, since that could run "
            "code; resume from a checkpoint this version wrote (safetensors + JSON)."
        ) from None


def _save_rng_state(path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, gauss_next = random.getstate()
    tensors["python_state"] = torch.tensor(python_state, dtype=torch.int64)
    metadata = {
        "numpy": json.dumps(
            {"kind": kind, "pos": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
        ),
        "python": json.dumps({"version": version, "gauss_next": gauss_next}),
    }
    save_file(tensors, str(path), metadata=metadata)


def restore_rng_state(checkpoint: Path, rank: int, allow_pickle: bool) -> None:
    """torch CPU / CUDA, numpy and python `random` states of process `rank` (the data order needs none of them:
    it is a pure function of (seed, step, process); they make any other random op resume exactly)."""
    from safetensors import safe_open

    path = checkpoint / f"rng_state_{rank}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
                metadata = handle.metadata() or {}
            numpy_state, python_state = json.loads(metadata["numpy"]), json.loads(metadata["python"])
            torch.set_rng_state(tensors["torch_cpu"])
            cuda = [tensors[f"torch_cuda_{i}"] for i in range(sum(k.startswith("torch_cuda_") for k in tensors))]
            if cuda and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
            np.random.set_state(
                (
                    numpy_state["kind"],
                    tensors["numpy_keys"].numpy().astype(np.uint32),
                    numpy_state["pos"],
                    numpy_state["has_gauss"],
                    numpy_state["cached_gaussian"],
                )
            )
            random.setstate(
                (python_state["version"], tuple(int(v) for v in tensors["python_state"]), python_state["gauss_next"])
            )
        except Exception as error:  # noqa: BLE001 - any damage: name the file
            raise ValueError(
                f"{path}: cannot be read as random-number states ({type(error).__name__}: {error})."
            ) from None
        return
    legacy = checkpoint / f"random_states_{rank}.pkl"
    if legacy.is_file() and allow_pickle:
        states = _torch_load_weights_only(legacy, numpy_arrays=True)
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])
        torch.set_rng_state(states["torch_manual_seed"])
        if "torch_cuda_manual_seed" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
        return
    logger.warning(
        "%s holds no random-number states for process %d: they start from --seed (the data order does not depend "
        "on them).",
        checkpoint,
        rank,
    )


def _save_optimizer(optimizer, folder: Path) -> None:
    """``optimizer.safetensors`` (per-parameter tensors, ``state.<index>.<name>``) and ``optimizer.json`` (param
    groups and any non-tensor state)."""
    from safetensors.torch import save_file

    state_dict = optimizer.state_dict()
    tensors, other = {}, {}
    for index, parameter_state in state_dict["state"].items():
        for name, value in parameter_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(index), {})[name] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state_dict["param_groups"]
    ]
    write_json(folder / "optimizer.json", {"param_groups": groups, "non_tensor_state": other}, indent=1)


def load_optimizer(optimizer, checkpoint: Path, allow_pickle: bool) -> None:
    """Restore the optimizer's per-parameter state (AdamW moments, step counts); its hyperparameters (param groups)
    stay those of the current arguments, and the schedule is set for the resumed step afterwards."""
    from safetensors.torch import load_file

    tensor_file, json_file, legacy = (
        checkpoint / "optimizer.safetensors",
        checkpoint / "optimizer.json",
        checkpoint / "optimizer.bin",
    )
    if tensor_file.is_file():
        try:
            tensors = load_file(str(tensor_file))
        except Exception as error:  # noqa: BLE001
            raise ValueError(
                f"{tensor_file}: cannot be read as safetensors ({type(error).__name__}: {error})."
            ) from None
        saved = read_json(json_file, "the optimizer's param groups (JSON)") if json_file.is_file() else {}
        state: dict[int, dict[str, Any]] = {}
        for name, tensor in tensors.items():
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
        for index, values in (saved.get("non_tensor_state") or {}).items():
            state.setdefault(int(index), {}).update(values)
        saved_groups, source = saved.get("param_groups"), tensor_file
    elif legacy.is_file() and allow_pickle:
        loaded = _torch_load_weights_only(legacy)
        state, saved_groups, source = loaded["state"], loaded["param_groups"], legacy
    else:
        raise ValueError(
            f"{checkpoint}: holds no optimizer state (optimizer.safetensors); the checkpoint is incomplete."
        )
    current = optimizer.state_dict()["param_groups"]
    if saved_groups is not None and [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in current]:
        raise ValueError(
            f"{source}: its parameter groups hold {[len(g['params']) for g in saved_groups]} parameters, the model "
            f"built from the current arguments {[len(g['params']) for g in current]}; the checkpoint is of another model."
        )
    try:
        optimizer.load_state_dict({"state": state, "param_groups": current})
    except (KeyError, ValueError, RuntimeError) as error:
        raise ValueError(f"{source}: does not fit the optimizer ({type(error).__name__}: {error}).") from None


def schedule_at(scheduler, step: int) -> None:
    """Set the OneCycle schedule (learning rates and momenta of every group) to optimizer step `step`: the schedule
    is a closed-form function of the step, so this equals having stepped it `step` times."""
    scheduler.last_epoch = step - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": deliberate here
        scheduler.step()


def load_model_weights(model, checkpoint: Path, allow_pickle: bool) -> None:
    from safetensors.torch import load_model

    path, legacy = checkpoint / "model.safetensors", checkpoint / "pytorch_model.bin"
    try:
        if path.is_file():
            load_model(model, str(path), strict=True)
            return
        if legacy.is_file() and allow_pickle:
            path = legacy
            model.load_state_dict(_torch_load_weights_only(legacy), strict=True)
            return
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - RuntimeError on missing keys / shapes, SafetensorError on damage
        message = str(error).strip().splitlines()
        raise ValueError(
            f"{path}: does not fit the model built from the current arguments ({type(error).__name__}: "
            f"{' '.join(message[:4])[:600]}); resume with the run's model arguments."
        ) from None
    raise ValueError(f"{checkpoint}: holds no model weights (model.safetensors); the checkpoint is incomplete.")


def save_checkpoint(accelerator, model, optimizer, checkpoints: Path, step: int, state: dict[str, Any], args) -> Path:
    """Write checkpoint ``step-N`` (see the module docstring): every process its RNG state (and stream position), the
    main process the rest; ``training_state.json`` last, then the folder is renamed into place and older checkpoints
    of this run are pruned."""
    from safetensors.torch import save_model

    rank = accelerator.process_index
    target = checkpoints / f"step-{step}"
    partial = checkpoints / f".step-{step}.partial"
    if accelerator.is_main_process:
        if partial.exists():  # left by a run killed while saving
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_rng_state(partial / f"rng_state_{rank}.safetensors")
    if args.streaming:  # every process records how far it read its own stream
        write_json(partial / f"stream_position_{rank}.json", {"samples_consumed": state["stream_positions"][rank]})
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(partial / "model.safetensors"))
        _save_optimizer(optimizer, partial)
        if accelerator.scaler is not None:
            write_json(partial / "scaler.json", accelerator.scaler.state_dict())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record = {k: v for k, v in state.items() if k != "stream_positions"}
        record["files"] = sorted(p.name for p in partial.iterdir()) + ["training_state.json"]
        write_json(partial / "training_state.json", record)
        if target.exists():
            existing = _peek_state(target)
            if existing is not None and existing.get("run_id") != state["run_id"]:
                raise RuntimeError(
                    f"{target} holds a checkpoint of another run ({existing.get('run_id')}); not replaced."
                )
            logger.warning("Replacing %s (%s).", target, "incomplete" if existing is None else "same run, same step")
            shutil.rmtree(target)
        partial.rename(target)
        _latest_link(checkpoints, target)
        _prune_checkpoints(checkpoints, args.checkpoints_total_limit, state["run_id"])
    accelerator.wait_for_everyone()
    return target


# ----------------------------------------------------------------------------------------------------------------------
# Output folder and resume checks (read-only: every process runs them before anything is written)
# ----------------------------------------------------------------------------------------------------------------------
_BOOKKEEPING_ARGUMENTS = ("output_dir", "resume", "overwrite", "allow_pickle", "debug")
#: Arguments that define the model: a checkpoint's weights cannot follow a change of them.
_MODEL_ARGUMENTS = (
    "rgb_backbone",
    "model_shape",
    "config_overrides",
    "decoder_skips",
    "fuse_cls_token",
    "position_interpolation",
    "pde_missing_depth_m",
    "pde_float_order",
)


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _changed_arguments(saved: dict[str, Any], args: PretrainingArguments) -> dict[str, tuple[Any, Any]]:
    current = dataclasses.asdict(args)
    changed = {}
    for name, old in saved.items():
        if name in _BOOKKEEPING_ARGUMENTS or name not in current:
            continue
        new = current[name]
        if name == "config_overrides":
            same = (json.loads(old) if old else {}) == (json.loads(new) if new else {})
        elif isinstance(old, list) or isinstance(new, (list, tuple)):
            same = list(old or []) == list(new or [])
        else:
            same = old == new
        if not same:
            changed[name] = (old, new)
    return changed


def check_resume(checkpoint: Path, state: dict[str, Any], args: PretrainingArguments) -> dict[str, tuple[Any, Any]]:
    """Refuse, before anything runs, a resume that cannot be honoured; return the changed arguments it applies.

    Refused: pickle files without `allow_pickle`; a change of an argument that defines the model (the checkpoint's
    weights are of the old model); a `max_steps` below the checkpoint's step. Every other change applies from the
    resumed step on (see the module docstring).
    """
    pickles = pickle_files(checkpoint)
    if pickles and not args.allow_pickle:
        raise ValueError(
            f"--resume {str(checkpoint)!r} holds pickle file(s) {[str(p.relative_to(checkpoint)) for p in pickles]}. "
            "Unpickling can run arbitrary code, so they are not read without --allow-pickle (allow_pickle=True), "
            "and even then only with torch.load(weights_only=True). Checkpoints written by this version hold only "
            "safetensors and JSON."
        )
    step = state["step"]
    changed = _changed_arguments(state.get("arguments", {}), args)
    refused = {name: change for name, change in changed.items() if name in _MODEL_ARGUMENTS}
    if "image_size" in changed and not args.rgb_backbone:  # a random-init model's position embeddings follow it
        refused["image_size"] = changed["image_size"]
    problems = [
        f"{name} {old!r} -> {new!r} (the checkpoint's weights are of the model the old value built)"
        for name, (old, new) in refused.items()
    ]
    if args.max_steps < step:
        problems.append(f"max_steps {args.max_steps} is below the checkpoint's step {step}")
    if problems:
        raise ValueError(
            f"--resume {str(checkpoint)!r} cannot honour: {'; '.join(problems)}. Keep the checkpoint's values, or start "
            "a new run (new --output-dir, no --resume)."
        )
    return changed


def check_output_dir(
    args: PretrainingArguments, output_dir: Path, checkpoint: Path | None, state: dict[str, Any] | None
) -> bool:
    """Refuse an output folder that holds something else; True when the run continues in place (the resumed
    checkpoint lies inside `output_dir`)."""
    if checkpoint is not None and _is_inside(checkpoint, output_dir):
        if args.overwrite:
            raise ValueError(
                f"--overwrite would delete {str(output_dir)!r}, which holds the checkpoint --resume "
                f"{str(checkpoint)!r} continues from. Drop --overwrite to continue that run in place, or pass a new "
                "--output-dir."
            )
        step, run_id = state["step"], state.get("run_id")
        newer, in_the_way = [], []
        for folder in sorted(checkpoint.parent.glob("step-*")):
            other = _peek_state(folder) if folder.is_dir() else None
            if other is None or folder.resolve() == checkpoint:
                continue  # an incomplete folder is replaced when this run reaches its step
            if other.get("run_id") == run_id and other["step"] > step:
                newer.append(str(folder))
                continue
            number = folder.name.removeprefix("step-")
            target = int(number) if number.isdigit() else -1
            if step < target <= args.max_steps and (target % args.checkpointing_steps == 0 or target == args.max_steps):
                in_the_way.append(str(folder))  # another run's checkpoint under a name this run will write
        if newer:
            raise ValueError(
                f"--resume {str(checkpoint)!r} (step {step}) in place would overwrite the newer checkpoint(s) "
                f"{newer} of the same run. Resume from {str(checkpoint.parent / 'latest')!r}, or continue from this "
                "step into a new --output-dir."
            )
        if in_the_way:
            raise ValueError(
                f"--resume {str(checkpoint)!r} in place would write checkpoints over {in_the_way}, which belong to "
                "another run. Move them away, or continue into a new --output-dir."
            )
        return True
    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        return False
    if args.overwrite and output_dir.is_dir():
        inside = inputs_inside(output_dir, [*args.dataset, args.validation_dataset, args.rgb_backbone, args.resume])
        if inside:
            raise ValueError(
                f"--overwrite would delete {str(output_dir)!r}, which holds {inside} that this run reads; choose "
                "another --output-dir."
            )
        return False
    latest = output_dir / "checkpoints" / "latest"
    ways_out = f"to continue the run stored there, pass --resume {latest}" if latest.exists() else ""
    prepare_output_dir(output_dir, overwrite=False, what="pretraining output folder", ways_out=ways_out)
    return False


def log_lines_up_to(path: Path, step: int) -> list[str]:
    """The records of a training log up to `step` (end-of-run records and unreadable lines dropped), as strict
    JSON lines."""
    kept = []
    if not path.is_file():
        return kept
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)  # older logs hold bare NaN: read, then written back as null
        except ValueError:
            logger.warning("%s line %d is not JSON (a run killed mid-write?): dropped.", path, number)
            continue
        if not isinstance(record, dict) or record.get("event") == "end":
            continue
        if isinstance(record.get("step"), int) and record["step"] > step:
            continue
        kept.append(strict_json(record))
    return kept


__all__ = [
    "PICKLE_SUFFIXES",
    "check_output_dir",
    "check_resume",
    "load_model_weights",
    "load_optimizer",
    "log_lines_up_to",
    "pickle_files",
    "read_training_state",
    "resolve_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "schedule_at",
]
