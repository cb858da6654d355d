"""``RolloutPool.generate_stream``: one shard per engine as each finishes; ordered by prompt and sample index, the
shards are exactly ``generate``'s outputs for the same seed (tokens, text, log-probs)."""

from __future__ import annotations

import pytest

from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompts
from easyr1.rollout.protocol import Rollout

pytestmark = pytest.mark.slow

SAMPLING = SamplingParams(n=2, max_tokens=8, seed=3)


@pytest.fixture(scope="module")
def rollout(ray_session, make_config):
    from easyr1.rollout.pool import RolloutPool

    cfg = make_config(num_workers=1, n=2)
    cfg.worker.rollout.num_engines = 2
    pool = RolloutPool(cfg)
    yield pool
    pool.shutdown()


def key(out):
    return (out.prompt_id, out.sample_index, list(out.token_ids), out.text, out.logprobs, out.finish_reason)


def test_stream_shards_concatenate_to_generate(rollout) -> None:
    assert isinstance(rollout, Rollout)
    prompts = probe_prompts(3)
    whole = rollout.generate(prompts, SAMPLING)
    shards = list(rollout.generate_stream(prompts, SAMPLING))
    assert len(shards) == 2  # one per engine
    assert sorted(len(s) for s in shards) == [2, 4]  # 3 prompts split 1 + 2, two samples each
    for shard in shards:  # each shard is one engine's contiguous prompt range
        assert len({o.extra["engine"] for o in shard}) == 1
    position = {p.id: i for i, p in enumerate(prompts)}
    merged = sorted((o for s in shards for o in s), key=lambda o: (position[o.prompt_id], o.sample_index))
    assert [key(o) for o in merged] == [key(o) for o in whole]
    assert list(rollout.generate_stream([], SAMPLING)) == []


def test_closing_the_stream_early_leaves_the_pool_usable(rollout) -> None:
    prompts = probe_prompts(2)
    stream = rollout.generate_stream(prompts, SAMPLING)
    first = next(stream)
    stream.close()  # stop waiting for the other engine
    assert first
    again = rollout.generate(prompts, SAMPLING)
    assert [(o.prompt_id, o.sample_index) for o in again] == [(p.id, k) for p in prompts for k in range(2)]
