"""Keys of the reference implementation's configs and scripts, mapped onto ours.

Each alias logs one deprecation line per key per process. Keys that have no meaning here are accepted and
ignored with a line saying why; an API key given in a config is never stored in the config (it is moved to the
judge's API-key environment variable for this process only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_DIMENSIONS = ("physical_geometric", "environment_context", "cultural_social", "logical_causal", "target_attribution")


@dataclass(frozen=True)
class Alias:
    target: str | None
    """Our key, or ``None`` when the old key is ignored."""
    note: str = ""
    """Why it is ignored / how the value is translated."""
    transform: Callable[[Any], Any] | None = None
    """Value translation (old value → new value)."""


def _data_format(value: Any) -> Any:
    return {"parquet": "seed", "json": "jsonl", "jsonl": "jsonl"}.get(str(value), value)


def _use_api(value: Any) -> Any:
    return "openai" if str(value).lower() in ("true", "1", "yes") else "sandbox"


ALIASES: dict[str, Alias] = {
    "data.parquet_pattern": Alias("data.pattern"),
    "data.data_format": Alias("data.format", "parquet → seed", _data_format),
    "data.prompt_key": Alias("data.instruction_key"),
    "trainer.max_try_make_batch": Alias("algorithm.max_try_make_batch"),
    "worker.image_edit.num_gpus": Alias("worker.image_edit.num_replicas"),
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
    "worker.reward.gpt41_retry_delay": Alias(None, "the SDK's jittered backoff (honouring Retry-After) is used"),
    "worker.reward.reward_type": Alias(None, "the combined reward is always used; see worker.reward.strategy"),
    "worker.reward.combined_gpt_weight": Alias(None, "derived from worker.reward.weights"),
    "worker.reward.combined_rule_weight": Alias(None, "derived from worker.reward.weights"),
    "worker.reward.reward_function": Alias(None, "custom reward functions are not supported"),
    "worker.reward.reward_function_kwargs": Alias(None, "custom reward functions are not supported"),
    "worker.reward.skip_special_tokens": Alias(None, "special tokens are always skipped when decoding"),
    "worker.reward.num_cpus": Alias(None, "the reward runs in the driver"),
    **{
        f"worker.reward.combined_gpt_{d}_weight": Alias(f"worker.reward.weights.{d}")
        for d in _DIMENSIONS
    },
}

SECRET_ALIASES = {"worker.reward.gpt41_api_key"}
"""Old keys that hold a secret: moved to the judge's key environment variable, never kept in the config."""

_warned: set[str] = set()


def translate(flat: dict[str, Any], *, api_key_env: str = "OPENAI_API_KEY") -> dict[str, Any]:
    """Rewrite a flat ``{dotted.key: value}`` mapping, translating old keys (and logging each once)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in SECRET_ALIASES:
            if value not in (None, "", "null") and not os.environ.get(api_key_env):
                os.environ[api_key_env] = str(value)
            _warn_once(key, f"{key} is deprecated: the key was moved to ${api_key_env} for this process and is not "
                            f"kept in the config; set ${api_key_env} or judge.api_key_file instead")
            continue
        alias = ALIASES.get(key)
        if alias is None:
            out[key] = value
            continue
        if alias.target is None:
            _warn_once(key, f"{key} is deprecated and ignored: {alias.note}")
            continue
        new_value = alias.transform(value) if alias.transform else value
        suffix = f" ({alias.note})" if alias.note else ""
        _warn_once(key, f"{key} is deprecated; use {alias.target}{suffix}")
        out[alias.target] = new_value
    return out


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)
