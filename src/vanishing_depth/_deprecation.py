# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Old import paths that still resolve, with a FutureWarning naming each name's one home.

A package whose names moved keeps a module-level ``__getattr__ = moved_names(__name__, {...})``: it imports nothing
until an old name is asked for, then warns and returns the object from its new home.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(old_module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `old_module` forwarding each name of `moved` (name -> new home module) with a
    FutureWarning. A home that ends in ``.<name>`` is a moved submodule and is returned itself."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        home = moved[name]
        if home.endswith(f".{name}"):  # a submodule that moved
            message, load = f"use `{home}`", lambda: importlib.import_module(home)
        else:
            message, load = f"import it from `{home}`: `from {home} import {name}`", None
        warnings.warn(
            f"`{old_module}.{name}` is deprecated and will be removed; {message}.", FutureWarning, stacklevel=2
        )
        return load() if load is not None else getattr(importlib.import_module(home), name)

    return __getattr__
