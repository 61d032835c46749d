# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Deprecated: the model cards and Hub publishing moved to `vanishing_depth.hub`.

Every name still resolves here (``from vanishing_depth.hub_cards import build_model_card``), with a FutureWarning;
import from `vanishing_depth.hub` (or its modules `vanishing_depth.hub.model_card` and `vanishing_depth.hub.publish`).
"""

from .. import hub
from .._deprecation import moved_names

# Every name of `vanishing_depth.hub`, and its two modules, resolve here with a FutureWarning.
_MOVED = {name: "vanishing_depth.hub" for name in hub.__all__}
_MOVED.update({name: f"vanishing_depth.hub.{name}" for name in ("model_card", "publish")})

__all__: list[str] = []

__getattr__ = moved_names(__name__, _MOVED)
