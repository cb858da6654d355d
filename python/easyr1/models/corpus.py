"""The built-in text the tiny policy's tokenizer is trained on, and the Qwen2-VL family chat template.

The corpus is generated from fixed word lists (no randomness), so the trained tokenizer depends only on this file.
It covers the re-edit prompt contract (the system prompt's reasoning categories), the tag format
(``<CoT>…</CoT>`` / ``<Re_edit>…</Re_edit>``), the sandbox world's scene words and the imperative re-edit verbs,
so that typical prompts and responses tokenize into few tokens. Anything else still tokenizes (byte-level BPE).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

# Qwen2 / Qwen2.5-VL special tokens, in the order the real tokenizer assigns them ids.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2-VL / Qwen2.5-VL chat template (system default, image/video placeholders, generation prompt).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The Qwen3-VL instruct chat template's message part (no default system prompt; the same vision placeholders).
QWEN3_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_PROMPT_TEXT = """\
You are an expert image editing critic. You are given a source image, an edit instruction and a preliminary edited
image. Think step by step about what is inconsistent in the preliminary edit: visual realism (geometry, lighting,
shadows, physics, reflections, perspective, scale); contextual consistency (scene logic, attribute coherence);
environmental consistency (a sunny sky but wet ground, snow in summer, rain without clouds); cultural and traditional
consistency (customs, symbols, clothing, text). Then write executable re-edit instructions derived from your reasoning.
Output format, strict: only tag blocks, each on its own line: one or more <CoT>...</CoT> blocks, then one or more
<Re_edit>...</Re_edit> blocks. Use the imperative voice. Write nothing else.
<desired_editing_instruction>Add a red ball on the grass.</desired_editing_instruction>
The first image is the source image. The second image is the preliminary edited image.
"""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_OBJECTS = _words(
    "ball box cone tree candle lantern pumpkin wreath banner decoration house car cat dog lamp cup chair table sun "
    "moon cloud person bird boat flag sign window door road river mountain flower bench umbrella hat shadow "
    "reflection puddle pond object"
)
_COLORS = _words("red green blue yellow white black orange purple gray brown pink")
_PLACES = _words("left right top bottom center above below behind front ground sky")
_SETTINGS = _words("park garden yard meadow street beach kitchen room")
_WEATHER = _words("clear sunny rainy snowy cloudy dark bright night day winter summer autumn")
_FESTIVALS = ("Halloween", "Christmas", "the lunar new year")
_DEFECTS = (
    "the shadow falls on the wrong side of the {o}",
    "the shadows still fall {p}, toward the sun",
    "the {o} is floating above the ground",
    "the new {o} floats in the air",
    "the {o} hovers above the ground",
    "the ground is wet under a clear sky",
    "it rains but the ground is dry",
    "it snows but the tree is green",
    "the sun shines at night",
    "the candle burns under water",
    "a flame cannot burn under water",
    "the decoration does not fit {f}",
    "the wrong object was edited: the {o} changed instead",
    "the edit hit the {o}, not the box",
    "the {o} has the wrong color",
    "the reflection of the {o} is missing in the water",
    "the {o} is too large for the scene",
    "the light comes from the {p} but the {o} is lit from the other side",
    "snow lies on the ground in a summer scene",
)
_VERBS = (
    "move the {c} {o} to the {p}",
    "shift the {o} {p}",
    "move the {o} back to the {p}",
    "remove the {o}",
    "delete the {o}",
    "take the {o} away",
    "recolor the {o} {c}",
    "paint the {o} {c}",
    "make the {o} {c} again",
    "make the ground dry",
    "dry the ground",
    "wet the ground",
    "add puddles to the ground",
    "remove the puddles",
    "cover the tree in snow",
    "make the tree snowy",
    "lower the {o} to the ground",
    "drop the {o} onto the ground",
    "set the {o} down on the ground",
    "place the {o} on the ground",
    "cast the shadows to the {p}",
    "put the shadows on the {p}",
    "flip the shadow of the {o} to the {p}",
    "relight the scene from the {p}",
    "replace the sun with the moon",
    "take the sun out of the sky",
    "blow out the candle",
    "put out the candle",
    "extinguish the candle",
    "snuff out the candle",
    "replace the decoration with a {o}",
    "swap the decoration for a {o}",
    "add a {c} {o} at the {p}",
    "restore the original {o}",
    "bring back the {o}",
    "put the {o} back",
    "make the sky {w}",
)


def corpus_lines() -> Iterator[str]:
    """Yield the training text of the tiny tokenizer (deterministic)."""
    from easyr1.data.prompts import SYSTEM_PROMPT  # the policy's real system prompt: keep prompts short

    for _ in range(8):
        yield SYSTEM_PROMPT
        yield _PROMPT_TEXT
    for i, (o, c, p) in enumerate(product(_OBJECTS, _COLORS, _PLACES)):
        w, f, s = _WEATHER[i % len(_WEATHER)], _FESTIVALS[i % len(_FESTIVALS)], _SETTINGS[i % len(_SETTINGS)]
        d = _DEFECTS[i % len(_DEFECTS)].format(o=o, p=p, f=f)
        v = _VERBS[(i * 7) % len(_VERBS)].format(o=o, c=c, p=p, w=w)
        v2 = _VERBS[(i * 11 + 3) % len(_VERBS)].format(o=o, c=c, p=p, w=w)
        yield f"<CoT>{d.capitalize()}.</CoT>\n<Re_edit>{v.capitalize()}</Re_edit>\n<Re_edit>{v2.capitalize()}</Re_edit>\n"
        yield f"A {s} on a {w} day with a {c} {o}, a tree and a pond. {v.capitalize()}."
        yield f"In a {s} on a {w} day there is a {c} {o}. {v2.capitalize()} and {v}."
    for defect in _DEFECTS:
        for o in _OBJECTS:
            yield f"<CoT>In the preliminary edit {defect.format(o=o, p='left', f='Christmas')}.</CoT>"
    for verb in _VERBS:
        for o, c in product(_OBJECTS, _COLORS):
            yield f"<Re_edit>{verb.format(o=o, c=c, p='right', w='clear').capitalize()}</Re_edit>"
    yield '{"Re_Edit": "Move the ball to the left."}\nRe_Edit: Remove the shadow.'
    yield "0 1 2 3 4 5 6 7 8 9 10 ; , . : ! ? ( ) [ ] { } - _ / \\ ' \" < > = + * # @ & % $"
