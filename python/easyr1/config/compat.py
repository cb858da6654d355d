"""Migration from the reference implementation (the EasyR1 fork this project replaces).

* ``compat: reference`` (one root key) makes the reference's *behaviour* the base layer of the config:
  :data:`PROFILES` holds the settings; keys of the file and the command line still override them. The reference's
  documented defects are not reproduced (a failed judge call scored 5.0, strategies that silently ran the weighted
  sum, white placeholder images for undecodable rows): failures stay masked and counted.
* Without it, a file that uses reference keys (``worker.reward.gpt41_*``, ``data.parquet_pattern``, …) gets one
  summary (a warning) of every behaviour that differs from what the reference did with that file.
* :func:`reference_key_table` classifies every key of the reference's config and launch scripts (what
  docs/migration.md tabulates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .aliases import ALIASES, SECRET_ALIASES
from .base import join
from .docs import iter_sections
from .root import EasyR1Config

logger = logging.getLogger(__name__)

REFERENCE_FALLBACK_INSTRUCTION = "Improve the image quality and consistency"
"""What the reference's editor ran when no ``<Re_edit>`` parsed."""

REFERENCE_ENGINE = "vllm"
"""The rollout engine the reference ran (a name of ``easyr1.core.registries.ENGINES``)."""

REFERENCE_LONG_SIDE = 1024
"""The reference's dataset shrank every policy image wider or taller than this to fit a square of this side."""

PROFILES: dict[str, dict[str, Any]] = {
    "reference": {
        "worker.rollout.name": REFERENCE_ENGINE,
        "worker.reward.format_mode": "seed",
        "worker.reward.missing_re_edit": "fallback_instruction",
        "worker.reward.fallback_instruction": REFERENCE_FALLBACK_INSTRUCTION,
        "judge.mode": "per_dimension",
        "judge.max_tokens": 100,
        "judge.image_max_side": 512,
        "judge.jpeg_quality": 60,
        "judge.image_detail": "low",
        "judge.judge_preliminary": False,
        "judge.use_logprobs": False,
        "judge.request_style": "reference",
        "judge.neutral_score": 2.0,
        "worker.image_edit.negative_prompt": "",
        "data.prompt_layout": "reference",
        "data.max_long_side": REFERENCE_LONG_SIDE,
    }
}
"""``compat`` value → settings (our keys) that reproduce the reference's behaviour."""


