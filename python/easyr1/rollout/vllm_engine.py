"""The ``vllm`` rollout engine: vLLM with tensor parallelism and multimodal prompts (GPU only).

Imported lazily (only when ``worker.rollout.name=vllm``). Written against vLLM's documented offline API
(``LLM``, ``SamplingParams``, ``LLM.collective_rpc`` with a ``worker_extension_cls``, ``sleep``/``wake_up``);
not runnable on the CPU development machines — see docs/actor-rollout.md for what is verified where.

Prompts are rendered with the policy's own processor chat template (exactly what the actor trains on) and passed
with their PIL images as ``multi_modal_data``; vLLM expands the vision placeholders itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from easyr1.config.rollout import RolloutConfig
from easyr1.models.inputs import prompt_text
from easyr1.models.loading import load_processor, read_model_type, stop_token_ids, vision_token_ids

from .protocol import PolicyPrompt, RolloutOutput, SamplingParams
from .weight_sync import WeightPlan

logger = logging.getLogger(__name__)

EXTENSION = "easyr1.rollout.vllm_worker.WeightSyncWorkerExtension"


class VLLMRolloutEngine:
    """One vLLM engine spanning ``rollout.tensor_parallel_size`` GPUs (its Ray actor holds those GPUs)."""

    def __init__(
        self,
        model_path: str,
        *,
        rollout: RolloutConfig,
        max_prompt_length: int,
        max_response_length: int,
        tokenizer_path: str | None = None,
        dtype: str = "auto",
        engine_index: int = 0,
        trust_remote_code: bool = False,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError(
                "worker.rollout.name=vllm needs vLLM (GPU image: pip install 'easyr1[gpu]'); use name=hf on CPU"
            ) from exc
        read_model_type(model_path)  # same clear errors as the actor for a wrong folder
        self.processor = load_processor(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        self.engine_index = engine_index
        self.rollout = rollout
        tp = rollout.tensor_parallel_size
        prompt_len = rollout.prompt_length or max_prompt_length
        response_len = rollout.response_length or max_response_length
        self.llm = vllm.LLM(
            model=model_path,
            tokenizer=tokenizer_path or model_path,
            trust_remote_code=trust_remote_code,
            dtype="bfloat16" if dtype == "auto" else dtype,
            tensor_parallel_size=tp,
            distributed_executor_backend="mp" if tp > 1 else None,
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            enforce_eager=rollout.enforce_eager,
            enable_sleep_mode=rollout.enable_sleep_mode,
            max_model_len=rollout.max_model_len or prompt_len + response_len,
            max_num_batched_tokens=rollout.max_num_batched_tokens,
            limit_mm_per_prompt={"image": rollout.limit_images},
            seed=rollout.seed + engine_index,
            worker_extension_cls=EXTENSION,
        )
        self._stop_ids = stop_token_ids(self.tokenizer)
        self._banned = vision_token_ids(self.tokenizer)
        self._dtype = "bfloat16" if dtype == "auto" else dtype

    def _sampling(self, sampling: SamplingParams) -> Any:
        import vllm

        greedy = sampling.temperature <= 0
        return vllm.SamplingParams(
            n=sampling.n,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens,
            seed=None if sampling.seed is None else sampling.seed + 7919 * self.engine_index,
            logprobs=0,  # the sampled token's log-prob
            stop_token_ids=self._stop_ids,
            # Vision placeholders must never be generated (the training forward would reject the sequence).
            logit_bias={tid: -100.0 for tid in self._banned},
        )

    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        inputs = [
            {"prompt": prompt_text(self.processor, p), "multi_modal_data": {"image": list(p.images)}} for p in prompts
        ]
        results = self.llm.generate(inputs, sampling_params=self._sampling(sampling), use_tqdm=False)
        outputs = []
        for prompt, result in zip(prompts, results, strict=True):
            for k, completion in enumerate(result.outputs):
                ids = list(completion.token_ids)
                logprobs = None
                if completion.logprobs is not None:
                    logprobs = [float(step[tok].logprob) for step, tok in zip(completion.logprobs, ids, strict=True)]
                outputs.append(
                    RolloutOutput(
                        prompt_id=prompt.id,
                        sample_index=k,
                        text=completion.text,
                        token_ids=ids,
                        logprobs=logprobs,
                        finish_reason="length" if completion.finish_reason == "length" else "stop",
                        extra={"engine": self.engine_index},
                    )
                )
        return outputs

    # ----------------------------------------------------------------- weights
    def weight_dtype(self) -> str:
        return self._dtype

    def num_sync_ranks(self) -> int:
        return self.rollout.tensor_parallel_size

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        self.llm.collective_rpc("easyr1_init_weight_sync", args=(host, port, rank_offset, world_size, backend))

    def receive_weights(self, plan: WeightPlan) -> int:
        received = self.llm.collective_rpc("easyr1_receive_weights", args=(plan,))
        self._after_update()
        return int(received[0])

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        self.llm.collective_rpc("easyr1_load_state_dict", args=(dict(state_dict),))
        self._after_update()

    def _after_update(self) -> None:
        # Cached prefixes and encoder outputs were computed with the old weights.
        self.llm.reset_prefix_cache()
        reset_mm = getattr(self.llm, "reset_mm_cache", None)
        if reset_mm is not None:
            reset_mm()

    def sleep(self) -> None:
        if self.rollout.enable_sleep_mode:
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if self.rollout.enable_sleep_mode:
            self.llm.wake_up()

    def ping(self) -> int:
        return self.engine_index
