from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.watermark import Watermarker
from gateway.watermark.scan import case_like

from .conftest import IDENTITY, SECRET, demo_text

FRAGMENTS = [
    "often", "frequently", "Often", "OFTEN", "usually", "perhaps", "maybe", "moreover",
    "the", "and", "it", "of", "to", "for", "example", "instance", "make", "sure", "based",
    "on", "upon", "compared", "with", "can't", "cannot", "can\u2019t", "while", "a", "an",
    "huge", "enormous", "Similarly,", "First,", "also,", "though", "even", "large",
    "```", "```python", "~~~", "`", "``", "`often`", '"', "\u201c", "\u201d", "'",
    "\u2018", "\u2019",
    "{", "}", "[", "]", "<b>", "</b>", "<thinking>", "</thinking>", "<br>", "<name>",
    "$", "$$", "$x$", "http://often.com/usually", "www.often.org", "me@often.io",
    "often.", "often,", "(often)", "*often*", "often's", "well-known", "3often", "42",
    "often.com", "students'", "'often'", ">", "x<y", "don't",
    # look-ahead sets, their refused next words, and line-opening tags
    "it", "It", "is", "it's", "It\u2019s", "that", "that's", "there", "There's", "here",
    "here's", "will", "I'll", "you'll", "it'll", "would", "I'd", "been", "always",
    "used", "utilized", "allows", "permits", "allowing", "for", "up", "Note", "note",
    "notice", "In", "in", "addition,", "By", "contrast,", "short,", "brief,", "general,",
    "Generally,", "and", "or", "<class", "'type'>", "<art", 'id="a', 'b">', "</art>",
    "-", "##", "1.", "2)", "\u2014",
]
SEPARATORS = [" ", " ", " ", "\n", "\n\n", "\t", "    ", "\n    ", " \n", "\u00a0"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 60))
    out = []
    for _ in range(n):
        out.append(draw(st.sampled_from(FRAGMENTS)))
        out.append(draw(st.sampled_from(SEPARATORS)))
    if draw(st.booleans()):
        out.pop()
    if draw(st.booleans()):
        out.insert(0, draw(st.sampled_from(SEPARATORS)))
    return "".join(out)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def streamed(marker: Watermarker, deltas: list[str]) -> str:
    stream = marker.stream()
    return "".join(stream.feed(d) for d in deltas) + stream.flush()


@settings(max_examples=300, deadline=None)
@given(texts(), st.lists(st.integers(0, 10_000), max_size=30), st.sampled_from(["a", "b"]))
def test_stream_equals_whole_for_any_split(text: str, cuts: list[int], who: str) -> None:
    marker = Watermarker(SECRET, who * 16)
    assert streamed(marker, split(text, cuts)) == marker.mark(text)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 100_000), max_size=200))
def test_stream_equals_whole_on_prose(seed: int, cuts: list[int]) -> None:
    text = demo_text(300, seed)
    marker = Watermarker(SECRET, IDENTITY)
    assert streamed(marker, split(text, cuts)) == marker.mark(text)


def test_stream_char_by_char_and_word_by_word() -> None:
    marker = Watermarker(SECRET, IDENTITY)
    text = demo_text(400)
    assert streamed(marker, list(text)) == marker.mark(text)
    words = [text[i:i + 7] for i in range(0, len(text), 7)]
    assert streamed(marker, words) == marker.mark(text)


def test_stream_holds_back_little() -> None:
    marker = Watermarker(SECRET, IDENTITY)
    stream = marker.stream()
    assert stream.feed("Hello") == "Hello"  # the first chunk never waits
    assert stream.feed(" world") == " world"  # not the start of any table word
    assert stream.feed(" of") == " "  # could still become "often"
    assert stream.feed("ten") == ""
    out = stream.feed(" rain")
    assert out.split()[0] in ("often", "frequently")
    assert out.endswith(" rain")
    assert stream.flush() == ""


def test_marking_changes_words_but_not_length_of_text_much() -> None:
    import difflib

    text = demo_text(1000)
    marked = Watermarker(SECRET, IDENTITY).mark(text)
    assert marked != text
    before, after = text.split(), marked.split()
    assert abs(len(before) - len(after)) < len(before) * 0.02  # contractions join words
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    changed = sum(i2 - i1 for op, i1, i2, _, _ in matcher.get_opcodes() if op != "equal")
    assert 0 < changed < len(before) * 0.1


