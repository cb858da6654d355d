"""The registries every layer reads: advantage estimators, rollout engines, editor and judge backends, reward
combination strategies, policy model families.

Each table is the single source of truth for its config key: the config section validates against
``REGISTRY.names()`` and reads per-entry facts from here; the code that runs an entry loads it with
``REGISTRY.load(name)``. Implementations are named by import string, so importing this module (and therefore the
config tree) pulls in neither torch nor Ray nor any other ``easyr1`` package.

Adding an implementation: write it in its package (with its test) and add one ``register`` line below. A plugin
that must not touch this file registers itself at import time (``ENGINES.register("mine", EngineFacts(...),
MyEngine)``); its module then has to be imported before the config is validated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry

# ------------------------------------------------------------------------------------------ advantage estimators


@dataclass(frozen=True)
class EstimatorFacts:
    """What the config and the driver know about an advantage estimator."""

    token_level: bool = False
    """Returns (B,T) advantages and needs the response mask; otherwise one advantage per response (B,)."""
    min_valid_per_group: int = 2
    """Groups with fewer valid samples contribute nothing; 1 means groups are not used."""

    @property
    def needs_groups(self) -> bool:
        """Needs at least ``min_valid_per_group`` samples per prompt (``worker.rollout.n`` ≥ that) to learn."""
        return self.min_valid_per_group > 1


ESTIMATORS: Registry[EstimatorFacts] = Registry("advantage estimator", "algorithm.adv_estimator")
"""``algorithm.adv_estimator`` → ``fn(inputs: AdvantageInputs) -> Tensor`` in :mod:`easyr1.algorithms.advantage`."""

ESTIMATORS.register("grpo", EstimatorFacts(), "easyr1.algorithms.advantage:grpo_advantage")
ESTIMATORS.register("dr_grpo", EstimatorFacts(), "easyr1.algorithms.advantage:dr_grpo_advantage")
ESTIMATORS.register("rloo", EstimatorFacts(), "easyr1.algorithms.advantage:rloo_advantage")
ESTIMATORS.register(
    "reinforce_plus_plus",
    EstimatorFacts(token_level=True, min_valid_per_group=1),
    "easyr1.algorithms.advantage:reinforce_plus_plus_advantage",
)
ESTIMATORS.register(
    "reinforce_plus_plus_baseline",
    EstimatorFacts(token_level=True),
    "easyr1.algorithms.advantage:reinforce_plus_plus_baseline_advantage",
)

# ----------------------------------------------------------------------------------------------- rollout engines


@dataclass(frozen=True)
class EngineFacts:
    """What the config, the rollout pool and the memory planner know about a generation engine."""

    tensor_parallel: bool
    """One engine spans ``worker.rollout.tensor_parallel_size`` devices."""
    own_interpreter: bool
    """May run in a Python environment of its own (``worker.rollout.engine_python`` → Ray ``py_executable``)."""
    owns_processes: bool
    """Starts processes of its own: the pool calls ``shutdown()`` before killing the engine's actor."""
    reserves_memory: bool
    """Reserves ``gpu_memory_utilization`` of its device up front (weights, activations, KV cache) — the memory
    planner's vLLM model; otherwise memory follows each ``generate`` call (the planner's ``hf`` model)."""
    supports_log_probs: bool
    """Has a training-forward ``log_probs(prompts, responses)`` (used by tests and sync checks)."""


ENGINES: Registry[EngineFacts] = Registry("rollout engine", "worker.rollout.name")
"""``worker.rollout.name`` → an engine class satisfying :class:`easyr1.rollout.protocol.RolloutEngine`."""

ENGINES.register(
    "hf",
    EngineFacts(
        tensor_parallel=False,
        own_interpreter=False,
        owns_processes=False,
        reserves_memory=False,
        supports_log_probs=True,
    ),
    "easyr1.rollout.hf_engine:HFRolloutEngine",
)
ENGINES.register(
    "vllm",
    EngineFacts(
        tensor_parallel=True,
        own_interpreter=True,
        owns_processes=True,
        reserves_memory=True,
        supports_log_probs=False,
    ),
    "easyr1.rollout.vllm_engine:VLLMRolloutEngine",
)

# ------------------------------------------------------------------------------------------------ editor backends


@dataclass(frozen=True)
class EditorBackendFacts:
    """What the config, the editor factory and the editor pool know about an editor backend."""

    reads_metadata: bool
    """The edit depends on the request's row metadata (the sandbox reads its scene state there), so two requests
    are the same edit only when their metadata match too."""
    heavy: bool
    """Loads a large model: always run in the editor pool's replicas, never in the driver."""


