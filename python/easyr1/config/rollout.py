"""``worker.rollout``: the generation engines (vLLM on GPU, transformers ``generate`` on CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from easyr1.core.registries import ENGINES

from .base import ConfigError, check_choice, check_non_negative, check_positive, check_range


@dataclass
class RolloutValOverride:
    temperature: float = 0.0
    """Validation sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Validation nucleus sampling."""
    n: int = 1
    """Samples per validation prompt."""


@dataclass
class RolloutConfig:
    name: str = "hf"
    """Engine, a name of ``easyr1.core.registries.ENGINES``: ``hf`` (transformers generate, CPU or GPU) or ``vllm``
    (GPU with tensor parallelism, or vLLM's CPU backend when ``cluster.rollout.num_gpus_per_worker`` is 0)."""
    n: int = 4
    """Responses sampled per prompt (the GRPO group size)."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling."""
    top_k: int = -1
    """Top-k sampling (-1 disables)."""
    seed: int = 1
    """Base sampling seed."""
    num_engines: int = 1
    """Generation engines (Ray actors); each spans ``tensor_parallel_size`` GPUs."""
    tensor_parallel_size: int = 1
    """vLLM tensor parallelism per engine."""
    gpu_memory_utilization: float = 0.6
    """vLLM: share of GPU memory the engine may use (weights, activations, KV cache)."""
    kv_cache_memory_gb: float | None = None
    """vLLM: KV-cache size in GiB per engine, instead of what ``gpu_memory_utilization`` leaves; ``None`` = that
    (GPU), 1 GiB on vLLM's CPU backend (which reads the utilisation as a share of host memory)."""
    enforce_eager: bool = False
    """vLLM: disable CUDA graphs (always on for the CPU backend)."""
    engine_python: str | None = None
    """vLLM: Python interpreter of the engine actors (Ray ``runtime_env`` ``py_executable``), for a vLLM that lives
    in an environment of its own, e.g. ``.venv-vllm/bin/python`` from ``scripts/setup_vllm_cpu.sh``. ``None``: the
    driver's Python when it can import vLLM, else ``$EASYR1_VLLM_PYTHON``, else the checkout's ``.venv-vllm``."""
    prompt_length: int | None = None
    """Maximum prompt tokens; ``None`` uses ``data.max_prompt_length``."""
    response_length: int | None = None
    """Maximum response tokens; ``None`` uses ``data.max_response_length``."""
    max_model_len: int | None = None
    """vLLM max model length; ``None`` = prompt_length + response_length."""
    max_num_batched_tokens: int = 8192
    """vLLM scheduler token budget."""
    limit_images: int = 2
    """Images per prompt (source and preliminary edit); ``0`` (the reference's "no explicit limit") resolves to
    the images one prompt carries (2)."""
    generation_batch_size: int = 16
    """``hf`` engine: sequences generated per ``generate`` call."""
    weight_sync: str = "collective"
    """How weights reach engines after an update: ``collective`` (broadcast over a process group: gloo on CPU,
    NCCL on GPU) or ``object_store`` (Ray object store fallback)."""
    weight_sync_bucket_mb: int = 256
    """Bucket size of the collective weight broadcast."""
    check_sync_logprobs: bool = True
    """After a sync, compare engine and actor log-probs on a fixed probe and log the max difference."""
    sync_probe_interval: int = 1
    """Probe every N-th weight sync of the pool (counted from its first, which is always probed, and a sync that
    replaced an engine is always probed); 1 probes every sync. A probe costs a greedy generation and an actor
    forward, which on the sandbox is ~6 % of a step."""
    sync_probe_tolerance: float | None = None
    """Raise when the probe difference exceeds this (``None``: only report ``rollout/sync_probe_max_abs_diff``).
    Same dtype on both sides (``hf`` engine, fp32 CPU) agrees to ~1e-6; bf16 engines need ~0.1."""
    max_restarts: int = 4
    """Times the rollout pool replaces an engine whose process died (SIGKILL, OOM kill, node loss) or that did not
    answer within ``call_timeout_s``, per engine over the run (-1: no limit); the engine gets the latest weights
    and its share of the prompts is generated again with the same seeds. Beyond it the run stops with a line
    naming the engine and the cause."""
    call_timeout_s: float = 1800.0
    """Deadline of one engine call (a ``generate`` share, a weight sync); an engine past it counts as lost."""
    val_override_config: RolloutValOverride = field(default_factory=RolloutValOverride)
    """Sampling overrides used for validation."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.name", self.name, ENGINES.names())
        yield from check_positive(f"{path}.n", self.n)
        yield from check_non_negative(f"{path}.temperature", self.temperature)
        yield from check_range(f"{path}.top_p", self.top_p, low=0.0, high=1.0, low_inclusive=False)
        yield from check_positive(f"{path}.num_engines", self.num_engines)
        yield from check_positive(f"{path}.tensor_parallel_size", self.tensor_parallel_size)
        yield from check_range(f"{path}.gpu_memory_utilization", self.gpu_memory_utilization, low=0.0, high=1.0)
        if self.kv_cache_memory_gb is not None:
            yield from check_positive(f"{path}.kv_cache_memory_gb", self.kv_cache_memory_gb)
        yield from check_non_negative(f"{path}.limit_images", self.limit_images)
        yield from check_positive(f"{path}.generation_batch_size", self.generation_batch_size)
        yield from check_positive(f"{path}.sync_probe_interval", self.sync_probe_interval)
        yield from check_choice(f"{path}.weight_sync", self.weight_sync, ["collective", "object_store"])
        yield from check_positive(f"{path}.weight_sync_bucket_mb", self.weight_sync_bucket_mb)
        if self.sync_probe_tolerance is not None:
            yield from check_positive(f"{path}.sync_probe_tolerance", self.sync_probe_tolerance)
        yield from check_positive(f"{path}.val_override_config.n", self.val_override_config.n)
        if self.max_restarts < -1:
            yield ConfigError(f"{path}.max_restarts", self.max_restarts, "must be -1 or at least 0")
        yield from check_positive(f"{path}.call_timeout_s", self.call_timeout_s)
