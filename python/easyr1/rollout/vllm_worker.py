"""vLLM worker extension: lets every vLLM worker (one per tensor-parallel rank) join the weight-sync group and load
new weights. vLLM mixes this class into its worker (``LLM(worker_extension_cls=…)``, GPU and CPU workers alike) and
the engine calls its methods through ``LLM.collective_rpc``.

Arguments reach these methods through vLLM's msgpack RPC, decoded untyped: only plain values travel (the weight
plan as lists, rebuilt here with :meth:`WeightPlan.from_wire`; object-store weights as serialised bytes). Weights
are loaded with the worker's ``reload_weights(weights_iterator=…, is_checkpoint_format=True)``, which maps Hugging
Face names onto vLLM's (fused, possibly TP-sharded) parameters and redoes the backend's post-load processing
(the CPU backend prepacks linear weights, so a raw ``model.load_weights`` would leave them stale or fail).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch

from easyr1.transfer.weight_sync import WeightPlan, WeightSyncGroup, deserialize_state

logger = logging.getLogger(__name__)


class WeightSyncWorkerExtension:
    """Methods added to vLLM's worker (``self.device`` and ``self.reload_weights`` come from the worker)."""

    device: Any
    reload_weights: Any

    def easyr1_init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        from vllm.distributed.parallel_state import get_world_group

        rank = rank_offset + get_world_group().rank
        self._easyr1_sync = WeightSyncGroup.join(host, port, rank, world_size, backend, device=self.device)

    def easyr1_receive_weights(self, plan_wire: dict[str, Any]) -> int:
        """Receive one broadcast (see ``weight_sync``) straight into the model; returns bytes received."""
        group: WeightSyncGroup | None = getattr(self, "_easyr1_sync", None)
        if group is None:
            raise RuntimeError("easyr1_receive_weights before easyr1_init_weight_sync")
        plan = WeightPlan.from_wire(plan_wire)
        # An update leaves the static tensors (frozen vision tower, buffers) out; vLLM's layerwise reload keeps the
        # tensors of layers it is not sent, so nothing is replayed and the check below is against what was sent.
        group.last_full = None  # set from the header when the first bucket is requested
        buckets = group.receive_buckets(plan, replay_static=False)
        received = 0

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal received
            for items in buckets:
                received += sum(t.numel() * t.element_size() for _, t in items)
                yield from items

        try:
            self.reload_weights(weights_iterator=weights(), is_checkpoint_format=True)
        except BaseException:
            # The sender is mid-broadcast: take the remaining buckets so it does not block until its timeout.
            left = WeightSyncGroup.drain(buckets)
            logger.error("loading broadcast weights failed; drained %d remaining bucket(s)", left)
            raise
        expected = plan.sync_bytes(bool(group.last_full))
        if group.last_full is None or received != expected:
            kind = {True: "full", False: "update", None: "unread"}[group.last_full]
            raise RuntimeError(f"weight sync: loaded {received} bytes of a {expected}-byte {kind} sync")
        if self.device is not None and torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()  # the weights are in place before the RPC returns and generation resumes
        return received

    def easyr1_stage_weights(self, blob: bytes) -> int:
        """Object-store fallback, part 1: keep one serialised bucket (``weight_sync.serialize_state``)."""
        staged: list[bytes] = self.__dict__.setdefault("_easyr1_staged", [])
        staged.append(bytes(blob))
        return len(blob)

    def easyr1_load_staged(self) -> int:
        """Object-store fallback, part 2: load every staged bucket in one ``reload_weights`` (a layer's weights may
        span buckets); returns the number of tensors loaded."""
        staged: list[bytes] = self.__dict__.pop("_easyr1_staged", [])
        count = 0

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            while staged:
                items = deserialize_state(staged.pop(0))
                count += len(items)
                yield from items

        self.reload_weights(weights_iterator=weights(), is_checkpoint_format=True)
        return count

    def easyr1_discard_staged(self) -> None:
        self.__dict__.pop("_easyr1_staged", None)
