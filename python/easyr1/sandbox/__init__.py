"""The sandbox world: a small, honest simulation of the post-edit task for the embedded default.

Scenes with a known, injected inconsistency (:mod:`.defects`), rendered with Pillow (:mod:`.render`); a procedural
editor that executes a small re-edit grammar (:mod:`.grammar`, :mod:`.ops`, :class:`SandboxEditor`); a procedural
judge that scores the five dimensions from the scene's true state (:mod:`.rules`, :class:`SandboxJudge`); a data
generator writing the seed parquet format with demonstrations (:mod:`.generator`). It is a simulation for offline
runs and tests, documented in ``docs/sandbox.md`` — not the production path.
"""

from .answers import (
    RewardSummary,
    SandboxScore,
    score_answer,
    score_preliminary,
    score_re_edit,
    summarize_rewards,
)
from .defects import CATALOGUE, DefectSpec
from .editor import SCENE_KEY, SandboxEditor
from .generator import (
    EXTRA_COLUMNS,
    SCHEMA,
    SEED_COLUMNS,
    SandboxRow,
    corpus_texts,
    generate_row,
    iter_rows,
    write_sandbox_dataset,
    write_sandbox_splits,
)
from .grammar import Op, parse_instruction
from .judge import SandboxJudge
from .render import render_scene
from .scene import Clause, Scene, SceneDoc, SceneObject

__all__ = [
    "CATALOGUE",
    "EXTRA_COLUMNS",
    "SCENE_KEY",
    "SCHEMA",
    "SEED_COLUMNS",
    "Clause",
    "DefectSpec",
    "Op",
    "RewardSummary",
    "SandboxEditor",
    "SandboxJudge",
    "SandboxRow",
    "SandboxScore",
    "Scene",
    "SceneDoc",
    "SceneObject",
    "corpus_texts",
    "generate_row",
    "iter_rows",
    "parse_instruction",
    "render_scene",
    "score_answer",
    "score_preliminary",
    "score_re_edit",
    "summarize_rewards",
    "write_sandbox_dataset",
    "write_sandbox_splits",
]
