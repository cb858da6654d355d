"""The ``hf`` rollout engine: transformers ``generate`` (CPU or GPU), batched, n samples per prompt, per-token
log-probs, seeded. Implements :class:`~easyr1.rollout.protocol.RolloutEngine`; the rollout pool runs it in a Ray
actor, tests and tools can use it in-process."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from easyr1.core.types import PolicyPrompt, RolloutOutput, SamplingParams
from easyr1.models.forward import response_log_probs
from easyr1.models.generation import generate_sequences
from easyr1.models.inputs import collate, encode_prompt
from easyr1.models.loading import load_policy
from easyr1.transfer.lora import lora_parts, serve_adapters, served_state_key
from easyr1.transfer.weight_sync import WeightPlan, WeightSyncGroup, dtype_name

if TYPE_CHECKING:
    from easyr1.config import EasyR1Config

logger = logging.getLogger(__name__)

_SEED_STRIDE = 1_000_003
"""Seeds of different engines/chunks are spread by this prime so their streams never coincide."""


class HFRolloutEngine:
    """A policy copy generating with transformers.

    Args:
        model_path: policy folder (tiny or real); the processor comes from ``tokenizer_path`` or the same folder.
        generation_batch_size: sequences per ``generate`` call (prompts × n are chunked).
        engine_index: this engine's index in the pool (spreads seeds).
        threads: torch intra-op threads (``None`` leaves torch's default).
    """

    def __init__(
        self,
        model_path: str,
        *,
        tokenizer_path: str | None = None,
        dtype: str = "auto",
        attn_implementation: str = "auto",
        device: str = "cpu",
        generation_batch_size: int = 16,
        engine_index: int = 0,
        trust_remote_code: bool = False,
        threads: int | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        if device == "cuda":
            torch.cuda.set_device(0)
        self.device = device
        self.policy = load_policy(
            model_path,
            tokenizer_path=tokenizer_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device=device,
            trust_remote_code=trust_remote_code,
        )
        self.model = self.policy.model
        self.model.requires_grad_(False)
        self.processor = self.policy.processor
        self.tokenizer = self.processor.tokenizer
        self.generation_batch_size = generation_batch_size
        self.engine_index = engine_index
        self._sync_group: WeightSyncGroup | None = None
        self._adapted: set[str] = set()  # layers served as LoRA adapters (an adapter-only weight sync)

    # ------------------------------------------------------------ pool hooks (driver side, class level)
    @staticmethod
    def actor_options(cfg: EasyR1Config) -> dict[str, Any]:
        """Ray options beyond the pool's placement: none."""
        return {}

    @staticmethod
    def engine_kwargs(cfg: EasyR1Config, *, device: str, threads: int | None) -> dict[str, Any]:
        """Constructor keywords for the pool's engines (all but ``model_path`` and ``engine_index``)."""
        model = cfg.worker.actor.model
        return {
            "tokenizer_path": model.tokenizer_path,
            "dtype": model.dtype,
            "trust_remote_code": model.trust_remote_code,
            "attn_implementation": model.attn_implementation,
            "device": device,
            "generation_batch_size": cfg.worker.rollout.generation_batch_size,
            "threads": threads,
        }

    # ------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) × sampling.n`` outputs, grouped by prompt in input order."""
        encoded = [encode_prompt(self.processor, p) for p in prompts]
        jobs = [(i, k) for i in range(len(prompts)) for k in range(sampling.n)]
        outputs: list[RolloutOutput] = []
        for chunk_index, start in enumerate(range(0, len(jobs), self.generation_batch_size)):
            chunk = jobs[start : start + self.generation_batch_size]
            seed = None
            if sampling.seed is not None:
                seed = sampling.seed + _SEED_STRIDE * (self.engine_index * 7919 + chunk_index)
            gens = generate_sequences(
                self.model,
                self.tokenizer,
                [encoded[i] for i, _ in chunk],
                max_new_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                seed=seed,
                device=self.device,
            )
            for (i, k), g in zip(chunk, gens, strict=True):
                outputs.append(
                    RolloutOutput(
                        prompt_id=prompts[i].id,
                        sample_index=k,
                        text=self.tokenizer.decode(g.token_ids, skip_special_tokens=True),
                        token_ids=g.token_ids,
                        logprobs=g.logprobs,
                        finish_reason=g.finish_reason,
                        extra={"engine": self.engine_index},
                    )
                )
        return outputs

    @torch.no_grad()
    def log_probs(self, prompts: Sequence[PolicyPrompt], responses: Sequence[Sequence[int]]) -> list[list[float]]:
        """Training-forward log-probs of given responses under this engine's weights (for sync checks)."""
        encoded = [encode_prompt(self.processor, p) for p in prompts]
        inputs = collate(encoded, responses, pad_token_id=self.tokenizer.pad_token_id).to(self.device)
        logp, _ = response_log_probs(self.model, inputs)
        return [logp[i, : len(r)].float().cpu().tolist() for i, r in enumerate(responses)]

    # ----------------------------------------------------------------- weights
    def weight_dtype(self) -> str:
        """The engine's parameter dtype name (floating weights are sent in it)."""
        return dtype_name(next(self.model.parameters()).dtype)

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load full (unsharded) tensors; every state-dict entry must be present (checked before anything is
        loaded, so a bad dict leaves the engine's weights untouched). Plain (merged) weights reach an engine that
        serves LoRA adapters as its base weights, the adapters zeroed."""
        if self._adapted:
            state_dict = self._plain_into_served(state_dict)
        expected = set(self.model.state_dict())
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if missing or unexpected:
            raise RuntimeError(
                f"update_weights: missing {sorted(missing)[:5]} ({len(missing)}), unexpected {sorted(unexpected)[:5]}"
            )
        self.model.load_state_dict(dict(state_dict), strict=True)

    def num_sync_ranks(self) -> int:
        return 1

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        self._sync_group = WeightSyncGroup.join(host, port, rank_offset, world_size, backend, device=self.device)

    def receive_weights(self, plan: WeightPlan) -> int:
        """Receive one broadcast of the full weights (see ``weight_sync``); returns bytes received."""
        if self._sync_group is None:
            raise RuntimeError("receive_weights before init_weight_sync")
        self._serve_plan_adapters(plan)
        state = self.model.state_dict()
        keys = {t.name: served_state_key(t.name, self._adapted) for t in plan.tensors}
        missing = [name for name, key in keys.items() if key not in state]
        if missing or len(plan.tensors) != len(state):
            extra = sorted(set(state) - set(keys.values()))
            raise RuntimeError(
                f"weight plan does not match the engine's model: missing {missing[:5]}, extra {extra[:5]}"
            )

        def consume(items: list[tuple[str, torch.Tensor]]) -> None:
            for name, value in items:
                state[keys[name]].copy_(value)

        return self._sync_group.receive(plan, consume)

    def _serve_plan_adapters(self, plan: WeightPlan) -> None:
        """A plan with LoRA adapters (``easyr1.transfer.lora`` names): serve them as LoRA layers — injected once,
        on the first such plan; the plan's ranks must match what is served."""
        ranks = {}
        for spec in plan.tensors:
            parts = lora_parts(spec.name)
            if parts and parts[1] == "A":
                ranks[parts[0]] = spec.shape[0]
        if not ranks:
            if self._adapted:
                raise RuntimeError("this engine serves LoRA adapters; the weight plan has none")
            return
        if not self._adapted:
            serve_adapters(self.model, ranks)
            self._adapted = set(ranks)
        elif set(ranks) != self._adapted:
            raise RuntimeError("the weight plan's LoRA layers differ from the ones this engine serves")

    def _plain_into_served(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        out = {served_state_key(name, self._adapted): value for name, value in state_dict.items()}
        for key, value in self.model.state_dict().items():
            parts = lora_parts(key)
            if parts and key not in out:
                out[key] = torch.zeros_like(value) if parts[1] == "B" else value
        return out

    def ping(self) -> int:
        return self.engine_index
