"""The format-score corpus: hand-made answers with their seed-mode scores worked out by hand, and a generator of
random answers whose expected seed score is computed from how they were built (an independent re-statement of
the rules, not the implementation's regular expressions).

Default thresholds throughout: ideal 50, acceptable 100, tolerable 150.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_FILLER = "Make the shadow fall to the left side of the vase and soften its edge. "


def instr(n: int) -> str:
    """An instruction of exactly ``n`` characters with no whitespace at its ends."""
    text = (_FILLER * (n // len(_FILLER) + 1))[:n]
    if text and text[-1] == " ":
        text = text[:-1] + "x"
    assert len(text) == n
    return text


def honest(re_edit: str = "Move the tree's shadow to the right side.", cot: str = "The sun is on the left.") -> str:
    return f"<CoT>{cot}</CoT>\n<Re_edit>{re_edit}</Re_edit>"


ONE_LINE = "<CoT>a</CoT><CoT>b</CoT><CoT>c</CoT><Re_edit>d</Re_edit><Re_edit>e</Re_edit><Re_edit>f</Re_edit>"

# (name, text, expected seed score)
HAND_MADE: list[tuple[str, str, float]] = [
    ("well_formed", honest(), 5.0),
    ("length_40", honest(instr(40)), 5.0),
    ("length_50_is_ideal", honest(instr(50)), 5.0),
    ("length_51", honest(instr(51)), 4.5),
    ("length_100_is_acceptable", honest(instr(100)), 4.5),
    ("length_101", honest(instr(101)), 3.5),
    ("length_150_is_tolerable", honest(instr(150)), 3.5),
    ("length_151", honest(instr(151)), 2.5),
    ("length_400", honest(instr(400)), 2.5),
    ("very_long_block", honest(instr(5000)), 2.5),
    ("average_of_two_30_80", f"<CoT>x</CoT>\n<Re_edit>{instr(30)}</Re_edit>\n<Re_edit>{instr(80)}</Re_edit>", 4.5),
    ("average_counts_empty_block", f"<CoT>x</CoT>\n<Re_edit>{instr(120)}</Re_edit>\n<Re_edit></Re_edit>", 4.5),
    ("average_of_three_long", "<CoT>x</CoT>\n" + "\n".join(f"<Re_edit>{instr(160)}</Re_edit>" for _ in range(3)), 2.5),
    ("empty_re_edit_only", "<CoT>x</CoT>\n<Re_edit></Re_edit>", 5.0),
    ("empty_cot", "<CoT></CoT>\n<Re_edit>Fix.</Re_edit>", 5.0),
    ("both_empty", "<CoT></CoT>\n<Re_edit></Re_edit>", 5.0),
    ("whitespace_only_cot_spanning", "<CoT>\n</CoT>\n<Re_edit>b</Re_edit>", 4.0),
    ("no_cot", "<Re_edit>Fix the shadow.</Re_edit>", 0.0),
    ("no_re_edit", "<CoT>The shadow is wrong.</CoT>", 0.0),
    ("empty_string", "", 0.0),
    ("whitespace_string", "  \n\t ", 0.0),
    ("plain_text", "Move the shadow to the left.", 0.0),
    ("text_before", "Sure! " + honest(), 0.0),
    ("text_before_own_line", "Here is my answer:\n" + honest(), 0.0),
    ("text_after", honest() + "\nHope this helps.", 0.0),
    ("text_between", "<CoT>a</CoT>\nand then\n<Re_edit>b</Re_edit>", 0.0),
    ("markdown_fence", "```\n" + honest() + "\n```", 0.0),
    ("same_line_two_blocks", "<CoT>a</CoT> <Re_edit>b</Re_edit>", 3.0),
    ("same_line_tab", "<CoT>a</CoT>\t<Re_edit>b</Re_edit>", 3.0),
    ("same_line_nbsp", "<CoT>a</CoT>\u00a0<Re_edit>b</Re_edit>", 3.0),
    ("three_on_one_line", "<CoT>a</CoT><CoT>b</CoT><Re_edit>c</Re_edit>", 2.0),
    ("six_on_one_line_floor_zero", ONE_LINE, 0.0),
    ("multi_line_cot", "<CoT>line one\nline two</CoT>\n<Re_edit>Fix.</Re_edit>", 4.0),
    ("multi_line_re_edit", "<CoT>a</CoT>\n<Re_edit>Fix\nthe shadow</Re_edit>", 4.0),
    ("multi_line_both_long", f"<CoT>a\nb</CoT>\n<Re_edit>{instr(60)}\n{instr(59)}</Re_edit>", 5.0 - 1.5 - 2.0),
    ("spanning_and_same_line", "<CoT>a\nb</CoT> <Re_edit>c</Re_edit>", 3.0),
    ("outer_whitespace_stripped", "  \n\n" + honest() + "\n\n  ", 5.0),
    ("blank_lines_between", "<CoT>a</CoT>\n\n\n<Re_edit>b</Re_edit>", 5.0),
    ("indented_block", "<CoT>a</CoT>\n    <Re_edit>b</Re_edit>", 5.0),
    ("trailing_spaces_on_line", "<CoT>a</CoT>   \n   <Re_edit>b</Re_edit>", 5.0),
    ("crlf_line_endings", "<CoT>a</CoT>\r\n<Re_edit>b</Re_edit>", 5.0),
    ("re_edit_before_cot", "<Re_edit>b</Re_edit>\n<CoT>a</CoT>", 5.0),
    ("lower_case_tags", "<cot>a</cot>\n<re_edit>b</re_edit>", 0.0),
    ("upper_case_re_edit", "<CoT>a</CoT>\n<RE_EDIT>b</RE_EDIT>", 0.0),
    ("mixed_case_extra_block", "<CoT>a</CoT>\n<Re_edit>b</Re_edit>\n<re_edit>c</re_edit>", 0.0),
    ("title_case_re_edit", "<CoT>a</CoT>\n<Re_Edit>b</Re_Edit>", 0.0),
    ("attribute_on_tag", "<CoT>a</CoT>\n<Re_edit type='x'>b</Re_edit>", 0.0),
    ("json_form", '{"Re_Edit": "Fix the shadow."}', 0.0),
    ("json_with_cot", '{"CoT": "The shadow is wrong.", "Re_Edit": "Fix the shadow."}', 0.0),
    ("json_inside_re_edit", '<CoT>a</CoT>\n<Re_edit>{"Re_Edit": "x"}</Re_edit>', 5.0),
    ("colon_form", "Re_Edit: Fix the shadow.", 0.0),
    ("colon_form_with_cot_tag", "<CoT>a</CoT>\nRe_Edit: Fix the shadow.", 0.0),
    ("re_edit_nested_in_cot", "<CoT>think <Re_edit>Fix.</Re_edit></CoT>", 5.0),
    ("cot_nested_in_re_edit", "<Re_edit>do <CoT>x</CoT> it</Re_edit>", 5.0),
    ("unclosed_cot_then_closed", "<CoT>a\n<CoT>b</CoT>\n<Re_edit>c</Re_edit>", 4.0),
    ("unclosed_re_edit_at_end", "<CoT>a</CoT>\n<Re_edit>b", 0.0),
    ("unclosed_re_edit_then_closed", "<CoT>a</CoT>\n<Re_edit>b\n<Re_edit>c</Re_edit>", 4.0),
    ("stray_closing_tag", "<CoT>a</CoT></CoT>\n<Re_edit>b</Re_edit>", 0.0),
    ("closing_before_opening", "</CoT><CoT>a</CoT>\n<Re_edit>b</Re_edit>", 0.0),
    ("many_tiny_blocks", "<CoT>a</CoT>" + "\n<Re_edit>x</Re_edit>" * 20, 5.0),
    ("split_long_instruction", "<CoT>a</CoT>" + f"\n<Re_edit>{instr(50)}</Re_edit>" * 6, 5.0),
    ("padded_ends_stripped", "<CoT>a</CoT>\n<Re_edit>   Fix it.   </Re_edit>", 5.0),
    ("inner_whitespace_counts", "<CoT>a</CoT>\n<Re_edit>Fix" + " " * 60 + "it</Re_edit>", 4.5),
    ("unicode_text", "<CoT>影子方向错误</CoT>\n<Re_edit>把影子移到左边</Re_edit>", 5.0),
    ("several_cot_blocks", "<CoT>one</CoT>\n<CoT>two</CoT>\n<CoT>three</CoT>\n<Re_edit>Fix.</Re_edit>", 5.0),
    ("interleaved_blocks", "<CoT>a</CoT>\n<Re_edit>b</Re_edit>\n<CoT>c</CoT>\n<Re_edit>d</Re_edit>", 5.0),
]


# ---------------------------------------------------------------------------------------------------------------
# Generated answers

_WORDS = [
    "move",
    "the",
    "shadow",
    "left",
    "right",
    "soften",
    "edge",
    "add",
    "remove",
    "reflection",
    "light",
    "sky",
    "wet",
    "ground",
    "cup",
    "tree",
]
_SEPARATORS = ["\n", "\n\n", " ", "", "\t", "\n  ", "  \n", "\r\n", "\n\t\n"]
_OUTER = ["", " ", "\n", "  \n\t", "\n\n"]
_JUNK = ["Sure!", "Note: see above.", "Answer", "---", "1."]
_CASE_VARIANTS = {"CoT": ["cot", "COT", "Cot"], "Re_edit": ["re_edit", "RE_EDIT", "Re_Edit"]}


@dataclass
class Block:
    kind: str  # "CoT" or "Re_edit"
    tag: str  # the tag name as written (the kind's exact spelling, or a case variant)
    content: str

    @property
    def exact(self) -> bool:
        return self.tag == self.kind

    def render(self) -> str:
        return f"<{self.tag}>{self.content}</{self.tag}>"


@dataclass
class GeneratedCase:
    text: str
    expected_seed: float
    expected_instruction: str | None


def _content(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return ""
    if roll < 0.12:
        return rng.choice([" ", "\n", "  \t "])
    target = rng.choice([rng.randint(1, 60), rng.randint(40, 110), rng.randint(90, 170), rng.randint(140, 260)])
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)
    if rng.random() < 0.15:
        cut = rng.randint(1, len(text) - 1) if len(text) > 1 else 1
        text = text[:cut] + "\n" + text[cut:]
    if rng.random() < 0.2:
        text = rng.choice([" ", "  ", "\t"]) + text + rng.choice(["", " ", "\n"])
    return text


def _seed_penalty(average: float) -> float:
    if average <= 50:
        return 0.0
    if average <= 100:
        return 0.5
    if average <= 150:
        return 1.5
    return 2.5


def generate_case(rng: random.Random) -> GeneratedCase:
    blocks = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.choice(["CoT", "Re_edit"])
        tag = rng.choice(_CASE_VARIANTS[kind]) if rng.random() < 0.1 else kind
        blocks.append(Block(kind, tag, _content(rng)))
    separators = [rng.choice(_SEPARATORS) for _ in range(max(0, len(blocks) - 1))]
    junk_at = rng.randrange(len(blocks) + 1) if rng.random() < 0.15 else None

    pieces = [rng.choice(_OUTER)]
    for i, block in enumerate(blocks):
        if junk_at == i:
            pieces.append(rng.choice(_JUNK) + rng.choice(["\n", " "]))
        pieces.append(block.render())
        if i < len(separators):
            pieces.append(separators[i])
    if junk_at == len(blocks):
        pieces.append(rng.choice(["\n", " "]) + rng.choice(_JUNK))
    pieces.append(rng.choice(_OUTER))
    text = "".join(pieces)

    # Seed rules, restated on the structure we built.
    has_cot = any(b.exact and b.kind == "CoT" for b in blocks)
    re_edits = [b for b in blocks if b.exact and b.kind == "Re_edit"]
    clean = junk_at is None and all(b.exact for b in blocks)
    if not (has_cot and re_edits and clean):
        expected = 0.0
    else:
        average = sum(len(b.content.strip()) for b in re_edits) / len(re_edits)
        violations = 0
        for i, block in enumerate(blocks):
            starts_line = i == 0 or "\n" in separators[i - 1]
            ends_line = i == len(blocks) - 1 or "\n" in separators[i]
            if not (starts_line and ends_line) or "\n" in block.content:
                violations += 1
        expected = max(0.0, 5.0 - _seed_penalty(average) - violations)

    # Extraction: every Re_edit block in any letter case, whitespace collapsed, empty ones dropped.
    instructions = [" ".join(b.content.split()) for b in blocks if b.kind == "Re_edit"]
    instructions = [i for i in instructions if i]
    return GeneratedCase(text, expected, "; ".join(instructions) if instructions else None)


def generated_cases(count: int = 220, seed: int = 20240601) -> list[GeneratedCase]:
    rng = random.Random(seed)
    return [generate_case(rng) for _ in range(count)]
