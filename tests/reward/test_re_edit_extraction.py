"""Reading CoT and Re_edit from the policy's answer: tags, JSON and colon forms."""

from __future__ import annotations

import pytest

from easyr1.reward import ParsedResponse, extract_re_edit, parse_response


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<CoT>a</CoT>\n<Re_edit>Move the shadow left.</Re_edit>", "Move the shadow left."),
        ("<Re_edit>Move the\n   shadow\tleft.</Re_edit>", "Move the shadow left."),
        ("<Re_edit>  One.  </Re_edit>\n<Re_edit>Two.</Re_edit>\n<Re_edit>Three.</Re_edit>", "One.; Two.; Three."),
        ("<re_edit>lower</re_edit> <RE_EDIT>upper</RE_EDIT> <Re_Edit>title</Re_Edit>", "lower; upper; title"),
        ("<Re_edit></Re_edit>\n<Re_edit>kept</Re_edit>\n<Re_edit> \n </Re_edit>", "kept"),
        ("<Re_edit id='1'>with attribute</Re_edit >", "with attribute"),
        (
            "Sure! Here: <Re_edit>text around is fine for extraction</Re_edit> thanks",
            "text around is fine for extraction",
        ),
        # An unclosed opening tag: the closed block after it is the instruction.
        ("<Re_edit>dangling <Re_edit>the real one</Re_edit>", "the real one"),
        # Stray CoT markup inside a Re_edit block is not instruction text.
        ("<Re_edit>Fix <CoT>x</CoT> it</Re_edit>", "Fix x it"),
        ('{"CoT": "why", "Re_Edit": "Fix the  shadow."}', "Fix the shadow."),
        ('```json\n{"re_edit": ["First.", "Second."]}\n```', "First.; Second."),
        ('Answer: {"Re-Edit": "Dashes too."}', "Dashes too."),
        ('{"Re_Edit": "broken json", }', "broken json"),
        ('{"Re_Edit": "escaped \\"quote\\""', 'escaped "quote"'),
        ("Re_Edit: Move the shadow left.", "Move the shadow left."),
        ("Reasoning here.\nre_edit: first\n- **Re_Edit**: second\n**Re_edit:** third", "first; second; third"),
        ("Re_Edit: 'quoted',", "quoted"),
    ],
)
def test_extracts_instruction(text, expected):
    assert extract_re_edit(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Move the shadow left.",
        "<CoT>only reasoning</CoT>",
        "<Re_edit></Re_edit>",
        "<Re_edit>   </Re_edit>",
        "<Re_edit>unclosed",
        '{"Re_Edit": ""}',
        '{"other": "Fix it."}',
        "Re_Edit:",
        "The Re_Edit: inside a sentence is not a line of that form",
    ],
)
def test_nothing_to_extract(text):
    parsed = parse_response(text)
    assert parsed.instruction is None and not parsed.ok and parsed.form is None
    assert extract_re_edit(text) is None


def test_parse_result_has_cot_blocks_and_form():
    parsed = parse_response("<CoT>one\n two</CoT>\n<CoT></CoT>\n<CoT>three</CoT>\n<Re_edit>a</Re_edit>")
    assert parsed == ParsedResponse(cot=["one two", "three"], re_edits=["a"], instruction="a", ok=True, form="tags")
    parsed = parse_response('{"CoT": "why", "Re_Edit": "do"}')
    assert (parsed.cot, parsed.re_edits, parsed.form) == (["why"], ["do"], "json")
    assert parse_response("Re_Edit: do it").form == "colon"
    # Without a Re_edit the reasoning is still reported.
    assert parse_response("<CoT>why</CoT>").cot == ["why"]


def test_tags_win_over_other_forms():
    text = '<Re_edit>from tags</Re_edit>\n{"Re_Edit": "from json"}\nRe_Edit: from colon'
    assert parse_response(text).form == "tags"
    assert extract_re_edit(text) == "from tags"
    assert extract_re_edit('{"Re_Edit": "from json"}\nRe_Edit: from colon') == "from json"


def test_long_inputs_stay_fast():
    # Many unclosed tags and braces must not make the parser quadratic.
    text = "<Re_edit>x " * 20000 + "{" * 20000
    assert extract_re_edit(text) is None