EDITOR_BACKENDS: Registry[EditorBackendFacts] = Registry("editor backend", "worker.image_edit.backend")
"""``worker.image_edit.backend`` → an editor class satisfying :class:`easyr1.editing.protocol.Editor`; built with
its ``from_config(image_edit_cfg)`` when it has one, else with no arguments."""

EDITOR_BACKENDS.register(
    "qwen_image_edit",
    EditorBackendFacts(reads_metadata=False, heavy=True),
    "easyr1.editing.qwen_image_edit:QwenImageEditEditor",
)
EDITOR_BACKENDS.register(
    "sandbox",
    EditorBackendFacts(reads_metadata=True, heavy=False),
    "easyr1.sandbox.editor:SandboxEditor",
)

# ------------------------------------------------------------------------------------------------- judge backends


@dataclass(frozen=True)
class JudgeBackendFacts:
    """What the config and the judge factory know about a judge backend."""

    remote: bool
    """Calls an HTTP endpoint: needs ``judge.base_url`` and an API key, and is built as ``cls(judge_cfg)``;
    otherwise built with ``from_config(judge_cfg)`` when the class has one, else with no arguments."""


JUDGE_BACKENDS: Registry[JudgeBackendFacts] = Registry("judge backend", "judge.backend")
"""``judge.backend`` → a judge class satisfying :class:`easyr1.reward.judge.protocol.Judge`."""

JUDGE_BACKENDS.register("openai", JudgeBackendFacts(remote=True), "easyr1.reward.judge.openai_judge:OpenAIJudge")
JUDGE_BACKENDS.register("sandbox", JudgeBackendFacts(remote=False), "easyr1.sandbox.judge:SandboxJudge")

# --------------------------------------------------------------------------------------- reward combination strategies


@dataclass(frozen=True)
class StrategyFacts:
    """What the config knows about a reward combination strategy."""

    uses_weights: bool
    """Reads the six ``worker.reward.weights`` (otherwise its own settings, e.g. ``max_deviation_*_weight``)."""


STRATEGIES: Registry[StrategyFacts] = Registry("reward combination strategy", "worker.reward.strategy")
"""``worker.reward.strategy`` → ``fn(judge (B,5), formats (B,), settings: StrategySettings) -> reward (B,)`` in
:mod:`easyr1.reward.combination` (formulas in its module docstring)."""

STRATEGIES.register("weighted_sum", StrategyFacts(uses_weights=True), "easyr1.reward.combination:weighted_sum")
STRATEGIES.register("gated", StrategyFacts(uses_weights=True), "easyr1.reward.combination:gated")
STRATEGIES.register("multiplicative", StrategyFacts(uses_weights=True), "easyr1.reward.combination:multiplicative")
STRATEGIES.register("max_deviation", StrategyFacts(uses_weights=False), "easyr1.reward.combination:max_deviation")

# ----------------------------------------------------------------------------------------------- policy families


@dataclass(frozen=True)
class PolicyFamilyFacts:
    """What the config, the loader and the memory planner know about a policy model family (a ``model_type``)."""

    model_class: str
    """The transformers ``…ForConditionalGeneration`` class of the family."""
    tiny: bool
    """``easyr1 make-tiny --family`` and ``easyr1 demo`` can build a tiny random-weight policy of the family."""


POLICY_FAMILIES: Registry[PolicyFamilyFacts] = Registry("policy model family", "worker.actor.model.model_family")
"""``config.json`` ``model_type`` → a :class:`easyr1.models.families.base.PolicyFamily` adapter (everything
family-specific: model class, tiny processor/config, chat template, forward inputs)."""

POLICY_FAMILIES.register(
    "qwen2_5_vl",
    PolicyFamilyFacts("Qwen2_5_VLForConditionalGeneration", tiny=True),
    "easyr1.models.families.qwen2_5_vl:QWEN2_5_VL",
)
POLICY_FAMILIES.register(
    "qwen2_vl",
    PolicyFamilyFacts("Qwen2VLForConditionalGeneration", tiny=False),
    "easyr1.models.families.qwen2_5_vl:QWEN2_VL",
)
POLICY_FAMILIES.register(
    "qwen3_vl",
    PolicyFamilyFacts("Qwen3VLForConditionalGeneration", tiny=True),
    "easyr1.models.families.qwen3_vl:QWEN3_VL",
)
POLICY_FAMILIES.register(
    "qwen3_vl_moe",
    PolicyFamilyFacts("Qwen3VLMoeForConditionalGeneration", tiny=False),
    "easyr1.models.families.qwen3_vl:QWEN3_VL_MOE",
)
