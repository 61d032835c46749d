# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Where and how commands write: never over another run's or the user's files unless they asked for it, and every
JSON file strict (RFC 8259) and written atomically.

One rule for every command that writes a folder or a file (`pretrain`, `convert`, `card`, `export --output`,
`build-corpus`, `complete`): a target that already holds something is refused with a message naming the path and the
ways out (`--overwrite` to replace it wholly, `--resume` where a run can continue, or another path). With
`overwrite=True` a folder is emptied first, so nothing of the old run survives to be mixed with the new one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "OutputExistsError",
    "inputs_inside",
    "prepare_output_dir",
    "prepare_output_file",
    "read_json",
    "strict_json",
    "write_json",
]


class OutputExistsError(ValueError):
    """The target folder or file already holds something and the caller did not ask to replace it."""


def _listing(folder: Path, limit: int = 5) -> str:
    names = sorted(entry.name for entry in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def prepare_output_dir(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    what: str = "output folder",
    ways_out: str = "",
    allowed_existing: Iterable[str] = (),
) -> Path:
    """Make `path` ready to be written: create it, or refuse it when it is not empty.

    Args:
        path: the folder.
        overwrite: an existing non-empty folder is emptied (everything in it is deleted) and reused.
        what: what the folder is for, for messages (e.g. "pretraining output folder").
        ways_out: extra advice for the refusal (e.g. "pass --resume DIR/checkpoints/latest to continue that run").
        allowed_existing: names that may already be there without counting as "not empty" (e.g. files the same
            command itself wrote a moment ago).

    Raises:
        OutputExistsError: `path` is a non-empty folder (and `overwrite` is False) or a file.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"The {what} {str(folder)!r} is a file, not a folder; choose another path.")
    allowed = set(allowed_existing)
    if folder.is_dir() and any(entry.name not in allowed for entry in folder.iterdir()):
        if not overwrite:
            advice = f"; {ways_out}" if ways_out else ""
            raise OutputExistsError(
                f"The {what} {str(folder)!r} is not empty (it holds {_listing(folder)}): refusing to write over it. "
                f"Choose a new folder, or pass --overwrite (overwrite=True) to replace its contents wholly{advice}."
            )
        logger.warning("--overwrite: deleting the contents of %s before writing.", folder)
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prepare_output_file(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output file") -> Path:
    """Make `path` ready to be written: refuse an existing file unless `overwrite`; create the parent folder.

    Raises:
        OutputExistsError: `path` exists (and `overwrite` is False), or is a folder.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputExistsError(f"The {what} {str(target)!r} is a folder; give a file path.")
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"The {what} {str(target)!r} already exists: refusing to replace it. Choose another path, or pass "
            "--overwrite (overwrite=True) to replace it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def inputs_inside(folder: str | os.PathLike, paths: Iterable) -> list[str]:
    """The `paths` a command reads that exist inside `folder` (entries that are not paths, e.g. None or a Hub id that
    is no local file, are ignored): what replacing `folder` with `--overwrite` would delete, so it must be refused."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    root = folder.resolve()
    return [
        str(path)
        for path in paths
        if isinstance(path, (str, os.PathLike)) and path and Path(path).exists()
        and Path(path).resolve().is_relative_to(root)
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Strict JSON: every file the run writes parses with a JSON parser that rejects NaN
# ----------------------------------------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, inf) replaced by None and numpy scalars made plain."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _finite(value.item())
    return value


def strict_json(value: Any, **kwargs) -> str:
    """Strict JSON (RFC 8259): NaN / inf become null instead of the bare ``NaN`` tokens `json.dumps` writes."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def write_json(path: Path, value: Any, **kwargs) -> None:
    """Write strict JSON atomically (a temporary file renamed over the target), so a kill never leaves half a file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(strict_json(value, **kwargs) + "\n")
    os.replace(temporary, path)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as {what} ({type(error).__name__}: {error}).") from None
