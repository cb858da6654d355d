"""The sandbox world's output (seed format plus extra columns) reads cleanly, extras kept as metadata."""

from __future__ import annotations

from easyr1.cli import main
from easyr1.data import build_dataloader, build_dataset, build_policy_prompt, prompt_token_count


def test_make_sandbox_data_output_is_read(tmp_path, helpers, capsys, qwen_processor):
    out = tmp_path / "sandbox"
    assert main(["make-sandbox-data", "--out", str(out), "--rows", "10", "--rows-per-file", "4"]) == 0
    capsys.readouterr()
    assert main(["check-data", str(out)]) == 0
    assert "10 rows stored, 10 read" in " ".join(capsys.readouterr().out.split())

    cfg = helpers.data_config(out, shuffle=False, min_pixels=3136, max_pixels=12544, rollout_batch_size=4)
    samples = [s for _, s in build_dataset(cfg, "train").iter_epoch(0)]
    assert len(samples) == 10
    first = samples[0]
    assert {"scene_json", "defects", "demonstration", "width", "height"} <= set(first.metadata)
    assert isinstance(first.metadata["defects"], list) and first.metadata["demonstration"]
    assert first.instruction == first.instruction_detailed and first.instruction_short
    assert first.source_image.size == first.source_original_size == (64, 64)

    prompt = build_policy_prompt(first)
    assert prompt_token_count(qwen_processor, prompt) > 8  # two 64×64 images are 4 tokens each
    loader = build_dataloader(cfg, processor=qwen_processor)
    assert sum(len(b) for b in loader) == 8 and loader.stats.overlong_prompts == 0
