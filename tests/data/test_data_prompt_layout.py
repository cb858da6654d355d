"""The reference implementation's policy prompt layout: ``System: … User: …`` as text in one user turn, the two
images after the text, rendered by the real Qwen2-VL chat template."""

from __future__ import annotations

import pytest

from easyr1.data import EditSample, build_policy_prompt
from easyr1.data.prompts import INSTRUCTION_CLOSE, INSTRUCTION_OPEN, SYSTEM_PROMPT, PromptLengthFilter, build_messages


def sample(helpers) -> EditSample:
    return EditSample(
        id="s1",
        task="add",
        instruction="make the sky blue",
        source_image=helpers.make_image(1, (56, 56)),
        edited_image=helpers.make_image(2, (56, 56)),
        origin="f:0",
    )


def test_reference_layout_is_one_user_turn(helpers):
    prompt = build_policy_prompt(sample(helpers), layout="reference")
    (turn,) = prompt.messages
    assert turn["role"] == "user"
    assert [p["type"] for p in turn["content"]] == ["text", "image", "image"]
    assert turn["content"][0]["text"] == (
        f"System: {SYSTEM_PROMPT}\n\nUser: {INSTRUCTION_OPEN}make the sky blue{INSTRUCTION_CLOSE}\n"
        "Return reasoning and one re-editing instruction as specified."
    )
    override = build_policy_prompt(sample(helpers), system_prompt="Be brief.", layout="reference")
    assert override.messages[0]["content"][0]["text"].startswith("System: Be brief.\n\nUser: ")


def test_rendered_reference_layout(helpers, qwen_processor):
    prompt = build_policy_prompt(sample(helpers), layout="reference")
    text = qwen_processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    # the template adds its default system turn; the contract sits inside the user turn, images after the text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nSystem: ")
    assert "as specified.<|vision_start|><|image_pad|><|vision_end|><|vision_start|>" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    chat = qwen_processor.apply_chat_template(
        build_policy_prompt(sample(helpers)).messages, tokenize=False, add_generation_prompt=True
    )
    assert chat != text and "You are a helpful assistant." not in chat


def test_length_filter_counts_the_layout_it_is_given(helpers, qwen_processor):
    row = sample(helpers)
    chat = PromptLengthFilter(qwen_processor, 10**6).length(row)
    reference = PromptLengthFilter(qwen_processor, 10**6, layout="reference").length(row)
    assert reference > chat  # the default system turn and the "System:/User:" text add tokens


def test_unknown_layout():
    with pytest.raises(ValueError, match="unknown prompt layout"):
        build_messages("x", layout="verl")
