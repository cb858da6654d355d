"""The multimodal judge: scores the five consistency dimensions of edited images.

``build_judge(cfg.judge)`` returns the configured backend behind the :class:`Judge` protocol, a name of
:data:`easyr1.core.registries.JUDGE_BACKENDS`:

* ``openai`` — :class:`OpenAIJudge`, any OpenAI-compatible endpoint (GPT-4o, a vLLM-served model);
* ``sandbox`` — the procedural judge of the sandbox world (``easyr1.sandbox.judge.SandboxJudge``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from easyr1.core.registries import JUDGE_BACKENDS

from .protocol import DIMENSIONS, FAILURE_REASONS, Judge, JudgeRequest, JudgeResult
from .stats import JudgeStats, JudgeStatsRecorder

if TYPE_CHECKING:
    from easyr1.config import JudgeConfig

    from .openai_judge import OpenAIJudge

__all__ = [
    "DIMENSIONS",
    "FAILURE_REASONS",
    "Judge",
    "JudgeRequest",
    "JudgeResult",
    "JudgeStats",
    "JudgeStatsRecorder",
    "OpenAIJudge",
    "build_judge",
]


def build_judge(judge_cfg: JudgeConfig) -> Judge:
    """The judge named by ``judge_cfg.backend``.

    ``openai`` needs an API key (``judge.api_key_file`` or the variable named by ``judge.api_key_env``); a missing
    key raises :class:`~easyr1.reward.judge.credentials.JudgeCredentialError` here, before any training starts.
    """
    cls = JUDGE_BACKENDS.load(judge_cfg.backend)  # an unknown name raises ValueError naming judge.backend
    if JUDGE_BACKENDS.facts(judge_cfg.backend).remote:
        return cls(judge_cfg)
    from_config = getattr(cls, "from_config", None)
    return from_config(judge_cfg) if from_config is not None else cls()


def __getattr__(name: str):  # lazy: importing the protocol must not import the openai SDK
    if name == "OpenAIJudge":
        from .openai_judge import OpenAIJudge

        return OpenAIJudge
    raise AttributeError(name)
