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

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import torch

from easyr1.transfer.lora import lora_parts, write_peft_folder
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

    def easyr1_receive_weights(self, plan_wire: dict[str, Any], adapter_dir: str | None = None) -> int:
        """Receive one broadcast (see ``weight_sync``) straight into the model; returns bytes received.

        LoRA adapters in the broadcast (``easyr1.transfer.lora`` names: an adapter-only sync) do not go into the
        model: they are written as a PEFT folder at ``adapter_dir``, which the engine then serves through vLLM's
        own LoRA loading (``LoRARequest``); the base weights of a full sync load as usual."""
        group: WeightSyncGroup | None = getattr(self, "_easyr1_sync", None)
        if group is None:
            raise RuntimeError("easyr1_receive_weights before easyr1_init_weight_sync")
        plan = WeightPlan.from_wire(plan_wire)
        # An update leaves the static tensors (frozen vision tower, buffers) out; vLLM's layerwise reload keeps the
        # tensors of layers it is not sent, so nothing is replayed and the check below is against what was sent.
        group.last_full = None  # set from the header when the first bucket is requested
        buckets = iter(group.receive_buckets(plan, replay_static=False))
        received = 0
        adapters: dict[str, torch.Tensor] = {}

        def weights(first: list[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal received
            for items in itertools.chain([first], buckets):
                received += sum(t.numel() * t.element_size() for _, t in items)
                for name, tensor in items:
                    if lora_parts(name):
                        adapters[name] = tensor.clone()  # a bucket's tensors are views of its flat buffer
                    else:
                        yield name, tensor

        try:
            first = next(buckets, [])
            sent = plan.sent_names(bool(group.last_full))
            if any(lora_parts(name) is None for name in sent):
                self.reload_weights(weights_iterator=weights(first), is_checkpoint_format=True)
            else:  # adapters only: the base model is left as it is
                for _ in weights(first):
                    pass
        except BaseException:
            # The sender is mid-broadcast: take the remaining buckets so it does not block until its timeout.
            left = WeightSyncGroup.drain(buckets)
            logger.error("loading broadcast weights failed; drained %d remaining bucket(s)", left)
            raise
        expected = plan.sync_bytes(bool(group.last_full))
        if group.last_full is None or received != expected:
            kind = {True: "full", False: "update", None: "unread"}[group.last_full]
            raise RuntimeError(f"weight sync: loaded {received} bytes of a {expected}-byte {kind} sync")
        self._easyr1_write_adapters(adapters, adapter_dir)
        if self.device is not None and torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()  # the weights are in place before the RPC returns and generation resumes
        return received

    def _easyr1_write_adapters(self, adapters: dict[str, torch.Tensor], adapter_dir: str | None) -> None:
        if not adapters:
            return
        if adapter_dir is None:
            raise RuntimeError(
                "the weight sync carries LoRA adapters but this vLLM engine was not started with LoRA "
                "(worker.actor.lora.sync=adapters starts it so)"
            )
        from vllm.distributed.parallel_state import get_world_group

        if get_world_group().rank_in_group == 0:  # tensor-parallel workers share the host: one writer
            write_peft_folder(adapter_dir, adapters)

    def easyr1_stage_weights(self, blob: bytes) -> int:
        """Object-store fallback, part 1: keep one serialised bucket (``weight_sync.serialize_state``)."""
        staged: list[bytes] = self.__dict__.setdefault("_easyr1_staged", [])
        staged.append(bytes(blob))
        return len(blob)

    def easyr1_load_staged(self, adapter_dir: str | None = None, has_base: bool = True) -> int:
        """Object-store fallback, part 2: load every staged bucket in one ``reload_weights`` (a layer's weights may
        span buckets); LoRA adapters among them are written to ``adapter_dir`` as in a broadcast, and without base
        tensors (``has_base`` false: adapters only) the model is left as it is. Returns the tensors taken."""
        staged: list[bytes] = self.__dict__.pop("_easyr1_staged", [])
        adapters: dict[str, torch.Tensor] = {}
        count = 0

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            while staged:
                for name, tensor in deserialize_state(staged.pop(0)):
                    count += 1
                    if lora_parts(name):
                        adapters[name] = tensor
                    else:
                        yield name, tensor

        if has_base:
            self.reload_weights(weights_iterator=weights(), is_checkpoint_format=True)
        else:
            for _ in weights():
                pass
        self._easyr1_write_adapters(adapters, adapter_dir)
        return count

    def easyr1_discard_staged(self) -> None:
        self.__dict__.pop("_easyr1_staged", None)