@dataclass(frozen=True)
class Behaviour:
    """One thing the reference did, and how to tell whether a config does the same."""

    what: str
    """The behaviour, in words."""
    reference: str
    """What the reference did."""
    same: Callable[[EasyR1Config], bool]
    """True when the config reproduces it."""
    ours: Callable[[EasyR1Config], str]
    """What this config does instead."""
    how: str
    """The key(s) that reproduce it (``compat: reference`` sets them all)."""


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "rollout engine",
        "vLLM (the file's tensor_parallel_size, gpu_memory_utilization)",
        lambda c: c.worker.rollout.name == REFERENCE_ENGINE,
        lambda c: f"{c.worker.rollout.name} engine",
        "worker.rollout.name=vllm",
    ),
    Behaviour(
        "format rule",
        "the seed arithmetic (tags counted, lengths averaged)",
        lambda c: c.worker.reward.format_mode == "seed",
        lambda c: f"format_mode={c.worker.reward.format_mode} (closes known format hacks)",
        "worker.reward.format_mode=seed",
    ),
    Behaviour(
        "response without <Re_edit>",
        f"edited with the fallback instruction {REFERENCE_FALLBACK_INSTRUCTION!r}",
        lambda c: c.worker.reward.missing_re_edit == "fallback_instruction",
        lambda c: f"missing_re_edit={c.worker.reward.missing_re_edit}",
        "worker.reward.missing_re_edit=fallback_instruction",
    ),
    Behaviour(
        "judge calls",
        "one call per dimension (five per sample), each answering one number",
        lambda c: c.judge.mode == "per_dimension",
        lambda c: f"judge.mode={c.judge.mode}",
        "judge.mode=per_dimension",
    ),
    Behaviour(
        "judge image encoding",
        "JPEG quality 60, long side at most 512, detail low",
        lambda c: (c.judge.jpeg_quality, c.judge.image_max_side, c.judge.image_detail) == (60, 512, "low"),
        lambda c: (
            f"JPEG quality {c.judge.jpeg_quality}, long side {c.judge.image_max_side}, detail {c.judge.image_detail}"
        ),
        "judge.jpeg_quality=60 judge.image_max_side=512 judge.image_detail=low",
    ),
    Behaviour(
        "judge request",
        "one user message: the rubric, 'Image editing task: <task>', the instruction, then the two "
        "images unlabelled; no system message",
        lambda c: c.judge.request_style == "reference",
        lambda c: "the rubric as a system message, labelled images, no task description",
        "judge.request_style=reference",
    ),
    Behaviour(
        "judge rubric anchor",
        "the rubrics told the judge to start from and stay at 2.0 (neutral)",
        lambda c: c.judge.neutral_score == 2.0,
        lambda c: f"neutral at {c.judge.neutral_score:g} (what max_deviation measures from)",
        "judge.neutral_score=2.0",
    ),
    Behaviour(
        "judge task description",
        "every request carried the row's task ('Image editing task: add')",
        lambda c: c.judge.request_style == "reference",
        lambda c: "no task description (only request_style=reference sends the row's task)",
        "judge.request_style=reference",
    ),
    Behaviour(
        "policy image sizing",
        f"shrunk to a {REFERENCE_LONG_SIDE}-pixel long side (never enlarged) when read, then its pixel count "
        "brought into [data.min_pixels, data.max_pixels]",
        lambda c: c.data.max_long_side == REFERENCE_LONG_SIDE,
        lambda c: (
            f"long side capped at {c.data.max_long_side}, then pixel count brought into "
            f"[{c.data.min_pixels}, {c.data.max_pixels}]"
            if c.data.max_long_side is not None
            else f"pixel count brought into [{c.data.min_pixels}, {c.data.max_pixels}], no long-side cap "
            "(a 1500×1000 image stays 1500×1000)"
        ),
        f"data.max_long_side={REFERENCE_LONG_SIDE}",
    ),
    Behaviour(
        "policy prompt layout",
        "'System: … User: …' as text inside one user turn, images after the text",
        lambda c: c.data.prompt_layout == "reference",
        lambda c: "a system turn, then a user turn with the instruction and the images",
        "data.prompt_layout=reference",
    ),
    Behaviour(
        "editor guidance",
        "no negative prompt passed, so the pipeline ran without true CFG (true_cfg_scale and "
        "guidance_scale had no effect)",
        lambda c: c.worker.image_edit.true_cfg_scale == 1.0,
        lambda c: (
            f"true CFG at scale {c.worker.image_edit.true_cfg_scale} with negative prompt "
            f"{c.worker.image_edit.negative_prompt!r} (twice the transformer passes per step)"
        ),
        "worker.image_edit.negative_prompt=''",
    ),
    Behaviour(
        "online filtering",
        "kept a group when filter_low < its mean score < filter_high, nothing else",
        lambda c: not c.algorithm.online_filtering,
        lambda c: (
            f"also drops groups whose score std is <= {c.algorithm.filter_std_threshold:g} or that have "
            "fewer than 2 valid samples"
        ),
        "algorithm.filter_std_threshold=0 comes closest (groups with identical scores are still dropped)",
    ),
    Behaviour(
        "editor seed",
        "torch.manual_seed(0) for every edit",
        lambda c: False,
        lambda c: f"seed_mode={c.worker.image_edit.seed_mode} (seeds from sample id and re-edit index)",
        "not reproduced on purpose: one seed for every edit correlates all samples of a group",
    ),
)
"""What the reference did with its config file, compared by :func:`differences`."""


