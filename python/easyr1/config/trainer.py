"""``trainer``: the loop's schedule, logging backends and checkpoints (EasyR1 layout)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_choice, check_positive

LOGGERS = ["console", "file", "wandb", "tensorboard"]
PIPELINES = ["staged", "streaming", "off_policy_1"]
"""Values of ``trainer.pipeline`` (see ``easyr1.trainer.pipeline``)."""
BEHAVIOUR_LOG_PROBS = ["actor", "rollout"]
"""Values of ``trainer.behaviour_log_probs``."""


@dataclass
class TrainerConfig:
    project_name: str = "easyr1"
    """Tracker project name."""
    experiment_name: str = "sandbox"
    """Run name."""
    total_epochs: int = 1
    """Passes over the training data."""
    max_steps: int | None = None
    """Stop after this many steps (``None``: run ``total_epochs``)."""
    logger: list[str] = field(default_factory=lambda: ["console", "file"])
    """Loggers: console, file (``metrics.jsonl``), wandb, tensorboard."""
    wandb_mode: str = "auto"
    """wandb: ``auto`` (online with WANDB_API_KEY, offline without), ``online``, ``offline`` or ``disabled``."""
    output_dir: str = "runs/easyr1"
    """Run folder: metrics.jsonl, reports, wandb/TensorBoard files, and checkpoints unless
    ``save_checkpoint_path`` is set."""
    val_freq: int = -1
    """Validate every this many steps (-1: never)."""
    val_before_train: bool = False
    """Validate once before the first step."""
    val_only: bool = False
    """Only validate, do not train."""
    val_generations_to_log: int = 8
    """Validation samples logged as a table (images, CoT, Re_edit, scores)."""
    save_freq: int = -1
    """Checkpoint every this many steps (-1: only at the end)."""
    save_limit: int = 2
    """Keep at most this many checkpoints (-1: all)."""
    save_model_only: bool = False
    """Light checkpoints: model weights only (no optimizer, no resume state)."""
    save_checkpoint_path: str | None = None
    """Checkpoint folder; ``None`` = ``output_dir/checkpoints``."""
    load_checkpoint_path: str | None = None
    """Resume from this checkpoint (overrides ``resume``)."""
    resume: str = "auto"
    """``auto`` (newest complete checkpoint, if any) or ``disable``."""
    seed: int = 1
    """Driver seed (editor seeds, filtering order)."""
    abort_on_all_failed: bool = True
    """Stop the run (after logging) when every sample of a step is masked by judge/editor failures."""
    pipeline: str = "streaming"
    """How the pools of one step overlap. ``streaming`` (default): on-policy, each rollout shard goes to the editor
    as soon as its engine finishes it and each edited image to the judge as soon as it exists (the same rewards,
    masks and data as ``staged``). ``staged``: rollout, then every edit, every judge call, the update and the weight
    sync, in turn. A rollout pool without ``generate_stream`` or a reward pipeline without ``score_stream`` runs
    ``staged`` instead, with a warning. ``off_policy_1``: the rollout of step t+1 runs, and its edits and judge
    calls start, while step t is trained, with the weights after update t-1 (staleness 1,
    ``pipeline/staleness_*``); the PPO ratio uses the behaviour policy's log-probs, computed by the actor before
    update t (or the engines' own: ``trainer.behaviour_log_probs``); the in-flight batch (responses and behaviour
    log-probs) is saved with each checkpoint and re-scored on restore. Not with ``algorithm.online_filtering`` (its refills would reorder the data). Every mode logs
    ``pipeline/*`` (pool busy shares, overlap, critical path) and writes each step's stage spans to
    ``output_dir/stage_spans.jsonl``."""
    behaviour_log_probs: str = "actor"
    """Where the PPO ratio's old (behaviour-policy) log-probs come from. ``actor`` (default): the actor recomputes
    them with the weights that generated the responses (on-policy: before the update; ``off_policy_1``: in the
    background job, before update t) — the training forward's own kernels and precision, so the ratio starts at
    exactly 1 on-policy. ``rollout``: the rollout engine's per-token log-probs of the sampled tokens
    (``RolloutOutput.logprobs``), zero-padded like the actor's; no actor pass, and with ``off_policy_1`` update t
    runs while rollout t+1 generates (the step's chain becomes about max(rollout, reference log-probs + update) +
    sync instead of rollout + log-probs + update + sync). The engines' kernels and precision differ from the
    trainer's on GPUs (e.g. vLLM bf16 vs FSDP), which moves the ratio off 1 by that mismatch. Needs
    ``worker.rollout.temperature: 1.0`` (engines return temperature-1 log-probs); a response the engine returned
    without log-probs (or with a wrong count) fails the step. Any ``trainer.pipeline``."""
    stop_grace_s: float = 600.0
    """After SIGTERM/SIGINT the step in flight finishes and the last completed step is checkpointed; if that takes
    longer than this many seconds the run is abandoned (Ray shut down, exit 143/130, the previous checkpoint kept).
    Kubernetes' ``terminationGracePeriodSeconds`` (the chart's ``trainer.terminationGracePeriodSeconds``) must be
    longer than this, or the pod is killed first."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_positive(f"{path}.total_epochs", self.total_epochs)
        if self.max_steps is not None:
            yield from check_positive(f"{path}.max_steps", self.max_steps)
        for i, name in enumerate(self.logger):
            yield from check_choice(f"{path}.logger[{i}]", name, LOGGERS)
        yield from check_choice(f"{path}.wandb_mode", self.wandb_mode, ["auto", "online", "offline", "disabled"])
        yield from check_choice(f"{path}.resume", self.resume, ["auto", "disable"])
        yield from check_choice(f"{path}.pipeline", self.pipeline, PIPELINES)
        yield from check_choice(f"{path}.behaviour_log_probs", self.behaviour_log_probs, BEHAVIOUR_LOG_PROBS)
        yield from check_positive(f"{path}.stop_grace_s", self.stop_grace_s)
        for key in ("val_freq", "save_freq", "save_limit"):
            value = getattr(self, key)
            if value == 0 or value < -1:
                yield ConfigError(f"{path}.{key}", value, "must be a positive integer or -1")
        yield from check_positive(f"{path}.val_generations_to_log", self.val_generations_to_log + 1)
