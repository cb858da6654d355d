"""vLLM worker extension: lets every vLLM worker (one per tensor-parallel rank) join the weight-sync group and load
broadcast weights. vLLM mixes this class into its GPU worker (``LLM(worker_extension_cls=…)``) and the engine calls
its methods through ``LLM.collective_rpc``. Only vLLM imports this module (on GPU machines); it is written against
vLLM's documented RLHF pattern and not exercised on CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .weight_sync import WeightPlan, WeightSyncGroup

logger = logging.getLogger(__name__)


class WeightSyncWorkerExtension:
    """Methods added to vLLM's worker (``self.model_runner`` and ``self.device`` come from the worker)."""

    model_runner: Any
    device: Any

    def easyr1_init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        from vllm.distributed.parallel_state import get_world_group

        rank = rank_offset + get_world_group().rank
        self._easyr1_sync = WeightSyncGroup.join(host, port, rank, world_size, backend, device=self.device)

    def easyr1_receive_weights(self, plan: WeightPlan) -> int:
        group: WeightSyncGroup = self._easyr1_sync
        model = self.model_runner.model

        def consume(items: list[tuple[str, torch.Tensor]]) -> None:
            # vLLM's load_weights maps Hugging Face names onto its (possibly TP-sharded, fused) parameters.
            model.load_weights(weights=items)

        received = group.receive(plan, consume)
        torch.cuda.synchronize()
        return received

    def easyr1_load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Object-store fallback: full tensors arrive as RPC arguments."""
        self.model_runner.model.load_weights(weights=list(state_dict.items()))
