"""Keys of the reference implementation's configs and scripts, mapped onto ours.

Each alias logs one deprecation line per key per process. Keys that have no meaning here are accepted as not
applicable with a line saying why (or an error when their value asks for something easyr1 cannot do); an API key given in a config is never stored in the config (it is moved to the
judge's API-key environment variable for this process only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from easyr1.core.dimensions import DIMENSIONS

from .base import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alias:
    target: str | None
    """Our key, or ``None`` when the old key is not applicable here (``note`` says why)."""
    note: str = ""
    """Why it is not applicable / how the value is translated."""
    transform: Callable[[Any], Any] | None = None
    """Value translation (old value → new value)."""
    check: Callable[[Any], str | None] | None = None
    """For a key that is not applicable: a message when its value asks for something easyr1 cannot do."""


def _data_format(value: Any) -> Any:
    return {"parquet": "seed", "json": "jsonl", "jsonl": "jsonl"}.get(str(value), value)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _use_api(value: Any) -> Any:
    return "openai" if _truthy(value) else "sandbox"


def _resume(value: Any) -> Any:
    return "auto" if _truthy(value) else "disable"


def _must_be_one(value: Any) -> str | None:
    return None if value in (None, 1) else "sequence parallelism is not implemented; only 1 is supported"


def _na(note: str, check: Callable[[Any], str | None] | None = None) -> Alias:
    return Alias(None, note, check=check)


_PLACEMENT = "placement comes from cluster.* (pools, GPUs per actor/engine/replica)"
_STREAMING = "the streaming reader needs no file cache (memory is bounded by data.read_batch_rows)"
_GENERIC_DATASET = "read only by the reference's generic RLHF dataset, never by its image-edit parquet reader"
_NEVER_READ = "declared but never read by the reference's code"
_EDITOR_REPLICATED = "the editor is replicated (one pipeline per replica), never sharded"
_EDITOR_NO_TEXT = "never read by the reference's editor (a diffusion pipeline samples no text)"

ALIASES: dict[str, Alias] = {
    # --- data ---
    "data.parquet_pattern": Alias("data.pattern"),
    "data.data_format": Alias("data.format", "parquet → seed", _data_format),
    "data.prompt_key": Alias("data.instruction_key"),
    "data.cache_size": _na(_STREAMING),
    "data.prefetch_size": _na(_STREAMING + "; decoding runs ahead in data.decode_threads"),
    "data.enable_prefetch": _na(_STREAMING + "; decoding runs ahead in data.decode_threads"),
    "data.max_num_batched_tokens": _na(
        "never read by the reference; the vLLM budget is worker.rollout.max_num_batched_tokens"
    ),
    "data.answer_key": _na(_GENERIC_DATASET),
    "data.image_key": _na(_GENERIC_DATASET),
    "data.video_key": _na(_GENERIC_DATASET + "; easyr1 has no video input"),
    "data.image_dir": _na(_GENERIC_DATASET + "; JSONL image paths are relative to the JSONL file"),
    "data.video_fps": _na("easyr1 has no video input"),
    "data.mini_rollout_batch_size": _na(
        "the reference used it only to count steps; easyr1 counts them from the "
        "data and data.rollout_batch_size (or trainer.max_steps)"
    ),
    "data.format_prompt": _na("the prompt is built by easyr1.data.prompts (data.system_prompt, data.prompt_layout)"),
    "data.override_chat_template": _na("the policy's own chat template is used"),
    "data.original_image_dir": _na("JSONL image paths are relative to the JSONL file"),
    "data.edited_image_dir": _na("JSONL image paths are relative to the JSONL file"),
    "data.original_image_key": _na(_NEVER_READ + "; JSONL: data.source_image_key"),
    "data.preliminary_edited_image_key": _na(_NEVER_READ + "; JSONL: data.edited_image_key"),
    "data.edit_instruction_key": _na(_NEVER_READ + "; JSONL: data.instruction_key"),
    "data.expected_reasoning_key": _na(_NEVER_READ + "; SFT demonstrations come from the data's reasoning column"),
    "data.original_description_key": _na(_NEVER_READ),
    # --- actor / ref / rollout ---
    "worker.actor.padding_free": _na("easyr1's actor always packs responses without padding"),
    "worker.actor.ulysses_size": _na("no sequence parallelism", _must_be_one),
    "worker.ref.fsdp.enable_full_shard": _na("the reference policy is an inference-only copy sharded like the actor"),
    "worker.ref.fsdp.enable_cpu_offload": _na(
        "the reference policy lives on CPU between uses (worker.ref.offload_params)"
    ),
    "worker.ref.fsdp.enable_rank0_init": _na("the reference policy loads like the actor (worker.actor.fsdp)"),
    "worker.ref.offload.offload_params": Alias("worker.ref.offload_params"),
    "worker.rollout.enable_chunked_prefill": _na("vLLM's own default is used"),
    "worker.rollout.disable_tqdm": _na("progress is reported in the log and metrics, not with tqdm bars"),
    # --- editor ---
    "worker.image_edit.num_gpus": Alias("worker.image_edit.num_replicas"),
    "worker.image_edit.torch_dtype": Alias("worker.image_edit.dtype"),
    "worker.image_edit.enable_cpu_offload": Alias("worker.image_edit.enable_model_cpu_offload"),
    "worker.image_edit.trust_remote_code": _na("the diffusers pipeline is loaded from a local folder, no remote code"),
    "worker.image_edit.num_cpus": _na(_PLACEMENT),
    "worker.image_edit.max_new_tokens": _na(_EDITOR_NO_TEXT),
    "worker.image_edit.temperature": _na(_EDITOR_NO_TEXT),
    "worker.image_edit.top_p": _na(_EDITOR_NO_TEXT),
    "worker.image_edit.do_sample": _na(_EDITOR_NO_TEXT),
    "worker.image_edit.guidance_scale": _na(
        "Qwen-Image-Edit has no guidance embedding, so the pipeline ignored "
        "it in the reference too; guidance is worker.image_edit.true_cfg_scale"
    ),
    "worker.image_edit.enable_fsdp": _na(_EDITOR_REPLICATED),
    "worker.image_edit.fsdp_sharding_strategy": _na(_EDITOR_REPLICATED),
    "worker.image_edit.fsdp_cpu_offload": _na(_EDITOR_REPLICATED),
    "worker.image_edit.fsdp_sync_module_states": _na(_EDITOR_REPLICATED),
    "worker.image_edit.max_batch_size": _na(_NEVER_READ + "; worker.image_edit.batch_size is the batch"),
    "worker.image_edit.enable_gradient_checkpointing": _na("the editor only runs inference"),
    "worker.image_edit.image_size": _na(
        "the pipeline resizes its input to worker.image_edit.target_area "
        "(about 1024², as in the reference) after the reference's shrink to "
        "this side, which only bit above 2048 pixels"
    ),
    # --- reward / judge ---
    "worker.reward.combined_strategy": Alias("worker.reward.strategy"),
    "worker.reward.combined_rule_gate_threshold": Alias("worker.reward.gate_threshold"),
    "worker.reward.combined_rule_format_weight": Alias("worker.reward.weights.format"),
    "worker.reward.rule_re_edit_max_length_ideal": Alias("worker.reward.re_edit_length_ideal"),
    "worker.reward.rule_re_edit_max_length_acceptable": Alias("worker.reward.re_edit_length_acceptable"),
    "worker.reward.rule_re_edit_max_length_tolerable": Alias("worker.reward.re_edit_length_tolerable"),
    "worker.reward.use_gpt41_api": Alias("judge.backend", "true → openai, false → sandbox", _use_api),
    "worker.reward.gpt41_model": Alias("judge.model"),
    "worker.reward.gpt41_api_base": Alias("judge.base_url"),
    "worker.reward.gpt41_max_tokens": Alias("judge.max_tokens"),
    "worker.reward.gpt41_temperature": Alias("judge.temperature"),
    "worker.reward.gpt41_max_retries": Alias("judge.max_retries"),
    "worker.reward.gpt41_request_timeout": Alias("judge.timeout_s"),
    "worker.reward.gpt41_retry_delay": _na("the SDK's jittered backoff (honouring Retry-After) is used"),
    "worker.reward.reward_type": _na("the combined reward is always used; see worker.reward.strategy"),
    "worker.reward.combined_gpt_weight": _na("derived from worker.reward.weights"),
    "worker.reward.combined_rule_weight": _na("derived from worker.reward.weights"),
    "worker.reward.reward_function": _na("custom reward functions are not supported"),
    "worker.reward.reward_function_kwargs": _na("custom reward functions are not supported"),
    "worker.reward.skip_special_tokens": _na("special tokens are always skipped when decoding"),
    "worker.reward.num_cpus": _na("the reward runs in the driver"),
    **{f"worker.reward.combined_gpt_{d}_weight": Alias(f"worker.reward.weights.{d}") for d in DIMENSIONS},
    # --- trainer ---
    "trainer.max_try_make_batch": Alias("algorithm.max_try_make_batch"),
    "trainer.find_last_checkpoint": Alias("trainer.resume", "true → auto, false → disable", _resume),
    "trainer.train_generations_to_log": Alias("telemetry.images_per_table"),
    "trainer.nnodes": _na(_PLACEMENT),
    "trainer.n_gpus_per_node": _na(_PLACEMENT),
    "trainer.enable_image_editing": _na(_NEVER_READ + "; editing is always part of the loop"),
    "trainer.image_edit_validation_freq": _na(_NEVER_READ + "; validation runs every trainer.val_freq steps"),
    "trainer.save_edited_images": _na(_NEVER_READ + "; image tables: telemetry.log_images_every"),
    "trainer.max_validation_images": _na(_NEVER_READ + "; validation tables: trainer.val_generations_to_log"),
}
"""Every reference key that is not spelled like ours: an alias (honoured) or not applicable (with the reason)."""

SECRET_ALIASES = {"worker.reward.gpt41_api_key"}
"""Old keys that hold a secret: moved to the judge's key environment variable, never kept in the config."""

