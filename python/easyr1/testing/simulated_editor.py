"""``SimulatedEditor``: a stand-in editor with a fixed per-image latency, for benchmarks and fault-injection tests.

It does real (cheap) work — the output is the input shifted and tinted by a colour drawn from the request's seed
and instruction, so it differs from the input and is deterministic per request — and it sleeps ``latency_s`` per
image, like a GPU editor whose time grows with the batch. Instructions can ask for faults, so tests can make a
replica raise or die in the middle of a batch:

* ``"!raise"`` — the batch call raises ``RuntimeError``;
* ``"!die"`` — the process exits at once (the Ray actor dies); only with ``allow_exit=True`` (tests);
* ``"!die-once"`` — the process exits the first time this request is seen (a marker file in ``state_dir``
  remembers it across restarts), then edits normally; only with ``allow_exit=True``;
* ``"!hang"`` — the call sleeps for an hour (a stuck replica, for timeout tests);
* ``"!blank"`` — the item comes back as a failure ``blank_output`` (what the real editor reports for a black
  image).

It is never a production backend: the driver's factory does not build it from a config. Without ``allow_exit``
the two exit instructions are ordinary text (an instruction cannot end a process unless a test asked for it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from easyr1.core.seeds import derive_seed
from easyr1.core.types import EditRequest, EditResult

logger = logging.getLogger(__name__)


class SimulatedEditor:
    """Sleep-based editor: ``latency_s`` seconds per image (one sleep per batch), deterministic outputs."""

    def __init__(self, latency_s: float = 0.0, state_dir: str | Path | None = None, *, allow_exit: bool = False):
        self.latency_s = float(latency_s)
        self.allow_exit = allow_exit
        """Obey ``!die`` / ``!die-once`` (exit the process); off unless a test asks for replica deaths."""
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.calls = 0
        self.pid = os.getpid()

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        self.calls += 1
        started = time.perf_counter()
        for request in requests:
            self._maybe_fault(request)
        if self.latency_s > 0:
            time.sleep(self.latency_s * len(requests))
        per_item = (time.perf_counter() - started) / max(1, len(requests))
        results = []
        for request in requests:
            info = {"backend": "simulated", "seed": int(request.seed), "pid": self.pid}
            if "!blank" in request.instruction:
                results.append(EditResult(None, False, "blank_output", {**info, "detail": "simulated"}, per_item))
            else:
                results.append(EditResult(render(request), True, None, info, per_item))
        return results

    def _maybe_fault(self, request: EditRequest) -> None:
        text = request.instruction
        if "!hang" in text:
            time.sleep(3600)
        if "!raise" in text:
            raise RuntimeError(f"simulated failure for {request.key}")
        if not self.allow_exit:
            return
        if "!die-once" in text:
            if self.state_dir is None:
                raise ValueError("'!die-once' needs SimulatedEditor(state_dir=...)")
            marker = self.state_dir / ("died-" + hashlib.sha256(request.key.encode()).hexdigest()[:16])
            if not marker.exists():
                marker.touch()
                logger.warning("simulated replica death (once) on %s", request.key)
                os._exit(1)
        elif "!die" in text:
            logger.warning("simulated replica death on %s", request.key)
            os._exit(1)


def render(request: EditRequest) -> Image.Image:
    """The simulated edit of ``request``: the input rolled by a few pixels and blended with a seeded colour."""
    seed = derive_seed(int(request.seed), "simulated", request.instruction)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(request.image.convert("RGB"), dtype=np.float32)
    shift = int(rng.integers(1, 8))
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    out = 0.7 * np.roll(pixels, shift, axis=1) + 0.3 * colour
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
