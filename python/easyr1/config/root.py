"""The root of the config tree and its cross-section checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass

from .actor import ActorConfig, RefConfig
from .algorithm import AlgorithmConfig
from .base import ConfigError, join
from .cluster import ClusterConfig
from .data import DataConfig
from .editing import ImageEditConfig
from .judge import JudgeConfig
from .reward import DIMENSIONS, RewardConfig
from .rollout import RolloutConfig
from .sandbox import SandboxConfig
from .sft import SFTConfig
from .telemetry import TelemetryConfig
from .trainer import TrainerConfig


@dataclass
class WorkerConfig:
    actor: ActorConfig = field(default_factory=ActorConfig)
    """Trainable policy (FSDP2 workers)."""
    ref: RefConfig = field(default_factory=RefConfig)
    """Frozen reference policy for the KL term."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Generation engines."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Format rule and reward combination."""
    image_edit: ImageEditConfig = field(default_factory=ImageEditConfig)
    """Editor pool."""


@dataclass
class EasyR1Config:
    data: DataConfig = field(default_factory=DataConfig)
    """Training and validation data."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Advantages, KL, online filtering."""
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    """The pools: actor, ref, rollout, reward, image_edit."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """Multimodal judge."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Procedural sandbox world (embedded default)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Supervised warm start."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Schedule, loggers, checkpoints."""
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    """Metrics exporter and image tables."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Ray address and pool placement."""

    def validate(self, path: str = "") -> Iterator[ConfigError]:
        section_errors = list(_validate_sections(self, path))
        yield from section_errors
        if not section_errors:  # cross-section arithmetic assumes each section is sane
            yield from _cross_checks(self)


def _validate_sections(node: object, path: str) -> Iterator[ConfigError]:
    for f in fields(node):  # type: ignore[arg-type]
        child = getattr(node, f.name)
        if is_dataclass(child):
            child_path = join(path, f.name)
            validate = getattr(child, "validate", None)
            if validate is not None and type(child) is not EasyR1Config:
                yield from validate(child_path)
            yield from _validate_sections(child, child_path)


def _cross_checks(cfg: EasyR1Config) -> Iterator[ConfigError]:
    actor, rollout = cfg.worker.actor, cfg.worker.rollout
    if cfg.data.rollout_batch_size % actor.global_batch_size:
        yield ConfigError(
            "data.rollout_batch_size",
            cfg.data.rollout_batch_size,
            f"must be divisible by worker.actor.global_batch_size={actor.global_batch_size}",
        )
    responses = actor.global_batch_size * rollout.n
    if responses % actor.num_workers:
        yield ConfigError(
            "worker.actor.global_batch_size",
            actor.global_batch_size,
            f"global_batch_size × worker.rollout.n = {responses} must be divisible by "
            f"worker.actor.num_workers={actor.num_workers}",
        )
    elif not actor.dynamic_batching and (responses // actor.num_workers) % actor.micro_batch_size_per_device_for_update:
        yield ConfigError(
            "worker.actor.micro_batch_size_per_device_for_update",
            actor.micro_batch_size_per_device_for_update,
            f"must divide the per-worker mini-batch global_batch_size × n / num_workers = {responses // actor.num_workers}",
        )
    if rollout.response_length is not None and rollout.response_length > cfg.data.max_response_length:
        yield ConfigError(
            "worker.rollout.response_length",
            rollout.response_length,
            f"must not exceed data.max_response_length={cfg.data.max_response_length}",
        )
    if rollout.max_model_len is not None:
        needed = (rollout.prompt_length or cfg.data.max_prompt_length) + (
            rollout.response_length or cfg.data.max_response_length
        )
        if rollout.max_model_len < needed:
            yield ConfigError(
                "worker.rollout.max_model_len",
                rollout.max_model_len,
                f"must hold prompt + response = {needed} tokens",
            )
    if cfg.algorithm.filter_key not in ("overall", "format", *DIMENSIONS):
        yield ConfigError(
            "algorithm.filter_key", cfg.algorithm.filter_key, f"must be 'overall', 'format' or one of {list(DIMENSIONS)}"
        )
    if cfg.algorithm.online_filtering and rollout.n < 2:
        yield ConfigError("worker.rollout.n", rollout.n, "online filtering needs groups of at least 2 samples")
    if cfg.algorithm.adv_estimator in ("grpo", "dr_grpo", "rloo") and rollout.n < 2:
        yield ConfigError(
            "worker.rollout.n", rollout.n, f"{cfg.algorithm.adv_estimator} needs at least 2 samples per prompt"
        )
    if cfg.judge.use_logprobs and cfg.judge.mode != "per_dimension":
        yield ConfigError("judge.use_logprobs", True, "probability scoring needs judge.mode=per_dimension")
    if cfg.worker.reward.improvement and cfg.worker.image_edit.seed_mode != "per_group":
        yield ConfigError(
            "worker.image_edit.seed_mode",
            cfg.worker.image_edit.seed_mode,
            "worker.reward.improvement=true needs one editor seed per group (seed_mode=per_group)",
        )