_warned: set[str] = set()


@dataclass
class Translation:
    flat: dict[str, Any]
    """The mapping in our key names (not-applicable keys dropped)."""
    errors: list[ConfigError]
    """Old and new spellings of one setting in one source, and not-applicable keys whose value cannot be met."""


def translate(flat: dict[str, Any], *, source: str = "config", api_key_env: str = "OPENAI_API_KEY") -> Translation:
    """Rewrite a flat ``{dotted.key: value}`` mapping of one source, translating old keys (each logged once)."""
    out: dict[str, Any] = {}
    spelled_as: dict[str, str] = {}
    errors: list[ConfigError] = []
    for key, value in flat.items():
        if key in SECRET_ALIASES:
            if value not in (None, "", "null") and not os.environ.get(api_key_env):
                os.environ[api_key_env] = str(value)
            _warn_once(
                key,
                f"{key} is deprecated: the key was moved to ${api_key_env} for this process and is not "
                f"kept in the config; set ${api_key_env} or judge.api_key_file instead",
            )
            continue
        alias = ALIASES.get(key)
        if alias is None:
            target, new_value = key, value
        elif alias.target is None:
            problem = alias.check(value) if alias.check else None
            if problem:
                errors.append(ConfigError(key, value, f"not supported (from {source}): {problem}"))
            else:
                _warn_once(key, f"{key} is deprecated and not applicable: {alias.note}")
            continue
        else:
            target = alias.target
            new_value = alias.transform(value) if alias.transform else value
            suffix = f" ({alias.note})" if alias.note else ""
            _warn_once(key, f"{key} is deprecated; use {alias.target}{suffix}")
        if target in spelled_as:
            errors.append(
                ConfigError(
                    key,
                    value,
                    f"{spelled_as[target]} and {key} both set {target} in {source}; keep one of them",
                )
            )
            continue
        spelled_as[target] = key
        out[target] = new_value
    return Translation(out, errors)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)
