"""The root of the config tree, its cross-section checks, warnings and the reference values resolved on load."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass

from easyr1.core.registries import ESTIMATORS

from .actor import ActorConfig, RefConfig
from .algorithm import AlgorithmConfig
from .base import ConfigError, check_choice, join
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

logger = logging.getLogger(__name__)

COMPAT_PROFILES = ["reference"]
"""Values of the root key ``compat`` (see :mod:`easyr1.config.compat`)."""

JUDGE_ANSWER_TOKENS = {"per_dimension": 8, "single_call": 300}
"""Completion tokens an answer of each judge mode needs: one number; or five reasons of at most 25 words (about
200 tokens in practice) with their scores in the JSON schema, rounded up with room for longer reasons."""

REFERENCE_IMAGES_PER_PROMPT = 2
"""Images in one policy prompt (source and preliminary edit): what ``worker.rollout.limit_images: 0`` resolves to."""


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
    compat: str | None = None
    """``reference``: start from the reference implementation's behaviour (per-dimension judging with its token
    budget, its format rule, fallback re-edit, image sizing, judge request and prompt layout); keys of the file
    still override it. ``None``: easyr1's defaults (a reference-style file then logs what behaves differently)."""
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
        if self.compat is not None:
            yield from check_choice("compat", self.compat, COMPAT_PROFILES)
        yield from _validate_sections(self, path)
        yield from _cross_checks(self)  # each check guards its own arithmetic, so all rules report in one run


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
    if min(actor.global_batch_size, actor.num_workers, actor.micro_batch_size_per_device_for_update) <= 0:
        return  # reported by the actor section; the batch arithmetic below needs positive sizes
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
    if cfg.algorithm.filter_key not in ("overall", "format", *DIMENSIONS):
        yield ConfigError(
            "algorithm.filter_key",
            cfg.algorithm.filter_key,
            f"must be 'overall', 'format' or one of {list(DIMENSIONS)}",
        )
    if cfg.algorithm.online_filtering and rollout.n < 2:
        yield ConfigError("worker.rollout.n", rollout.n, "online filtering needs groups of at least 2 samples")
    if cfg.algorithm.online_filtering and cfg.trainer.pipeline == "off_policy_1":
        yield ConfigError(
            "trainer.pipeline",
            cfg.trainer.pipeline,
            "off_policy_1 cannot be combined with algorithm.online_filtering (refills would reorder the data)",
        )
    if cfg.trainer.behaviour_log_probs == "rollout" and rollout.temperature != 1.0:
        yield ConfigError(
            "trainer.behaviour_log_probs",
            cfg.trainer.behaviour_log_probs,
            f"'rollout' needs worker.rollout.temperature=1.0 (is {rollout.temperature}): engines return "
            "temperature-1 log-probs while the actor's ratio uses the sampling temperature",
        )
    estimator = ESTIMATORS.facts(cfg.algorithm.adv_estimator) if cfg.algorithm.adv_estimator in ESTIMATORS else None
    if estimator is not None and estimator.needs_groups and rollout.n < estimator.min_valid_per_group:
        yield ConfigError(
            "worker.rollout.n",
            rollout.n,
            f"{cfg.algorithm.adv_estimator} needs at least {estimator.min_valid_per_group} samples per prompt",
        )
    if cfg.judge.use_logprobs and cfg.judge.mode != "per_dimension":
        yield ConfigError("judge.use_logprobs", True, "probability scoring needs judge.mode=per_dimension")
    if cfg.worker.reward.improvement and cfg.worker.image_edit.seed_mode != "per_group":
        yield ConfigError(
            "worker.image_edit.seed_mode",
            cfg.worker.image_edit.seed_mode,
            "worker.reward.improvement=true needs one editor seed per group (seed_mode=per_group)",
        )


def resolve_reference_values(cfg: EasyR1Config) -> None:
    """Give the reference's special values their meaning (each with one log line); called by the loader.

    * ``worker.rollout.limit_images: 0`` (the reference: no explicit vLLM limit) → the images a prompt carries.
    * ``worker.image_edit.negative_prompt: ""`` (the reference passed no negative prompt, so the pipeline ran
      without true CFG whatever ``true_cfg_scale`` said) → ``true_cfg_scale: 1.0``.
    """
    rollout, editor = cfg.worker.rollout, cfg.worker.image_edit
    if rollout.limit_images == 0:
        rollout.limit_images = REFERENCE_IMAGES_PER_PROMPT
        logger.info(
            "worker.rollout.limit_images=0 (no explicit limit) resolved to %d, the images one prompt carries",
            REFERENCE_IMAGES_PER_PROMPT,
        )
    if editor.negative_prompt == "" and editor.true_cfg_scale != 1.0:
        logger.log(
            logging.INFO if cfg.compat else logging.WARNING,  # under compat: reference this is the intent
            "worker.image_edit.negative_prompt='' means no negative prompt, so true CFG is off (as in the "
            "reference, whose pipeline ignored true_cfg_scale without one): true_cfg_scale %s -> 1.0; set a "
            "negative prompt (' ' is easyr1's default) to run true CFG",
            editor.true_cfg_scale,
        )
        editor.true_cfg_scale = 1.0


def config_warnings(cfg: EasyR1Config) -> Iterator[str]:
    """Settings that load but probably do not do what was meant (logged by the loader, not fatal)."""
    judge = cfg.judge
    needed = JUDGE_ANSWER_TOKENS.get(judge.mode)
    if judge.backend == "openai" and needed is not None and judge.max_tokens < needed:
        yield (
            f"judge.max_tokens={judge.max_tokens} cannot hold a judge.mode={judge.mode} answer (about {needed} "
            "completion tokens): against a server that cuts answers at max_tokens every sample would be "
            f"unparsable and masked; raise judge.max_tokens to at least {needed}"
            + (" or use judge.mode=per_dimension (one number per call)" if judge.mode == "single_call" else "")
        )
    rollout = cfg.worker.rollout
    if rollout.max_model_len is not None:
        prompt = rollout.prompt_length or cfg.data.max_prompt_length
        response = rollout.response_length or cfg.data.max_response_length
        if rollout.max_model_len < prompt + response:
            yield (
                f"worker.rollout.max_model_len={rollout.max_model_len} is below prompt + response = "
                f"{prompt} + {response}: a response stops when prompt and response together reach "
                f"{rollout.max_model_len} tokens (vLLM), and a prompt of {rollout.max_model_len} tokens or more "
                "cannot be generated from"
            )