def test_stream_holds_back_at_most_one_word() -> None:
    """Word by word, a stream keeps back at most the word being typed and one more
    (a pair's first word, or a look-ahead position waiting for the next word)."""
    marker = Watermarker(SECRET, IDENTITY)
    text = ("Yes. It is a good idea, and there is a way. It is not hard, so I will go. "
            "We would like it. Note that it is used by many. In addition, it allows "
            "us to do it. I do not know what it is. ") * 3
    assert "'" not in text  # so each contraction written stands for two words fed
    tokens = text.split(" ")
    stream = marker.stream()
    fed = emitted = ""
    for i, tok in enumerate(tokens):
        delta = tok if i == 0 else " " + tok
        fed += delta
        emitted += stream.feed(delta)
        sent = len(emitted.split()) + emitted.count("'")
        assert len(fed.split()) - sent <= 2, (fed, emitted)
    emitted += stream.flush()
    assert emitted == marker.mark(text)


def test_look_ahead_stream_sends_the_first_word_of_a_pair_at_once() -> None:
    marker = Watermarker(SECRET, IDENTITY)
    stream = marker.stream()
    assert stream.feed("Yes.") == "Yes."
    assert stream.feed(" It") == " "  # could start "It is"
    assert stream.feed(" is") == ""
    assert stream.feed(" a") == "It"  # "It is": the next word decides; "It" is safe
    assert stream.feed(" test") in ("'s a test", " is a test")  # "test": no table word
    assert stream.feed(".") == "."
    assert stream.flush() == ""


def test_deterministic_per_secret_and_identity() -> None:
    text = demo_text(500)
    assert Watermarker(SECRET, IDENTITY).mark(text) == Watermarker(SECRET, IDENTITY).mark(text)
    assert Watermarker(SECRET, IDENTITY).mark(text) != Watermarker(b"other", IDENTITY).mark(text)


def test_identities_make_different_choices() -> None:
    text = demo_text(1000)
    marks = {Watermarker(SECRET, f"{i:016x}").mark(text) for i in range(5)}
    assert len(marks) == 5


def test_marking_is_idempotent() -> None:
    marker = Watermarker(SECRET, IDENTITY)
    once = marker.mark(demo_text(600))
    assert marker.mark(once) == once


def test_capitalisation_is_preserved() -> None:
    assert case_like("frequently", "Often") == "Frequently"
    assert case_like("frequently", "OFTEN") == "FREQUENTLY"
    assert case_like("frequently", "often") == "frequently"
    text = "We go there. Often it rains. We go OFTEN there. We go often there."
    for i in range(20):
        marked = Watermarker(b"s%d" % i, IDENTITY).mark(text)
        assert marked.split()[3] in ("Often", "Frequently")
        assert marked.split()[8] in ("OFTEN", "FREQUENTLY")
        assert marked.split()[12] in ("often", "frequently")


def test_substitutes_somewhere_in_plain_prose() -> None:
    text = "It rains often here."
    seen = set()
    for i in range(40):
        seen.add(Watermarker(b"s%d" % i, IDENTITY).mark(text).split()[2])
    assert seen == {"often", "frequently"}


def test_apostrophe_style_follows_the_text() -> None:
    seen = set()
    for i in range(40):
        marked = Watermarker(b"s%d" % i, IDENTITY).mark("I don\u2019t know, we cannot say.")
        seen.add(marked.split()[-2])
    assert seen == {"cannot", "can\u2019t"}


PAIR_FRAGMENTS = [
    "I", "you", "we", "they", "do", "does", "is", "are", "am", "not", "don't", "isn't",
    "aren't", "you're", "I'm", "won't", "will", "can't", "cannot", "why", "so", "and",
    "It", "it", "Do", "NOT", "DO", "not.", "are,", "you,", "than", "nearly", "almost",
    "IT", "IS", "IT'S", "it's", "that", "That's", "there", "there's", "here", "Here's",
    "what", "would", "I'd", "you'd", "it'll", "I'll", "been", "got", "used", "utilized",
    "to", "allows", "permits", "better", "if", "or", "is.", "it,", "Note", "that", "In",
    "addition,", "Also,", "Additionally,", "in", "general,", "Generally,", "a",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS + PAIR_FRAGMENTS * 3), min_size=1, max_size=40),
       st.lists(st.sampled_from([" ", " ", " ", "\n", ". ", ", "]), min_size=40, max_size=40),
       st.integers(0, 30))
def test_marking_keeps_the_positions_and_is_idempotent(
        words: list[str], seps: list[str], key: int) -> None:
    """Whatever it writes, the marker leaves the detector the same positions to score."""
    from gateway.watermark import Detector

    text = "".join(w + s for w, s in zip(words, seps, strict=False))
    marker = Watermarker(b"k%d" % key, IDENTITY)
    marked = marker.mark(text)
    assert marker.mark(marked) == marked
    detector = Detector(b"k%d" % key)
    before = [(c, s) for c, s, _ in detector.positions(text)]
    after = [(c, s) for c, s, _ in detector.positions(marked)]
    assert before == after