def selected_profile(layers: Iterable[tuple[str, Mapping[str, Any]]]) -> str | None:
    """The ``compat`` value of the last source that sets it (file, then command line)."""
    chosen = None
    for _source, flat in layers:
        if "compat" in flat:
            chosen = flat["compat"]
    return chosen if chosen in PROFILES else None


def is_reference_style(flats: Iterable[Mapping[str, Any]]) -> bool:
    """True when any source uses a key that only the reference spells that way."""
    return any(key in ALIASES or key in SECRET_ALIASES for flat in flats for key in flat)


def differences(cfg: EasyR1Config) -> list[str]:
    """One line per behaviour of the reference that ``cfg`` does not reproduce."""
    return [f"{b.what}: reference {b.reference}; here {b.ours(cfg)} [{b.how}]" for b in BEHAVIOURS if not b.same(cfg)]


def report_differences(cfg: EasyR1Config, flats: list[Mapping[str, Any]]) -> list[str]:
    """Log one summary of the behaviour differences when the sources look like a reference config (or, under a
    ``compat`` profile, of what the profile cannot reproduce)."""
    if cfg.compat is not None:
        lines = differences(cfg)
        if lines:
            logger.warning(
                "compat: %s still differs from the reference in %d way(s):\n%s",
                cfg.compat,
                len(lines),
                "\n".join(f"  - {line}" for line in lines),
            )
        return lines
    if not is_reference_style(flats):
        return []
    lines = differences(cfg)
    if lines:
        logger.warning(
            "this config uses the reference implementation's keys but runs differently from the reference in "
            "%d way(s) (add 'compat: reference' to reproduce what can be reproduced):\n%s",
            len(lines),
            "\n".join(f"  - {line}" for line in lines),
        )
    return lines


# --- the key table of docs/migration.md ---------------------------------------------------------------------


SAME_KEY_NOTES: dict[str, str] = {
    "worker.rollout.limit_images": "0 (no explicit limit) resolves to 2, the images one prompt carries",
    "worker.rollout.max_model_len": "below prompt + response it caps the sequence (vLLM), with a warning",
    "worker.image_edit.negative_prompt": "'' (no negative prompt) turns true CFG off, as the reference's pipeline ran",
    "worker.image_edit.true_cfg_scale": "1.0 when negative_prompt is '' (the reference's pipeline never ran true CFG)",
    "data.min_pixels": "pixel-count bounds as in the reference, applied after data.max_long_side (1024 under compat)",
    "data.max_pixels": "pixel-count bounds as in the reference, applied after data.max_long_side (1024 under compat)",
    "worker.rollout.name": "not a reference key: the reference always ran vLLM (compat: reference sets it)",
}
"""Same-named keys whose value needs a word (the table of docs/migration.md prints it)."""


def _our_keys() -> set[str]:
    return {join(path, f.name) for path, cls in iter_sections() for f in fields(cls)}


def classify(key: str) -> tuple[str, str]:
    """``(status, what it became)`` of one reference key: status is honoured, not applicable or rejected."""
    if key in SECRET_ALIASES:
        return "honoured", "moved to $OPENAI_API_KEY for the process (never kept in the config)"
    alias = ALIASES.get(key)
    if alias is not None:
        if alias.target is None:
            return "not applicable", alias.note
        return "honoured", alias.target + (f" ({alias.note})" if alias.note else "")
    ours = _our_keys()
    if key in ours or key.rpartition(".")[0] in ours:  # dict-valued fields take sub-keys
        return "honoured", "same key" + (f"; {SAME_KEY_NOTES[key]}" if key in SAME_KEY_NOTES else "")
    return "rejected", "unknown key"


def reference_key_table(keys: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(key, status, what it became)`` for each key, in order."""
    return [(key, *classify(key)) for key in keys]
