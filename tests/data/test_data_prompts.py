"""Policy prompts: the contract's system prompt, the instruction, exactly two images; the prompt-length filter."""

from __future__ import annotations

from dataclasses import replace

from easyr1.core.types import PolicyPrompt
from easyr1.data import (
    INSTRUCTION_CLOSE,
    INSTRUCTION_OPEN,
    SYSTEM_PROMPT,
    EditSample,
    PromptLengthFilter,
    build_dataloader,
    build_policy_prompt,
    prompt_token_count,
)


def _sample(helpers, instruction="make the sky blue", size=(56, 56)):
    return EditSample(
        id="s1",
        task="edit",
        instruction=instruction,
        source_image=helpers.make_image(1, size),
        edited_image=helpers.make_image(2, size),
        origin="f:0",
    )


def test_prompt_has_system_contract_instruction_and_two_images_in_order(helpers):
    sample = _sample(helpers)
    prompt = build_policy_prompt(sample)
    assert isinstance(prompt, PolicyPrompt) and prompt.id == "s1"
    system, user = prompt.messages
    assert system["role"] == "system" and system["content"][0]["text"] == SYSTEM_PROMPT
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "text", "text": f"{INSTRUCTION_OPEN}make the sky blue{INSTRUCTION_CLOSE}"}
    assert [part["type"] for part in user["content"]] == ["text", "image", "image"]
    assert prompt.images == [sample.source_image, sample.edited_image]
    for tag in ("<CoT>", "</CoT>", "<Re_edit>", "</Re_edit>"):
        assert tag in SYSTEM_PROMPT
    for topic in ("lighting", "reflections", "wet ground", "cultural", "imperative", "nothing outside"):
        assert topic in SYSTEM_PROMPT


def test_system_prompt_override(helpers):
    prompt = build_policy_prompt(_sample(helpers), system_prompt="Be brief.")
    assert prompt.messages[0]["content"][0]["text"] == "Be brief."


def test_rendered_prompt_through_the_processor(helpers, qwen_processor):
    prompt = build_policy_prompt(_sample(helpers, size=(56, 56)))
    text = qwen_processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert f"{INSTRUCTION_OPEN}make the sky blue{INSTRUCTION_CLOSE}<|vision_start|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    inputs = qwen_processor(text=[text], images=prompt.images)
    image_pad = qwen_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    grid = inputs["image_grid_thw"]
    assert inputs["input_ids"][0].count(image_pad) == int(grid.prod(dim=1).sum()) // 4 == 8
    assert prompt_token_count(qwen_processor, prompt) == len(inputs["input_ids"][0])


def test_length_filter_counts_images_and_text(helpers, qwen_processor):
    short = prompt_token_count(qwen_processor, build_policy_prompt(_sample(helpers)))
    bigger_images = prompt_token_count(qwen_processor, build_policy_prompt(_sample(helpers, size=(112, 112))))
    longer_text = prompt_token_count(qwen_processor, build_policy_prompt(_sample(helpers, "repaint " * 20)))
    assert bigger_images == short + 2 * (16 - 4)
    assert longer_text > short
    keep = PromptLengthFilter(qwen_processor, max_length=short)
    assert keep.keeps(_sample(helpers)) and not keep.keeps(_sample(helpers, "repaint " * 20))


def test_overlong_prompts_are_dropped_and_counted(tmp_path, helpers, qwen_processor):
    rows = helpers.seed_rows(6, size=(56, 56))
    for i in (1, 4):
        rows[i]["edit_prompt"] = ["short", "a very long instruction " * 30]
    helpers.write_seed_parquet(rows, tmp_path / "x.parquet")
    cfg = helpers.data_config(tmp_path, min_pixels=3136, max_pixels=12544, rollout_batch_size=2, shuffle=False)
    limit = prompt_token_count(qwen_processor, build_policy_prompt(_sample(helpers, "detailed instruction 0"))) + 5
    cfg = replace(cfg, max_prompt_length=limit)
    loader = build_dataloader(cfg, "train", processor=qwen_processor)
    ids = [s.id for batch in loader for s in batch]
    assert ids == ["row-0", "row-2", "row-3", "row-5"]
    assert loader.stats.overlong_prompts == 2
    assert loader.metrics()["data/overlong_prompts"] == 2.0
    off = build_dataloader(replace(cfg, filter_overlong_prompts=False), "train", processor=qwen_processor)
    assert len([s for batch in off for s in batch]) == 6
