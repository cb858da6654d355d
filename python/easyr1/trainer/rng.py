"""The driver's random-number state in a checkpoint (``driver_state.json``): Python, NumPy and torch, as JSON."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """``python_rng``, ``numpy_rng`` and ``torch_rng`` as JSON-serialisable lists."""
    return {
        "python_rng": _jsonable(random.getstate()),
        "numpy_rng": _jsonable(np.random.get_state()),
        "torch_rng": torch.get_rng_state().tolist(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set the three generators from what :func:`capture_rng` stored."""
    random.setstate(_tuple_state(state["python_rng"]))
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))


def _jsonable(state: Any) -> Any:
    if isinstance(state, tuple):
        return [_jsonable(s) for s in state]
    if isinstance(state, np.ndarray):
        return state.tolist()
    if isinstance(state, np.generic):
        return state.item()
    return state


def _tuple_state(state: Any) -> Any:
    return tuple(_tuple_state(s) if isinstance(s, list) else s for s in state)
