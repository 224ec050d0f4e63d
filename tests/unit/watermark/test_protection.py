"""Nothing inside protected spans is ever changed, whatever the key."""

from __future__ import annotations

import pytest

from gateway.watermark import Detector, Watermarker

from .conftest import SECRET

# Enough secrets that every position flips for some of them.
MARKERS = [Watermarker(b"secret-%d" % i, f"{i:016x}") for i in range(24)]

# Each case: text in which every "often" / "usually" / ... must stay as it is.
PROTECTED = {
    "fenced code": "Here it is:\n```python\nx = 1  # we often do this\nusually()\n```\n",
    "tilde fence": "Here it is:\n~~~\nwe often do this\n~~~\n",
    "indented code": "Here it is:\n\n    we often do this\n    usually so\n",
    "inline code": "Call `often usually` and ``often ` usually`` now.",
    "json": 'The reply is {"mode": often, "next": [usually, perhaps]} here.',
    "url": "See http://example.com/often/usually?x=perhaps and www.often.org/usually.",
    "email": "Write to often.usually@perhaps.com now.",
    "numbers and digits": "Use often2 and usually3 or 4often today.",
    "double quotes": 'He said "we often go there, usually by bus" and left.',
    "curly quotes": "He said \u201cwe often go there, usually by bus\u201d and left.",
    "single quotes": "He said 'we often go there, usually by bus' and left.",
    "curly single quotes": "He said \u2018we often go there, usually by bus\u2019 and left.",
    "block quote": "As written:\n> we often go there, usually by bus\nand so on.",
    "html element": "Bold: <b>we often go there</b> and <code>usually</code> ok.",
    "block tag": "Answer:\n<thinking>\nwe often go there\n\nusually by bus\n</thinking>\n",
    "tag markup": 'A <span title=often class=usually>x</span> tag.',
    "math": "Let $often + usually$ and $$often\nusually$$ hold.",
    "hyphen and possessive": "The often-cited and usually's forms stay.",
    "markdown link text": "Read [often and usually](http://x.org) first.",
}


def _positions(text: str) -> int:
    return len(Detector(SECRET).positions(text))


@pytest.mark.parametrize("name", sorted(PROTECTED))
def test_protected_spans_are_never_touched(name: str) -> None:
    text = PROTECTED[name]
    for marker in MARKERS:
        assert marker.mark(text) == text
    assert _positions(text) == 0


@pytest.mark.parametrize("text", [
    'He said "often" and then it often rains here.',
    "Use `often` and then it often rains here.",
    "```\noften\n```\nAnd then it often rains here.",
    "A {often} map and then it often rains here.",
    "Unclosed \"quote often\n\nAnd then it often rains here.",
    "Replace <name> with yours and then it often rains here.",
    "Use x<y and then it often rains here.",
    "Costs $5 and then it often rains here.",
    "The students' books: and then it often rains here.",
    "See http://a.org/(often) and then it often rains here.",
])
def test_text_after_a_closed_span_is_marked_again(text: str) -> None:
    assert _positions(text) == 1
    outputs = {marker.mark(text) for marker in MARKERS}
    assert len(outputs) == 2
    for out in outputs:
        assert out.replace("frequently rains", "often rains") == text


def test_unclosed_span_protects_the_rest_of_the_paragraph() -> None:
    text = 'He said "we often go.\nAnd it often rains.'
    assert _positions(text) == 0


def test_first_word_of_a_block_is_never_a_position() -> None:
    assert _positions("Often it rains.") == 0
    assert _positions("Rain often falls.") == 1


def test_restrictions() -> None:
    assert _positions("we go, for example, home") == 1
    assert _positions("this example is good") == 0  # "example" only after "for"
    assert _positions("it was not nearly enough") == 1  # "was not", but "not nearly" is an idiom
    assert [p[1] for p in Detector(SECRET).positions("it wasn't nearly enough")] == ["was not"]
    assert _positions("we were almost done") == 1
    assert _positions("Done. Similarly, we go.") == 1  # needs its comma
    assert _positions("Done. Similarly we go.") == 0
    assert _positions("we saw a suitable one") == 0  # "a suitable" / "an appropriate"
    assert _positions("we saw the suitable one") == 1
    assert _positions("we waited a while for it") == 0  # the noun "while"
    assert _positions("we read while they ate") == 1
    assert _positions("it is based on data") == 1
    assert _positions("it sat on the table") == 0
    assert _positions("we got there. First, we ate") == 1
    assert _positions("we got the first, then") == 0


def test_contractions() -> None:
    assert _positions("so we do not know") == 1
    assert _positions("so we don't know") == 1
    assert _positions("We know. Don't you?") == 0  # never opened up at a sentence start
    assert _positions("It is hard, isn't it?") == 0  # nor after a comma
    assert _positions("why don't we go") == 0
    assert _positions("so you are right") == 1
    assert _positions("so you're right") == 1
    assert _positions("yes, you are.") == 0  # no contraction before a pause
    assert _positions("so you aren't right") == 0  # would read back as "you are" + "not"
    assert _positions("so you are not right") == 1
    seen = set()
    for marker in MARKERS:
        out = marker.mark("Well, I DO NOT know, and I am sure you don\u2019t either.")
        seen.add(out)
        assert out.split()[2:4] in (["DO", "NOT"], ["DON'T"]) or out.split()[2] == "DON'T"
    assert len(seen) > 2
    assert "I\u2019m sure" in "".join(seen) or "I'm sure" in "".join(seen)
    assert "do not either" in "".join(seen)
