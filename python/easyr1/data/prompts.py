"""Policy prompts: the system prompt (the re-edit contract), the user turn, and the prompt-length filter.

The user turn holds the instruction inside ``<desired_editing_instruction>…</desired_editing_instruction>`` and
then two image entries, the source image and the preliminary edit, in the multimodal chat-message format of
transformers (``{"type": "text", "text": ...}`` / ``{"type": "image"}``); ``PolicyPrompt.images`` carries the two
images in the same order.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from easyr1.core.types import EditSample, PolicyPrompt

logger = logging.getLogger(__name__)

INSTRUCTION_OPEN = "<desired_editing_instruction>"
INSTRUCTION_CLOSE = "</desired_editing_instruction>"

SYSTEM_PROMPT = """\
You check and repair image edits. You receive an editing instruction and two images: first the source image, \
then a preliminary edit that an image editor made from the source image by following the instruction.

Reason step by step about where the preliminary edit is inconsistent:
(a) visual realism: geometry and perspective, lighting and shadows, physics, reflections;
(b) contextual consistency: whether the scene still makes sense and the attributes of the edited objects agree \
with each other and with their surroundings;
(c) environmental consistency: weather, season and time of day agree across the whole image (a sunny sky above \
wet ground does not);
(d) cultural and traditional consistency: customs, symbols, clothing and writing fit the setting.

Then write re-edit instructions that follow from your reasoning and that an image editor can carry out on the \
preliminary edit to repair it.

Answer with tag blocks only, each block on its own line:
<CoT>one step of your reasoning</CoT> (one or more blocks)
<Re_edit>one instruction in the imperative voice</Re_edit> (one or more blocks, after all <CoT> blocks)
Keep each re-edit instruction short and concrete. Write nothing outside the blocks."""


PROMPT_LAYOUTS = ("chat", "reference")
"""``chat``: a system turn, then a user turn with the instruction and the two images. ``reference``: the reference
implementation's layout, one user turn whose text is ``System: <system prompt>\n\nUser: <instruction turn>`` with
the images after the text (the chat template then adds its own default system turn)."""

REFERENCE_USER_SUFFIX = "\nReturn reasoning and one re-editing instruction as specified."
"""The sentence the reference's user text ended with (``reference`` layout only)."""


def build_messages(instruction: str, system_prompt: str | None = None, layout: str = "chat") -> list[dict[str, Any]]:
    """Chat messages: the system prompt, then a user turn with the instruction and two image placeholders; or, with
    ``layout="reference"``, both as text in one user turn followed by the two image placeholders."""
    if layout == "reference":
        text = (
            f"System: {system_prompt or SYSTEM_PROMPT}\n\n"
            f"User: {INSTRUCTION_OPEN}{instruction}{INSTRUCTION_CLOSE}{REFERENCE_USER_SUFFIX}"
        )
        return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image"}, {"type": "image"}]}]
    if layout != "chat":
        raise ValueError(f"unknown prompt layout {layout!r}; expected one of {PROMPT_LAYOUTS}")
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt or SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"{INSTRUCTION_OPEN}{instruction}{INSTRUCTION_CLOSE}"},
                {"type": "image"},
                {"type": "image"},
            ],
        },
    ]


def build_policy_prompt(sample: EditSample, system_prompt: str | None = None, layout: str = "chat") -> PolicyPrompt:
    """The prompt the policy sees for ``sample``; ``system_prompt`` replaces the built-in contract when given;
    ``layout`` is one of :data:`PROMPT_LAYOUTS`."""
    return PolicyPrompt(
        id=sample.id,
        messages=build_messages(sample.instruction, system_prompt, layout),
        images=[sample.source_image, sample.edited_image],
    )


def prompt_token_count(processor: Any, prompt: PolicyPrompt) -> int:
    """Tokens of the rendered prompt, image tokens included, as the policy's processor counts them."""
    text = processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=list(prompt.images))
    return len(inputs["input_ids"][0])


class PromptLengthFilter:
    """Keeps samples whose prompt has at most ``max_length`` tokens (``data.filter_overlong_prompts``).

    Lengths are cached per row (origin, instruction, image sizes), so later epochs do not run the processor again. The processor is called
    under a lock: tokenizers are not safe to call from several decoding threads at once.
    """

    def __init__(self, processor: Any, max_length: int, system_prompt: str | None = None, layout: str = "chat"):
        self.processor = processor
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.layout = layout
        self._lengths: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def length(self, sample: EditSample) -> int:
        # The token count depends only on the text and the image sizes; the origin keeps rows apart.
        key = (sample.origin or sample.id, sample.instruction, sample.source_image.size, sample.edited_image.size)
        cached = self._lengths.get(key)
        if cached is not None:
            return cached
        prompt = build_policy_prompt(sample, self.system_prompt, self.layout)
        with self._lock:
            length = prompt_token_count(self.processor, prompt)
        self._lengths[key] = length
        return length

    def keeps(self, sample: EditSample) -> bool:
        return self.length(sample) <= self.max_length
