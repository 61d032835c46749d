# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Deprecated: the model cards and Hub publishing moved to `vanishing_depth.hub`.

Every name still resolves here (``from vanishing_depth.hub_cards import build_model_card``), with a FutureWarning;
import from `vanishing_depth.hub` (or its modules `vanishing_depth.hub.model_card` and `vanishing_depth.hub.publish`).
"""

import importlib
import warnings

_HOME = "vanishing_depth.hub"
_SUBMODULES = ("model_card", "publish")

__all__: list[str] = []


def __getattr__(name: str):
    if name in _SUBMODULES:
        target, home = importlib.import_module(f"{_HOME}.{name}"), f"{_HOME}.{name}"
    else:
        hub = importlib.import_module(_HOME)
        if name not in hub.__all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        target, home = getattr(hub, name), _HOME
    warnings.warn(
        f"`vanishing_depth.hub_cards.{name}` is deprecated and will be removed; use `{home}` instead.",
        FutureWarning,
        stacklevel=2,
    )
    return target
