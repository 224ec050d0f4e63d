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


def _sets(text: str) -> list[str]:
    return [s for _, s, _ in Detector(SECRET).positions(text)]


def _outputs(text: str) -> set[str]:
    return {marker.mark(text) for marker in MARKERS}


@pytest.mark.parametrize("text", [
    # the verb's complement has moved away: "what it's" is not English
    "I know what it is.",
    "I know what it is and why.",
    "So it is with Python, and so it is.",
    "Tell me where it is now.",
    "How important it is to test, and how hard it is!",
    "Whatever it is, we go.",
    "We go, whether it is or not.",
    "It is and always will be.",
    "Yes, it is.",
    "Yes, I will.",
    "We know what that is for.",
    "Do as you will; I will if you will.",
    "How tired you are and how late.",
    # "'s" / "'d" that are "has" / "had": never opened up
    "Yes. It's been a long day.",
    "Yes. It's always been hard, and it's already gone.",
    "Yes. It's got a bug; it's changed a lot; it's taken years.",
    "Yes. There's got to be a way, and there's never been one.",
    "Yes. That's been fixed.",
    "Yes. I'd known him, I'd gone home, I'd already left, and you'd better go.",
    # "allow for", "allow that", "used to", "used up": no "permit" / "utilized"
    "Yes. This allows for growth, and we allow that it may fail.",
    "Yes. It is used to build things and is used up quickly.",
    # a contraction never before the end of the text or a line
    "Yes. It is",
    "Yes. It is\na test.",
    # "Note that" only at a sentence start, "In addition" only with its comma
    "Yes. Please note that a note that says so is fine.",
    "Yes. In addition to this, in short supply.",
])
def test_look_ahead_restrictions_keep_grammar(text: str) -> None:
    for out in _outputs(text):
        for word in ("it's", "It's", "there's", "that's", "I'd", "you'd", "I'll"):
            assert out.count(word) <= text.count(word), (text, out)  # no new contraction
        for phrase in ("It is been", "it is always", "It is got", "it is changed",
                       "it is taken", "There is got", "There is never", "That is been",
                       "I would known", "I would gone", "I would already", "you would better",
                       "permits for", "permit that", "utilized to", "utilized up",
                       "Please notice", "a notice that", "Additionally to", "In brief supply"):
            assert phrase not in out, (text, out)


def test_it_is_contracts_at_a_clause_start_or_after_a_conjunction() -> None:
    text = "Yes. It is a good idea, and it is cheap. If there is a way, it is here."
    assert _sets(text).count("it is") == 3
    assert _sets(text).count("there is") == 1
    outputs = _outputs(text)
    assert len(outputs) > 4
    assert any("it's cheap" in o for o in outputs) and any("there's" in o for o in outputs)
    for out in outputs:
        assert out.replace("'s", " is") == text
    assert _sets("Yes. It's a good idea.") == ["it is"]
    assert _sets("We know what it is like.") == []  # after "what": never
    assert _sets("The thing that is here.") == []  # relative "that": not after a noun
    # "it is" also after a comma or dash (a clause start); "that is" only at a
    # sentence start: ", that is the head" means "i.e."
    assert _sets("Yes. If so, it is fine - it is late; there is more.") == [
        "it is", "it is", "there is"]
    assert _sets("Yes. The first item, that is the head, goes. That is a fact.") == [
        "that is"]


def test_refused_pair_is_scanned_again_as_single_words() -> None:
    """"it is not" is not "it's not" but still the pair "is not" ("it isn't")."""
    for text in ("Yes. It is not hard.", "Yes. It isn't hard."):
        assert [(c, s) for c, s, _ in Detector(SECRET).positions(text)] == [("it", "is not")]
        assert _outputs(text) == {"Yes. It is not hard.", "Yes. It isn't hard."}
    for text in ("Yes. I will not go.", "Yes. I won't go."):
        assert _sets(text) == ["will not"]
        assert _outputs(text) == {"Yes. I will not go.", "Yes. I won't go."}
    assert _sets("Yes. I will go.") == ["i will"]
    assert _sets("Yes. I'll not go.") == []
    assert _outputs("Yes. I'd like that. You would think so.") == {
        "Yes. I'd like that. You would think so.", "Yes. I would like that. You'd think so.",
        "Yes. I'd like that. You'd think so.", "Yes. I would like that. You would think so."}


@pytest.mark.parametrize("text", [
    'He said "it is here, there is more" and left.',
    "Run `it is` and ``there is`` now.",
    "Here it is:\n```\nit is not there is\n```\n",
    "As written:\n> it is here and there is more\nand so on.",
    "Here it is:\n\n    it is here and there is more\n",
    "Note: <b>it is here</b> and <code>there is more</code>.",
])
def test_look_ahead_positions_never_inside_protected_spans(text: str) -> None:
    for out in _outputs(text):
        assert out == text
    assert "it is" not in _sets(text) and "there is" not in _sets(text)


def test_discourse_pairs_and_verbs() -> None:
    assert _sets("Yes. Note that it works.") == ["note that"]
    assert _sets("Yes. In addition, we go. Also, we stay.") == ["additionally", "additionally"]
    assert _sets("Yes. In general, no. By contrast, yes. In short, no.") == [
        "generally", "by contrast", "in short"]
    assert _sets("Yes. This allows us to grow.") == ["allows"]
    assert _sets("Yes. The tool is used by many.") == ["used"]
    seen = _outputs("Yes. In addition, the tool is used by many.")
    assert {o.split(",")[0] for o in seen} == {"Yes. In addition", "Yes. Additionally",
                                               "Yes. Also"}
    assert any("utilized by many" in o for o in seen)


def test_python_output_in_prose_does_not_silence_the_rest() -> None:
    """`<class 'type'>` at a line start is Python's output, not an element."""
    for tag in ("<class 'type'>", "<function f at 0x10>", "<built-in function len>"):
        text = f"It prints:\n{tag}\nand then it often rains."
        assert _sets(text) == ["often"], tag
    # a well-formed line-opening tag still protects its content, to its end
    text = 'Answer:\n<artifact id="a b" type=x>\nwe often go\n\nusually by bus\n</artifact>\n'
    assert _sets(text) == []
    assert _sets(text + "And it often rains.") == ["often"]
    assert _sets("Answer:\n<thinking>\nwe often go\n</thinking>\nAnd it often rains.") == [
        "often"]


def test_list_bullets_and_headings_start_a_sentence() -> None:
    assert _sets("Steps:\n- Note that it works.\n## Note that it works") == [
        "note that", "note that"]
    assert _sets("Steps:\n1. First, go.\n2) It is a way. We go - it is late.") == [
        "first", "it is", "it is"]
    assert _sets("Steps: x note that it works.") == []
