"""SFT on a handful of demonstrations makes the tiny policy emit the demonstrated tag format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from easyr1.actor.batch import PolicyBatch, encode_responses
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.slow

DEMONSTRATIONS = [
    "<CoT>The ball floats above the grass.</CoT>\n<Re_edit>Place the ball on the ground.</Re_edit>",
    "<CoT>The shadow falls on the wrong side of the tree.</CoT>\n<Re_edit>Flip the shadow of the tree to the left.</Re_edit>",
    "<CoT>The sky is dark but the ground is lit.</CoT>\n<Re_edit>Make the sky blue.</Re_edit>",
]
TAGS = re.compile(r"^<CoT>.+</CoT>\n<Re_edit>.+</Re_edit>$", re.DOTALL)


def test_sft_teaches_the_tag_format(ray_session, make_config, tmp_path: Path) -> None:
    from easyr1.actor.pool import ActorPool
    from easyr1.config.actor import OptimConfig
    from easyr1.models.generation import generate_sequences
    from easyr1.models.inputs import encode_prompts
    from easyr1.models.loading import load_policy, load_processor

    cfg = make_config(num_workers=1)
    prompts = probe_prompts(3)
    tokenizer = load_processor(cfg.worker.actor.model.model_path).tokenizer
    batch = PolicyBatch(prompts, encode_responses(tokenizer, DEMONSTRATIONS))

    def greedy_texts(folder: Path) -> list[str]:
        policy = load_policy(folder)
        gens = generate_sequences(
            policy.model,
            policy.processor.tokenizer,
            encode_prompts(policy.processor, prompts),
            max_new_tokens=48,
            temperature=0.0,
        )
        return [policy.processor.tokenizer.decode(g.token_ids, skip_special_tokens=True) for g in gens]

    assert not any(TAGS.match(t) for t in greedy_texts(Path(cfg.worker.actor.model.model_path)))
    pool = ActorPool(cfg, optim=OptimConfig(lr=1e-2, weight_decay=0.0), with_reference=False)
    try:
        first = pool.sft_step(batch)
        for _ in range(70):
            last = pool.sft_step(batch)
            if last["sft/loss"] < 0.02:
                break
        assert last["sft/loss"] < first["sft/loss"] / 10
        pool.export_hf(str(tmp_path / "sft"))
    finally:
        pool.shutdown()
    texts = greedy_texts(tmp_path / "sft")
    assert all(TAGS.match(t) for t in texts), texts
    assert texts == DEMONSTRATIONS
